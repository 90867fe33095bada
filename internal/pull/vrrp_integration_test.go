package pull_test

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/testutil"
)

// TestVRRPIgnoresStrangersOverVPC runs VRRP over the VPC (mesh_disabled, no
// cloud firewall): nothing but keepalived's own check stands between a
// stranger in the VPC and the cluster's election. A keepalived outside the
// cluster advertises the cluster's VRID with priority 254 to both nodes;
// its adverts reach the nodes (counted by nftables), and with
// check_unicast_src keepalived discards them: the MASTER stays MASTER and
// no node logs a VRRP transition. Without check_unicast_src the MASTER
// steps down to the higher priority (keepalived.conf(5), vrrp_instance).
func TestVRRPIgnoresStrangersOverVPC(t *testing.T) {
	testutil.Integration(t)
	testutil.NeedBinary(t, "nft")
	e := newEnvWith(t, 2, 2, time.Second, envOptions{noMesh: true})
	all := []int{0, 1}
	e.converge(e.put(), e.ids...)
	master := -1
	testutil.WaitFor(t, 60*time.Second, func() (err error) {
		master, err = oneMaster(e.vrrpStates(), all)
		return err
	})

	// Count VRRP packets from anyone but the two nodes, as they arrive.
	peers := e.lab.Nodes[0].Addr.String() + ", " + e.lab.Nodes[1].Addr.String()
	for i := range all {
		rules := fmt.Sprintf("table inet strangers {\n\tchain in {\n\t\ttype filter hook input priority -10; policy accept;\n"+
			"\t\tip protocol vrrp ip saddr != { %s } counter\n\t}\n}\n", peers)
		cmd := e.lab.Nodes[i].Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft on %s: %v\n%s", e.ids[i], err, out)
		}
	}
	heardFrom := func(i int) int {
		out, err := e.lab.Nodes[i].Command("nft", "list", "chain", "inet", "strangers", "in").CombinedOutput()
		if err != nil {
			t.Fatalf("nft list on %s: %v\n%s", e.ids[i], err, out)
		}
		m := regexp.MustCompile(`counter packets (\d+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no counter on %s:\n%s", e.ids[i], out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	e.intrude(master, all, func() {
		for i := range all {
			if got := heardFrom(i); got < 3 {
				t.Errorf("%s received %d stranger adverts: the stranger was not heard at all", e.ids[i], got)
			} else {
				t.Logf("%s: %d stranger VRRP adverts reached the node; keepalived discarded them", e.ids[i], got)
			}
		}
	})
}
