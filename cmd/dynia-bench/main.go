// Command dynia-bench runs dynia's benchmarks in the sandbox and writes
// docs/benchmarks.md (package bench; `make bench`). Root. Knobs are
// environment variables: BENCH_RUNS, BENCH_ONLY, BENCH_QUICK,
// BENCH_RELOADS, BENCH_SIZES, BENCH_COST_WINDOW, BENCH_RESULTS, BENCH_REPORT,
// DYNIA_BIN_DIR. `dynia-bench report` only regenerates the report from
// stored results; `dynia-bench plan` prints the counts and how long the run
// should take on a 2-core machine, without running anything.
package main

import (
	"fmt"
	"os"

	"github.com/dynia/dynia/bench"
)

func main() {
	cfg, err := bench.ConfigFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dynia-bench:", err)
		os.Exit(2)
	}
	if len(os.Args) == 2 && os.Args[1] == "report" {
		if err := bench.WriteReport(cfg.ResultsDir, cfg.Notes, cfg.Report); err != nil {
			fmt.Fprintln(os.Stderr, "dynia-bench:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 2 && os.Args[1] == "plan" {
		cfg.PrintPlan(os.Stdout)
		return
	}
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: dynia-bench [report|plan]  (knobs: BENCH_RUNS, BENCH_ONLY, BENCH_QUICK, BENCH_RELOADS, BENCH_SIZES, BENCH_COST_WINDOW)")
		os.Exit(2)
	}
	if err := bench.Run(cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dynia-bench:", err)
		os.Exit(1)
	}
}
