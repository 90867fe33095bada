package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/dynia/dynia/internal/testutil"
)

// TestSandboxHTTPS: a cluster gets HTTPS the way it would on the internet,
// with nothing but the sandbox context's defaults: `dns set --provider
// cloudflare` writes the A record to the sandbox's Cloudflare simulator,
// the sandbox's DNS server answers it with the Reserved IP, `tls enable`
// has the sandbox's Pebble validate HTTP-01 through that address (the
// holder's HAProxy, the challenge answered from the bucket), and the
// Reserved IP then serves HTTPS with a certificate for the name that
// verifies against the status's acme_root_ca; plain HTTP redirects.
func TestSandboxHTTPS(t *testing.T) {
	e := upSandbox(t, "--runtime", "process")
	e.mustRun("node", "create-ha", "--name", "web", "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "2m")
	var st struct {
		ACMERootCA string            `json:"acme_root_ca"`
		DNSServer  string            `json:"dns_server"`
		DNSZones   map[string]string `json:"dns_zones"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("sandbox", "status", "-o", "json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.ACMERootCA == "" || st.DNSServer == "" || st.DNSZones["cloudflare"] == "" {
		t.Fatalf("sandbox status lacks the ACME root, DNS server or Cloudflare zone: %+v", st)
	}
	name := "web." + st.DNSZones["cloudflare"]
	rips := e.refresh().ReservedIPs
	if len(rips) != 1 {
		t.Fatalf("reserved IPs %v, want one", rips)
	}
	rip := rips[0].IP

	e.mustRun("dns", "set", "--name", "web", "--record", name, "--provider", "cloudflare")
	c := &mdns.Client{Net: "udp", Timeout: 3 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	in, _, err := c.Exchange(m, st.DNSServer)
	if err != nil || len(in.Answer) != 1 || in.Answer[0].(*mdns.A).A.String() != rip {
		t.Fatalf("A %s at the sandbox DNS server: %v %v, want %s", name, in, err, rip)
	}

	start := time.Now()
	e.mustRun("tls", "enable", "--name", "web", "--domain", name, "--timeout", "3m")
	t.Logf("tls enable until every node serves the certificate: %v", time.Since(start).Round(time.Millisecond))

	rootPEM, err := os.ReadFile(st.ACMERootCA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("%s holds no certificate", st.ACMERootCA)
	}
	// The name resolves only at the sandbox's DNS server: connect to the
	// Reserved IP, present the name. (No release runs, so HAProxy answers
	// 503 behind TLS: the handshake is what is checked.)
	testutil.WaitFor(t, 30*time.Second, func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", net.JoinHostPort(rip, "443"),
			&tls.Config{ServerName: name, RootCAs: roots})
		if err != nil {
			return err // a placeholder still installed fails verification
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		switch {
		case len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name:
			return fmt.Errorf("certificate for %v, want %s", leaf.DNSNames, name)
		case !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA"):
			return fmt.Errorf("certificate issued by %q, want Pebble's intermediate", leaf.Issuer.CommonName)
		}
		return nil
	})
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
}
