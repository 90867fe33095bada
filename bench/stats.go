package bench

import (
	"math"
	"sort"
	"time"
)

// Summary is a sample's nearest-rank percentiles. Values are in the
// sample's unit (seconds for times). N counts the samples; NaN samples (a
// run that did not recover within its bound) are counted in Lost and rank
// above every other sample: a percentile that falls on one is +Inf (shown
// as "not recovered"), so lost runs cannot make the figures look better.
// Mean is over the recovered samples.
type Summary struct {
	N    int     `json:"n"`
	Lost int     `json:"lost,omitempty"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// Summarize returns the summary of xs (nearest-rank percentiles: the
// smallest value with at least p % of the sample at or below it).
func Summarize(xs []float64) Summary {
	var v []float64
	lost := 0
	for _, x := range xs {
		if math.IsNaN(x) {
			lost++
			continue
		}
		v = append(v, x)
	}
	s := Summary{N: len(xs), Lost: lost}
	if len(xs) == 0 {
		s.P50, s.P95, s.P99, s.Max, s.Mean = math.NaN(), math.NaN(), math.NaN(), math.NaN(), math.NaN()
		return s
	}
	sort.Float64s(v)
	s.Mean = math.NaN()
	if len(v) > 0 {
		sum := 0.0
		for _, x := range v {
			sum += x
		}
		s.Mean = sum / float64(len(v))
	}
	for range lost {
		v = append(v, math.Inf(1))
	}
	s.P50, s.P95, s.P99 = Percentile(v, 50), Percentile(v, 95), Percentile(v, 99)
	s.Max = v[len(v)-1]
	return s
}

// Percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted,
// which must be sorted ascending and non-empty.
func Percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Seconds converts durations to seconds; a negative duration (not
// recovered) becomes NaN.
func Seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		if d < 0 {
			out[i] = math.NaN()
			continue
		}
		out[i] = d.Seconds()
	}
	return out
}
