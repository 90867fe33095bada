package render

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/testutil"
)

// TestRetryAgainstHAProxy runs the rendered configs of a two-node cluster
// in real HAProxy, each node in its own namespace with its own app, and
// sends requests to the first node's front. The second node's app passes
// its health check but answers 503 on /busy and closes the connection
// without an answer on /close (an app being killed, a node losing its
// container). GET and OPTIONS must still get the first node's answer every
// time (resent to another node); a POST must not be resent: it gets the
// second node's 503 or a 502 whenever round robin picks that node.
func TestRetryAgainstHAProxy(t *testing.T) {
	rt := findTools(t)
	if rt == nil {
		t.Skip("haproxy/keepalived not usable here (not root, not installed, or -short)")
	}
	lab := testutil.NewNetLab(t, 2)
	s := testState(2)
	s.VPC.CIDR = lab.Prefix.String()
	for i := range s.Nodes {
		for j, n := range lab.Nodes {
			if s.Nodes[i].ID == nodeIDs[j] {
				s.Nodes[i].PrivateIP = n.Addr.String()
			}
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	healthy := func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") }
	apps := []http.HandlerFunc{
		func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "amber-fox") },
		func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/busy":
				http.Error(w, "busy", http.StatusServiceUnavailable)
			case "/close":
				c, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					_ = c.Close() // no answer at all
				}
			default:
				fmt.Fprintln(w, "brisk-owl")
			}
		},
	}
	for i, node := range lab.Nodes {
		ln, err := node.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", healthy)
		mux.HandleFunc("/", apps[i])
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })

		dir := t.TempDir()
		res, err := Render(s, Local{NodeID: nodeIDs[i], RunDir: dir, Bind: ":80", Interface: node.Iface,
			App: &LocalApp{Release: 1, Addr: ln.Addr().String(), HealthPath: "/healthz"}})
		if err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, res.HAProxy.Content, 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := node.Command(rt.haproxy, "-db", "-f", cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			_ = logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("haproxy log of %s:\n%s", nodeIDs[i], b)
			}
		})
	}

	front := "http://" + lab.Nodes[0].Addr.String()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	do := func(method, path string) (int, string, error) {
		req, err := http.NewRequest(method, front+path, strings.NewReader(""))
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), nil
	}
	// Both nodes in service: the front has answered from each.
	testutil.WaitFor(t, time.Minute, func() error {
		seen := map[string]bool{}
		for range 4 {
			code, body, err := do(http.MethodGet, "/")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("GET /: %d %q %v", code, body, err)
			}
			seen[body] = true
		}
		if !seen["amber-fox"] || !seen["brisk-owl"] {
			return fmt.Errorf("answers from %v, want both nodes", seen)
		}
		return nil
	})

	const n = 20
	for _, path := range []string{"/busy", "/close"} {
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			for range n {
				code, body, err := do(method, path)
				if err != nil || code != http.StatusOK || body != "amber-fox" {
					t.Fatalf("%s %s: %d %q %v, want amber-fox's answer (resent from brisk-owl)", method, path, code, body, err)
				}
			}
		}
		refused := 0
		for range n {
			code, body, err := do(http.MethodPost, path)
			switch {
			case err != nil:
				t.Fatalf("POST %s: %v", path, err)
			case code == http.StatusOK && body == "amber-fox":
			case code == http.StatusServiceUnavailable || code == http.StatusBadGateway:
				refused++
			default:
				t.Fatalf("POST %s: %d %q", path, code, body)
			}
		}
		// Round robin sends every other request to brisk-owl; a POST
		// that reached it must come back failed, not resent.
		if refused == 0 {
			t.Errorf("POST %s: all %d answered by amber-fox: a POST was resent to another node", path, n)
		}
	}
}
