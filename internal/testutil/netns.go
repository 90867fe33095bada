package testutil

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/dynia/dynia/internal/extcmd"
)

// NetLab is a private network of node namespaces for one test: a router
// namespace holding a bridge (immune to the root namespace's iptables, where
// dockerd sets the FORWARD policy to DROP), one namespace per node linked to the bridge by a veth, and one
// veth from the root namespace into the router so the test reaches every
// node's private address. Addresses come from a 10.x.y.0/24 unused by the
// host; every name starts with a random per-test id. Everything is removed
// by t.Cleanup, including processes left in the namespaces.
type NetLab struct {
	ID       string       // random prefix of every name
	Router   string       // router namespace
	Prefix   netip.Prefix // nodes' /24
	Gateway  netip.Addr   // the bridge's address in the router (nodes' default route)
	RootAddr netip.Addr   // the root namespace's address, reachable from every node
	Nodes    []*NetNode
	t        testing.TB
}

// NetNode is one node namespace.
type NetNode struct {
	NS    string     // namespace name
	Addr  netip.Addr // private address on Iface
	Iface string
}

// NewNetLab builds the router namespace and n node namespaces. It needs root.
func NewNetLab(t testing.TB, n int) *NetLab {
	t.Helper()
	NeedRoot(t)
	NeedBinary(t, "ip")
	l := &NetLab{ID: fmt.Sprintf("dl%04x", rand.IntN(0x10000)), t: t}
	l.Router = l.ID + "-r"
	routes := mustRun(t, "ip", "-4", "route", "show", "table", "all")
	for {
		a, b := 100+rand.IntN(100), rand.IntN(128)*2
		l.Prefix = netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", a, b))
		link := fmt.Sprintf("10.%d.%d.", a, b+1)
		if !strings.Contains(routes, fmt.Sprintf("10.%d.%d.", a, b)) && !strings.Contains(routes, link) {
			l.Gateway = netip.MustParseAddr(fmt.Sprintf("10.%d.%d.1", a, b))
			l.RootAddr = netip.MustParseAddr(link + "1")
			break
		}
	}
	t.Cleanup(l.destroy)
	routerLink := strings.TrimSuffix(l.RootAddr.String(), ".1") + ".2"
	host := l.ID + "h"
	for _, c := range [][]string{
		{"ip", "netns", "add", l.Router},
		{"ip", "-n", l.Router, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", l.Router, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "-n", l.Router, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", l.Router, "addr", "add", l.Gateway.String() + "/24", "dev", "br0"},
		{"ip", "-n", l.Router, "link", "set", "br0", "up"},
		{"ip", "link", "add", host, "type", "veth", "peer", "name", "up0", "netns", l.Router},
		{"ip", "addr", "add", l.RootAddr.String() + "/30", "dev", host},
		{"ip", "link", "set", host, "up"},
		{"ip", "-n", l.Router, "addr", "add", routerLink + "/30", "dev", "up0"},
		{"ip", "-n", l.Router, "link", "set", "up0", "up"},
		{"ip", "route", "add", l.Prefix.String(), "via", routerLink},
	} {
		mustRun(t, c[0], c[1:]...)
	}
	for i := 0; i < n; i++ {
		l.AddNode()
	}
	return l
}

// AddNode adds one more node namespace.
func (l *NetLab) AddNode() *NetNode {
	t := l.t
	t.Helper()
	i := len(l.Nodes) + 1
	node := &NetNode{NS: fmt.Sprintf("%s-n%d", l.ID, i), Iface: "eth1"}
	base := l.Prefix.Addr().As4()
	base[3] = byte(10 + i)
	node.Addr = netip.AddrFrom4(base)
	veth := fmt.Sprintf("%sn%d", l.ID, i)
	for _, c := range [][]string{
		{"ip", "netns", "add", node.NS},
		{"ip", "-n", node.NS, "link", "set", "lo", "up"},
		{"ip", "-n", l.Router, "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", node.NS},
		{"ip", "-n", l.Router, "link", "set", veth, "master", "br0", "up"},
		{"ip", "-n", node.NS, "addr", "add", node.Addr.String() + "/24", "dev", "eth1"},
		{"ip", "-n", node.NS, "link", "set", "eth1", "up"},
		{"ip", "-n", node.NS, "route", "add", "default", "via", l.Gateway.String()},
	} {
		mustRun(t, c[0], c[1:]...)
	}
	l.Nodes = append(l.Nodes, node)
	return node
}

// Command returns a command running inside the node's namespace.
func (n *NetNode) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.NS, name}, args...)...)
}

func (l *NetLab) destroy() {
	names := []string{}
	for _, n := range l.Nodes {
		names = append(names, n.NS)
	}
	names = append(names, l.Router)
	for _, ns := range names {
		// Processes the test left behind in its own namespaces, by pid.
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL) // ESRCH: it already exited
			}
		}
		// A namespace left behind would outlive the test: say so.
		if _, err := extcmd.Combined(exec.Command("ip", "netns", "del", ns)); err != nil {
			l.t.Logf("netlab cleanup: %v", err)
		}
	}
	// Deleting the router namespace normally takes the host veth and its
	// route with it, so these usually fail with "not found"; best effort.
	_ = exec.Command("ip", "route", "del", l.Prefix.String()).Run()
	_ = exec.Command("ip", "link", "del", l.ID+"h").Run()
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := extcmd.Combined(exec.Command(name, args...))
	if err != nil {
		t.Fatal(err)
	}
	return out
}
