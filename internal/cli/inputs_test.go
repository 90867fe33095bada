package cli

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/report"
)

// TestBadInputStateRules: a flag value the state would refuse (the rules of
// cluster.Validate, shared with dynia-pull) exits 2 with one line naming the
// flag and the value, before any API call or bucket write.
func TestBadInputStateRules(t *testing.T) {
	e := newEnv(t)
	many := []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "s-1vcpu-1gb"}
	for i := range cluster.MaxAdminCIDRs + 1 {
		many = append(many, "--admin-cidr", "192.0.2."+strconv.Itoa(i)+"/32")
	}
	deploy := func(extra ...string) []string {
		return append([]string{"app", "deploy", "--name", "ok", "--image", "ghcr.io/acme/app@sha256:" + strings.Repeat("ab", 32)}, extra...)
	}
	create := func(extra ...string) []string {
		return append([]string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "s-1vcpu-1gb"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"size upper case", []string{"node", "create-ha", "--name", "ok", "--region", "sgp1", "--size", "S-1VCPU-1GB"}, `--size "S-1VCPU-1GB": must be a size slug`},
		{"double hyphen in a name", []string{"node", "create-ha", "--name", "a--b", "--region", "sgp1", "--size", "s-1vcpu-1gb"}, `--name "a--b"`},
		{"newline in a name", []string{"node", "list", "--name", "shop\nx"}, `--name "shop\nx"`},
		{"newline in a node id", []string{"node", "make-active", "--name", "ok", "--node", "misty-owl\n"}, `--node "misty-owl\n"`},
		{"dns domain upper case", create("--dns-domain", "Example.com"), `--dns-domain "Example.com": not a lowercase DNS name`},
		{"dns domain too long", create("--dns-domain", strings.Repeat("a.", 126)+"com"), `--dns-domain "a.a.`},
		{"dns record with a space", create("--dns-domain", "example.com", "--dns-record", "a b"), `--dns-record "a b"`},
		{"admin cidr with host bits", create("--admin-cidr", "169.254.169.254/16"), `--admin-cidr "169.254.169.254/16": host bits set`},
		{"too many admin cidrs", many, `--admin-cidr: 65 given, at most 64`},
		// Issue 14's health path reproduction, and its escaped and quoted kin, through app deploy.
		{"health path header injection", deploy("--health-path", "/healthz\r\nX-Evil: 1"), `--health-path "/healthz\r\nX-Evil: 1": character '\r' not allowed`},
		{"health path escaped CRLF", deploy("--health-path", "/healthz%0d%0aX-Evil:%201"), `escape %0d decodes to a control character`},
		{"health path variable", deploy("--health-path", "/a${HOME}"), `--health-path "/a${HOME}": character '$' not allowed`},
		{"env name", deploy("--env", "A-B=1"), `--env "A-B"`},
		{"image not a reference", []string{"app", "deploy", "--name", "ok", "--image", "registry.example.com/app:bad tag"}, `--image "registry.example.com/app:bad tag": not an image reference`},
		{"image without a tag", []string{"app", "deploy", "--name", "ok", "--image", "registry.example.com/app"}, `--image "registry.example.com/app": name a tag or a digest`},
		{"port out of range", deploy("--port", "70000"), `--port "70000": must be 1-65535`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, writes := len(e.sim.Calls()), e.writes.Load()
			r := e.run(tc.args...)
			wantUsage(t, r, tc.want)
			for _, c := range e.sim.Calls()[calls:] {
				t.Errorf("API call on bad input: %s %s", c.Method, c.Path)
			}
			if n := e.writes.Load() - writes; n != 0 {
				t.Errorf("%d bucket writes on bad input", n)
			}
		})
	}
}

// TestHostileReport: a node's report speaks only for that node. A report
// from the future (it would look fresh for years), or one at a node's key
// that names another node, is not taken as the node's health; a good one
// is.
func TestHostileReport(t *testing.T) {
	e := newEnv(t)
	e.mustRun("node", "create-ha", "--name", "shop", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--no-wait")
	st := e.state("shop")
	id := st.Nodes[0].ID
	put := func(mutate func(*report.Status)) {
		t.Helper()
		s := report.Status{NodeID: id, Cluster: "shop", AppliedGeneration: st.Generation, VRRPState: report.VRRPMaster,
			AppHealthy: true, UpdatedAt: time.Now().UTC()}
		mutate(&s)
		// Signed with the node's own report key: what is refused below is
		// the content, not the signature (sign_test.go has those).
		b, err := report.SignReport(s, e.reportKey(st.Nodes[0]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.bucket.Put(context.Background(), cluster.StatusKey("shop", id), b, bucket.Cond{}); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		t.Helper()
		var rows []NodeRow
		r := e.mustRun("node", "list", "--name", "shop", "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 {
			t.Fatalf("list -o json: %v\n%s", err, r.stdout)
		}
		return rows[0].Status
	}
	for _, tc := range []struct {
		name   string
		mutate func(*report.Status)
	}{
		{"from the future", func(s *report.Status) { s.UpdatedAt = time.Now().Add(24 * time.Hour).UTC() }},
		{"names another node", func(s *report.Status) { s.NodeID = "other-node" }},
		{"names another cluster", func(s *report.Status) { s.Cluster = "prod" }},
		{"unknown vrrp state", func(s *report.Status) { s.VRRPState = "MASTER\x1b[2J" }},
	} {
		put(tc.mutate)
		if got := status(); got == string(ops.HealthUp) {
			t.Errorf("report %s: node listed as %s", tc.name, got)
		}
	}
	put(func(*report.Status) {})
	if got := status(); got != string(ops.HealthUp) {
		t.Errorf("good report: node listed as %s, want up", got)
	}
}
