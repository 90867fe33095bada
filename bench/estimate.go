package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Unit costs of the benchmarks on a 2-core machine, taken from quick runs
// on a shared one (load average 4–8; bench/notes.md "Running"), so the
// estimate errs long on a quiet machine.
const (
	// Failover: per sandbox (one per assignment time) the sandbox, a
	// two-node cluster, the switch to the sub-second advert and the
	// recipe's two droplets; per power-off, from the holder check to the
	// powered-off droplet back.
	estFailoverSetup   = 45 * time.Second
	estFailoverRun     = 11 * time.Second // instant assignment
	estFailoverRunSlow = 29 * time.Second // 5 s assignment (the power actions wait too)
	// Partition: sandbox, cluster, recipe; per setup the 10 s after
	// healing, the power-off and the recovery bound the recipe may use.
	estPartitionSetup = 90 * time.Second
	estPartitionAfter = 100 * time.Second
	// Convergence: the sandbox and first node, each node added, each change.
	estConvergenceSetup = 30 * time.Second
	estNodeAdd          = 15 * time.Second
	estConvergeChange   = 2800 * time.Millisecond
	// Reload: sandbox, three nodes, the restarts; each change at the 0.5 s
	// poll (reloadPoll).
	estReloadSetup  = 60 * time.Second
	estReloadChange = 900 * time.Millisecond
	// Planned: sandbox and three nodes; per run five commands under load
	// and two node adds.
	estPlannedSetup = 80 * time.Second
	estPlannedRun   = 70 * time.Second
	// TLS: sandbox, two nodes, DNS and the first certificate; each forced
	// renewal.
	estTLSSetup   = 50 * time.Second
	estTLSRenewal = 30 * time.Second
	// Cost: the CLI commands and cluster destroy; per poll interval a
	// settling pause and the window.
	estCostSetup = 100 * time.Second
)

// Estimate is how long each selected benchmark should take with these
// knobs on a 2-core machine, in the order they run.
func (c Config) Estimate() []struct {
	Name string
	Took time.Duration
} {
	var out []struct {
		Name string
		Took time.Duration
	}
	add := func(name string, d time.Duration) {
		if c.Selected(name) {
			out = append(out, struct {
				Name string
				Took time.Duration
			}{name, d})
		}
	}
	runs := time.Duration(c.Runs)
	add("failover", 2*estFailoverSetup+3*runs*(estFailoverRun+estFailoverRunSlow))
	add("partition", estPartitionSetup+2*(c.PartitionFor+estPartitionAfter))
	conv := estConvergenceSetup
	if len(c.ConvergenceSizes) > 0 {
		conv += time.Duration(c.ConvergenceSizes[len(c.ConvergenceSizes)-1]-1) * estNodeAdd
	}
	conv += time.Duration(len(c.ConvergenceSizes)*c.ConvergenceRuns) * estConvergeChange
	add("convergence", conv)
	add("reload", estReloadSetup+2*time.Duration(c.Reloads)*estReloadChange)
	add("planned", estPlannedSetup+time.Duration(c.PlannedRuns)*estPlannedRun)
	add("tls", estTLSSetup+2*c.TLSFor+time.Duration(c.PlannedRuns)*estTLSRenewal)
	add("cost", estCostSetup+2*(c.CostWindow+min(c.CostWindow/2, 30*time.Second)))
	return out
}

// PrintPlan writes the knobs' counts and the estimate.
func (c Config) PrintPlan(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "power-offs per failover row (BENCH_RUNS)\t%d\n", c.Runs)
	fmt.Fprintf(tw, "convergence sizes (BENCH_SIZES), changes per size\t%v, %d\n", c.ConvergenceSizes, c.ConvergenceRuns)
	fmt.Fprintf(tw, "reload-safety changes per variant (BENCH_RELOADS)\t%d\n", c.Reloads)
	fmt.Fprintf(tw, "planned-move runs, certificate renewals\t%d, %d\n", c.PlannedRuns, c.PlannedRuns)
	fmt.Fprintf(tw, "VRRP partition, TLS load per scheme, cost window per poll (BENCH_COST_WINDOW)\t%v, %v, %v\n", c.PartitionFor, c.TLSFor, c.CostWindow)
	var total time.Duration
	for _, e := range c.Estimate() {
		fmt.Fprintf(tw, "estimate: %s\t%v\n", e.Name, e.Took.Round(time.Minute))
		total += e.Took
	}
	fmt.Fprintf(tw, "estimate: all selected, on 2 cores\t%v\n", total.Round(time.Minute))
	_ = tw.Flush()
}
