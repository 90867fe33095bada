package acme_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/acme"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cfsim"
	"github.com/dynia/dynia/internal/dns"
	"github.com/dynia/dynia/internal/dnsserver"
	"github.com/dynia/dynia/internal/testutil"
)

// tlsLab is the integration setup: a "node" namespace runs HAProxy (:80,
// the ACME challenge path to a Go server running acme.ChallengeHandler in
// the same namespace, as dynia-pull will) and a "ca" namespace runs Pebble
// and the DNS server answering from the Cloudflare simulator, where the
// test creates app.example.test through the dns package's Cloudflare
// client. Pebble validates over real HTTP through HAProxy at whatever
// address the A record names.
type tlsLab struct {
	lab        *testutil.NetLab
	node, ca   *testutil.NetNode
	store      bucket.Store
	sealer     acme.Sealer
	pebble     *testutil.Pebble
	trust      *x509.CertPool
	cf         *dns.Cloudflare
	sim        *cfsim.Server
	haproxyCfg string
	crtFile    string
}

const (
	zone   = "example.test"
	name   = "app.example.test"
	pullLn = "127.0.0.1:8402" // the challenge server inside the node namespace
)

func newTLSLab(t *testing.T) *tlsLab {
	t.Helper()
	testutil.NeedRoot(t)
	haproxy := testutil.NeedBinary(t, "haproxy")
	l := &tlsLab{lab: testutil.NewNetLab(t, 2)}
	l.node, l.ca = l.lab.Nodes[0], l.lab.Nodes[1]
	ctx := t.Context()

	// The bucket: a real S3 gateway.
	s3 := testutil.StartVersityGW(t)
	var err error
	l.store, err = bucket.Open(ctx, s3.URL("clusters/demo"), bucket.Options{Endpoint: s3.Endpoint, Region: s3.Region,
		PathStyle: true, AccessKeyID: s3.AccessKeyID, SecretAccessKey: s3.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if l.sealer, err = acme.NewAESGCMSealer(key); err != nil {
		t.Fatal(err)
	}

	// Cloudflare: the simulator, and the A record made through our client.
	l.sim = cfsim.New(cfsim.Options{})
	l.sim.AddZone(zone)
	ts := httptest.NewServer(l.sim)
	t.Cleanup(ts.Close)
	if l.cf, err = dns.NewCloudflare(dns.CloudflareOptions{Token: l.sim.NewToken(), BaseURL: ts.URL + cfsim.APIPrefix}); err != nil {
		t.Fatal(err)
	}
	l.pointAt(t, l.node.Addr)

	// The DNS server in the CA's namespace, answering from cfsim.
	dnsAddr := net.JoinHostPort(l.ca.Addr.String(), "53")
	pc, err := l.ca.ListenPacket("udp", dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := l.ca.Listen("tcp", dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	srv := dnsserver.New(nil, func() []dnsserver.Record {
		var out []dnsserver.Record
		for _, r := range l.sim.Records() {
			if r.Type == "A" {
				out = append(out, dnsserver.Record{Name: r.Name, IP: netip.MustParseAddr(r.Content), TTL: uint32(r.TTL)})
			}
		}
		return out
	})
	dctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(dctx, pc, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns server: %v", err)
		}
	})

	l.pebble = testutil.StartPebble(t, testutil.PebbleOptions{Node: l.ca, DNSServer: dnsAddr})
	l.trust = l.pebble.IssuerRoots(t)

	// The challenge server, in the node namespace like dynia-pull.
	cl, err := l.node.Listen("tcp", pullLn)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: acme.ChallengeHandler(l.store, slog.New(slog.DiscardHandler)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(cl) }() // ends with Close below
	t.Cleanup(func() { _ = hs.Close() })

	// HAProxy 2.6 with an ssl bind: it starts only with a certificate, so
	// the placeholder goes in first.
	dir := t.TempDir()
	l.crtFile = filepath.Join(dir, "site.pem")
	chain, keyPEM, err := acme.Placeholder([]string{name}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.crtFile, acme.HAProxyPEM(chain, keyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	l.haproxyCfg = filepath.Join(dir, "haproxy.cfg")
	cfg := fmt.Sprintf(`global
	log stderr format raw local0 info
defaults
	mode http
	log global
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend fe_http
	bind %[1]s:80
	bind %[1]s:443 ssl crt %[2]s
	acl acme path_beg /.well-known/acme-challenge/
	use_backend be_acme if acme
	default_backend be_app
backend be_acme
	server pull %[3]s
backend be_app
	http-request return status 503 content-type text/plain string "no app"
`, l.node.Addr, l.crtFile, pullLn)
	if err := os.WriteFile(l.haproxyCfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := l.node.Command(haproxy, "-db", "-f", l.haproxyCfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL) // our own child, by PID
		_ = cmd.Wait()
		_ = logf.Close()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("haproxy log:\n%s", out)
		}
	})
	testutil.WaitFor(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + net.JoinHostPort(l.node.Addr.String(), "80") + acme.ChallengePathPrefix + "probe")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("challenge path through haproxy: HTTP %d, want 404", resp.StatusCode)
		}
		return nil
	})
	return l
}

func (l *tlsLab) pointAt(t *testing.T, ip netip.Addr) {
	t.Helper()
	if _, _, err := l.cf.Upsert(t.Context(), zone, dns.ARecord{Name: name, IP: ip, TTL: 60, Comment: "dynia:cluster:demo"}); err != nil {
		t.Fatal(err)
	}
}

func (l *tlsLab) issuer(t *testing.T, store acme.Store, holder string, mod func(*acme.Config)) *acme.Issuer {
	t.Helper()
	cfg := acme.Config{
		Store: store, Sealer: l.sealer,
		DirectoryURL: l.pebble.DirectoryURL, CARoots: l.pebble.TLSRoots, TrustRoots: l.trust,
		Domains: []string{name}, Email: "ops@example.test", Holder: holder,
		FailureBackoff: -1, PollInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if mod != nil {
		mod(&cfg)
	}
	i, err := acme.NewIssuer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

const century = 100 * 365 * 24 * time.Hour

func TestIssueThroughHAProxy(t *testing.T) {
	l := newTLSLab(t)
	ctx := t.Context()

	// First order: nothing stored.
	i1 := l.issuer(t, l.store, "node-1", nil)
	res, err := i1.Ensure(ctx)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if !res.Issued || res.Reason != acme.ReasonNone || res.Cert.Serial == "" {
		t.Fatalf("first Ensure = %+v, want an issued certificate for %q", res, acme.ReasonNone)
	}
	first := res.Cert
	cert, err := acme.Load(ctx, l.store, l.sealer, "")
	if err != nil {
		t.Fatal(err)
	}
	if cert.Serial != first.Serial || len(cert.Names) != 1 || cert.Names[0] != name || cert.IssuedBy != "node-1" {
		t.Fatalf("stored %+v, want serial %s for %s by node-1", cert.CertInfo, first.Serial, name)
	}

	// Verify: Pebble's root accepts it; everything else is named.
	if err := acme.Verify(cert.ChainPEM, cert.KeyPEM, []string{name}, l.trust, time.Now()); err != nil {
		t.Fatalf("Verify with Pebble's root: %v", err)
	}
	otherChain, otherKey, _ := acme.Placeholder([]string{name}, time.Now())
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(otherChain)
	for _, tc := range []struct {
		what      string
		key       []byte
		names     []string
		roots     *x509.CertPool
		now       time.Time
		wantCheck string
	}{
		{"another root", cert.KeyPEM, []string{name}, otherRoots, time.Now(), acme.CheckChain},
		{"a wrong key", otherKey, []string{name}, l.trust, time.Now(), acme.CheckKey},
		{"a wrong name", cert.KeyPEM, []string{"www.example.test"}, l.trust, time.Now(), acme.CheckName},
		{"expired", cert.KeyPEM, []string{name}, l.trust, cert.NotAfter.Add(time.Hour), acme.CheckValidity},
	} {
		var ve *acme.VerifyError
		err := acme.Verify(cert.ChainPEM, tc.key, tc.names, tc.roots, tc.now)
		if !errors.As(err, &ve) || ve.Check != tc.wantCheck {
			t.Errorf("Verify with %s: %v, want a %s failure", tc.what, err, tc.wantCheck)
		}
	}

	// HAProxy loads the issued certificate (the config check a reload does).
	if err := os.WriteFile(l.crtFile, acme.HAProxyPEM(cert.ChainPEM, cert.KeyPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", l.haproxyCfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c with the issued certificate: %v\n%s", err, out)
	}

	// A second Ensure orders nothing.
	res, err = i1.Ensure(ctx)
	if err != nil || res.Issued || res.Cert.Serial != first.Serial {
		t.Fatalf("second Ensure = %+v, %v; want nothing issued, serial %s", res, err, first.Serial)
	}

	// A renew window longer than the lifetime renews.
	renewer := l.issuer(t, l.store, "node-2", func(c *acme.Config) { c.RenewBefore = century })
	res, err = renewer.Ensure(ctx)
	if err != nil {
		t.Fatalf("renewing Ensure: %v", err)
	}
	if !res.Issued || res.Reason != acme.ReasonRenewal || res.Cert.Serial == first.Serial {
		t.Fatalf("renewing Ensure = %+v, want a new serial (old %s) for %q", res, first.Serial, acme.ReasonRenewal)
	}
	second := res.Cert

	// No challenge object is left behind.
	if objs, err := l.store.List(ctx, acme.KeyChallengesDir); err != nil || len(objs) != 0 {
		t.Fatalf("challenge objects left: %v %v", objs, err)
	}

	// The A record moves away: validation fails with Pebble's reason and
	// the stored certificate stays.
	l.pointAt(t, l.ca.Addr) // nothing listens on :80 there
	// Pebble 2.10.3 still reuses a valid authorization for 1 order in 100
	// at PEBBLE_AUTHZREUSE=0 (wfe/wfe.go: `rand.Intn(100) >
	// authzReusePercent`), and a reused one is not validated again: then
	// the order succeeds, and the test orders again (at most 5 times).
	for try := 1; ; try++ {
		res, err = renewer.Ensure(ctx)
		if err != nil || try == 5 {
			break
		}
		t.Logf("Pebble reused the valid authorization (order %d); ordering again", try)
		second = res.Cert
	}
	var ve *acme.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Ensure after the record moved: %v, want a ValidationError", err)
	}
	if ve.Domain != name || !strings.Contains(ve.Type, "connection") || ve.Detail == "" {
		t.Fatalf("ValidationError = %+v, want a connection problem for %s with the CA's detail", ve, name)
	}
	t.Logf("the CA's reason: %v", err)
	if res.Issued {
		t.Fatal("Ensure reported an issue after failing")
	}
	if info, _, err := acme.ReadInfo(ctx, l.store, ""); err != nil || info.Serial != second.Serial {
		t.Fatalf("stored certificate after the failure: %+v %v; want serial %s kept", info, err, second.Serial)
	}
	// With back-off on, the failure holds further orders off without a
	// word to the CA.
	backoff := l.issuer(t, l.store, "node-3", func(c *acme.Config) { c.RenewBefore = century; c.FailureBackoff = time.Hour })
	if _, err := backoff.Ensure(ctx); !errors.Is(err, acme.ErrBackoff) || !strings.Contains(err.Error(), "HTTP-01 validation") {
		t.Fatalf("Ensure during back-off: %v, want ErrBackoff quoting the last failure", err)
	}

	// The private keys are never stored in clear.
	keyLines := keyBodyLines(t, cert.KeyPEM)
	objs, err := l.store.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) < 3 {
		t.Fatalf("store holds %d objects, want at least account, certificate and lease", len(objs))
	}
	for _, o := range objs {
		obj, err := l.store.Get(ctx, o.Key, "")
		if err != nil {
			t.Fatal(err)
		}
		raw := obj.Body
		// Sealed bytes are base64 inside JSON: decode every base64 string
		// too, so a key stored "encoded" would be caught.
		for _, hay := range append([][]byte{raw}, decodedStrings(raw)...) {
			if bytes.Contains(hay, []byte("PRIVATE KEY")) {
				t.Errorf("%s holds a PEM private key in clear", o.Key)
			}
			for _, line := range keyLines {
				if bytes.Contains(hay, []byte(line)) {
					t.Errorf("%s holds the certificate key's bytes in clear", o.Key)
				}
			}
		}
	}
}

// TestLeaseRaceThroughPebble: two nodes race for the first certificate;
// exactly one orders.
func TestLeaseRaceThroughPebble(t *testing.T) {
	l := newTLSLab(t)
	ctx := t.Context()
	// A fresh lab: nothing stored yet.
	issuers := []*acme.Issuer{l.issuer(t, l.store, "node-a", nil), l.issuer(t, l.store, "node-b", nil)}
	var wg sync.WaitGroup
	results := make([]acme.Result, 2)
	errs := make([]error, 2)
	for k, i := range issuers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[k], errs[k] = i.Ensure(ctx)
		}()
	}
	wg.Wait()
	issued := 0
	for k := range issuers {
		switch {
		case errs[k] == nil && results[k].Issued:
			issued++
		case errs[k] == nil, errors.Is(errs[k], acme.ErrLeaseHeld):
		default:
			t.Fatalf("issuer %d: %v", k, errs[k])
		}
	}
	if issued != 1 {
		t.Fatalf("%d issuers ordered a certificate, want exactly 1 (results %+v, errors %v)", issued, results, errs)
	}
	// And now both see it as fresh.
	for k, i := range issuers {
		if res, err := i.Ensure(ctx); err != nil || res.Issued || res.Cert.Serial == "" {
			t.Fatalf("issuer %d after the race: %+v %v", k, res, err)
		}
	}
}

// keyBodyLines returns the base64 lines of a PEM key (each 64 characters
// of key material).
func keyBodyLines(t *testing.T, keyPEM []byte) []string {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatal("key is not PEM")
	}
	enc := base64.StdEncoding.EncodeToString(b.Bytes)
	var lines []string
	for len(enc) > 24 {
		lines = append(lines, enc[:24])
		enc = enc[24:]
	}
	return lines
}

// decodedStrings base64-decodes every JSON string value that decodes.
func decodedStrings(raw []byte) [][]byte {
	var out [][]byte
	for _, f := range strings.FieldsFunc(string(raw), func(r rune) bool { return r == '"' }) {
		if len(f) < 16 {
			continue
		}
		if d, err := base64.StdEncoding.DecodeString(f); err == nil {
			out = append(out, d)
		}
	}
	return out
}
