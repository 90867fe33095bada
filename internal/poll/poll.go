// Package poll waits for a condition by calling it with backoff until it
// holds: the one implementation behind testutil.WaitFor (tests) and the
// benchmarks' Runner.WaitFor, which must not link package testing.
package poll

import (
	"context"
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
