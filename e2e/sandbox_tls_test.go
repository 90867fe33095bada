package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/dynia/dynia/internal/testutil"
)

// httpsProbe talks HTTPS to the Reserved IP for a name that resolves only
// at the sandbox's DNS server (curl --cacert root --resolve name:443:rip).
type httpsProbe struct {
	name, rip string
	roots     *x509.CertPool
}

// handshake connects once and returns the leaf certificate, verified
// against the sandbox's ACME root for the name.
func (p httpsProbe) handshake() (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", net.JoinHostPort(p.rip, "443"),
		&tls.Config{ServerName: p.name, RootCAs: p.roots})
	if err != nil {
		return nil, err // a placeholder still installed fails verification
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// get is one GET https://name/ on a new connection (a full handshake each
// time); the body's first line names the node and release that answered.
func (p httpsProbe) get() (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{ServerName: p.name, RootCAs: p.roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, net.JoinHostPort(p.rip, "443"))
		},
	}}
	resp, err := c.Get("https://" + p.name + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line, nil
}

// serves waits until the Reserved IP presents a verified certificate for
// the name from Pebble's intermediate with the given serial ("" any) and
// returns its serial.
func (p httpsProbe) serves(t *testing.T, serial string) string {
	t.Helper()
	var got string
	testutil.WaitFor(t, 60*time.Second, func() error {
		leaf, err := p.handshake()
		if err != nil {
			return err
		}
		switch {
		case len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != p.name:
			return fmt.Errorf("certificate for %v, want %s", leaf.DNSNames, p.name)
		case !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA"):
			return fmt.Errorf("certificate issued by %q, want Pebble's intermediate", leaf.Issuer.CommonName)
		case serial != "" && leaf.SerialNumber.Text(16) != serial:
			return fmt.Errorf("serving serial %s, want %s", leaf.SerialNumber.Text(16), serial)
		}
		got = leaf.SerialNumber.Text(16)
		return nil
	})
	return got
}

// tlsNodes is `dynia tls status -o json`'s per-node view.
func (e *sandboxEnv) tlsNodes(name string) map[string]string {
	var out struct {
		Nodes []struct {
			Node        string `json:"node"`
			Serial      string `json:"serial"`
			Placeholder bool   `json:"placeholder"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("tls", "status", "--name", name, "-o", "json").stdout), &out); err != nil {
		e.t.Fatal(err)
	}
	serials := map[string]string{}
	for _, n := range out.Nodes {
		serials[n.Node] = n.Serial
		if n.Placeholder {
			serials[n.Node] = "placeholder"
		}
	}
	return serials
}

// everyNodeServes waits until every node reports the serial installed.
func (e *sandboxEnv) everyNodeServes(name, serial string) {
	e.t.Helper()
	testutil.WaitFor(e.t, 60*time.Second, func() error {
		for node, s := range e.tlsNodes(name) {
			if !strings.EqualFold(strings.TrimLeft(s, "0"), strings.TrimLeft(serial, "0")) {
				return fmt.Errorf("node %s serves %q, want %s", node, s, serial)
			}
		}
		return nil
	})
}

// waitBooted waits until the node on droplet id, powered on at on, runs
// its app again (since after the power-on: its dynia-pull and Docker came
// back) and every node sees every backend up. Until then the report written
// before the power-off may still say "up".
func (e *sandboxEnv) waitBooted(name string, id int, on time.Time) {
	e.t.Helper()
	node := ""
	for _, r := range e.nodes(name) {
		if r.DropletID == id {
			node = r.ID
		}
	}
	testutil.WaitFor(e.t, 2*time.Minute, func() error {
		for _, n := range e.appStatus(name) {
			if n.Node == node && (!n.Healthy || n.Since == nil || n.Since.Before(on.Add(-time.Second))) {
				return fmt.Errorf("the power-cycled node reports %+v", n)
			}
		}
		return nil
	})
	e.waitUp(name)
}

// resolve asks the sandbox's DNS server for name's A record.
func resolve(t *testing.T, server, name string) string {
	t.Helper()
	c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	in, _, err := c.Exchange(m, server)
	if err != nil || len(in.Answer) != 1 {
		t.Fatalf("A %s at the sandbox DNS server %s: %v %v", name, server, in, err)
	}
	return in.Answer[0].(*mdns.A).A.String()
}

// installedKeys returns the private keys the nodes serve (the PRIVATE KEY
// block of each node's cert.pem, HAProxy's crt file), as the base64 lines
// that would betray the key if found anywhere.
func installedKeys(t *testing.T, e *sandboxEnv) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dir, "droplets", "*", "root", "etc", "dynia", "tls", "cert.pem"))
	if len(files) == 0 {
		t.Fatal("no node has a cert.pem")
	}
	var keys []string
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(f)
		for rest := b; ; {
			var blk *pem.Block
			if blk, rest = pem.Decode(rest); blk == nil {
				break
			}
			if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
				// Any 48 bytes of the DER, base64 as it would be printed.
				line := strings.Split(string(pem.EncodeToMemory(blk)), "\n")[2]
				keys = append(keys, line)
			}
		}
	}
	return keys
}

// noKeyOutside fails if a node's private key (as PEM base64, or as its DER
// bytes) appears in any file under the sandbox dir — the bucket's objects
// (versitygw stores them as files), every daemon's and dynia-pull's logs,
// the uploaded log tails and status reports, the simulator's data — other
// than the nodes' own 0600 cert.pem, or in any CLI output.
func noKeyOutside(t *testing.T, e *sandboxEnv, keys []string, outputs []string) {
	t.Helper()
	allowed := regexp.MustCompile(`/droplets/\d+/root/etc/dynia/tls/cert\.pem$`)
	scanned, bucketCert := 0, false
	err := filepath.WalkDir(e.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > 64<<20 {
			return nil // images and layers: not where a key would be written
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		scanned++
		// The sealed certificate object in the bucket (versitygw's posix
		// backend keeps objects as files): the search must have seen it.
		bucketCert = bucketCert || strings.HasSuffix(path, filepath.Join("clusters", "web", "tls", "cert.json"))
		for _, k := range keys {
			if bytes.Contains(b, []byte(k)) && !allowed.MatchString(path) {
				t.Errorf("a node's TLS private key appears in %s", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, out := range outputs {
		for _, k := range keys {
			if strings.Contains(out, k) {
				t.Errorf("a node's TLS private key appears in CLI output %d", i)
			}
		}
	}
	if !bucketCert {
		t.Errorf("the bucket's tls/cert.json was not among the %d files searched under %s", scanned, e.dir)
	}
	t.Logf("%d files and %d CLI outputs searched for %d private keys", scanned, len(outputs), len(keys))
}

// TestSandboxHTTPS: a cluster gets HTTPS the way it would on the internet,
// with nothing but the sandbox context's defaults. `create-ha --dns-provider
// cloudflare --domain` writes the A record to the sandbox's Cloudflare
// simulator, the sandbox's DNS server answers it with the Reserved IP, and has
// the sandbox's Pebble validate HTTP-01 through that address (the holder's
// HAProxy, the challenge answered from the bucket), and the Reserved IP then
// serves HTTPS with a certificate for the name that verifies against the
// status's acme_root_ca; plain HTTP redirects. A second `tls enable` orders
// nothing; after the holder is powered off the new holder serves the same
// certificate; a forced renewal installs a new serial on every node with no
// failed HTTPS request; a record on DigitalOcean's DNS gets its own
// certificate; and no node's private key is anywhere but its own 0600 file.
func TestSandboxHTTPS(t *testing.T) {
	e := upSandbox(t)
	var outputs []string
	run := func(args ...string) result {
		r := e.mustRun(args...)
		outputs = append(outputs, r.stdout, r.stderr)
		return r
	}
	var st struct {
		ACMERootCA string            `json:"acme_root_ca"`
		DNSServer  string            `json:"dns_server"`
		DNSZones   map[string]string `json:"dns_zones"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("sandbox", "status", "-o", "json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.ACMERootCA == "" || st.DNSServer == "" || st.DNSZones["cloudflare"] == "" || st.DNSZones["digitalocean"] == "" {
		t.Fatalf("sandbox status lacks the ACME root, DNS server or DNS zones: %+v", st)
	}
	// create-ha does DNS and TLS in one go once the cluster serves; the
	// sandbox context names its Cloudflare and Pebble.
	name := "web." + st.DNSZones["cloudflare"]
	start := time.Now()
	run("node", "create-ha", "--name", "web", "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "3m", "--image", e.demo("v1"),
		"--dns-provider", "cloudflare", "--dns-record", name, "--domain", name)
	t.Logf("create-ha with DNS and TLS: %v", time.Since(start).Round(time.Millisecond))
	rip := e.reservedIP("web")
	if got := resolve(t, st.DNSServer, name); got != rip {
		t.Fatalf("A %s = %s, want the Reserved IP %s", name, got, rip)
	}
	p := httpsProbe{name: name, rip: rip, roots: nil}
	rootPEM, err := os.ReadFile(st.ACMERootCA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("%s holds no certificate", st.ACMERootCA)
	}

	p.roots = roots
	serial := p.serves(t, "")
	// A second node gets the certificate at its first apply.
	run("node", "add", "--name", "web", "--count", "1", "--timeout", "2m")
	e.waitUp("web")
	e.everyNodeServes("web", serial)
	if body, err := p.get(); err != nil || !strings.HasSuffix(body, " v1") {
		t.Fatalf("GET https://%s/ through %s: %q %v, want the app's answer", name, rip, body, err)
	}
	keys := installedKeys(t, e)

	t.Run("plain HTTP redirects", func(t *testing.T) {
		hc := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodGet, "http://"+rip+"/", nil)
		req.Host = name
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != "https://"+name+"/" {
			t.Errorf("plain HTTP: %s to %q, want 301 to https://%s/", resp.Status, loc, name)
		}
	})

	t.Run("a second enable orders nothing", func(t *testing.T) {
		r := run("tls", "enable", "--name", "web", "--domain", name, "--timeout", "3m")
		if !strings.Contains(r.stdout+r.stderr, "kept, serial") {
			t.Errorf("second tls enable did not keep the certificate:\n%s%s", r.stdout, r.stderr)
		}
		p.serves(t, serial)
		e.everyNodeServes("web", serial)
	})

	t.Run("the new holder serves it after a failover", func(t *testing.T) {
		holder := e.ripHolder(rip)
		if err := e.cloud().PowerOff(context.Background(), holder); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 2*time.Minute, func() error {
			if h := e.ripHolder(rip); h == holder || h == 0 {
				return fmt.Errorf("Reserved IP still on %d", h)
			}
			return nil
		})
		p.serves(t, serial)
		if body, err := p.get(); err != nil {
			t.Fatalf("GET https://%s/ after failover: %q %v", name, body, err)
		}
		poweredOn := time.Now()
		if err := e.cloud().PowerOn(context.Background(), holder); err != nil {
			t.Fatal(err)
		}
		e.waitBooted("web", holder, poweredOn)
	})

	t.Run("a forced renewal reaches every node without a failed request", func(t *testing.T) {
		load := startLoadWith(p.get, 50*time.Millisecond, loadBound)
		load.waitAnswered(t, time.Time{}, 20)
		// Renewing 2200 h before expiry: Pebble's 90-day certificate is due now.
		r := run("tls", "enable", "--name", "web", "--domain", name, "--renew-before", "2200h", "--timeout", "3m")
		if !strings.Contains(r.stdout+r.stderr, "issued, serial") {
			t.Errorf("tls enable --renew-before 2200h did not renew:\n%s%s", r.stdout, r.stderr)
		}
		renewed := p.serves(t, "")
		if renewed == serial {
			t.Fatalf("still serving serial %s after the renewal", serial)
		}
		e.everyNodeServes("web", renewed)
		load.waitAnswered(t, time.Now(), 40)
		total, failed, _, _ := load.finish()
		t.Logf("renewal %s → %s: %d of %d HTTPS requests (each a new handshake) failed", serial, renewed, failed, total)
		if failed != 0 || total == 0 {
			t.Errorf("renewal: %d of %d HTTPS requests failed:\n%s", failed, total, strings.Join(load.failures(10), "\n"))
		}
		keys = append(keys, installedKeys(t, e)...)
	})

	t.Run("a record on DigitalOcean DNS and its certificate", func(t *testing.T) {
		doName := "web." + st.DNSZones["digitalocean"]
		run("dns", "set", "--name", "web", "--record", doName, "--provider", "digitalocean")
		if got := resolve(t, st.DNSServer, doName); got != rip {
			t.Fatalf("A %s = %s, want the Reserved IP %s", doName, got, rip)
		}
		run("tls", "enable", "--name", "web", "--domain", doName, "--timeout", "3m")
		pd := httpsProbe{name: doName, rip: rip, roots: roots}
		e.everyNodeServes("web", pd.serves(t, ""))
		keys = append(keys, installedKeys(t, e)...)
	})

	t.Run("no private key outside the nodes' cert.pem", func(t *testing.T) {
		noKeyOutside(t, e, keys, outputs)
	})
}
