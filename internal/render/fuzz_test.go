package render

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

// realTools are haproxy and keepalived when the fuzz target may run them:
// both on PATH, root (keepalived -t needs it), a non-loopback interface
// for keepalived -t, and not -short. With DYNIA_REQUIRE_INTEGRATION=1 a
// missing one fails the test.
type realTools struct {
	haproxy, keepalived, iface string
}

func findTools(tb testing.TB) *realTools {
	tb.Helper()
	if testing.Short() {
		return nil
	}
	if !testutil.Required() {
		if _, err := exec.LookPath("haproxy"); err != nil {
			return nil
		}
		if _, err := exec.LookPath("keepalived"); err != nil {
			return nil
		}
		if os.Geteuid() != 0 {
			return nil
		}
	}
	rt := &realTools{haproxy: testutil.NeedBinary(tb, "haproxy"), keepalived: testutil.NeedBinary(tb, "keepalived")}
	testutil.NeedRoot(tb)
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			rt.iface = i.Name
			break
		}
	}
	if rt.iface == "" {
		tb.Fatal("no non-loopback interface for keepalived -t")
	}
	return rt
}

// check runs haproxy -c and keepalived -t on a render, side by side, each
// bounded by a timeout.
func (rt *realTools) check(t *testing.T, dir string, res *Result) {
	t.Helper()
	checks := []struct {
		file    string
		content []byte
		argv    []string
		out     []byte
		err     error
	}{
		{file: "haproxy.cfg", content: res.HAProxy.Content, argv: []string{rt.haproxy, "-c", "-q", "-f"}},
		{file: "keepalived.conf", content: res.Keepalived.Content, argv: []string{rt.keepalived, "-t", "-f"}},
	}
	var wg sync.WaitGroup
	for i := range checks {
		c := &checks[i]
		path := filepath.Join(dir, c.file)
		if err := os.WriteFile(path, c.content, 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c.out, c.err = exec.CommandContext(ctx, c.argv[0], append(c.argv[1:], path)...).CombinedOutput()
		})
	}
	wg.Wait()
	for _, c := range checks {
		if c.err != nil {
			t.Fatalf("%s refuses a render of a validated state: %v\n%s\n--- %s\n%s", filepath.Base(c.argv[0]), c.err, c.out, c.file, c.content)
		}
	}
}

// fuzzBase is the state FuzzRender edits when its document is empty.
func fuzzBase() *cluster.State {
	s := testState(3)
	s.VPC = cluster.VPC{ID: "5a4981aa-9653-4bd1-bef5-d6bff52042e4", CIDR: "10.10.0.0/24"}
	s.ReservedIP = "198.51.100.10"
	return s
}

// FuzzRender: decode → validate → render. A state that passed Validate
// always renders (for a node with a private IP), the same bytes twice, and
// the output passes the real `haproxy -c` and `keepalived -t` (run when
// present, as root, never under -short; nothing cached). The scalar
// arguments override the decoded state's health path, advert interval and
// app port so the fuzzer reaches the values that go into the configs
// directly; an empty document stands for fuzzBase. Seeds:
// testdata/fuzz/FuzzRender (the golden test states, issue 14's
// reproductions, the boundary values).
func FuzzRender(f *testing.F) {
	tools := findTools(f)
	for _, n := range []int{1, 2, 5} {
		b, err := json.Marshal(testState(n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "", 0.0, uint16(0), uint8(n-1))
	}
	f.Fuzz(func(t *testing.T, doc []byte, healthPath string, advert float64, port uint16, node uint8) {
		s := fuzzBase()
		if len(doc) > 0 {
			var err error
			if s, err = cluster.Decode(doc); err != nil {
				return // dynia-pull refuses before rendering
			}
		}
		if healthPath != "" {
			s.App.HealthPath = healthPath
			if r := s.App.CurrentRelease(); r != nil {
				r.HealthPath = healthPath
			}
		}
		if advert != 0 {
			s.HA.AdvertInterval = advert
		}
		if port != 0 {
			s.App.Port = int(port)
		}
		if err := s.Validate(); err != nil {
			return // dynia-pull refuses before rendering
		}
		var ids []string
		for _, n := range s.Nodes {
			if n.PrivateIP != "" {
				ids = append(ids, n.ID)
			}
		}
		if len(ids) == 0 {
			return // nothing to render for: Render refuses a node without a private IP
		}
		dir := t.TempDir()
		l := Local{NodeID: ids[int(node)%len(ids)], RunDir: dir}
		if r := s.App.CurrentRelease(); r != nil {
			// As dynia-pull renders a node that runs the current release.
			l.App = &LocalApp{Release: r.Number, Addr: s.Node(l.NodeID).PrivateIP + ":30001", HealthPath: r.HealthPath}
		}
		if tools != nil {
			l.Interface = tools.iface
		}
		res, err := Render(s, l)
		if err != nil {
			t.Fatalf("Render of a validated state: %v", err)
		}
		again, err := Render(s, l)
		if err != nil || !bytes.Equal(res.HAProxy.Content, again.HAProxy.Content) || !bytes.Equal(res.Keepalived.Content, again.Keepalived.Content) {
			t.Fatalf("Render is not deterministic (%v)", err)
		}
		if tools != nil {
			tools.check(t, dir, res)
		}
	})
}
