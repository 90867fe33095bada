package bench

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/poll"
)

// Config are the harness's knobs, from the environment (ConfigFromEnv).
type Config struct {
	BinDir string // dynia, dynia-pull, dynia-demo-app (`make build`)
	// Runs is the power-offs per failover row (BENCH_RUNS, default 20, the
	// issue's minimum) and sets the other counts in proportion.
	Runs int
	// Only limits the run to these benchmarks (BENCH_ONLY=failover,cost).
	Only []string
	// Quick shrinks everything for CI and development (BENCH_QUICK=1).
	Quick bool
	// ResultsDir holds one directory per run (BENCH_RESULTS, default
	// bench/results); Report is the generated page (docs/benchmarks.md),
	// Notes its hand-written part (bench/notes.md).
	ResultsDir, Report, Notes string
	RunID                     string // the run's directory name (date and time)

	ConvergenceSizes []int         // BENCH_SIZES, default 1,3,10,20
	ConvergenceRuns  int           // state changes per size
	Reloads          int           // BENCH_RELOADS: config changes per reload-safety run (default 1000)
	PartitionFor     time.Duration // the VRRP partition (60 s)
	PlannedRuns      int           // per planned operation
	TLSFor           time.Duration // per TLS load run
	CostWindow       time.Duration // BENCH_COST_WINDOW: idle measurement per poll interval (default 3m)
}

// Benchmarks in the order they run and appear in the report.
var Benchmarks = []struct {
	Name, Title string
	run         func(*Runner, *Result)
}{
	{"failover", "Failover: the active droplet powered off", runFailover},
	{"partition", "VRRP partition between healthy nodes", runPartition},
	{"convergence", "Convergence: one state change to every node", runConvergence},
	{"reload", "Reload safety under load", runReload},
	{"planned", "Planned moves and releases", runPlanned},
	{"tls", "TLS through the Reserved IP", runTLS},
	{"cost", "Cost: footprint, requests, calls, the bill", runCost},
}

// ConfigFromEnv reads the knobs; a bad value is an error naming it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{BinDir: getenv("DYNIA_BIN_DIR"), Runs: 20, ResultsDir: "bench/results", Report: "docs/benchmarks.md",
		Notes: "bench/notes.md", ConvergenceSizes: []int{1, 3, 10, 20}, Reloads: 1000,
		PartitionFor: 60 * time.Second, TLSFor: 20 * time.Second, CostWindow: 3 * time.Minute}
	if c.BinDir == "" {
		c.BinDir = "bin"
	}
	abs, err := filepath.Abs(c.BinDir)
	if err != nil {
		return c, fmt.Errorf("DYNIA_BIN_DIR %q: %w", c.BinDir, err)
	}
	c.BinDir = abs
	if v := getenv("BENCH_QUICK"); v != "" {
		q, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("BENCH_QUICK %q: want 1 or 0", v)
		}
		c.Quick = q
	}
	if c.Quick {
		c.Runs, c.ConvergenceSizes, c.Reloads = 2, []int{1, 3}, 20
		c.PartitionFor, c.TLSFor, c.CostWindow = 20*time.Second, 5*time.Second, 30*time.Second
	}
	if v := getenv("BENCH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return c, fmt.Errorf("BENCH_RUNS %q: want a count from 1 to 1000", v)
		}
		c.Runs = n
	}
	if v := getenv("BENCH_RELOADS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return c, fmt.Errorf("BENCH_RELOADS %q: want a count from 1 to 100000", v)
		}
		c.Reloads = n
	}
	if v := getenv("BENCH_COST_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > time.Hour {
			return c, fmt.Errorf("BENCH_COST_WINDOW %q: want a duration from 10s to 1h, like 3m", v)
		}
		c.CostWindow = d
	}
	if v := getenv("BENCH_SIZES"); v != "" {
		c.ConvergenceSizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 50 {
				return c, fmt.Errorf("BENCH_SIZES %q: want node counts from 1 to 50, comma-separated", v)
			}
			c.ConvergenceSizes = append(c.ConvergenceSizes, n)
		}
		slices.Sort(c.ConvergenceSizes)
	}
	if v := getenv("BENCH_ONLY"); v != "" {
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if !slices.ContainsFunc(Benchmarks, func(b struct {
				Name, Title string
				run         func(*Runner, *Result)
			}) bool {
				return b.Name == f
			}) {
				return c, fmt.Errorf("BENCH_ONLY %q: unknown benchmark %q (have %s)", v, f, strings.Join(benchmarkNames(), ", "))
			}
			c.Only = append(c.Only, f)
		}
	}
	for env, p := range map[string]*string{"BENCH_RESULTS": &c.ResultsDir, "BENCH_REPORT": &c.Report} {
		if v := getenv(env); v != "" {
			*p = v
		}
	}
	c.ConvergenceRuns = max(2, c.Runs)
	c.PlannedRuns = max(1, c.Runs/4)
	c.RunID = time.Now().UTC().Format("2006-01-02T1504Z")
	return c, nil
}

func benchmarkNames() []string {
	var out []string
	for _, b := range Benchmarks {
		out = append(out, b.Name)
	}
	return out
}

// Selected reports whether a benchmark is part of this run.
func (c Config) Selected(name string) bool { return len(c.Only) == 0 || slices.Contains(c.Only, name) }

// Result is one benchmark's outcome in one run: what the report shows,
// stored as <name>.json next to its raw samples.
type Result struct {
	Name     string    `json:"name"`
	Title    string    `json:"title"`
	RunID    string    `json:"run_id"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	Quick    bool      `json:"quick"`
	// Method says what was measured and how (a paragraph of the report).
	Method  string   `json:"method"`
	Tables  []Table  `json:"tables"`
	Targets []Target `json:"targets,omitempty"`
	Plots   []Plot   `json:"plots,omitempty"`
	Raw     []string `json:"raw,omitempty"` // raw sample files in the run's directory
	Notes   []string `json:"notes,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Table is a table of formatted figures.
type Table struct {
	Title   string     `json:"title"`
	Columns []string   `json:"columns"`
	Rows    [][]string `json:"rows"`
}

// Target is an issue target and how this run did.
type Target struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	// Met: "yes", "no" (Gap says by how much) or "not run".
	Met string `json:"met"`
	Gap string `json:"gap,omitempty"`
}

// Plot is a PNG in the run's directory.
type Plot struct {
	File    string `json:"file"`
	Caption string `json:"caption"`
}

// Runner runs benchmarks and records their results.
type Runner struct {
	cfg Config
	out io.Writer
	dir string // this run's results directory
}

// fatal is a benchmark's abort (Runner.Fatalf), recovered by Run.
type fatal struct{ msg string }

// Logf prints a progress line.
func (r *Runner) Logf(format string, args ...any) {
	fmt.Fprintf(r.out, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// Fatalf aborts the running benchmark; its result records the message.
func (r *Runner) Fatalf(format string, args ...any) {
	panic(fatal{fmt.Sprintf(format, args...)})
}

// WaitFor polls cond (internal/poll's backoff) until it holds, or aborts
// after timeout.
func (r *Runner) WaitFor(timeout time.Duration, cond func() error) {
	if err := poll.Within(timeout, cond); err != nil {
		r.Fatalf("not after %v: %v", timeout, err)
	}
}

// WriteCSV writes raw samples to the run's directory and returns the file
// name.
func (r *Runner) WriteCSV(name string, header []string, rows [][]string) string {
	f, err := os.Create(filepath.Join(r.dir, name))
	if err != nil {
		r.Fatalf("raw samples: %v", err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	_ = w.Write(header)
	_ = w.WriteAll(rows)
	if err := w.Error(); err != nil {
		r.Fatalf("raw samples %s: %v", name, err)
	}
	return name
}

// Path is a file in the run's directory.
func (r *Runner) Path(name string) string { return filepath.Join(r.dir, name) }

// Run runs the selected benchmarks, stores each result and regenerates
// the report from the newest result of every benchmark.
func Run(cfg Config, out io.Writer) error {
	for _, b := range []string{"dynia", "dynia-pull", "dynia-demo-app"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return fmt.Errorf("%s not in %s (DYNIA_BIN_DIR; `make build`): %w", b, cfg.BinDir, err)
		}
	}
	if os.Geteuid() != 0 {
		return errors.New("the benchmarks run sandboxes: run as root")
	}
	r := &Runner{cfg: cfg, out: out, dir: filepath.Join(cfg.ResultsDir, cfg.RunID)}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	cfg.PrintPlan(out)
	m := MachineInfo(cfg.BinDir)
	failed := 0
	for _, b := range Benchmarks {
		if !cfg.Selected(b.Name) {
			continue
		}
		res := &Result{Name: b.Name, Title: b.Title, RunID: cfg.RunID, Started: time.Now().UTC(), Machine: m, Quick: cfg.Quick}
		r.Logf("== %s", b.Name)
		func() {
			defer func() {
				if p := recover(); p != nil {
					if f, ok := p.(fatal); ok {
						res.Error = f.msg
					} else {
						res.Error = fmt.Sprintf("panic: %v\n%s", p, debug.Stack())
					}
					r.Logf("%s failed: %s", b.Name, res.Error)
					failed++
				}
			}()
			b.run(r, res)
		}()
		res.Finished = time.Now().UTC()
		if err := writeJSON(filepath.Join(r.dir, b.Name+".json"), res); err != nil {
			return err
		}
		r.Logf("== %s done in %v", b.Name, res.Finished.Sub(res.Started).Round(time.Second))
	}
	if err := WriteReport(cfg.ResultsDir, cfg.Notes, cfg.Report); err != nil {
		return err
	}
	r.Logf("report: %s; raw samples and plots: %s", cfg.Report, r.dir)
	if failed > 0 {
		return fmt.Errorf("%d benchmark(s) failed (their errors are in the report)", failed)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Formatting helpers for tables.

// fsec formats seconds ("3.65 s"; "—" for NaN, "not recovered" for +Inf,
// a lost run's rank in a Summary).
func fsec(x float64) string {
	if x != x {
		return "—"
	}
	if math.IsInf(x, 1) {
		return "not recovered"
	}
	return strconv.FormatFloat(x, 'f', 2, 64) + " s"
}

// summaryCells are a summary's p50, p95, max and run count cells.
func summaryCells(s Summary) []string {
	n := strconv.Itoa(s.N)
	if s.Lost > 0 {
		n += fmt.Sprintf(" (%d not recovered)", s.Lost)
	}
	return []string{fsec(s.P50), fsec(s.P95), fsec(s.Max), n}
}

// target compares a measured value with a goal (lower is better).
func target(goal string, measured, limit float64, unit string) Target {
	t := Target{Goal: goal, Measured: fnum(measured, unit)}
	switch {
	case measured != measured:
		t.Met = "not run"
	case measured <= limit:
		t.Met = "yes"
	case math.IsInf(measured, 1):
		t.Met, t.Gap = "no", "runs not recovered"
	default:
		t.Met = "no"
		t.Gap = "+" + fnum(measured-limit, unit)
	}
	return t
}

func fnum(x float64, unit string) string {
	if x != x {
		return "—"
	}
	if math.IsInf(x, 1) {
		return "not recovered"
	}
	prec := 2
	if x >= 100 || x == float64(int64(x)) {
		prec = 0
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	if unit != "" {
		s += " " + unit
	}
	return s
}
