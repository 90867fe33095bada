package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/testutil"
)

// BenchmarkFailover powers off the Reserved IP's holder b.N times under a
// steady request loop and reports the outage (first failed → first good
// request) and the time until the IP moved. Run by `make bench`:
//
//	go test -run XXX -bench Failover -benchtime 5x ./e2e
func BenchmarkFailover(b *testing.B) {
	for _, delay := range []time.Duration{0, 5 * time.Second} {
		b.Run(fmt.Sprintf("assign=%v", delay), func(b *testing.B) {
			e := upSandbox(b, "--action-delay", delay.String())
			e.mustRun("node", "create-ha", "--name", "bench", "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "3m", "--image", e.demo("v1"))
			e.mustRun("node", "add", "--name", "bench", "--count", "2", "--timeout", "3m")
			rip := e.reservedIP("bench")
			url := "http://" + rip + "/"
			var outages, moves []time.Duration
			failedTotal := 0
			for n := 0; n < b.N; n++ {
				waitAllUp(b, e, "bench")
				holder := e.ripHolder(rip)
				load := startLoad(url, 50*time.Millisecond, 3*time.Minute)
				time.Sleep(time.Second)
				off := time.Now()
				if err := e.cloud().PowerOff(context.Background(), holder); err != nil {
					b.Fatal(err)
				}
				testutil.WaitFor(b, 2*time.Minute, func() error {
					if h := e.ripHolder(rip); h == holder || h == 0 {
						return fmt.Errorf("Reserved IP still on %d", h)
					}
					return nil
				})
				moves = append(moves, time.Since(off))
				testutil.WaitFor(b, 2*time.Minute, func() error { return load.healthyFor(20) })
				_, failed, outage, _ := load.finish()
				outages = append(outages, outage)
				failedTotal += failed
				if err := e.cloud().PowerOn(context.Background(), holder); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(pct(outages, 50).Seconds(), "outage-p50-s")
			b.ReportMetric(pct(outages, 100).Seconds(), "outage-max-s")
			b.ReportMetric(pct(moves, 50).Seconds(), "rip-moved-p50-s")
			b.ReportMetric(float64(failedTotal)/float64(b.N), "failed-req/op")
			b.Logf("assign delay %v: outages %v; IP moved after %v", delay, outages, moves)
		})
	}
}

func waitAllUp(tb testing.TB, e *sandboxEnv, name string) {
	testutil.WaitFor(tb, 2*time.Minute, func() error {
		for _, r := range e.nodes(name) {
			if r.Status != "up" {
				return fmt.Errorf("node %s is %s", r.ID, r.Status)
			}
		}
		return nil
	})
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s) - 1) * p / 100
	return s[i]
}
