package bench

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/render"
)

// serverStates reads `show stat` from a node's HAProxy admin socket (a
// unix socket in the droplet's run directory, reachable from the root
// namespace) and returns the app backend's servers: id → serving (UP and
// weight > 0; a drained server is not).
func serverStates(sock string) (map[string]bool, error) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var cols []string
	out := map[string]bool{}
	for sc.Scan() {
		line := sc.Text()
		if h, ok := strings.CutPrefix(line, "# "); ok {
			cols = strings.Split(h, ",")
			continue
		}
		f := strings.Split(line, ",")
		if len(cols) == 0 || len(f) < len(cols) {
			continue
		}
		get := func(name string) string {
			if i := slices.Index(cols, name); i >= 0 {
				return f[i]
			}
			return ""
		}
		if get("pxname") != render.BackendName || get("svname") == "BACKEND" || get("svname") == "FRONTEND" {
			continue
		}
		w, _ := strconv.Atoi(get("weight"))
		out[get("svname")] = strings.HasPrefix(get("status"), "UP") && w > 0
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cols == nil {
		return nil, fmt.Errorf("no stats from %s", sock)
	}
	return out, nil
}

// converged is nil when every server is as want says (serving or not).
func converged(got map[string]bool, want map[string]bool) error {
	for id, w := range want {
		if got[id] != w {
			return fmt.Errorf("server %s serving=%v, want %v", id, got[id], w)
		}
	}
	return nil
}

// toggle drains node id (or makes it ready again) with a state write and
// returns how long until every node's HAProxy served the new backend set,
// polled every 20 ms on each node's admin socket.
func (r *Runner) toggle(sb *Sandbox, name, id string, drain bool, nodes []NodeRow) time.Duration {
	want := map[string]bool{}
	for _, n := range nodes {
		want[n.ID] = !(drain && n.ID == id)
	}
	lc := cluster.Ready
	if drain {
		lc = cluster.Draining
	}
	written := time.Now()
	sb.Update(name, func(st *cluster.State) error {
		n := st.Node(id)
		if n == nil {
			return fmt.Errorf("no node %s", id)
		}
		n.Lifecycle = lc
		return nil
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Time
	var failure error
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sock := filepath.Join(sb.DropletDir(n.DropletID), "run", "haproxy.sock")
			deadline := time.Now().Add(time.Minute)
			for {
				got, err := serverStates(sock)
				if err == nil {
					err = converged(got, want)
				}
				if err == nil {
					mu.Lock()
					if now := time.Now(); now.After(last) {
						last = now
					}
					mu.Unlock()
					return
				}
				if time.Now().After(deadline) {
					mu.Lock()
					failure = fmt.Errorf("node %s: %w", n.ID, err)
					mu.Unlock()
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if failure != nil {
		r.Fatalf("convergence: %v", failure)
	}
	return last.Sub(written)
}

// confirm checks through every node's public IP that requests reach
// exactly the serving nodes (a drained only node: HAProxy's 503).
func confirm(nodes []NodeRow, drained string) error {
	want := map[string]bool{}
	for _, n := range nodes {
		if n.ID != drained {
			want[n.ID] = true
		}
	}
	for _, n := range nodes {
		got := map[string]bool{}
		for i := 0; i < 3*len(nodes); i++ {
			body, err := httpGet("http://" + n.PublicIP + "/")
			if err != nil {
				if len(want) == 0 && strings.Contains(err.Error(), "503") {
					continue
				}
				return fmt.Errorf("through %s: %w", n.ID, err)
			}
			id, _, _ := strings.Cut(body, " ")
			got[id] = true
		}
		for id := range got {
			if !want[id] {
				return fmt.Errorf("through %s: answered by %s, which is drained", n.ID, id)
			}
		}
		for id := range want {
			if !got[id] {
				return fmt.Errorf("through %s: no answer from %s", n.ID, id)
			}
		}
	}
	return nil
}

func runConvergence(r *Runner, res *Result) {
	res.Method = fmt.Sprintf("One cluster grown to each size in turn (`node add`), poll interval 2 s (dynia-pull's default, "+
		"jittered ±20 %%). A change is one state write (compare-and-swap, as the CLI writes) that drains the last node or makes it "+
		"ready again (for 1 node: the only one); converged = every node's HAProxy serves the new backend set: its admin socket "+
		"(`show stat`, polled every 20 ms on every node) shows each server UP with weight > 0 or drained, as the state says. "+
		"After the first change at each size, requests through every node's public IP confirm it (the drained node never answers). "+
		"%d changes per size.", r.cfg.ConvergenceRuns)
	sb := r.UpSandbox()
	defer sb.Down()
	const poll = 2 * time.Second
	tbl := Table{Title: "State written → every node serving the new backend set",
		Columns: []string{"nodes", "p50", "p95", "max", "changes", "target p95 ≤ poll + 1 s"}}
	var raw [][]string
	var points []convPoint
	worst, worstSize := math.NaN(), 0
	have := 0
	for _, size := range r.cfg.ConvergenceSizes {
		if have == 0 {
			sb.NewCluster("cv", 1)
			have = 1
		}
		for have < size { // node add takes at most 10 at a time (--count 1-10)
			n := min(size-have, 10)
			sb.MustCLI("node", "add", "--name", "cv", "--count", strconv.Itoa(n), "--timeout", "10m")
			sb.WaitUp("cv", 10*time.Minute)
			have += n
		}
		nodes := sb.Nodes("cv")
		last := nodes[len(nodes)-1].ID
		var ds []time.Duration
		for i := 0; i < r.cfg.ConvergenceRuns; i++ {
			drain := i%2 == 0
			d := r.toggle(sb, "cv", last, drain, nodes)
			ds = append(ds, d)
			raw = append(raw, []string{strconv.Itoa(size), strconv.Itoa(i + 1), strconv.FormatBool(drain), strconv.FormatFloat(d.Seconds(), 'f', 3, 64)})
			if i == 0 {
				// Polled, not once: a worker of the previous configuration
				// can still take a new connection for a moment after the
				// reload (the admin socket speaks for the new one).
				r.WaitFor(time.Minute, func() error {
					if err := confirm(nodes, last); err != nil {
						return fmt.Errorf("convergence at %d nodes: HAProxy said converged but requests disagree: %w", size, err)
					}
					return nil
				})
			}
			time.Sleep(time.Duration(i%4) * 300 * time.Millisecond) // spread changes over the poll phase
		}
		s := Summarize(Seconds(ds))
		t := target("", s.P95, (poll + time.Second).Seconds(), "s")
		mark := t.Met
		if t.Gap != "" {
			mark += " (" + t.Gap + ")"
		}
		tbl.Rows = append(tbl.Rows, append(append([]string{strconv.Itoa(size)}, summaryCells(s)...), mark))
		points = append(points, convPoint{size, s})
		r.Logf("convergence %d nodes: p50 %.2f s p95 %.2f s", size, s.P50, s.P95)
		if math.IsNaN(worst) || s.P95 > worst {
			worst, worstSize = s.P95, size
		}
	}
	t := target("convergence p95 ≤ poll interval + 1 s (3 s) at every size", worst, (poll + time.Second).Seconds(), "s")
	t.Measured += fmt.Sprintf(" (the worst size: %d nodes)", worstSize)
	res.Targets = append(res.Targets, t)
	res.Tables = append(res.Tables, tbl)
	res.Raw = append(res.Raw, r.WriteCSV("convergence.csv", []string{"nodes", "change", "drain", "seconds"}, raw))
	if p := r.plotConvergence(points); p != nil {
		res.Plots = append(res.Plots, *p)
	}
}

type convPoint struct {
	nodes int
	s     Summary
}
