// Package poll waits for a condition by calling it with backoff until it
// holds: the one implementation behind testutil.WaitFor (tests), the
// benchmarks' Runner.WaitFor (which must not link package testing) and the
// waits for Pebble's directory (the sandbox and testutil).
package poll

import (
	"context"
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
// nil; once ctx is done it returns cond's last error instead.
func Until(ctx context.Context, cond func() error) error {
	delay := FirstDelay
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(delay*2, MaxDelay)
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
