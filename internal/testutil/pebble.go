package testutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/localca"
	"github.com/dynia/dynia/internal/poll"
)

// PebbleOptions configure StartPebble.
type PebbleOptions struct {
	// Node runs Pebble inside this namespace, listening on its address;
	// nil runs it in the test's namespace on 127.0.0.1.
	Node *NetNode
	// Port and ManagementPort are the ACME API's and the management API's
	// (defaults 14000 and 15000 in a Node; free loopback ports otherwise).
	Port, ManagementPort int
	// HTTPPort and TLSPort are where Pebble validates HTTP-01 and
	// TLS-ALPN-01 (defaults 80 and 443, like a real CA, so validation goes
	// through the address the name resolves to).
	HTTPPort, TLSPort int
	// DNSServer ("host:port") is where Pebble resolves names being
	// validated (-dnsserver); empty means the system resolver.
	DNSServer string
	// ValidityPeriod of issued certificates (default Pebble's profile
	// default: 90 days here).
	ValidityPeriod time.Duration
	// AuthzReuse is the percentage of authorizations Pebble reuses (default
	// 0: every order validates, so a moved A record fails the next order).
	AuthzReuse int
}

// Pebble is a running Pebble (the ACME test server of Let's Encrypt),
// started by StartPebble.
type Pebble struct {
	DirectoryURL  string         // https://ADDR:PORT/dir
	ManagementURL string         // https://ADDR:MGMTPORT
	TLSRootFile   string         // PEM of the CA that signed Pebble's own listener certificate
	TLSRoots      *x509.CertPool // the same, as a pool (for the ACME client)
	Addr          netip.Addr     // where it listens
	PID           int
	LogPath       string
}

// StartPebble runs Pebble with a generated configuration and a generated
// listener certificate, waits for its directory to answer, and kills it (by
// PID) when the test ends. Validation is real: PEBBLE_VA_NOSLEEP=1 (no
// random delay), PEBBLE_VA_ALWAYS_VALID unset, PEBBLE_WFE_NONCEREJECT=0
// (no injected bad nonces), PEBBLE_AUTHZREUSE from opts. It skips (or fails
// under DYNIA_REQUIRE_INTEGRATION=1) when pebble is not installed
// (hack/deps.d/60-pebble.sh).
func StartPebble(t testing.TB, opts PebbleOptions) *Pebble {
	t.Helper()
	bin := NeedBinary(t, "pebble")
	opts = pebbleDefaults(t, opts)
	addr := netip.MustParseAddr("127.0.0.1")
	if opts.Node != nil {
		addr = opts.Node.Addr
	}
	dir := t.TempDir()
	p := &Pebble{
		Addr:          addr,
		DirectoryURL:  fmt.Sprintf("https://%s/dir", net.JoinHostPort(addr.String(), strconv.Itoa(opts.Port))),
		ManagementURL: "https://" + net.JoinHostPort(addr.String(), strconv.Itoa(opts.ManagementPort)),
		TLSRootFile:   filepath.Join(dir, "pebble-tls-root.pem"),
		LogPath:       filepath.Join(dir, "pebble.log"),
	}
	cfgFile := p.writeConfig(t, dir, opts)
	proc := p.start(t, bin, cfgFile, opts)
	p.waitReady(t, proc)
	return p
}

// pebbleDefaults fills the ports and the validity period opts leaves zero.
func pebbleDefaults(t testing.TB, opts PebbleOptions) PebbleOptions {
	t.Helper()
	if opts.Node != nil {
		// A namespace of the test's own: Pebble's usual ports are free.
		if opts.Port == 0 {
			opts.Port = 14000
		}
		if opts.ManagementPort == 0 {
			opts.ManagementPort = 15000
		}
	}
	for _, port := range []*int{&opts.Port, &opts.ManagementPort} {
		if *port != 0 {
			continue
		}
		// The test's own namespace is shared with parallel tests: pick
		// free ports (one may be taken before Pebble binds; it then fails
		// to start and says so).
		addr, err := freeLoopbackAddr()
		if err != nil {
			t.Fatalf("pebble: find a free port: %v", err)
		}
		_, p, _ := net.SplitHostPort(addr)
		*port, _ = strconv.Atoi(p)
	}
	if opts.HTTPPort == 0 {
		opts.HTTPPort = 80
	}
	if opts.TLSPort == 0 {
		opts.TLSPort = 443
	}
	if opts.ValidityPeriod == 0 {
		opts.ValidityPeriod = 90 * 24 * time.Hour
	}
	return opts
}

// writeConfig writes Pebble's listener certificate (setting TLSRoots) and
// its configuration into dir, and returns the configuration's path.
func (p *Pebble) writeConfig(t testing.TB, dir string, opts PebbleOptions) string {
	t.Helper()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	roots, err := writeListenerCert(p.TLSRootFile, certFile, keyFile, p.Addr)
	if err != nil {
		t.Fatalf("pebble: listener certificate: %v", err)
	}
	p.TLSRoots = roots

	var cfg struct {
		Pebble map[string]any `json:"pebble"`
	}
	cfg.Pebble = map[string]any{
		"listenAddress":                  net.JoinHostPort(p.Addr.String(), strconv.Itoa(opts.Port)),
		"managementListenAddress":        net.JoinHostPort(p.Addr.String(), strconv.Itoa(opts.ManagementPort)),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       opts.HTTPPort,
		"tlsPort":                        opts.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles": map[string]any{
			"default": map[string]any{"description": "dynia tests", "validityPeriod": int64(opts.ValidityPeriod / time.Second)},
		},
	}
	cfgFile := filepath.Join(dir, "pebble.json")
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgFile
}

// start runs Pebble (in opts.Node if set), logging to p.LogPath, and kills
// it when the test ends, logging the log's tail if the test failed.
func (p *Pebble) start(t testing.TB, bin, cfgFile string, opts PebbleOptions) *child {
	t.Helper()
	args := []string{"-config", cfgFile}
	if opts.DNSServer != "" {
		args = append(args, "-dnsserver", opts.DNSServer)
	}
	var cmd *exec.Cmd
	if opts.Node != nil {
		cmd = opts.Node.Command(bin, args...) // ip netns exec execs pebble: same PID
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Env = pebbleEnv(opts.AuthzReuse)
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := startChild(cmd)
	if err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	p.PID = cmd.Process.Pid
	t.Cleanup(func() {
		proc.kill()
		if t.Failed() {
			if out, err := os.ReadFile(p.LogPath); err == nil {
				t.Logf("pebble log (%s):\n%s", p.LogPath, tail(out))
			}
		}
	})
	return proc
}

// waitReady waits up to 30 s for the directory to answer; Pebble exiting
// ends the wait at once. Either failure fails the test with the log's tail.
func (p *Pebble) waitReady(t testing.TB, proc *child) {
	t.Helper()
	client := p.HTTPClient()
	err := waitStarted(proc.exited, 30*time.Second, func(ctx context.Context) error {
		return poll.GetOK(ctx, client, p.DirectoryURL)
	})
	if errors.Is(err, errExited) {
		out, _ := os.ReadFile(p.LogPath)
		t.Fatalf("pebble exited (%v): %s", proc.err, tail(out))
	}
	if err != nil {
		out, _ := os.ReadFile(p.LogPath)
		t.Fatalf("pebble directory %s not answering after 30s (%v): %s", p.DirectoryURL, err, tail(out))
	}
}

// pebbleEnv is the environment without any PEBBLE_* the caller may have
// set, plus ours.
func pebbleEnv(authzReuse int) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PEBBLE_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0",
		"PEBBLE_AUTHZREUSE="+strconv.Itoa(authzReuse),
	)
}

// HTTPClient trusts Pebble's listener certificate.
func (p *Pebble) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: p.TLSRoots, MinVersion: tls.VersionTLS12}
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// IssuerRootPEM returns the root of the certificates this Pebble issues
// (from its management API, /roots/0). Pebble makes a new one every start.
func (p *Pebble) IssuerRootPEM(t testing.TB) []byte {
	t.Helper()
	resp, err := p.HTTPClient().Get(p.ManagementURL + "/roots/0")
	if err != nil {
		t.Fatalf("pebble: get issuance root: %v", err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble: get issuance root: HTTP %d %v", resp.StatusCode, err)
	}
	return b
}

// IssuerRoots is IssuerRootPEM as a pool.
func (p *Pebble) IssuerRoots(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.IssuerRootPEM(t)) {
		t.Fatal("pebble: issuance root is not PEM")
	}
	return pool
}

// writeListenerCert makes a throwaway CA and a server certificate for addr
// and localhost, and writes the CA (rootFile), certificate and key.
func writeListenerCert(rootFile, certFile, keyFile string, addr netip.Addr) (*x509.CertPool, error) {
	l, err := localca.Issue("dynia test: Pebble listener CA", "pebble", []string{"localhost", "pebble"},
		[]net.IP{net.IP(addr.AsSlice()), net.IPv4(127, 0, 0, 1)}, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := l.Write(os.WriteFile, certFile, keyFile, rootFile); err != nil {
		return nil, err
	}
	return l.Roots, nil
}
