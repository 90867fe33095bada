package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	mdns "github.com/miekg/dns"

	"github.com/dynia/dynia/internal/acme"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cfsim"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dns"
	"github.com/dynia/dynia/internal/dnsserver"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/testutil"
)

// TestSandboxTLS: the sandbox serves ACME and DNS as the internet would.
// Pebble's directory over HTTPS from the root namespace and from a
// droplet; records made through the Cloudflare client against the
// simulator and through the DO API resolve through the sandbox's DNS
// server from both; internal/acme's Issuer gets a certificate validated
// over HTTP-01 on a bare droplet (the connection comes from the router's
// public address), Verify accepts it with acme_root_ca; a moved record
// fails the next order; a Pebble restart rewrites acme_root_ca; Down stops
// Pebble and the DNS server.
func TestSandboxTLS(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "curl")
	testutil.NeedBinary(t, "nft") // --firewalls enforce, the default
	vgw := testutil.NeedBinary(t, "versitygw")
	ctx := context.Background()
	// Bare droplets only: the test binary stands in for dynia-pull.
	p, opts := testOptions(t, testBinary(t), vgw)
	const validity = 6 * time.Hour
	opts.ACMECertValidity = validity
	dir := opts.Dir
	var pebblePID int
	var pebbleStart uint64
	var servePID int
	var serveStart uint64
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"serve.log", "pebble.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, "logs", f)); err == nil {
					t.Logf("%s:\n%s", f, tailLines(b, 80))
				}
			}
		}
		if err := Down(ctx, dir); err != nil {
			t.Errorf("Down: %v", err)
		}
		assertClean(t, p, dir)
		if pebblePID != 0 && procstat.Alive(pebblePID, pebbleStart) {
			t.Errorf("pebble (pid %d) still runs after Down", pebblePID)
		}
		// The DNS server and the Cloudflare simulator live in serve. (No
		// query after Down: with the guard route gone, it would leave the
		// machine.)
		if servePID != 0 && procstat.Alive(servePID, serveStart) {
			t.Errorf("serve (pid %d, with the DNS server) still runs after Down", servePID)
		}
	})
	info, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	servePID = info.ServePID
	serveStart, _ = procstat.StartTime(servePID)

	// The status: every new field, as status.json holds it.
	router := p.RouterIP().String()
	got, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	type tlsFields struct {
		ACMEDirectory, ACMERootCA, ACMEListenerCA, DNSServer, CloudflareAPIURL string
		DNSZones                                                               map[string]string
	}
	want := tlsFields{
		ACMEDirectory:    "https://" + router + ":14000/dir",
		ACMERootCA:       filepath.Join(dir, "acme", "root.pem"),
		ACMEListenerCA:   filepath.Join(dir, "acme", "listener-root.pem"),
		DNSServer:        router + ":53",
		CloudflareAPIURL: "http://" + router + ":8080/client/v4",
		DNSZones:         map[string]string{"cloudflare": "sandbox.test", "digitalocean": "do.sandbox.test"},
	}
	have := tlsFields{got.ACMEDirectory, got.ACMERootCA, got.ACMEListenerCA, got.DNSServer, got.CloudflareAPIURL, got.DNSZones}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Fatalf("status (-want +got):\n%s", diff)
	}
	if len(got.CloudflareToken) != 40 || got.CloudflareToken != info.CloudflareToken {
		t.Errorf("cloudflare_token: %d characters (want 40, as Up returned)", len(got.CloudflareToken))
	}
	raw, err := os.ReadFile(statusPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"acme_directory", "acme_root_ca", "acme_listener_ca", "dns_server", "cloudflare_api_url", "cloudflare_token", "dns_zones"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("status.json has no %q", k)
		}
	}
	listenerPool := readPool(t, info.ACMEListenerCA)
	rootPEM, err := os.ReadFile(info.ACMERootCA)
	if err != nil {
		t.Fatal(err)
	}
	rootPool := poolOf(t, rootPEM)
	for _, f := range []string{info.ACMERootCA, info.ACMEListenerCA} {
		certs, err := parseCerts(mustRead(t, f))
		if err != nil || len(certs) != 1 || !certs[0].IsCA {
			t.Errorf("%s: %d certificates, CA %v, %v; want one CA", f, len(certs), len(certs) == 1 && certs[0].IsCA, err)
		}
	}
	// root.pem is the running Pebble's issuance root (its management API
	// lives on the router's loopback only).
	mgmtRoot := func() ([]byte, error) {
		out, err := inNS(p.RouterNS(), "curl", "-sf", "-m", "5", "--cacert", info.ACMEListenerCA, p.PebbleManagementURL()+"/roots/0")
		return []byte(out), err
	}
	if m, err := mgmtRoot(); err != nil || !bytes.Equal(m, rootPEM) {
		t.Fatalf("root.pem is not Pebble's /roots/0 (%v)", err)
	}
	pebblePID, _ = readPidFile(pebblePidPath(dir))
	if pebblePID == 0 {
		t.Fatal("pebble not running (run/pebble.pid)")
	}
	pebbleStart, _ = procstat.StartTime(pebblePID)
	if ns, _ := run(ctx, "ip", "netns", "identify", fmt.Sprint(pebblePID)); strings.TrimSpace(ns) != p.RouterNS() {
		t.Errorf("pebble runs in namespace %q, want %s", strings.TrimSpace(ns), p.RouterNS())
	}

	// The directory over HTTPS from the root namespace: with the listener
	// CA, and not without it.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: listenerPool}}}
	body, err := getBody(hc, info.ACMEDirectory)
	if err != nil || !strings.Contains(body, `"newOrder"`) {
		t.Fatalf("ACME directory from the root namespace: %v\n%s", err, body)
	}
	var uae x509.UnknownAuthorityError
	if _, err := getBody(&http.Client{Timeout: 10 * time.Second}, info.ACMEDirectory); !errors.As(err, &uae) {
		t.Errorf("ACME directory with the system roots: %v, want an unknown authority", err)
	}

	// A bare droplet (no firewall targets it: unfiltered, as on DO).
	id := createDroplet(t, info, "acme-target", "")
	var dropletIP netip.Addr
	testutil.WaitFor(t, 15*time.Second, func() error {
		d, ok := dropletStatus(t, dir, id)
		if !ok || d.PublicIP == "" || !netnsExists(p.DropletNS(id)) {
			return fmt.Errorf("droplet %d not up yet", id)
		}
		dropletIP = netip.MustParseAddr(d.PublicIP)
		return nil
	})
	ns := p.DropletNS(id)
	out, err := inNS(ns, "curl", "-sf", "-m", "10", "--cacert", info.ACMEListenerCA, info.ACMEDirectory)
	if err != nil || !strings.Contains(out, `"newOrder"`) {
		t.Fatalf("ACME directory from droplet %d: %v\n%s", id, err, out)
	}

	// Records: Cloudflare through internal/dns's client against the
	// simulator, DigitalOcean through the DO API (internal/cloud).
	cf, err := dns.NewCloudflare(dns.CloudflareOptions{Token: info.CloudflareToken, BaseURL: info.CloudflareAPIURL})
	if err != nil {
		t.Fatal(err)
	}
	appName := "app." + CloudflareZone
	pointAt := func(ip netip.Addr) {
		t.Helper()
		if _, _, err := cf.Upsert(ctx, CloudflareZone, dns.ARecord{Name: appName, IP: ip, TTL: 60, Comment: "dynia:cluster:test"}); err != nil {
			t.Fatal(err)
		}
	}
	pointAt(dropletIP)
	cl, err := cloud.New(info.Token, cloud.Options{BaseURL: info.APIURL})
	if err != nil {
		t.Fatal(err)
	}
	doName, doIP := "www."+DigitalOceanZone, p.HostIP()
	if _, created, err := dns.NewDigitalOcean(cl).Upsert(ctx, DigitalOceanZone, dns.ARecord{Name: doName, IP: doIP, TTL: 60}); err != nil || !created {
		t.Fatalf("DO record: created %v, %v", created, err)
	}
	for _, tc := range []struct {
		name  string
		rcode int
		want  []netip.Addr
	}{
		{appName, mdns.RcodeSuccess, []netip.Addr{dropletIP}},
		{doName, mdns.RcodeSuccess, []netip.Addr{doIP}},
		{DigitalOceanZone, mdns.RcodeSuccess, nil}, // NS and SOA only: NODATA
		{"nothing." + CloudflareZone, mdns.RcodeNameError, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			rcode, addrs, err := queryA(nil, network, info.DNSServer, tc.name)
			if err != nil || rcode != tc.rcode || !slices.Equal(addrs, tc.want) {
				t.Errorf("%s A %s from the root namespace: %s %v %v; want %s %v", network, tc.name, mdns.RcodeToString[rcode], addrs, err, mdns.RcodeToString[tc.rcode], tc.want)
			}
		}
	}
	for _, name := range []string{appName, doName} {
		rcode, addrs, err := queryA(func(f func() error) error { return testutil.InNetNS(ns, f) }, "udp", info.DNSServer, name)
		if err != nil || rcode != mdns.RcodeSuccess || len(addrs) != 1 {
			t.Errorf("A %s from droplet %d: %s %v %v", name, id, mdns.RcodeToString[rcode], addrs, err)
		}
	}

	// Issuance: the challenge is answered on the droplet's port 80 from
	// the sandbox's bucket, as every node's dynia-pull does.
	store, err := bucket.Open(ctx, "s3://"+info.Bucket+"/tls-test", bucket.Options{Endpoint: info.S3Endpoint, Region: info.S3Region,
		PathStyle: true, AccessKeyID: info.AccessKeyID, SecretAccessKey: info.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	var seenMu sync.Mutex
	seen := map[string]int{}
	handler := acme.ChallengeHandler(store, slog.New(slog.DiscardHandler))
	ln, err := (&testutil.NetNode{NS: ns}).Listen("tcp", netip.AddrPortFrom(dropletIP, 80).String())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seenMu.Lock()
		seen[host]++
		seenMu.Unlock()
		handler.ServeHTTP(w, r)
	})}
	go func() { _ = hs.Serve(ln) }() // ends with Close
	t.Cleanup(func() { _ = hs.Close() })

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := acme.NewAESGCMSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	issuer := func(renewBefore time.Duration, trust *x509.CertPool) *acme.Issuer {
		i, err := acme.NewIssuer(acme.Config{Store: store, Sealer: sealer,
			DirectoryURL: info.ACMEDirectory, CARoots: listenerPool, TrustRoots: trust,
			Domains: []string{appName}, Email: "ops@" + CloudflareZone, Holder: "sandbox-test",
			RenewBefore: renewBefore, FailureBackoff: -1, PollInterval: 100 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	start := time.Now()
	res, err := issuer(0, rootPool).Ensure(ctx)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	t.Logf("first certificate issued in %v (account, order, HTTP-01 on droplet %d, finalize, store)", time.Since(start).Round(time.Millisecond), id)
	if !res.Issued {
		t.Fatalf("Ensure = %+v, want a certificate issued", res)
	}
	cert, err := acme.Load(ctx, store, sealer, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := acme.Verify(cert.ChainPEM, cert.KeyPEM, []string{appName}, readPool(t, info.ACMERootCA), time.Now()); err != nil {
		t.Fatalf("Verify with acme_root_ca: %v", err)
	}
	if life := cert.NotAfter.Sub(cert.NotBefore); life != validity-time.Second {
		// Pebble: NotAfter = NotBefore + validityPeriod - 1 s.
		t.Errorf("certificate lifetime %v, want --acme-cert-validity %v less Pebble's second", life, validity)
	}
	seenMu.Lock()
	if seen[router] == 0 {
		t.Errorf("challenge requests came from %v, want the router's address %s", seen, router)
	}
	seenMu.Unlock()

	// The record moves to an address nobody has: the next order fails with the CA's reason, since Pebble reuses
	// no authorization.
	nowhere := addr(p.Public, 200) // never allocated (the lower half is)
	pointAt(nowhere)
	renew := 100 * 365 * 24 * time.Hour // longer than any lifetime: renew now
	// Pebble 2.10.3 still reuses a valid authorization for 1 order in 100
	// at PEBBLE_AUTHZREUSE=0 (wfe/wfe.go: `rand.Intn(100) >
	// authzReusePercent`), and a reused one is not validated again: then
	// the order succeeds, and the test orders again (at most 5 times).
	for try := 1; ; try++ {
		_, err = issuer(renew, rootPool).Ensure(ctx)
		if err != nil || try == 5 {
			break
		}
		t.Logf("Pebble reused the valid authorization (order %d); ordering again", try)
	}
	var ve *acme.ValidationError
	if !errors.As(err, &ve) || ve.Domain != appName || !strings.Contains(ve.Detail, nowhere.String()) {
		t.Fatalf("Ensure after the record moved: %v, want a validation error naming %s", err, nowhere)
	}
	pointAt(dropletIP)

	// A Pebble restart makes a new issuance root; serve rewrites root.pem.
	stopPid(pebblePID, 0)
	testutil.WaitFor(t, 30*time.Second, func() error {
		pid, _ := readPidFile(pebblePidPath(dir))
		if pid == 0 || pid == pebblePID {
			return fmt.Errorf("pebble not restarted yet (pid %d)", pid)
		}
		now, err := os.ReadFile(info.ACMERootCA)
		if err != nil || bytes.Equal(now, rootPEM) {
			return fmt.Errorf("root.pem not rewritten yet (%v)", err)
		}
		m, err := mgmtRoot()
		if err != nil || !bytes.Equal(m, now) {
			return fmt.Errorf("root.pem is not the new Pebble's root (%v)", err)
		}
		pebblePID = pid
		pebbleStart, _ = procstat.StartTime(pid)
		return nil
	})
	newPool := readPool(t, info.ACMERootCA)
	res, err = issuer(renew, newPool).Ensure(ctx)
	if err != nil || !res.Issued {
		t.Fatalf("Ensure after Pebble's restart: %+v %v", res, err)
	}
	cert, err = acme.Load(ctx, store, sealer, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := acme.Verify(cert.ChainPEM, cert.KeyPEM, []string{appName}, newPool, time.Now()); err != nil {
		t.Errorf("Verify with the rewritten root: %v", err)
	}
	var verr *acme.VerifyError
	if err := acme.Verify(cert.ChainPEM, cert.KeyPEM, []string{appName}, rootPool, time.Now()); !errors.As(err, &verr) || verr.Check != acme.CheckChain {
		t.Errorf("Verify with the previous Pebble's root: %v, want a chain failure", err)
	}

	// Down (in Cleanup) stops Pebble and serve, with the DNS server.
}

// TestTLSSources: the DNS server's view of the DO and Cloudflare
// simulators (A records answer, other records only make names exist,
// Cloudflare's automatic TTL is 300 s), queried through the server.
func TestTLSSources(t *testing.T) {
	sim := dosim.New(dosim.Options{})
	t.Cleanup(sim.Close)
	if err := sim.AddDomain(DigitalOceanZone); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(sim)
	t.Cleanup(hs.Close)
	cl, err := cloud.New("t", cloud.Options{BaseURL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.UpsertDNSRecord(t.Context(), DigitalOceanZone, "www", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	cf := cfsim.New(cfsim.Options{})
	cf.AddZone(CloudflareZone)
	cs := httptest.NewServer(cf)
	t.Cleanup(cs.Close)
	c, err := dns.NewCloudflare(dns.CloudflareOptions{Token: cf.NewToken(), BaseURL: cs.URL + cfsim.APIPrefix})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Upsert(t.Context(), CloudflareZone, dns.ARecord{Name: "app." + CloudflareZone, IP: netip.MustParseAddr("192.0.2.2"), TTL: 1}); err != nil {
		t.Fatal(err)
	}

	srv := dnsserver.New(nil, dosimSource(sim), cfsimSource(cf))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, pc, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	for _, tc := range []struct {
		name  string
		rcode int
		want  string // "ip ttl"
	}{
		{"www." + DigitalOceanZone, mdns.RcodeSuccess, "192.0.2.1 60"},
		{"WWW." + strings.ToUpper(DigitalOceanZone) + ".", mdns.RcodeSuccess, "192.0.2.1 60"},
		{"app." + CloudflareZone, mdns.RcodeSuccess, "192.0.2.2 300"},
		{DigitalOceanZone, mdns.RcodeSuccess, ""}, // NS + SOA: the name exists
		{"ftp." + DigitalOceanZone, mdns.RcodeNameError, ""},
		{"app." + DigitalOceanZone, mdns.RcodeNameError, ""},
	} {
		m := new(mdns.Msg)
		m.SetQuestion(mdns.Fqdn(tc.name), mdns.TypeA)
		in, err := mdns.Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, rr := range in.Answer {
			if a, ok := rr.(*mdns.A); ok {
				got = append(got, fmt.Sprintf("%s %d", a.A, a.Hdr.Ttl))
			}
		}
		if in.Rcode != tc.rcode || strings.Join(got, ",") != tc.want {
			t.Errorf("A %s: %s %q, want %s %q", tc.name, mdns.RcodeToString[in.Rcode], got, mdns.RcodeToString[tc.rcode], tc.want)
		}
	}
}

func TestCheckACMECertValidity(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{
		{0, true}, {time.Second, true}, {90 * time.Second, true}, {2160 * time.Hour, true},
		{-time.Second, false}, {500 * time.Millisecond, false}, {1500 * time.Millisecond, false},
	} {
		if err := CheckACMECertValidity(tc.d); (err == nil) != tc.ok {
			t.Errorf("CheckACMECertValidity(%v) = %v, want ok %v", tc.d, err, tc.ok)
		}
	}
}

// TestPebbleConfig: the profile's validity is set only when asked for;
// listeners and validation ports are where docs/sandbox.md says.
func TestPebbleConfig(t *testing.T) {
	p, err := newPlan("t1", "198.18.7.0/24")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		validity time.Duration
		want     map[string]any
	}{
		{0, map[string]any{"description": "dynia sandbox"}},
		{90 * time.Second, map[string]any{"description": "dynia sandbox", "validityPeriod": float64(90)}},
	} {
		dir := t.TempDir()
		if err := os.MkdirAll(acmeDir(dir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := writePebbleConfig(dir, p, tc.validity); err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Pebble map[string]any `json:"pebble"`
		}
		if err := json.Unmarshal(mustRead(t, pebbleConfigPath(dir)), &cfg); err != nil {
			t.Fatal(err)
		}
		got := map[string]any{}
		for _, k := range []string{"listenAddress", "managementListenAddress", "httpPort", "tlsPort"} {
			got[k] = cfg.Pebble[k]
		}
		wantPorts := map[string]any{"listenAddress": "198.18.7.1:14000", "managementListenAddress": "127.0.0.1:15000", "httpPort": float64(80), "tlsPort": float64(443)}
		if diff := cmp.Diff(wantPorts, got); diff != "" {
			t.Errorf("pebble config (-want +got):\n%s", diff)
		}
		prof := cfg.Pebble["profiles"].(map[string]any)["default"]
		if diff := cmp.Diff(tc.want, prof); diff != "" {
			t.Errorf("validity %v: default profile (-want +got):\n%s", tc.validity, diff)
		}
	}
}

// queryA asks server for name's A records over network; enter, when set,
// creates the socket inside a namespace (testutil.InNetNS).
func queryA(enter func(func() error) error, network, server, name string) (int, []netip.Addr, error) {
	var conn net.Conn
	dial := func() (err error) {
		conn, err = net.DialTimeout(network, server, 3*time.Second)
		return err
	}
	var err error
	if enter != nil {
		err = enter(dial)
	} else {
		err = dial()
	}
	if err != nil {
		return 0, nil, err
	}
	defer conn.Close()
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	in, _, err := c.ExchangeWithConn(m, &mdns.Conn{Conn: conn})
	if err != nil {
		return 0, nil, err
	}
	var out []netip.Addr
	for _, rr := range in.Answer {
		if a, ok := rr.(*mdns.A); ok {
			ip, _ := netip.AddrFromSlice(a.A.To4())
			out = append(out, ip)
		}
	}
	return in.Rcode, out, nil
}

func getBody(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readPool(t *testing.T, path string) *x509.CertPool { return poolOf(t, mustRead(t, path)) }

func poolOf(t *testing.T, pemBytes []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no PEM certificate")
	}
	return pool
}

func tailLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
