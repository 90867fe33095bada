package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// reloadPoll is the nodes' poll interval in the reload-safety runs: it
// paces the changes (each is waited for on every node), and at the default
// 2 s a thousand of them take over half an hour per variant. What is
// measured, failed requests across reloads, does not depend on it; a
// faster pace only leaves fewer requests between two reloads.
const reloadPoll = 500 * time.Millisecond

// reloadRun is one variant's reload-safety run.
type reloadRun struct {
	Variant             string
	Changes             int
	Gets, GetsFailed    int
	Posts, PostsFailed  int
	ConvergenceP50, P95 float64
}

// reloads makes changes state changes (the last node drained, then ready
// again, …), each waited for on every node, under a GET loop (new
// connections) and a keep-alive POST loop through every node's public IP
// (one request every 40 ms each).
func (r *Runner) reloads(sb *Sandbox, name, variant string, changes int) reloadRun {
	nodes := sb.Nodes(name)
	var loops []*Loop
	var posts []*Loop
	bound := time.Duration(changes)*10*time.Second + time.Minute
	for _, n := range nodes {
		loops = append(loops, GetLoop("http://"+n.PublicIP+"/", 40*time.Millisecond, bound))
		posts = append(posts, PostLoop("http://"+n.PublicIP+"/", 40*time.Millisecond, bound))
	}
	time.Sleep(time.Second)
	last := nodes[len(nodes)-1].ID
	var ds []time.Duration
	for i := 0; i < changes; i++ {
		ds = append(ds, r.toggle(sb, name, last, i%2 == 0, nodes))
		if (i+1)%100 == 0 {
			r.Logf("reload %s: %d of %d changes", variant, i+1, changes)
		}
	}
	if changes%2 == 1 { // leave the node ready
		r.toggle(sb, name, last, false, nodes)
	}
	time.Sleep(time.Second)
	run := reloadRun{Variant: variant, Changes: changes}
	for _, l := range loops {
		o := Analyze(l.Stop())
		run.Gets += o.Total
		run.GetsFailed += o.Failed
	}
	for _, l := range posts {
		o := Analyze(l.Stop())
		run.Posts += o.Total
		run.PostsFailed += o.Failed
	}
	s := Summarize(Seconds(ds))
	run.ConvergenceP50, run.P95 = s.P50, s.P95
	r.Logf("reload %s: %d changes; GETs %d/%d failed, POSTs %d/%d failed", variant, changes, run.GetsFailed, run.Gets, run.PostsFailed, run.Posts)
	return run
}

func perMillion(failed, total int) float64 {
	if total == 0 {
		return 0
	}
	return float64(failed) / float64(total) * 1e6
}

func runReload(r *Runner, res *Result) {
	res.Method = fmt.Sprintf("Three nodes. %d configuration changes (a state write draining the third node, then one making it "+
		"ready again, …; each changes haproxy.cfg, so every node reloads HAProxy, and each is waited for on every node's admin "+
		"socket before the next) under steady load through every node's public IP: GETs on new connections and POSTs on kept-alive "+
		"connections (Go's client never re-sends a POST, so a connection a reload closes under a request is a failure), one "+
		"request every 40 ms per loop. Then the same run with `option idle-close-on-response` left out of haproxy.cfg "+
		"(pull.json `bench_no_idle_close`, a benchmark-only knob; dynia-pull restarted to apply it). The nodes poll every %v "+
		"(pull.json `poll_interval`; the default is 2 s) so that the changes come about one a second: the pace, not the outcome, "+
		"depends on it.", r.cfg.Reloads, reloadPoll)
	sb := r.UpSandbox()
	defer sb.Down()
	sb.NewCluster("rl", 3)
	for _, n := range sb.Nodes("rl") {
		sb.EditPullConfig(n.DropletID, func(m map[string]any) { m["poll_interval"] = reloadPoll.String() })
	}
	sb.WaitUp("rl", 2*time.Minute)
	runs := []reloadRun{r.reloads(sb, "rl", "dynia (option idle-close-on-response)", r.cfg.Reloads)}
	for _, n := range sb.Nodes("rl") {
		sb.EditPullConfig(n.DropletID, func(m map[string]any) { m["bench_no_idle_close"] = true })
	}
	r.WaitFor(time.Minute, func() error {
		for _, n := range sb.Nodes("rl") {
			b, err := os.ReadFile(filepath.Join(sb.DropletDir(n.DropletID), "root", "etc", "haproxy", "haproxy.cfg"))
			if err != nil || strings.Contains(string(b), "idle-close-on-response") {
				return fmt.Errorf("node %s still renders idle-close-on-response (%v)", n.ID, err)
			}
		}
		return nil
	})
	sb.WaitUp("rl", 2*time.Minute)
	runs = append(runs, r.reloads(sb, "rl", "without idle-close-on-response", r.cfg.Reloads))

	tbl := Table{Title: "Failed requests across HAProxy reloads",
		Columns: []string{"haproxy.cfg", "changes", "GETs (new connection) failed", "keep-alive POSTs failed", "failed per million", "change applied on all nodes p50 / p95"}}
	var raw [][]string
	for _, run := range runs {
		pm := perMillion(run.GetsFailed+run.PostsFailed, run.Gets+run.Posts)
		tbl.Rows = append(tbl.Rows, []string{run.Variant, strconv.Itoa(run.Changes),
			fmt.Sprintf("%d of %d", run.GetsFailed, run.Gets), fmt.Sprintf("%d of %d", run.PostsFailed, run.Posts),
			fnum(pm, ""), fsec(run.ConvergenceP50) + " / " + fsec(run.P95)})
		raw = append(raw, []string{run.Variant, strconv.Itoa(run.Changes), strconv.Itoa(run.Gets), strconv.Itoa(run.GetsFailed),
			strconv.Itoa(run.Posts), strconv.Itoa(run.PostsFailed)})
		if strings.HasPrefix(run.Variant, "dynia") {
			res.Targets = append(res.Targets, target("0 failed requests per million across reloads", pm, 0, "per million"))
		}
	}
	res.Tables = append(res.Tables, tbl)
	res.Raw = append(res.Raw, r.WriteCSV("reload.csv", []string{"variant", "changes", "gets", "gets_failed", "posts", "posts_failed"}, raw))
}
