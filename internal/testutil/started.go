package testutil

import (
	"context"
	"errors"
	"time"

	"github.com/dynia/dynia/internal/poll"
)

// errExited is waitStarted's answer when the process exited first.
var errExited = errors.New("exited during start")

// waitStarted polls ready (internal/poll's backoff) for at most timeout
// until it holds, for a server a test started: versitygw, docker-registry,
// Pebble, dockerd. exited is closed when the process has exited; that ends
// the wait at once (ready's ctx is cancelled too) with errExited. Otherwise
// the answer is nil or ready's last error.
func waitStarted(exited <-chan struct{}, timeout time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case <-exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := poll.Until(ctx, func() error {
		select {
		case <-exited:
			return poll.Stop(errExited)
		default:
		}
		return ready(ctx)
	})
	if err == nil {
		return nil
	}
	select {
	case <-exited:
		return errExited
	default:
		return err
	}
}
