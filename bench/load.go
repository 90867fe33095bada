package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Loop is a bounded open-loop request generator: one request every
// interval until Stop or its time bound, at most 64 in flight (a tick
// finding 64 hanging is skipped). Requests do not wait for each other, so
// one hanging on a dead node does not hide when service came back.
type Loop struct {
	mu       sync.Mutex
	samples  []Sample
	inflight map[uint64]time.Time // start of every request not finished yet, by sequence number
	seq      uint64
	stop     chan struct{}
	done     chan struct{}
}

// Sample is one request: when it started, how long it took, and its
// outcome (Body is the answer's first line).
type Sample struct {
	At   time.Time
	Took time.Duration
	OK   bool
	Body string
}

// maxInFlight bounds every loop's concurrency.
const maxInFlight = 64

// StartLoop runs do every interval for at most bound.
func StartLoop(do func(context.Context) (string, error), interval, bound time.Duration) *Loop {
	l := &Loop{inflight: map[uint64]time.Time{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		inflight := make(chan struct{}, maxInFlight)
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
				continue
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
				l.mu.Lock()
				l.samples = append(l.samples, Sample{t0, time.Since(t0), err == nil, body})
				delete(l.inflight, id)
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// GetLoop GETs url on a new connection every interval (2 s timeout).
func GetLoop(url string, interval, bound time.Duration) *Loop {
	return GetLoopTLS(url, nil, interval, bound)
}

// GetLoopTLS is GetLoop for an https URL verified with cfg.
func GetLoopTLS(url string, cfg *tls.Config, interval, bound time.Duration) *Loop {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg}}
	return StartLoop(func(ctx context.Context) (string, error) { return request(ctx, c, http.MethodGet, url) }, interval, bound)
}

// PostLoop POSTs to url on kept-alive connections every interval (5 s
// timeout). Go's client never re-sends a POST whose body it cannot rewind,
// so a connection a reload closes under a request shows as a failure.
func PostLoop(url string, interval, bound time.Duration) *Loop {
	return PostLoopTLS(url, nil, interval, bound)
}

// PostLoopTLS is PostLoop for an https URL verified with cfg.
func PostLoopTLS(url string, cfg *tls.Config, interval, bound time.Duration) *Loop {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, TLSClientConfig: cfg}}
	return StartLoop(func(ctx context.Context) (string, error) { return request(ctx, c, http.MethodPost, url) }, interval, bound)
}

func request(ctx context.Context, c *http.Client, method, url string) (string, error) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("dynia bench keep-alive POST")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return "", err
	}
	req.GetBody = nil
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(b.String()), "\n")
	return line, nil
}

// Samples returns the samples so far by start time.
func (l *Loop) Samples() []Sample {
	l.mu.Lock()
	out := append([]Sample(nil), l.samples...)
	l.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Stop ends the loop, waits for the requests in flight and returns every
// sample by start time.
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

// slowAnswer marks a request that was sent into an outage although it was
// answered: Linux retransmits an unanswered SYN after its initial
// retransmission timeout of 1 s (TCP_TIMEOUT_INIT; RFC 6298 §2.1), so a
// request sent while the Reserved IP pointed at a dead droplet and
// retransmitted after it moved succeeds, but not before 1 s. Without this, a
// failover shorter than the timeout reads as no outage at all.
const slowAnswer = time.Second

// Outcome is what a loop saw: request counts, the longest outage and the
// answering nodes.
type Outcome struct {
	Total, Failed int
	// Slow counts answered requests that took slowAnswer or longer (not in
	// Failed).
	Slow int
	// Outage is the longest run of hit requests (failed, or answered only
	// after slowAnswer): from the start of its first request to the first
	// answer (its end, not its start) after that start. Answers end an
	// outage, not request starts: a request sent during the outage may
	// succeed later (its SYN retransmitted after the Reserved IP moved) and
	// must not shorten it. -1: the last request failed (not recovered); 0:
	// nothing was hit.
	Outage time.Duration
	// Answered counts successful answers by the node they name (the demo
	// app answers "<node id> <version>").
	Answered map[string]int
}

// Analyze computes the outcome of samples sorted by start time.
func Analyze(samples []Sample) Outcome {
	o := Outcome{Answered: map[string]int{}}
	hit := func(s Sample) bool { return !s.OK || s.Took >= slowAnswer }
	recovered := true
	for i, s := range samples {
		o.Total++
		switch {
		case !s.OK:
			o.Failed++
		case s.Took >= slowAnswer:
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

// ClosedLoop runs workers that each call do back to back for d, and
// returns every call's latency (successes) and the failure count. It is
// the TLS benchmark's load generator: bounded in time and concurrency.
func ClosedLoop(ctx context.Context, workers int, d time.Duration, do func(context.Context) error) (lat []time.Duration, failed int, elapsed time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				t0 := time.Now()
				err := do(ctx)
				took := time.Since(t0)
				mu.Lock()
				switch {
				case err == nil:
					lat = append(lat, took)
				case ctx.Err() == nil:
					failed++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, failed, time.Since(start)
}
