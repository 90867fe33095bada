// Package loadloop is the bounded open-loop request generator the
// benchmarks (bench) and the end-to-end tests (e2e) run against a cluster,
// and the analysis of what it saw: request counts, the longest outage and
// the answering nodes.
//
// A Loop starts one request every interval until stopped or its time bound,
// with at most MaxInFlight in flight. Requests do not wait for each other,
// so one hanging on a dead node does not hide when service came back: an
// outage is measured to within one interval.
package loadloop

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxInFlight bounds every loop's concurrency: a tick finding this many
// requests in flight is skipped.
const MaxInFlight = 64

// Loop is a running request loop; Start makes one.
type Loop struct {
	mu       sync.Mutex
	samples  []Sample
	inflight map[uint64]time.Time // start of every request not finished yet, by sequence number
	seq      uint64
	stop     chan struct{}
	done     chan struct{}
}

// Sample is one request: when it started, how long it took, and its
// outcome. Body is what do returned (for the demo app, the answer's first
// line, "<node id> <version>"); on a failure it is the error's text, so a
// failed sample keeps why.
type Sample struct {
	At   time.Time
	Took time.Duration
	OK   bool
	Body string
}

// Start calls do every interval for at most bound (both > 0), each call in
// a goroutine of its own. do returns the answer's body or an error.
func Start(do func(context.Context) (string, error), interval, bound time.Duration) *Loop {
	l := &Loop{inflight: map[uint64]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		inflight := make(chan struct{}, MaxInFlight)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		deadline := time.After(bound)
		for {
			select {
			case <-l.stop:
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			select {
			case inflight <- struct{}{}:
			default:
				continue // MaxInFlight requests hanging: skip this tick
			}
			wg.Add(1)
			t0 := time.Now()
			l.mu.Lock()
			id := l.seq
			l.seq++
			l.inflight[id] = t0
			l.mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() { <-inflight }()
				body, err := do(context.Background())
				if err != nil {
					body = err.Error()
				}
				l.mu.Lock()
				l.samples = append(l.samples, Sample{t0, time.Since(t0), err == nil, body})
				delete(l.inflight, id)
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// Samples returns the samples of the requests finished so far by start
// time (they finish out of order).
func (l *Loop) Samples() []Sample {
	l.mu.Lock()
	out := append([]Sample(nil), l.samples...)
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Stop ends the loop, waits for the requests in flight and returns every
// sample by start time. It may be called more than once.
func (l *Loop) Stop() []Sample {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	return l.Samples()
}

// hangAfter: a request in flight this long is taken to hang (answers take
// milliseconds; a SYN to a dead droplet waits at least a second).
const hangAfter = 500 * time.Millisecond

// HealthyFor is nil once the last n requests started at or after since
// that finished have all succeeded, no request started before the newest of
// them is still in flight, and none has been in flight for hangAfter: a
// request hanging on a dead node may yet fail (answers from before a power
// action took effect must not end a run), and the answers of requests sent
// before since say nothing about service after it.
func (l *Loop) HealthyFor(n int, since time.Time) error {
	var after []Sample
	for _, x := range l.Samples() {
		if !x.At.Before(since) {
			after = append(after, x)
		}
	}
	if len(after) < n {
		return fmt.Errorf("only %d requests finished since %s", len(after), since.Format("15:04:05.000"))
	}
	last := after[len(after)-n:]
	for _, x := range last {
		if !x.OK {
			return fmt.Errorf("a failure among the last %d requests", n)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, t0 := range l.inflight {
		if t0.Before(last[n-1].At) || time.Since(t0) >= hangAfter {
			return fmt.Errorf("a request started at %s is still in flight", t0.Format("15:04:05.000"))
		}
	}
	return nil
}

// Outcome is what a loop saw: request counts, the longest outage and the
// answering nodes.
type Outcome struct {
	Total, Failed int
	// Slow counts answered requests that took Analyze's slow or longer
	// (not in Failed).
	Slow int
	// Outage is the longest run of hit requests (failed, or answered only
	// after slow): from the start of its first request to the first
	// answer (its end, not its start) after that start. Answers end an
	// outage, not request starts: a request sent during the outage may
	// succeed later (its SYN retransmitted after the Reserved IP moved) and
	// must not shorten it. -1: the last request failed (not recovered); 0:
	// nothing was hit.
	Outage time.Duration
	// Answered counts successful answers by the node they name (the first
	// word of the body: the demo app answers "<node id> <version>").
	Answered map[string]int
}

// Analyze computes the outcome of samples sorted by start time. A request
// is hit when it failed or, with slow > 0, when it was answered only after
// slow or longer; slow ≤ 0 counts failures only.
func Analyze(samples []Sample, slow time.Duration) Outcome {
	o := Outcome{Answered: map[string]int{}}
	isSlow := func(s Sample) bool { return slow > 0 && s.OK && s.Took >= slow }
	hit := func(s Sample) bool { return !s.OK || isSlow(s) }
	recovered := true
	for i, s := range samples {
		o.Total++
		switch {
		case !s.OK:
			o.Failed++
		case isSlow(s):
			o.Slow++
		}
		if s.OK {
			node, _, _ := strings.Cut(s.Body, " ")
			o.Answered[node]++
		}
		if !hit(s) || (i > 0 && hit(samples[i-1])) {
			continue // not hit, or inside a run of hits already measured from its start
		}
		var back time.Time
		for _, t := range samples[i:] {
			end := t.At.Add(t.Took)
			if t.OK && end.After(s.At) && (back.IsZero() || end.Before(back)) {
				back = end
			}
		}
		if back.IsZero() {
			recovered = false
			continue
		}
		o.Outage = max(o.Outage, back.Sub(s.At))
	}
	if !recovered {
		o.Outage = -1
	}
	return o
}
