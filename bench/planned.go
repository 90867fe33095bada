package bench

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// plannedOp is one measured command.
type plannedOp struct {
	Op            string
	Run           int
	Wall          time.Duration
	Failed, Total int
	PostsFailed   int // of Failed: keep-alive POSTs
}

// underLoad runs cmd under a GET loop (new connections) and a keep-alive
// POST loop to url (one request every 40 ms each), stopped 2 s after the
// command returns.
func (r *Runner) underLoad(sb *Sandbox, url, op string, run int, args ...string) plannedOp {
	gets := GetLoop(url, 40*time.Millisecond, 10*time.Minute)
	posts := PostLoop(url, 40*time.Millisecond, 10*time.Minute)
	time.Sleep(time.Second)
	res := sb.MustCLI(args...)
	time.Sleep(2 * time.Second)
	g, p := Analyze(gets.Stop()), Analyze(posts.Stop())
	out := plannedOp{Op: op, Run: run, Wall: res.Took, Failed: g.Failed + p.Failed, Total: g.Total + p.Total, PostsFailed: p.Failed}
	r.Logf("planned %s run %d: %v, %d of %d requests failed", op, run, res.Took.Round(time.Millisecond), out.Failed, out.Total)
	return out
}

// nodeMemory is the resident memory (kB) of everything a droplet runs: the
// processes in its network namespace and its containers' (in its Docker
// cgroup, each container in a namespace of its own). Shared pages count in
// every process, so this overstates what the droplet pays.
func nodeMemory(ns string) int {
	pids := map[int]bool{}
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids[p] = true
			}
		}
	}
	_ = filepath.WalkDir("/sys/fs/cgroup/"+ns+"-docker", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids[p] = true
			}
		}
		return nil
	})
	total := 0
	for p := range pids {
		total += rssKB(p)
	}
	return total
}

// rssKB is a process's VmRSS (0 if gone).
func rssKB(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// memPeak samples nodeMemory of every namespace every 250 ms until stop
// is closed, and returns each namespace's peak and first sample (kB).
func memPeak(nss []string, stop <-chan struct{}) (peak, first map[string]int) {
	peak, first = map[string]int{}, map[string]int{}
	var mu sync.Mutex
	sample := func() {
		for _, ns := range nss {
			kb := nodeMemory(ns)
			mu.Lock()
			if _, ok := first[ns]; !ok {
				first[ns] = kb
			}
			peak[ns] = max(peak[ns], kb)
			mu.Unlock()
		}
	}
	for {
		sample()
		select {
		case <-stop:
			return peak, first
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func runPlanned(r *Runner, res *Result) {
	res.Method = fmt.Sprintf("Three nodes; each command run as a user runs it (default flags) under a GET loop on new connections "+
		"and a keep-alive POST loop to the Reserved IP (one request every 40 ms each), stopped 2 s after the command returns. Wall "+
		"time = the command's own, start to exit. Removed nodes are added back (not measured) between runs. %d runs per command. "+
		"Memory: every process of a droplet (its namespace and its containers' cgroup) summed VmRSS, sampled every 250 ms during "+
		"`app deploy`; shared pages count in every process.", r.cfg.PlannedRuns)
	sb := r.UpSandbox()
	defer sb.Down()
	rip := sb.NewCluster("pm", 3)
	url := "http://" + rip + "/"
	var ops []plannedOp
	var peaks, bases []float64
	version := "v1"
	for run := 1; run <= r.cfg.PlannedRuns; run++ {
		nodes := sb.Nodes("pm")
		ops = append(ops, r.underLoad(sb, url, "node make-active", run, "node", "make-active", "--name", "pm", "--node", nodes[len(nodes)-1].ID))
		sb.WaitUp("pm", 3*time.Minute)

		nodes = sb.Nodes("pm")
		ops = append(ops, r.underLoad(sb, url, "node remove (a standby)", run, "node", "remove", "--name", "pm", "--node", nodes[len(nodes)-1].ID, "--confirm"))
		sb.MustCLI("node", "add", "--name", "pm", "--timeout", "5m")
		sb.WaitUp("pm", 3*time.Minute)

		nodes = sb.Nodes("pm")
		ops = append(ops, r.underLoad(sb, url, "node remove (the active node)", run, "node", "remove", "--name", "pm", "--node", nodes[0].ID, "--confirm"))
		sb.MustCLI("node", "add", "--name", "pm", "--timeout", "5m")
		sb.WaitUp("pm", 3*time.Minute)

		var nss []string
		for _, n := range sb.Nodes("pm") {
			nss = append(nss, sb.Droplet(n.DropletID).Namespace)
		}
		version = map[string]string{"v1": "v2", "v2": "v1"}[version]
		stop := make(chan struct{})
		var peak, first map[string]int
		done := make(chan struct{})
		go func() { peak, first = memPeak(nss, stop); close(done) }()
		ops = append(ops, r.underLoad(sb, url, "app deploy", run, "app", "deploy", "--name", "pm", "--image", sb.Demo(version)))
		close(stop)
		<-done
		for _, ns := range nss {
			peaks = append(peaks, float64(peak[ns])/1024)
			bases = append(bases, float64(first[ns])/1024)
		}
		sb.WaitUp("pm", 3*time.Minute)

		ops = append(ops, r.underLoad(sb, url, "app rollback", run, "app", "rollback", "--name", "pm"))
		sb.WaitUp("pm", 3*time.Minute)
		version = map[string]string{"v1": "v2", "v2": "v1"}[version]
	}

	tbl := Table{Title: "Failed requests and wall time per command",
		Columns: []string{"command", "failed requests (all runs)", "of which keep-alive POSTs", "requests", "wall time p50", "p95", "max", "runs"}}
	var raw [][]string
	failedAll := 0
	order := []string{"node make-active", "node remove (a standby)", "node remove (the active node)", "app deploy", "app rollback"}
	for _, op := range order {
		var walls []time.Duration
		failed, total, posts := 0, 0, 0
		for _, o := range ops {
			if o.Op == op {
				walls = append(walls, o.Wall)
				failed += o.Failed
				total += o.Total
				posts += o.PostsFailed
			}
		}
		failedAll += failed
		s := Summarize(Seconds(walls))
		tbl.Rows = append(tbl.Rows, append([]string{op, strconv.Itoa(failed), strconv.Itoa(posts), strconv.Itoa(total)}, summaryCells(s)...))
	}
	tbl.Rows = append(tbl.Rows, []string{"certificate renewal", "see TLS", "", "", "", "", "", "measured in the TLS section (HTTPS load)"})
	for _, o := range ops {
		raw = append(raw, []string{o.Op, strconv.Itoa(o.Run), strconv.FormatFloat(o.Wall.Seconds(), 'f', 3, 64), strconv.Itoa(o.Failed), strconv.Itoa(o.PostsFailed), strconv.Itoa(o.Total)})
	}
	res.Tables = append(res.Tables, tbl)
	ms := Summarize(peaks)
	bs := Summarize(bases)
	res.Tables = append(res.Tables, Table{Title: "Memory of a node during `app deploy` (MiB, summed VmRSS of everything the droplet runs)",
		Columns: []string{"before the deploy (p50)", "peak during the deploy (max over nodes and runs)", "peak p50", "samples (nodes × runs)"},
		Rows:    [][]string{{fnum(bs.P50, "MiB"), fnum(ms.Max, "MiB"), fnum(ms.P50, "MiB"), strconv.Itoa(ms.N)}}})
	res.Targets = append(res.Targets, target("0 failed requests across planned moves and deploys", float64(failedAll), 0, "failed"))
	res.Raw = append(res.Raw, r.WriteCSV("planned.csv", []string{"command", "run", "wall_s", "failed", "posts_failed", "requests"}, raw))
}
