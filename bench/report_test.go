package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWriteReport stores three runs' results and checks that the page shows
// the newest full result of each benchmark (a quick one only where there is
// no full one), its tables, targets, plots (linked
// relative to the page) and the notes.
func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "bench", "results")
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	write := func(run string, res Result) {
		t.Helper()
		res.RunID = run
		if err := os.MkdirAll(filepath.Join(results, run), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := writeJSON(filepath.Join(results, run, res.Name+".json"), res); err != nil {
			t.Fatal(err)
		}
	}
	m := Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.1", OS: "Debian 12", Versions: map[string]string{"haproxy": "HAProxy 2.6"}}
	write("old", Result{Name: "failover", Title: "Failover", Finished: t0, Machine: m,
		Tables: []Table{{Title: "old table", Columns: []string{"a"}, Rows: [][]string{{"stale"}}}}})
	write("new", Result{Name: "failover", Title: "Failover", Started: t0.Add(time.Hour), Finished: t0.Add(2 * time.Hour), Machine: m,
		Method:  "Powered off.",
		Tables:  []Table{{Title: "Outage", Columns: []string{"setup", "p50"}, Rows: [][]string{{"dynia", "2.90 s"}, {"recipe|x", "2.60 s"}}}},
		Targets: []Target{{Goal: "p50 ≤ 4 s", Measured: "2.90 s", Met: "yes"}},
		Plots:   []Plot{{File: "failover.png", Caption: "outages"}}, Raw: []string{"failover.csv"}})
	// A later quick run loses to a full one; a quick result shows where
	// there is nothing else.
	write("quick", Result{Name: "failover", Title: "Failover", Finished: t0.Add(3 * time.Hour), Machine: m, Quick: true,
		Tables: []Table{{Title: "quick table", Columns: []string{"a"}, Rows: [][]string{{"too few runs"}}}}})
	write("old", Result{Name: "cost", Title: "Cost", Finished: t0, Machine: m, Error: "sandbox up: exit 1", Quick: true})
	notes := filepath.Join(dir, "notes.md")
	if err := os.WriteFile(notes, []byte("### Running\n\nsudo make bench\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "docs", "benchmarks.md")
	if err := WriteReport(results, notes, page); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	for _, want := range []string{
		"| CPU | Test CPU, 2 cores |",
		"| failover | p50 ≤ 4 s | 2.90 s | yes |  |",
		"## 1. Failover",
		"Run `new`",
		"**quick mode**",
		"Powered off.",
		"| setup | p50 |\n|---|---|\n| dynia | 2.90 s |\n| recipe\\|x | 2.60 s |",
		"![outages](../bench/results/new/failover.png)",
		"[failover.csv](../bench/results/new/failover.csv)",
		"## 2. Cost",
		"**The benchmark failed:** `sandbox up: exit 1`",
		"## Notes\n\n### Running",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "stale") || strings.Contains(got, "too few runs") {
		t.Errorf("report shows the older or the quick failover result:\n%s", got)
	}
	if strings.Index(got, "## 1. Failover") > strings.Index(got, "## 2. Cost") {
		t.Error("sections are not in the order of Benchmarks")
	}
}
