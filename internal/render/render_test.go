package render

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/acme"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var nodeIDs = []string{"amber-fox", "brisk-owl", "calm-heron", "dusty-lynx", "eager-mole"}

// testState returns a valid state with n ready nodes; node i has priority
// 150-10i and private IP 10.10.0.(10+i).
func testState(n int) *cluster.State {
	s := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "ubuntu-24-04-x64", time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	s.Generation = 7
	for i := 0; i < n; i++ {
		role := cluster.RoleStandby
		if i == 0 {
			role = cluster.RoleActive
		}
		// Insert in reverse order: the output must be sorted anyway.
		s.Nodes = append([]cluster.Node{{
			ID: nodeIDs[i], PrivateIP: fmt.Sprintf("10.10.0.%d", 10+i),
			Priority: cluster.FirstPriority - i*cluster.PriorityStep,
			Role:     role, Lifecycle: cluster.Ready,
		}}, s.Nodes...)
	}
	if err := s.Validate(); err != nil {
		panic(err)
	}
	return s
}

func TestGolden(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		state func() *cluster.State
		node  string
		vpc   bool // VRRP over the VPC interface (mesh_disabled), as before the mesh
		app   *LocalApp
	}{
		{"with-release", func() *cluster.State { return testState(2) }, "amber-fox", false,
			&LocalApp{Release: 3, Addr: "10.10.0.11:20007", HealthPath: "/up?probe=1"}},
		{"tls", func() *cluster.State { return testState(2) }, "amber-fox", false, nil},
		{"one-node", func() *cluster.State { return testState(1) }, "amber-fox", false, nil},
		{"two-nodes", func() *cluster.State { return testState(2) }, "brisk-owl", false, nil},
		{"five-nodes", func() *cluster.State { return testState(5) }, "calm-heron", false, nil},
		{"draining", func() *cluster.State {
			s := testState(3)
			s.Node("brisk-owl").Lifecycle = cluster.Draining
			s.Node("calm-heron").Lifecycle = cluster.Provisioning
			return s
		}, "amber-fox", false, nil},
		{"port-override", func() *cluster.State {
			s := testState(2)
			s.App.Port = 3000
			s.App.HealthPath = "/up"
			s.Node("brisk-owl").AppPort = 9000
			return s
		}, "amber-fox", false, nil},
		{"fast-preempt", func() *cluster.State {
			s := testState(3)
			s.HA = cluster.HA{AdvertInterval: 0.2, Preempt: true}
			s.Node("calm-heron").Lifecycle = cluster.Removing
			return s
		}, "amber-fox", false, nil},
		{"vpc-no-mesh", func() *cluster.State { return testState(3) }, "brisk-owl", true, nil},
		{"vpc-no-mesh-one-node", func() *cluster.State { return testState(1) }, "amber-fox", true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := Local{NodeID: tc.node, RunDir: "/run/dynia", Mesh: true, App: tc.app} // the mesh interface defaults to dynia0
			if tc.name == "tls" {
				l.ACME = "127.0.0.1:9322"
				l.TLS = &LocalTLS{CertFile: "/etc/dynia/tls/cert.pem", Serial: "3a7f", Redirect: true, HSTS: true}
			}
			if tc.vpc {
				l = Local{NodeID: tc.node, RunDir: "/run/dynia", Interface: "eth1"}
			}
			res, err := Render(tc.state(), l)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.vpc { // the mesh changes keepalived.conf only
				golden(t, tc.name+".haproxy.cfg.golden", res.HAProxy.Content)
			}
			golden(t, tc.name+".keepalived.conf.golden", res.Keepalived.Content)
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", name, diff)
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	a, err := Render(testState(5), Local{NodeID: "amber-fox", RunDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	s := testState(5)
	s.Nodes[0], s.Nodes[4] = s.Nodes[4], s.Nodes[0]
	b, err := Render(s, Local{NodeID: "amber-fox", RunDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.HAProxy.Content, b.HAProxy.Content) || !bytes.Equal(a.Keepalived.Content, b.Keepalived.Content) {
		t.Error("node order changed the output")
	}
}

func TestHashIgnoresGeneration(t *testing.T) {
	t.Parallel()
	s := testState(2)
	a, _ := Render(s, Local{NodeID: "amber-fox", RunDir: "/r"})
	s.Generation++
	b, _ := Render(s, Local{NodeID: "amber-fox", RunDir: "/r"})
	if a.HAProxy.Hash != b.HAProxy.Hash {
		t.Error("generation changed the body hash")
	}
	if h, ok := FileHash(b.HAProxy.Content); !ok || h != b.HAProxy.Hash {
		t.Errorf("FileHash = %q, %v; want %q", h, ok, b.HAProxy.Hash)
	}
	if g, ok := HeaderGeneration(b.HAProxy.Content); !ok || g != 8 {
		t.Errorf("HeaderGeneration = %d, %v", g, ok)
	}
	edited := append(append([]byte(nil), b.HAProxy.Content...), "# hand edit\n"...)
	if h, _ := FileHash(edited); h == b.HAProxy.Hash {
		t.Error("a hand edit kept the hash")
	}
	if _, ok := FileHash([]byte("global\n")); ok {
		t.Error("a file without header has a hash")
	}
}

func TestRenderErrors(t *testing.T) {
	t.Parallel()
	s := testState(2)
	if _, err := Render(s, Local{NodeID: "ghost-cat"}); err == nil {
		t.Error("unknown node rendered")
	}
	s.Nodes = append(s.Nodes, cluster.Node{ID: "fresh-elk", Priority: 5, Role: cluster.RoleStandby, Lifecycle: cluster.Provisioning})
	if _, err := Render(s, Local{NodeID: "fresh-elk"}); err == nil {
		t.Error("node without private IP rendered")
	}
}

func TestMeshAddressesInRender(t *testing.T) {
	t.Parallel()
	s := testState(3)
	res, err := Render(s, Local{NodeID: "brisk-owl", RunDir: "/r", Mesh: true, Interface: "wg3164444"})
	if err != nil {
		t.Fatal(err)
	}
	k := string(res.Keepalived.Content)
	for _, want := range []string{"interface wg3164444\n", "unicast_src_ip 100.64.0.11\n", "100.64.0.10 # amber-fox\n", "100.64.0.12 # calm-heron\n"} {
		if !strings.Contains(k, want) {
			t.Errorf("keepalived.conf lacks %q:\n%s", want, k)
		}
	}
	if strings.Contains(k, "10.10.0.") {
		t.Errorf("keepalived.conf names a private IP:\n%s", k)
	}
	// The mesh changes keepalived.conf only; HAProxy still reaches apps
	// over the VPC.
	vpc, _ := Render(s, Local{NodeID: "brisk-owl", RunDir: "/r"})
	if !bytes.Equal(vpc.HAProxy.Content, res.HAProxy.Content) {
		t.Error("the mesh changed haproxy.cfg")
	}

	// Private IPs that share their low 16 bits (not one DO VPC) would
	// collide on the mesh: refused, naming both nodes.
	s.Node("calm-heron").PrivateIP = "10.11.0.10"
	if _, err := Render(s, Local{NodeID: "brisk-owl", RunDir: "/r", Mesh: true}); err == nil ||
		!strings.Contains(err.Error(), "amber-fox and calm-heron") || !strings.Contains(err.Error(), "100.64.0.10") {
		t.Errorf("colliding mesh addresses: %v", err)
	}
	// A removing node is no VRRP member and so collides with nobody.
	s.Node("calm-heron").Lifecycle = cluster.Removing
	if _, err := Render(s, Local{NodeID: "brisk-owl", RunDir: "/r", Mesh: true}); err != nil {
		t.Errorf("removing node: %v", err)
	}
}

func TestVRID(t *testing.T) {
	t.Parallel()
	seen := map[int]bool{}
	for _, name := range []string{"a", "shop", "prod", "staging", "x-y-z"} {
		v := VRID(name)
		if v < 1 || v > 254 || VRID(name) != v {
			t.Errorf("VRID(%q) = %d", name, v)
		}
		seen[v] = true
	}
}

// TestRealTools checks renders with the real haproxy -c and keepalived -t.
func TestRealTools(t *testing.T) {
	haproxy := testutil.NeedBinary(t, "haproxy")
	keepalived := testutil.NeedBinary(t, "keepalived")
	testutil.NeedRoot(t)
	// keepalived -t checks the interface exists and is not loopback.
	iface := ""
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			iface = i.Name
			break
		}
	}
	if iface == "" {
		t.Skip("no non-loopback interface for keepalived -t")
	}
	for _, n := range []int{1, 2, 5} {
		s := testState(n)
		s.Node("amber-fox").AppPort = 9000
		if n == 5 {
			s.Node("brisk-owl").Lifecycle = cluster.Draining
			s.HA.AdvertInterval = 0.5
		}
		dir := t.TempDir()
		// The mesh render; keepalived -t checks the interface exists, not
		// which addresses it holds.
		l := Local{NodeID: "amber-fox", RunDir: dir, Interface: iface, Mesh: true}
		if n > 1 {
			l.App = &LocalApp{Release: 7, Addr: "10.10.0.11:20001", HealthPath: "/health/ready?full=1"}
		}
		if n == 5 {
			// HTTPS with a certificate haproxy -c can load.
			chain, key, err := acme.Placeholder([]string{"app.example.com"}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			cert := filepath.Join(dir, "cert.pem")
			if err := os.WriteFile(cert, acme.HAProxyPEM(chain, key), 0o600); err != nil {
				t.Fatal(err)
			}
			l.ACME, l.TLS = "127.0.0.1:9322", &LocalTLS{CertFile: cert, Serial: "1", Redirect: true, HSTS: true}
		}
		res, err := Render(s, l)
		if err != nil {
			t.Fatal(err)
		}
		hp := filepath.Join(dir, "haproxy.cfg")
		kp := filepath.Join(dir, "keepalived.conf")
		os.WriteFile(hp, res.HAProxy.Content, 0o644)
		os.WriteFile(kp, res.Keepalived.Content, 0o644)
		if out, err := exec.Command(haproxy, "-c", "-f", hp).CombinedOutput(); err != nil {
			t.Errorf("%d nodes: haproxy -c: %v\n%s", n, err, out)
		}
		if out, err := exec.Command(keepalived, "-t", "-f", kp).CombinedOutput(); err != nil {
			t.Errorf("%d nodes: keepalived -t: %v\n%s", n, err, out)
		}
	}
}

// TestNoIdleClose: pull.json's bench_no_idle_close (the reload-safety
// benchmark's comparison run) leaves exactly that option out.
func TestNoIdleClose(t *testing.T) {
	t.Parallel()
	with, err := Render(testState(2), Local{NodeID: "amber-fox", RunDir: "/r"})
	if err != nil {
		t.Fatal(err)
	}
	without, err := Render(testState(2), Local{NodeID: "amber-fox", RunDir: "/r", NoIdleClose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(with.HAProxy.Content, []byte("\n    option idle-close-on-response\n")) {
		t.Fatalf("the default config lacks option idle-close-on-response:\n%s", with.HAProxy.Content)
	}
	var kept []string
	for _, l := range strings.Split(string(with.HAProxy.Content), "\n") {
		if !strings.Contains(l, "idle-close-on-response") && !strings.Contains(l, "Keep-alive connections are closed") &&
			!strings.Contains(l, "so reloads cost no failed requests") && !strings.HasPrefix(l, "# dynia cluster=") {
			kept = append(kept, l)
		}
	}
	var got []string
	for _, l := range strings.Split(string(without.HAProxy.Content), "\n") {
		if !strings.HasPrefix(l, "# dynia cluster=") {
			got = append(got, l)
		}
	}
	if diff := cmp.Diff(kept, got); diff != "" {
		t.Errorf("NoIdleClose changed more than the option (-want +got):\n%s", diff)
	}
}
