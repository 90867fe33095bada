package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"time"
)

// acmeInfo is what a sandbox with an ACME CA and DNS adds to its status
// (the sandbox TLS work: Pebble, a DNS server, the Cloudflare simulator).
type acmeInfo struct {
	ACMEDirectory string            `json:"acme_directory"`
	ACMERootCA    string            `json:"acme_root_ca"`
	DNSZones      map[string]string `json:"dns_zones"`
}

func (s *Sandbox) acme() acmeInfo {
	var a acmeInfo
	_ = json.Unmarshal([]byte(s.MustCLIQuiet("sandbox", "status", "-o", "json").Stdout), &a)
	return a
}

// loadRun is one closed-loop run: each worker opens a connection, sends
// one GET, reads the answer and closes, back to back.
type loadRun struct {
	Scheme  string
	Workers int
	Elapsed time.Duration
	Lat     []time.Duration
	Failed  int
}

func (r *Runner) closedLoop(scheme, url string, cfg *tls.Config, workers int, d time.Duration) loadRun {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg}}
	lat, failed, elapsed := ClosedLoop(context.Background(), workers, d, func(ctx context.Context) error {
		_, err := request(ctx, c, http.MethodGet, url)
		return err
	})
	r.Logf("tls %s: %d requests in %v, %d failed", scheme, len(lat), elapsed.Round(time.Millisecond), failed)
	return loadRun{Scheme: scheme, Workers: workers, Elapsed: elapsed, Lat: lat, Failed: failed}
}

func runTLS(r *Runner, res *Result) {
	workers := 4 * runtime.NumCPU()
	res.Method = fmt.Sprintf("Two nodes; `dns set` on the sandbox's Cloudflare simulator and `tls enable --no-redirect` with the "+
		"sandbox's Pebble, so HAProxy on the holder terminates TLS (the certificate verified against the sandbox's ACME root) and "+
		"still serves plain HTTP. Load generator: this harness's closed loop (bench.ClosedLoop, Go's net/http, no keep-alive: every "+
		"request is a new TCP connection and, over HTTPS, a full TLS handshake), %d workers for %v per scheme, run from the root "+
		"namespace of the same 2-core machine, so client and server share the CPU: the figures compare the schemes, they are not "+
		"a droplet's capacity. Renewals: each forced by `tls enable` with a `--renew-before` longer than the certificate's "+
		"remaining life (the way the end-to-end test forces one; the nodes' own renewal check runs every 10 minutes, too seldom "+
		"to wait for), measured under an HTTPS GET loop (new connections) and a keep-alive HTTPS POST loop to the Reserved IP "+
		"(one request every 40 ms each), stopped 2 s after every node's :443 serves the new serial; wall time = the command's "+
		"(it orders, stores and waits for every node).", workers, r.cfg.TLSFor)
	sb := r.UpSandbox()
	defer sb.Down()
	a := sb.acme()
	if a.ACMEDirectory == "" || a.DNSZones["cloudflare"] == "" {
		res.Tables = append(res.Tables, Table{Title: "TLS handshakes", Columns: []string{"scheme", "result"},
			Rows: [][]string{{"HTTPS", "not run: this sandbox has no ACME CA and DNS (`sandbox status` lacks acme_directory)"}}})
		res.Targets = append(res.Targets, Target{Goal: "TLS handshakes per second and p99 (no target)", Met: "not run"})
		return
	}
	rip := sb.NewCluster("web", 2)
	domain := "web." + a.DNSZones["cloudflare"]
	sb.MustCLI("dns", "set", "--name", "web", "--record", domain, "--provider", "cloudflare")
	sb.MustCLI("tls", "enable", "--name", "web", "--domain", domain, "--no-redirect", "--timeout", "3m")
	pem, err := os.ReadFile(a.ACMERootCA)
	if err != nil {
		r.Fatalf("ACME root: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tcfg := &tls.Config{ServerName: domain, RootCAs: roots}
	r.WaitFor(time.Minute, func() error {
		c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tcfg}}
		_, err := request(context.Background(), c, http.MethodGet, "https://"+rip+"/")
		return err
	})
	runs := []loadRun{
		r.closedLoop("HTTP", "http://"+rip+"/", nil, workers, r.cfg.TLSFor),
		r.closedLoop("HTTPS", "https://"+rip+"/", tcfg, workers, r.cfg.TLSFor),
	}
	tbl := Table{Title: "New connections through the Reserved IP, HAProxy terminating TLS",
		Columns: []string{"scheme", "requests (= handshakes over HTTPS) per second", "latency p50", "p99", "max", "failed", "requests"}}
	var raw [][]string
	for _, run := range runs {
		s := Summarize(Seconds(run.Lat))
		rate := float64(len(run.Lat)) / run.Elapsed.Seconds()
		tbl.Rows = append(tbl.Rows, []string{run.Scheme, fnum(rate, "/s"), fms(s.P50), fms(s.P99), fms(s.Max), strconv.Itoa(run.Failed), strconv.Itoa(len(run.Lat))})
		for _, l := range run.Lat {
			raw = append(raw, []string{run.Scheme, strconv.FormatFloat(l.Seconds()*1000, 'f', 3, 64)})
		}
	}
	res.Tables = append(res.Tables, tbl)
	res.Raw = append(res.Raw, r.WriteCSV("tls.csv", []string{"scheme", "latency_ms"}, raw))

	var rrows [][]string
	var walls, serving []time.Duration
	failedAll := 0
	for run := 1; run <= r.cfg.PlannedRuns; run++ {
		rn := r.renewal(sb, rip, domain, sb.Nodes("web"), tcfg, run)
		walls = append(walls, rn.Wall)
		serving = append(serving, rn.Serving)
		failedAll += rn.Failed
		rrows = append(rrows, []string{strconv.Itoa(run), strconv.FormatFloat(rn.Wall.Seconds(), 'f', 3, 64),
			strconv.FormatFloat(rn.Serving.Seconds(), 'f', 3, 64), strconv.Itoa(rn.Failed), strconv.Itoa(rn.Total)})
	}
	ws, ss := Summarize(Seconds(walls)), Summarize(Seconds(serving))
	res.Tables = append(res.Tables, Table{Title: "Certificate renewal under HTTPS load (`tls enable --renew-before` longer than the certificate's life)",
		Columns: []string{"", "p50", "p95", "max", "renewals", "failed requests (all renewals)", "requests"},
		Rows: [][]string{
			append(append([]string{"wall time of the command"}, summaryCells(ws)...), strconv.Itoa(failedAll), strconv.Itoa(sumCol(rrows, 4))),
			append([]string{"command start → every node serving the new certificate"}, summaryCells(ss)...),
		}})
	res.Targets = append(res.Targets, target("0 failed requests across certificate renewals", float64(failedAll), 0, "failed"))
	res.Raw = append(res.Raw, r.WriteCSV("tls-renewal.csv", []string{"run", "wall_s", "serving_s", "failed", "requests"}, rrows))
}

type renewalRun struct {
	Wall, Serving time.Duration
	Failed, Total int
}

// servedCert is the leaf certificate addr serves for tcfg's name.
func servedCert(addr string, tcfg *tls.Config) (*x509.Certificate, error) {
	d := &tls.Dialer{Config: tcfg, NetDialer: &net.Dialer{Timeout: 2 * time.Second}}
	c, err := d.DialContext(context.Background(), "tcp", net.JoinHostPort(addr, "443"))
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
}

// renewal forces a renewal with `tls enable --renew-before` longer than the
// served certificate's remaining life, under an HTTPS GET loop (new
// connections) and a keep-alive HTTPS POST loop to the Reserved IP, and
// returns the command's wall time and the time from its start to every
// node serving the new certificate.
func (r *Runner) renewal(sb *Sandbox, rip, domain string, nodes []NodeRow, tcfg *tls.Config, run int) renewalRun {
	cur, err := servedCert(rip, tcfg)
	if err != nil {
		r.Fatalf("TLS: %v", err)
	}
	before := time.Until(cur.NotAfter).Truncate(time.Hour) + time.Hour
	gets := GetLoopTLS("https://"+rip+"/", tcfg, 40*time.Millisecond, 10*time.Minute)
	posts := PostLoopTLS("https://"+rip+"/", tcfg, 40*time.Millisecond, 10*time.Minute)
	time.Sleep(time.Second)
	start := time.Now()
	res := sb.MustCLI("tls", "enable", "--name", "web", "--domain", domain, "--no-redirect", "--timeout", "3m", "--renew-before", before.String())
	var done time.Time
	r.WaitFor(3*time.Minute, func() error {
		for _, n := range nodes {
			c, err := servedCert(n.PublicIP, tcfg)
			if err != nil {
				return err
			}
			if c.SerialNumber.Cmp(cur.SerialNumber) == 0 {
				return fmt.Errorf("node %s still serves serial %s", n.ID, cur.SerialNumber)
			}
		}
		done = time.Now()
		return nil
	})
	time.Sleep(2 * time.Second)
	g, p := Analyze(gets.Stop()), Analyze(posts.Stop())
	rn := renewalRun{Wall: res.Took, Serving: done.Sub(start), Failed: g.Failed + p.Failed, Total: g.Total + p.Total}
	r.Logf("tls renewal %d: command %v, every node serves the new certificate %v after its start; %d of %d requests failed",
		run, rn.Wall.Round(time.Millisecond), rn.Serving.Round(time.Millisecond), rn.Failed, rn.Total)
	return rn
}

func sumCol(rows [][]string, i int) int {
	n := 0
	for _, r := range rows {
		v, _ := strconv.Atoi(r[i])
		n += v
	}
	return n
}

// fms formats seconds as milliseconds.
func fms(x float64) string {
	if x != x {
		return "—"
	}
	return strconv.FormatFloat(x*1000, 'f', 1, 64) + " ms"
}
