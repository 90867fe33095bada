package localca

import (
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestIssue: a TLS server with the issued certificate is trusted by a
// client with Roots, by name and by address, and by no client without
// them; Write writes the three files, mode 0600.
func TestIssue(t *testing.T) {
	l, err := Issue("test CA", "pebble", []string{"pebble", "localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key, ca := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	if err := l.Write(os.WriteFile, cert, key, ca); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cert, key, ca} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, st.Mode().Perm(), err)
		}
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, tc := range []struct {
		name, host string
		trust      bool
		wantOK     bool
	}{
		{"by address", "127.0.0.1", true, true},
		{"by name", "localhost", true, true},
		{"without the CA", "127.0.0.1", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{}
			if tc.trust {
				cfg.RootCAs = l.Roots
			}
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
			resp, err := c.Get("https://" + net.JoinHostPort(tc.host, port) + "/")
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tc.wantOK {
				t.Errorf("GET: %v, want success %v", err, tc.wantOK)
			}
		})
	}
}
