package pull_test

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

// TestBenchPull measures convergence latency (state written → every node
// serving the new backend set) for 1, 3 and 10 nodes, and dynia-pull's idle
// RSS and CPU in bare namespaces (`make bench` measures in the sandbox). It
// runs only with DYNIA_BENCH=1, because
// timings are measurements, not assertions.
func TestBenchPull(t *testing.T) {
	if os.Getenv("DYNIA_BENCH") != "1" {
		t.Skip("set DYNIA_BENCH=1")
	}
	for _, n := range []int{1, 3, 10} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			const poll = 2 * time.Second
			e := newEnv(t, n+1, n, poll)
			extra := e.ids[n]
			base := e.ids[:n]
			e.setLifecycle(extra, cluster.Provisioning)
			e.converge(e.put(), base...)
			var times []time.Duration
			for i := 0; i < 10; i++ {
				if i%2 == 0 {
					e.setLifecycle(extra, cluster.Ready)
					times = append(times, e.converge(e.put(), append(append([]string(nil), base...), extra)...))
				} else {
					e.setLifecycle(extra, cluster.Removing)
					times = append(times, e.converge(e.put(), base...))
				}
			}
			// Idle: 20 s without changes, then RSS and CPU per dynia-pull.
			cpu0 := cpuTicks(e.pids)
			time.Sleep(20 * time.Second)
			cpu := float64(cpuTicks(e.pids)-cpu0) / 100 / 20 / float64(len(e.pids)) * 100
			var rss int
			for _, pid := range e.pids {
				rss += rssKB(pid)
			}
			fmt.Printf("BENCH nodes=%d poll=%v changes=%d convergence_p50=%v p95=%v max=%v idle_rss_kb_avg=%d idle_cpu_pct_avg=%.2f goos=%s cpus=%d\n",
				n, poll, len(times), median(times).Round(time.Millisecond), p95(times).Round(time.Millisecond),
				p95all(times).Round(time.Millisecond), rss/len(e.pids), cpu, runtime.GOOS, runtime.NumCPU())
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := sorted(ds)
	return s[len(s)/2]
}

func p95all(ds []time.Duration) time.Duration { s := sorted(ds); return s[len(s)-1] }

func sorted(ds []time.Duration) []time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

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

// cpuTicks sums utime+stime (clock ticks, 100/s) of pids.
func cpuTicks(pids []int) int {
	total := 0
	for _, pid := range pids {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 12 {
				u, _ := strconv.Atoi(f[11])
				k, _ := strconv.Atoi(f[12])
				total += u + k
			}
		}
	}
	return total
}

// TestBenchElection measures VRRP elections on three fresh nodes, over the
// WireGuard mesh and over the VPC (mesh_disabled, no firewall): from the
// last keepalived start to the last VRRP transition, when exactly one node
// is MASTER. DYNIA_BENCH=1 only (DYNIA_BENCH_RUNS runs per mode, default
// 3): timings are measurements, not assertions.
func TestBenchElection(t *testing.T) {
	if os.Getenv("DYNIA_BENCH") != "1" {
		t.Skip("set DYNIA_BENCH=1")
	}
	runs := 3
	if v, err := strconv.Atoi(os.Getenv("DYNIA_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	for _, mode := range []string{"mesh", "vpc"} {
		var times []time.Duration
		masters := 0
		for r := 0; r < runs; r++ {
			t.Run(fmt.Sprintf("%s-%d", mode, r), func(t *testing.T) {
				e := newEnvWith(t, 3, 3, time.Second, envOptions{noMesh: mode == "vpc"})
				all := []int{0, 1, 2}
				testutil.WaitFor(t, 60*time.Second, func() error { _, err := oneMaster(e.vrrpStates(), all); return err })
				lastStart, settled, m := e.election(all)
				times = append(times, settled.Sub(lastStart))
				masters += m
			})
		}
		fmt.Printf("BENCH election=%s runs=%d keepalived_start_to_one_master median=%v max=%v master_transitions=%d\n",
			mode, len(times), median(times).Round(10*time.Millisecond), p95all(times).Round(10*time.Millisecond), masters)
	}
}
