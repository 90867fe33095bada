package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/loadloop"
)

// Loop is a bounded open-loop request generator (internal/loadloop): one
// request every interval until Stop or its time bound, at most
// loadloop.MaxInFlight in flight.
type Loop = loadloop.Loop

// Sample is one request of a Loop.
type Sample = loadloop.Sample

// Outcome is what a loop saw: request counts, the longest outage and the
// answering nodes.
type Outcome = loadloop.Outcome

// GetLoop GETs url on a new connection every interval (2 s timeout).
func GetLoop(url string, interval, bound time.Duration) *Loop {
	return GetLoopTLS(url, nil, interval, bound)
}

// GetLoopTLS is GetLoop for an https URL verified with cfg.
func GetLoopTLS(url string, cfg *tls.Config, interval, bound time.Duration) *Loop {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: cfg}}
	return loadloop.Start(func(ctx context.Context) (string, error) { return request(ctx, c, http.MethodGet, url) }, interval, bound)
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
	return loadloop.Start(func(ctx context.Context) (string, error) { return request(ctx, c, http.MethodPost, url) }, interval, bound)
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

// slowAnswer marks a request that was sent into an outage although it was
// answered: Linux retransmits an unanswered SYN after its initial
// retransmission timeout of 1 s (TCP_TIMEOUT_INIT; RFC 6298 §2.1), so a
// request sent while the Reserved IP pointed at a dead droplet and
// retransmitted after it moved succeeds, but not before 1 s. Without this, a
// failover shorter than the timeout reads as no outage at all.
const slowAnswer = time.Second

// Analyze computes the outcome of samples sorted by start time; answers
// that took slowAnswer or longer count as hit.
func Analyze(samples []Sample) Outcome {
	return loadloop.Analyze(samples, slowAnswer)
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
