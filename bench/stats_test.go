package bench

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestSummarize(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	ten := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	for _, tc := range []struct {
		name string
		in   []float64
		want Summary
	}{
		{"one", []float64{3}, Summary{N: 1, P50: 3, P95: 3, P99: 3, Max: 3, Mean: 3}},
		// Nearest rank: p50 of 1..10 is the 5th value, p95 the 10th.
		{"ten", ten, Summary{N: 10, P50: 5, P95: 10, P99: 10, Max: 10, Mean: 5.5}},
		{"even pair", []float64{2, 1}, Summary{N: 2, P50: 1, P95: 2, P99: 2, Max: 2, Mean: 1.5}},
		// A run that never recovered ranks above every other: here the
		// p95 and the max; the mean is of the recovered runs.
		{"lost", []float64{1, nan, 3}, Summary{N: 3, Lost: 1, P50: 3, P95: inf, P99: inf, Max: inf, Mean: 2}},
		{"all lost", []float64{nan}, Summary{N: 1, Lost: 1, P50: inf, P95: inf, P99: inf, Max: inf, Mean: nan}},
		{"none", nil, Summary{P50: nan, P95: nan, P99: nan, Max: nan, Mean: nan}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Summarize(tc.in), cmpopts.EquateNaNs()); diff != "" {
				t.Errorf("Summarize(%v) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
	var hundred []float64
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, float64(i))
	}
	if s := Summarize(hundred); s.P50 != 50 || s.P95 != 95 || s.P99 != 99 || s.Max != 100 {
		t.Errorf("1..100: %+v, want p50 50, p95 95, p99 99, max 100", s)
	}
}

func TestSeconds(t *testing.T) {
	got := Seconds([]time.Duration{1500 * time.Millisecond, -1, 0})
	want := []float64{1.5, math.NaN(), 0}
	if diff := cmp.Diff(want, got, cmpopts.EquateNaNs()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
