// Package bench is dynia's benchmark harness: `make bench` (root) runs every
// benchmark in sandboxes of its own (internal/sandbox, driven through the
// dynia CLI as a user would), writes each run's raw samples to
// bench/results/<run>/ (CSV and JSON) with plots (PNG), and regenerates
// docs/benchmarks.md from the newest result of every benchmark.
//
// Benchmarks report; they never assert. Every comparison is measured in the
// same run on the same kind of sandbox, side by side. Targets are printed
// next to the figures with the gap where one is missed.
//
// Layout: run.go (knobs, the run loop, results), estimate.go (how long a
// run takes: `dynia-bench plan`), one file per benchmark
// (failover.go with recipe.go, partition.go, convergence.go, reload.go,
// planned.go, tls.go, cost.go), and the plumbing: sandbox.go (a sandbox and
// the CLI), load.go (bounded request loops), stats.go (percentiles),
// report.go (docs/benchmarks.md), plot.go, machine.go.
package bench
