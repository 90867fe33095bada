// Package poll waits for a condition by calling it with backoff until it
// holds: the one implementation behind testutil.WaitFor (tests), the
// benchmarks' Runner.WaitFor (which must not link package testing) and the
// sandbox's waits (Pebble's directory, the registry, the API, versitygw's
// bucket). Backoff is the doubling retry schedule of dynia-pull and the
// ACME issuer.
package poll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The backoff between two calls of a condition: FirstDelay, doubling up to
// MaxDelay.
const (
	FirstDelay = 10 * time.Millisecond
	MaxDelay   = 500 * time.Millisecond
)

// Until calls cond (at least once) until it returns nil, and then returns
// nil; once ctx is done it returns cond's last error instead. An error made
// with Stop ends the wait at once: Until returns the error Stop was given.
func Until(ctx context.Context, cond func() error) error {
	return UntilBackoff(ctx, FirstDelay, MaxDelay, cond)
}

// UntilBackoff is Until with its own schedule: first between the first two
// calls, doubling up to max. For waits whose condition costs a request to
// a rate-limited service (the state bucket) or a container runtime.
func UntilBackoff(ctx context.Context, first, max time.Duration, cond func() error) error {
	delay := first
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var stop stopError
		if errors.As(err, &stop) {
			return stop.err
		}
		if Sleep(ctx, delay) != nil {
			return err
		}
		delay = min(delay*2, max)
	}
}

// Stop marks err as final for Until: the condition can no longer hold (the
// process it waits for exited, say), so waiting longer is pointless.
func Stop(err error) error { return stopError{err} }

type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }
func (e stopError) Unwrap() error { return e.err }

// Backoff is the wait before the n-th retry (n ≥ 1) of a schedule that
// starts at first and doubles up to max: first·2^(n-1), at most max. It is
// the plain schedule: callers that want jitter add it.
func Backoff(first, max time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// Sleep waits d, or until ctx is done: then it returns ctx's error. The
// wait between two tries of a retry loop (with Backoff's schedule).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Within is Until for at most timeout.
func Within(timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Until(ctx, cond)
}

// GetOK GETs url with c and is nil when it answers 200 OK (the body is read
// and thrown away): a condition for Until that a server is serving, such as
// Pebble's ACME directory.
func GetOK(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	var resp *http.Response
	if err == nil {
		resp, err = c.Do(req)
	}
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
