package render

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/cluster"
)

// toolAccepts renders s for amber-fox without validating it and reports
// whether the real tool accepts the file (haproxy -c or keepalived -t).
// With app, amber-fox runs it (its health path goes into haproxy.cfg).
func toolAccepts(t *testing.T, rt *realTools, s *cluster.State, keepalived bool, app ...*LocalApp) (bool, string) {
	t.Helper()
	dir := t.TempDir()
	l := Local{NodeID: "amber-fox", RunDir: dir, Interface: rt.iface}
	if len(app) > 0 {
		l.App = app[0]
	}
	res, err := Render(s, l)
	if err != nil {
		t.Fatal(err)
	}
	content, argv := res.HAProxy.Content, []string{rt.haproxy, "-c", "-q", "-f"}
	if keepalived {
		content, argv = res.Keepalived.Content, []string{rt.keepalived, "-t", "-f"}
	}
	path := filepath.Join(dir, "conf")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(argv[0], append(argv[1:], path)...).CombinedOutput()
	return err == nil, string(out)
}

// TestAdvertIntervalAgainstKeepalived: cluster.ValidateAdvertInterval
// accepts exactly the intervals keepalived 2.2.7 accepts as render.Render
// writes them (whole seconds as VRRPv2, fractions as VRRPv3).
func TestAdvertIntervalAgainstKeepalived(t *testing.T) {
	rt := findTools(t)
	if rt == nil {
		t.Skip("haproxy/keepalived not usable here (not root, not installed, or -short)")
	}
	for _, v := range []float64{0.001, 0.005, 0.01, 0.015, 0.02, 0.07, 0.2, 0.5, 0.99, 1, 1.5, 1.25, 1.255, 2, 40, 40.5, 40.95, 40.96, 41, 41.5, 100, 254.99, 255, 255.5, 256, 1000} {
		s := testState(2)
		s.HA.AdvertInterval = v
		want := cluster.ValidateAdvertInterval(v) == nil
		got, out := toolAccepts(t, rt, s, true)
		if got != want {
			t.Errorf("advert_int %s: keepalived -t accepts: %v, Validate accepts: %v\n%s", cluster.FormatAdvertInterval(v), got, want, out)
		}
	}
}

// TestHealthPathAgainstHAProxy: every health path Validate accepts passes
// haproxy -c; every one haproxy -c refuses, Validate refuses. (HAProxy
// also accepts paths Validate refuses: a space splits the word, '#' starts
// a comment, \r\n is unescaped into the request.)
func TestHealthPathAgainstHAProxy(t *testing.T) {
	rt := findTools(t)
	if rt == nil {
		t.Skip("haproxy/keepalived not usable here (not root, not installed, or -short)")
	}
	refused := 0
	for _, p := range []string{
		"/", "/healthz", "/AZaz09-._~!&()*+,;=:@/x?q=1&r=%41%20%7e", "/" + strings.Repeat("a", cluster.MaxHealthPathLen-1),
		"/a%20b", "/a%41?x=%7e", // '%' must be doubled in set-pathq: haproxy -c refuses a bare one
		"/a'b", `/a"b`, `/a\b`, "/a b", "/a#b", "/a$b", "/a${HOME}", "/a\r\nX-Evil: 1", `/a\r\nX-Evil:\ 1`, "/a%0d%0a", "/a\tb", "/a%[src]", "/a%ci",
	} {
		s := testState(2)
		valid := cluster.ValidateHealthPath(p) == nil
		// The path reaches haproxy.cfg as the running release's, in the
		// node-local app frontend's set-pathq (a log-format string).
		ok, out := toolAccepts(t, rt, s, false, &LocalApp{Release: 1, Addr: "10.10.0.10:30001", HealthPath: p})
		if valid && !ok {
			t.Errorf("health path %q: Validate accepts, haproxy -c refuses:\n%s", p, out)
		}
		if !ok {
			refused++
		}
	}
	if refused < 2 { // the quotes at least: else this test checks nothing
		t.Errorf("haproxy -c refused %d of the paths, want the quoted ones at least", refused)
	}
}

// TestBoundariesAgainstTools: the extreme ports and priorities Validate
// accepts pass the real tools.
func TestBoundariesAgainstTools(t *testing.T) {
	rt := findTools(t)
	if rt == nil {
		t.Skip("haproxy/keepalived not usable here (not root, not installed, or -short)")
	}
	for _, tc := range []struct {
		name   string
		mutate func(*cluster.State)
	}{
		{"ports 1 and 65535", func(s *cluster.State) { s.App.Port = 1; s.Node("brisk-owl").AppPort = 65535 }},
		{"priorities 1 and 254", func(s *cluster.State) { s.Node("amber-fox").Priority = 254; s.Node("brisk-owl").Priority = 1 }},
		{"advert 0.01 and preempt", func(s *cluster.State) { s.HA = cluster.HA{AdvertInterval: 0.01, Preempt: true} }},
		{"longest cluster name", func(s *cluster.State) { s.Name = "a" + strings.Repeat("b", 28) + "c" }},
		{"254 nodes", func(s *cluster.State) {
			s.Node("amber-fox").Priority, s.Node("brisk-owl").Priority = 254, 253
			namer, taken := cluster.NewNamer(1), map[string]bool{"amber-fox": true, "brisk-owl": true}
			for i := 0; len(s.Nodes) < cluster.MaxPriority; i++ {
				id, err := namer.Next(taken)
				if err != nil {
					t.Fatal(err)
				}
				taken[id] = true
				s.Nodes = append(s.Nodes, cluster.Node{ID: id, PrivateIP: "10.10." + itoa(1+i/250) + "." + itoa(1+i%250),
					Priority: len(s.Nodes) - 1, Role: cluster.RoleStandby, Lifecycle: cluster.Ready})
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testState(2)
			tc.mutate(s)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			for _, kd := range []bool{false, true} {
				if ok, out := toolAccepts(t, rt, s, kd); !ok {
					t.Errorf("keepalived=%v: refused:\n%s", kd, out)
				}
			}
		})
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
