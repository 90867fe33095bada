package sandbox

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/cfsim"
	"github.com/dynia/dynia/internal/dnsserver"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/localca"
	"github.com/dynia/dynia/internal/poll"
)

// What the sandbox serves for HTTPS and DNS, besides the DO cloud: Pebble
// (the ACME CA), an authoritative DNS server answering from the DO and
// Cloudflare simulators' records, and the Cloudflare API simulator. All in
// the router namespace, on the router's public address, like the API.
const (
	// acmePort is Pebble's ACME API (its own default port).
	acmePort = 14000
	// pebbleManagementPort is Pebble's management API, on the router
	// namespace's loopback only: it hands out the CA's private keys
	// (/root-keys/, /intermediate-keys/).
	pebbleManagementPort = 15000
	dnsPort              = 53
	// cloudflarePort is the Cloudflare API simulator, plain HTTP.
	cloudflarePort = 8080
)

// The zones the sandbox offers, one per DNS provider: names under .test
// (RFC 2606, RFC 6761 §6.2), which no real resolver answers, so nothing
// real is ever shadowed. Disjoint, as a real zone lives at one provider.
const (
	CloudflareZone   = "sandbox.test"
	DigitalOceanZone = "do.sandbox.test"
)

// cloudflareAutoTTL is what Cloudflare's "automatic" TTL (ttl: 1) means:
// 300 seconds (https://developers.cloudflare.com/dns/manage-dns-records/reference/ttl/).
const cloudflareAutoTTL = 300

func (p plan) ACMEAddr() string         { return netip.AddrPortFrom(p.RouterIP(), acmePort).String() }
func (p plan) ACMEDirectoryURL() string { return "https://" + p.ACMEAddr() + "/dir" }
func (p plan) PebbleManagementURL() string {
	return "https://" + netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pebbleManagementPort).String()
}
func (p plan) DNSAddr() string { return netip.AddrPortFrom(p.RouterIP(), dnsPort).String() }
func (p plan) CloudflareAddr() string {
	return netip.AddrPortFrom(p.RouterIP(), cloudflarePort).String()
}
func (p plan) CloudflareAPIURL() string {
	return "http://" + p.CloudflareAddr() + cfsim.APIPrefix
}

// Layout of Dir's acme/ (Pebble's configuration and the roots to trust).
func acmeDir(dir string) string              { return filepath.Join(dir, "acme") }
func acmeRootPath(dir string) string         { return filepath.Join(acmeDir(dir), "root.pem") }
func acmeListenerRootPath(dir string) string { return filepath.Join(acmeDir(dir), "listener-root.pem") }
func pebblePidPath(dir string) string        { return filepath.Join(dir, "run", "pebble.pid") }
func pebbleConfigPath(dir string) string     { return filepath.Join(acmeDir(dir), "pebble.json") }
func pebbleListenerCertPath(dir string) string {
	return filepath.Join(acmeDir(dir), "listener-cert.pem")
}
func pebbleListenerKeyPath(dir string) string { return filepath.Join(acmeDir(dir), "listener-key.pem") }

// CheckACMECertValidity checks Options.ACMECertValidity: 0 (Pebble's
// default, 90 days) or whole seconds, at least one (Pebble's profile
// validityPeriod is in seconds).
func CheckACMECertValidity(d time.Duration) error {
	switch {
	case d == 0:
		return nil
	case d < time.Second:
		return errors.New("want at least 1s (0 means Pebble's default, 90 days)")
	case d%time.Second != 0:
		return errors.New("want whole seconds")
	}
	return nil
}

// tlsServices are the ACME CA, the DNS server and the Cloudflare simulator
// of one serve process.
type tlsServices struct {
	pebble *supervised
	cf     *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startTLSServices starts the DNS server (answering from sim's domain
// records and the Cloudflare simulator's records), the Cloudflare
// simulator (with CloudflareZone and a fresh token) and Pebble (supervised;
// its issuance root is written to acme/root.pem at every start), creates
// DigitalOceanZone in sim, fills info's ACME, DNS and Cloudflare fields,
// and returns once Pebble's directory answers and its root is on disk.
func startTLSServices(ctx context.Context, dir string, cfg config, p plan, sim *dosim.Server, info *Info, log *slog.Logger) (*tlsServices, error) {
	if cfg.PebbleBinary == "" {
		cfg.PebbleBinary = findBinary("pebble", "")
	}
	if cfg.PebbleBinary == "" {
		return nil, errors.New("start pebble: not found (run `make deps`)")
	}
	if err := os.MkdirAll(acmeDir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("start pebble: %w", err)
	}
	listenerRoots, err := writePebbleListenerCert(dir, p.RouterIP())
	if err != nil {
		return nil, fmt.Errorf("start pebble: listener certificate: %w", err)
	}
	if err := writePebbleConfig(dir, p, cfg.ACMEValidity); err != nil {
		return nil, fmt.Errorf("start pebble: %w", err)
	}

	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &tlsServices{cancel: cancel}
	fail := func(err error) (*tlsServices, error) {
		s.Stop(context.WithoutCancel(ctx))
		return nil, err
	}

	// Cloudflare.
	cf := cfsim.New(cfsim.Options{})
	cf.AddZone(CloudflareZone)
	cfToken := cf.NewToken()
	cfl, err := net.Listen("tcp", p.CloudflareAddr())
	if err != nil {
		return fail(fmt.Errorf("start the Cloudflare simulator: %w", err))
	}
	s.cf = &http.Server{Handler: cf, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() {
		if err := s.cf.Serve(cfl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("cloudflare simulator stopped", "err", err)
		}
	})

	// DigitalOcean DNS: the zone, through the simulator (no API call).
	if err := sim.AddDomain(DigitalOceanZone); err != nil {
		return fail(fmt.Errorf("create DO domain: %w", err))
	}

	// The DNS server. Listening here, not in the goroutine, so a port in
	// use fails serve at once.
	pc, err := net.ListenPacket("udp", p.DNSAddr())
	if err != nil {
		return fail(fmt.Errorf("start the DNS server: %w", err))
	}
	dl, err := net.Listen("tcp", p.DNSAddr())
	if err != nil {
		_ = pc.Close()
		return fail(fmt.Errorf("start the DNS server: %w", err))
	}
	dns := dnsserver.New(log.With("component", "dns"), dosimSource(sim), cfsimSource(cf))
	s.wg.Go(func() {
		if err := dns.Serve(sctx, pc, dl); err != nil {
			log.Error("dns server stopped", "err", err)
		}
	})

	// Pebble, and its issuance root at every (re)start.
	s.pebble = supervise(procSpec{
		Name: "pebble", Path: cfg.PebbleBinary,
		// Validation resolves names here, never with the machine's
		// resolver (and the router namespace has no route out anyway).
		Args:    []string{"-config", pebbleConfigPath(dir), "-dnsserver", p.DNSAddr()},
		Env:     pebbleEnv(),
		Dir:     dir,
		LogPath: filepath.Join(dir, "logs", "pebble.log"),
		PidPath: pebblePidPath(dir),
	}, log)
	client := pebbleClient(listenerRoots)
	ready := make(chan struct{})
	s.wg.Go(func() { watchPebbleRoots(sctx, dir, p, client, ready, log) })
	wctx, wcancel := context.WithTimeout(ctx, 45*time.Second)
	defer wcancel()
	if err := waitPebble(wctx, client, p.ACMEDirectoryURL(), ready); err != nil {
		return fail(fmt.Errorf("pebble not ready (see %s): %w", filepath.Join(dir, "logs", "pebble.log"), err))
	}

	info.ACMEDirectory = p.ACMEDirectoryURL()
	info.ACMERootCA = acmeRootPath(dir)
	info.ACMEListenerCA = acmeListenerRootPath(dir)
	info.DNSServer = p.DNSAddr()
	info.CloudflareAPIURL = p.CloudflareAPIURL()
	info.CloudflareToken = cfToken
	info.DNSZones = map[string]string{"cloudflare": CloudflareZone, "digitalocean": DigitalOceanZone}
	log.Info("acme, dns and cloudflare serving", "acme", info.ACMEDirectory, "dns", info.DNSServer,
		"cloudflare", info.CloudflareAPIURL, "zones", info.DNSZones)
	return s, nil
}

// Stop stops Pebble, the DNS server and the Cloudflare simulator.
func (s *tlsServices) Stop(ctx context.Context) {
	s.cancel()
	if s.pebble != nil {
		s.pebble.Stop(ctx, 5*time.Second)
	}
	if s.cf != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = s.cf.Shutdown(sctx) // connections still open after 5 s are cut by the exit
		cancel()
	}
	s.wg.Wait()
}

// pebbleEnv sets every variable Pebble v2.10 reads, so nothing in serve's
// own environment changes how the CA behaves: real validation
// (PEBBLE_VA_ALWAYS_VALID off) without Pebble's random sleep of up to 5 s, no
// injected bad nonces, no reuse of valid authorizations (each order
// validates: a moved A record fails the next one), one root and one
// intermediate (the depth of Let's Encrypt's chains). The later value of a
// variable wins over an inherited one (os/exec keeps the last).
func pebbleEnv() []string {
	return []string{
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_VA_SLEEPTIME=",
		"PEBBLE_VA_ALWAYS_VALID=0",
		"PEBBLE_WFE_NONCEREJECT=0",
		"PEBBLE_AUTHZREUSE=0",
		"PEBBLE_WFE_ORDERS_PER_PAGE=",
		"PEBBLE_ALTERNATE_ROOTS=0",
		"PEBBLE_CHAIN_LENGTH=1",
	}
}

// writePebbleConfig writes Pebble's JSON configuration (the fields of
// cmd/pebble's config struct, v2.10.3). validity 0 leaves the profile's
// validityPeriod to Pebble (90 days).
func writePebbleConfig(dir string, p plan, validity time.Duration) error {
	profile := map[string]any{"description": "dynia sandbox"}
	if validity > 0 {
		profile["validityPeriod"] = int64(validity / time.Second)
	}
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress":           p.ACMEAddr(),
		"managementListenAddress": netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pebbleManagementPort).String(),
		"certificate":             pebbleListenerCertPath(dir),
		"privateKey":              pebbleListenerKeyPath(dir),
		// Where the CA connects to validate, on whatever the name resolves
		// to: HTTP-01 on 80, TLS-ALPN-01 on 443, as Let's Encrypt does.
		"httpPort":                       80,
		"tlsPort":                        443,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": profile},
	}}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("pebble config: %w", err)
	}
	if err := writeFileAtomic(pebbleConfigPath(dir), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("pebble config: %w", err)
	}
	return nil
}

// writePebbleListenerCert makes a CA and, signed by it, the certificate of
// Pebble's HTTPS listeners (for the router's address and 127.0.0.1), and
// writes the CA as acme/listener-root.pem (what clients trust to reach
// the directory). The CA's key is thrown away: nothing else is ever
// signed with it.
func writePebbleListenerCert(dir string, router netip.Addr) (*x509.CertPool, error) {
	l, err := localca.Issue("dynia sandbox: Pebble listener CA "+randomHex(4), "pebble", []string{"pebble", "localhost"},
		[]net.IP{net.IP(router.AsSlice()), net.IPv4(127, 0, 0, 1)}, 365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := l.Write(writeFileAtomic, pebbleListenerCertPath(dir), pebbleListenerKeyPath(dir), acmeListenerRootPath(dir)); err != nil {
		return nil, err
	}
	return l.Roots, nil
}

// pebbleClient talks to Pebble's listeners (directory and management).
func pebbleClient(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true, // a restarted Pebble is a new server
	}}
}

// waitPebble returns once the directory answers 200 and the first root
// has been written (ready closed).
func waitPebble(ctx context.Context, client *http.Client, dirURL string, ready <-chan struct{}) error {
	if err := poll.Until(ctx, func() error { return poll.GetOK(ctx, client, dirURL) }); err != nil {
		return err
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return errors.New("the issuance root was not fetched")
	}
}

// watchPebbleRoots writes Pebble's issuance roots to acme/root.pem after
// every Pebble start (Pebble makes new ones each time), found by the PID
// in its pid file changing. ready is closed after the first write.
func watchPebbleRoots(ctx context.Context, dir string, p plan, client *http.Client, ready chan<- struct{}, log *slog.Logger) {
	var donePID int
	once := sync.OnceFunc(func() { close(ready) })
	for {
		pid, _ := readPidFile(pebblePidPath(dir))
		if pid != 0 && pid != donePID {
			roots, err := fetchPebbleRoots(ctx, client, p.PebbleManagementURL())
			switch {
			case err != nil:
				// Still starting (or just died): next round.
				log.Debug("pebble roots not available yet", "pid", pid, "err", err)
			case !pebbleRunning(dir, pid):
				// A root fetched after a restart we have not seen yet would be
				// recorded against the wrong PID; fetch again.
			default:
				if err := writeRoots(acmeRootPath(dir), roots); err != nil {
					log.Error("write pebble issuance root", "err", err)
					break
				}
				donePID = pid
				log.Info("pebble issuance root written", "pid", pid, "file", acmeRootPath(dir), "sha256", certFingerprints(roots))
				once()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func pebbleRunning(dir string, pid int) bool {
	now, _ := readPidFile(pebblePidPath(dir))
	return now == pid
}

// fetchPebbleRoots gets every issuance root from Pebble's management API
// (/roots/0, then /roots/1… while there are alternates), as PEM.
func fetchPebbleRoots(ctx context.Context, client *http.Client, mgmtURL string) ([]byte, error) {
	var all []byte
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, mgmtURL+"/roots/"+strconv.Itoa(i), nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("get pebble root %d: %w", i, err)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound && i > 0 {
			break
		}
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("get pebble root %d: HTTP %d %v", i, resp.StatusCode, err)
		}
		if _, err := parseCerts(b); err != nil {
			return nil, fmt.Errorf("pebble root %d: %w", i, err)
		}
		all = append(all, b...)
	}
	return all, nil
}

// writeRoots replaces path atomically, only when the content changed.
func writeRoots(path string, pemBytes []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, pemBytes) {
		return nil
	}
	return writeFileAtomic(path, pemBytes, 0o600)
}

func parseCerts(pemBytes []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func certFingerprints(pemBytes []byte) []string {
	certs, _ := parseCerts(pemBytes)
	var out []string
	for _, c := range certs {
		sum := sha256.Sum256(c.Raw)
		out = append(out, hex.EncodeToString(sum[:]))
	}
	return out
}

// dosimSource serves the DO simulator's domain records: A records as
// answers, every other record's name as existing (so a name with only,
// say, NS or TXT records answers NODATA, not NXDOMAIN).
func dosimSource(sim *dosim.Server) dnsserver.Records {
	return func() []dnsserver.Record {
		var out []dnsserver.Record
		for _, r := range sim.DomainRecords() {
			out = append(out, dnsRecord(r.FQDN(), r.Type, r.Data, r.TTL))
		}
		return out
	}
}

// cfsimSource serves the Cloudflare simulator's records the same way. A
// proxied record answers with its own address: there is no Cloudflare
// edge in the sandbox (docs/sandbox.md).
func cfsimSource(cf *cfsim.Server) dnsserver.Records {
	return func() []dnsserver.Record {
		var out []dnsserver.Record
		for _, r := range cf.Records() {
			ttl := r.TTL
			if ttl == 1 {
				ttl = cloudflareAutoTTL
			}
			out = append(out, dnsRecord(r.Name, r.Type, r.Content, ttl))
		}
		return out
	}
}

// dnsRecord maps one provider record: an A record with an IPv4 address
// answers; anything else only makes its name exist (zero IP).
func dnsRecord(name, typ, data string, ttl int) dnsserver.Record {
	rec := dnsserver.Record{Name: name, TTL: uint32(max(ttl, 0))}
	if typ == "A" {
		if ip, err := netip.ParseAddr(data); err == nil && ip.Is4() {
			rec.IP = ip
		}
	}
	return rec
}
