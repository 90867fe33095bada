package bench

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := ConfigFromEnv(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Runs != 20 || c.Reloads != 1000 || !cmp.Equal(c.ConvergenceSizes, []int{1, 3, 10, 20}) || c.PartitionFor != time.Minute || c.CostWindow != 3*time.Minute ||
		c.ConvergenceRuns != 20 || c.PlannedRuns != 5 || !c.Selected("cost") {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ConfigFromEnv(env("BENCH_QUICK", "1", "BENCH_ONLY", "failover, cost", "BENCH_SIZES", "3,1", "BENCH_RUNS", "3", "BENCH_COST_WINDOW", "2m"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Quick || c.Runs != 3 || c.Reloads != 20 || !cmp.Equal(c.ConvergenceSizes, []int{1, 3}) ||
		!c.Selected("failover") || !c.Selected("cost") || c.Selected("tls") || c.PlannedRuns != 1 || c.CostWindow != 2*time.Minute {
		t.Errorf("quick, only, sizes, runs: %+v", c)
	}
	for _, tc := range []struct{ env []string }{
		{[]string{"BENCH_RUNS", "0"}},
		{[]string{"BENCH_RUNS", "many"}},
		{[]string{"BENCH_ONLY", "failover,speed"}},
		{[]string{"BENCH_SIZES", "1,x"}},
		{[]string{"BENCH_QUICK", "yes please"}},
		{[]string{"BENCH_RELOADS", "-1"}},
		{[]string{"BENCH_COST_WINDOW", "5"}},
		{[]string{"BENCH_COST_WINDOW", "2h"}},
	} {
		if _, err := ConfigFromEnv(env(tc.env...)); err == nil || !strings.Contains(err.Error(), tc.env[0]) {
			t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.env[0])
		}
	}
}

func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		measured, limit float64
		want            Target
	}{
		{3.2, 4, Target{Goal: "g", Measured: "3.20 s", Met: "yes"}},
		{4, 4, Target{Goal: "g", Measured: "4 s", Met: "yes"}},
		{4.5, 4, Target{Goal: "g", Measured: "4.50 s", Met: "no", Gap: "+0.50 s"}},
		{math.NaN(), 4, Target{Goal: "g", Measured: "—", Met: "not run"}},
		{math.Inf(1), 4, Target{Goal: "g", Measured: "not recovered", Met: "no", Gap: "runs not recovered"}},
	} {
		if diff := cmp.Diff(tc.want, target("g", tc.measured, tc.limit, "s")); diff != "" {
			t.Errorf("target(%v ≤ %v) (-want +got):\n%s", tc.measured, tc.limit, diff)
		}
	}
}
