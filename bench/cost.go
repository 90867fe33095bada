package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/procstat"
)

// apiCall is a line of the sandbox's logs/api-calls.log (--request-logs).
type apiCall struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
	Remote string    `json:"remote"`
}

func (s *Sandbox) apiCalls() []apiCall {
	f, err := os.Open(filepath.Join(s.dir, "logs", "api-calls.log"))
	if err != nil {
		s.r.Fatalf("API call log: %v", err)
	}
	defer f.Close()
	var out []apiCall
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var c apiCall
		if json.Unmarshal(sc.Bytes(), &c) == nil {
			out = append(out, c)
		}
	}
	return out
}

// s3Request is one line of versitygw's access log, reduced to who did
// what to which key, and when (the log is in S3's server access log
// format: bucket owner, bucket, [time], remote IP, requester, request id,
// operation, key, "request-URI", status, …).
type s3Request struct {
	Time      time.Time
	Remote    string
	Operation string // s3_GetObject, s3_PutObject, … (versitygw; S3 writes REST.GET.OBJECT, …)
	Key       string
}

func (s *Sandbox) s3Requests() []s3Request {
	f, err := os.Open(filepath.Join(s.dir, "logs", "s3-access.log"))
	if err != nil {
		s.r.Fatalf("S3 access log: %v", err)
	}
	defer f.Close()
	var out []s3Request
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		if q, ok := parseAccessLine(sc.Text()); ok {
			out = append(out, q)
		}
	}
	return out
}

// parseAccessLine reads the fields of an S3 server access log line.
func parseAccessLine(line string) (s3Request, bool) {
	var f []string
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		if line == "" {
			break
		}
		var end int
		switch line[0] {
		case '[':
			end = strings.IndexByte(line, ']') + 1
		case '"':
			end = strings.IndexByte(line[1:], '"') + 2
		default:
			end = strings.IndexByte(line, ' ')
		}
		if end <= 0 || end > len(line) {
			end = len(line)
		}
		f = append(f, strings.Trim(line[:end], "[]\""))
		line = line[end:]
	}
	if len(f) < 8 {
		return s3Request{}, false
	}
	// versitygw writes the month's full name; S3 its abbreviation.
	t, err := time.Parse("02/January/2006:15:04:05 -0700", f[2])
	if err != nil {
		if t, err = time.Parse("02/Jan/2006:15:04:05 -0700", f[2]); err != nil {
			return s3Request{}, false
		}
	}
	return s3Request{Time: t, Remote: f[3], Operation: f[6], Key: f[7]}, true
}

// cliAddr is the root namespace's address in the sandbox (the range's last
// usable one): the CLI's API calls come from it.
func (s *Sandbox) cliAddr() string {
	p, err := netip.ParsePrefix(s.Info.PublicRange)
	if err != nil {
		s.r.Fatalf("public range: %v", err)
	}
	a := p.Masked().Addr().As4()
	a[3] = 254
	return netip.AddrFrom4(a).String()
}

// countedCLI runs a command and counts the DO API calls it made. Exit 1
// is an answer too (repair-ha --check-only finding drift).
func (s *Sandbox) countedCLI(args ...string) (int, time.Duration) {
	start := time.Now()
	res := s.CLI(args...)
	end := time.Now()
	if res.Code != 0 && res.Code != 1 {
		s.r.Fatalf("dynia %s: exit %d: %s", strings.Join(args, " "), res.Code, strings.TrimSpace(res.Stderr))
	}
	s.r.Logf("dynia %s (%v)", strings.Join(args, " "), res.Took.Round(time.Millisecond))
	n := 0
	me := s.cliAddr()
	for _, c := range s.apiCalls() {
		if c.Remote == me && !c.Time.Before(start) && !c.Time.After(end) {
			n++
		}
	}
	return n, res.Took
}

// cpuTicks is a process's utime+stime (clock ticks, 100 per second).
func cpuTicks(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

// idle is one poll interval's measurement at rest.
type idle struct {
	Poll              time.Duration
	RSSMiB, CPUPct    float64 // per dynia-pull, average over nodes
	BucketPerNodeHour float64
	PutsPerObjectHour float64
	PutObject         string
	APIPerNodeHour    float64
	Window            time.Duration
	Nodes             int
	BucketByOp        map[string]float64 // per node per hour
}

func (r *Runner) measureIdle(sb *Sandbox, name string, poll, window time.Duration) idle {
	nodes := sb.Nodes(name)
	for _, n := range nodes {
		sb.EditPullConfig(n.DropletID, func(m map[string]any) { m["poll_interval"] = poll.String() })
	}
	sb.WaitUp(name, 2*time.Minute)
	time.Sleep(min(window/2, 30*time.Second)) // past the first polls and reports after the restart
	ips := map[string]bool{}
	pids := map[int]uint64{}
	for _, n := range nodes {
		ips[n.PublicIP] = true
		if p := sb.PullPID(n.DropletID); p != 0 {
			st, _ := procstat.StartTime(p)
			pids[p] = st
		}
	}
	cpu0 := map[int]int{}
	for p := range pids {
		cpu0[p] = cpuTicks(p)
	}
	start := time.Now()
	time.Sleep(window)
	end := time.Now()
	out := idle{Poll: poll, Window: window, Nodes: len(nodes), BucketByOp: map[string]float64{}}
	var rss, cpu float64
	for p, st := range pids {
		if !procstat.Alive(p, st) {
			r.Fatalf("dynia-pull %d restarted during the idle window", p)
		}
		rss += float64(rssKB(p)) / 1024
		cpu += float64(cpuTicks(p)-cpu0[p]) / 100 / end.Sub(start).Seconds() * 100
	}
	out.RSSMiB, out.CPUPct = rss/float64(len(pids)), cpu/float64(len(pids))
	hours := end.Sub(start).Hours() * float64(len(nodes))
	puts := map[string]int{}
	n := 0
	for _, q := range sb.s3Requests() {
		if !ips[q.Remote] || q.Time.Before(start.Truncate(time.Second)) || q.Time.After(end) {
			continue
		}
		n++
		out.BucketByOp[q.Operation] += 1 / hours
		if isPut(q.Operation) {
			puts[q.Key]++
		}
	}
	out.BucketPerNodeHour = float64(n) / hours
	for k, c := range puts {
		if v := float64(c) / end.Sub(start).Hours(); v > out.PutsPerObjectHour {
			out.PutsPerObjectHour, out.PutObject = v, k
		}
	}
	calls := 0
	for _, c := range sb.apiCalls() {
		if ips[c.Remote] && !c.Time.Before(start) && !c.Time.After(end) {
			calls++
		}
	}
	out.APIPerNodeHour = float64(calls) / hours
	r.Logf("idle at poll %v: RSS %.1f MiB, CPU %.2f %%, bucket %.0f/node/h, PUTs %.0f/object/h (%s), API %.1f/node/h",
		poll, out.RSSMiB, out.CPUPct, out.BucketPerNodeHour, out.PutsPerObjectHour, out.PutObject, out.APIPerNodeHour)
	return out
}

func runCost(r *Runner, res *Result) {
	res.Method = fmt.Sprintf("A sandbox with `--request-logs` (every DO API request and S3 request logged with the caller's "+
		"address). **CLI**: DO API calls each command made (from the root namespace, the CLI's address), a three-node cluster. "+
		"**At rest**: every node's pull.json poll_interval set to 1 s, then 5 s (dynia-pull restarted), %v to settle, then %v "+
		"measured: VmRSS and CPU (utime+stime) per dynia-pull, S3 requests and DO API calls from the nodes' addresses, scaled "+
		"to an hour. Bill: DO list prices (sources in the table).", min(r.cfg.CostWindow/2, 30*time.Second), r.cfg.CostWindow)
	sb := r.UpSandbox()
	defer sb.Down()
	type cmd struct {
		label string
		args  []string
	}
	var cmds []cmd
	var cliRows [][]string
	run := func(label string, args ...string) {
		n, took := sb.countedCLI(args...)
		cliRows = append(cliRows, []string{label, strconv.Itoa(n), fsec(took.Seconds())})
		cmds = append(cmds, cmd{label, args})
	}
	run("node create-ha (1 node)", "node", "create-ha", "--name", "co", "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "3m", "--image", sb.Demo("v1"))
	run("node add --count 2", "node", "add", "--name", "co", "--count", "2", "--timeout", "5m")
	sb.WaitUp("co", 3*time.Minute)
	run("node list", "node", "list", "--name", "co")
	run("cluster get", "cluster", "get", "--name", "co")
	nodes := sb.Nodes("co")
	run("node make-active", "node", "make-active", "--name", "co", "--node", nodes[len(nodes)-1].ID)
	sb.WaitUp("co", 3*time.Minute)
	run("app deploy", "app", "deploy", "--name", "co", "--image", sb.Demo("v2"))
	run("app status", "app", "status", "--name", "co")
	run("repair-ha --check-only", "node", "repair-ha", "--name", "co", "--check-only")
	nodes = sb.Nodes("co")
	run("node remove (a standby)", "node", "remove", "--name", "co", "--node", nodes[len(nodes)-1].ID, "--confirm")
	run("node add", "node", "add", "--name", "co", "--timeout", "5m")
	sb.WaitUp("co", 3*time.Minute)

	idles := []idle{r.measureIdle(sb, "co", time.Second, r.cfg.CostWindow), r.measureIdle(sb, "co", 5*time.Second, r.cfg.CostWindow)}
	// Memory and CPU of the whole node at rest, for the droplet size.
	var nodeMem []float64
	for _, n := range sb.Nodes("co") {
		nodeMem = append(nodeMem, float64(nodeMemory(sb.Droplet(n.DropletID).Namespace))/1024)
	}
	run("cluster destroy", "cluster", "destroy", "--name", "co", "--confirm")

	res.Tables = append(res.Tables, Table{Title: "DO API calls per CLI command (three-node cluster)",
		Columns: []string{"command", "DO API calls", "wall time"}, Rows: cliRows})
	it := Table{Title: "dynia-pull at rest, three nodes",
		Columns: []string{"poll interval", "RSS per dynia-pull", "CPU per dynia-pull", "bucket requests per node per hour", "PUTs per object per hour (the busiest)", "DO API calls per node per hour", "window"}}
	var raw [][]string
	for _, i := range idles {
		it.Rows = append(it.Rows, []string{i.Poll.String(), fnum(i.RSSMiB, "MiB"), fnum(i.CPUPct, "%"), fnum(i.BucketPerNodeHour, ""),
			fnum(i.PutsPerObjectHour, "") + " (" + i.PutObject + ")", fnum(i.APIPerNodeHour, ""), i.Window.String()})
		ops := make([]string, 0, len(i.BucketByOp))
		for op := range i.BucketByOp {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		for _, op := range ops {
			raw = append(raw, []string{i.Poll.String(), op, strconv.FormatFloat(i.BucketByOp[op], 'f', 1, 64)})
		}
		if i.Poll == time.Second {
			res.Targets = append(res.Targets,
				target("dynia-pull idle RSS ≤ 30 MB at a 1 s poll", i.RSSMiB*1.048576, 30, "MB"),
				target("dynia-pull idle CPU ≤ 1 % at a 1 s poll", i.CPUPct, 1, "%"),
				target("≤ 60 DO API calls per node per hour at rest (1 s poll)", i.APIPerNodeHour, 60, "calls"))
		}
	}
	ms := Summarize(nodeMem)
	it.Rows = append(it.Rows, []string{"a whole node at rest (5 s poll)", fnum(ms.P50, "MiB") + " p50, " + fnum(ms.Max, "MiB") + " max",
		"", "", "", "", "summed VmRSS: dynia-pull, HAProxy, keepalived, wireguard-go, dockerd, containerd, the app"})
	res.Tables = append(res.Tables, it)
	res.Raw = append(res.Raw, r.WriteCSV("cost-bucket-ops.csv", []string{"poll", "operation", "per_node_per_hour"}, raw))
	res.Raw = append(res.Raw, r.WriteCSV("cost-cli.csv", []string{"command", "api_calls", "wall"}, cliRows))

	bill := Table{Title: "Monthly bill at DO list prices (USD)",
		Columns: []string{"nodes", "dynia, s-1vcpu-512mb-10gb droplets", "dynia, s-1vcpu-1gb droplets", "DO Load Balancer (1 node) + s-1vcpu-1gb droplets"}}
	for _, n := range []int{1, 2, 3} {
		f := float64(n)
		bill.Rows = append(bill.Rows, []string{strconv.Itoa(n),
			usd(f*price("Droplet s-1vcpu-512mb-10gb") + price("Spaces subscription") + price("Reserved IPv4, assigned")),
			usd(f*price("Droplet s-1vcpu-1gb") + price("Spaces subscription") + price("Reserved IPv4, assigned")),
			usd(f*price("Droplet s-1vcpu-1gb") + price("Regional Load Balancer, per node"))})
	}
	res.Tables = append(res.Tables, bill)
	src := Table{Title: "Prices used", Columns: []string{"item", "USD per month", "source", "note"}}
	for _, p := range prices {
		src.Rows = append(src.Rows, []string{p.Item, usd(p.USD), p.Source, p.Note})
	}
	res.Tables = append(res.Tables, src)
	res.Notes = append(res.Notes, "dynia's bill: the droplets, one Spaces subscription (the state bucket; an account that already pays for Spaces pays nothing more) "+
		"and the Reserved IP (free while assigned). The Load Balancer setup does the same job without dynia: the LB is the entry point "+
		"and health-checks the droplets (no Reserved IP, no bucket).")
}

func usd(x float64) string { return "$" + strconv.FormatFloat(x, 'f', 2, 64) }

// isPut reports whether an access log operation writes an object.
func isPut(op string) bool { return op == "s3_PutObject" || strings.HasPrefix(op, "REST.PUT") }
