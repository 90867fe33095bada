package cloud

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// ErrBusy matches a *BusyError: DigitalOcean kept refusing a request with
// 422 "pending event" until the caller's context ended.
var ErrBusy = errors.New("busy with a pending event")

// BusyError says which resource stayed busy, for how long, and why the
// retries stopped. errors.Is matches ErrBusy, the cause (ctx.Err()) and
// DigitalOcean's last answer (an *APIError, so also ErrUnprocessable).
type BusyError struct {
	Op       string        // e.g. "assign reserved IP 198.51.100.7 to droplet 42"
	Resource string        // the busy resource, e.g. "droplet 42"
	Attempts int           // requests sent, the first included
	Waited   time.Duration // from the first request to giving up
	Last     error         // DigitalOcean's last 422
	Cause    error         // why the retries stopped: ctx.Err()
}

func (e *BusyError) Error() string {
	msg := ""
	var ae *APIError
	if errors.As(e.Last, &ae) {
		msg = fmt.Sprintf(" (%q)", ae.Message)
	}
	return fmt.Sprintf("cloud: %s: %s stayed busy with a pending event: DigitalOcean refused %d requests over %s%s; gave up: %v",
		e.Op, e.Resource, e.Attempts, e.Waited.Round(time.Millisecond), msg, e.Cause)
}

// Unwrap exposes ErrBusy, the cause and the last answer to errors.Is/As.
func (e *BusyError) Unwrap() []error { return []error{ErrBusy, e.Cause, e.Last} }

// busyOn names what a request acts on, for the BusyError: what (e.g.
// "reserved IP 198.51.100.7"), and the droplet involved, if any, which is
// the busy one when DO's message speaks of a droplet ("Droplet already has
// a pending event.").
type busyOn struct {
	what    string
	droplet int
}

func (b busyOn) resource(err error) string {
	var ae *APIError
	if b.droplet != 0 && errors.As(err, &ae) && strings.Contains(strings.ToLower(ae.Message), "droplet") {
		return fmt.Sprintf("droplet %d", b.droplet)
	}
	return b.what
}

// whileBusy runs call, and again while DigitalOcean refuses it with 422
// "pending event": another action still holds the droplet or reserved IP
// (DO locks a resource for the duration of an event and refuses a second
// one; the reserved IP's `locked` field in the API reference says so, and
// godo names the droplet's answer ErrDropletPendingEvent). Waits start at
// Options.BusyWaitMin and grow by half, ±25 % jitter, up to BusyWaitMax; the
// retries last as long as ctx, and then the error is a *BusyError naming the
// resource. Any other error is returned as is, except that with idempotent
// set (an action or delete, which repeated does no harm; never a create) a
// transient error that outlasted godo's own retries is retried too, up to
// maxTransientPolls in a row.
func (c *Client) whileBusy(ctx context.Context, op string, on busyOn, idempotent bool, call func(context.Context) error) error {
	start := time.Now()
	delay := c.busyMin
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var last error
	transientRun := 0
	for attempt := 1; ; attempt++ {
		err := call(ctx)
		switch {
		case err == nil:
			if last != nil {
				c.log.Info("cloud: busy resource accepted the request", "op", op, "resource", on.resource(last),
					"attempts", attempt, "waited", time.Since(start))
			}
			return nil
		case isPendingEvent(err):
			last, transientRun = err, 0
			c.log.Info("cloud: resource busy with a pending event, retrying", "op", op, "resource", on.resource(err), "attempt", attempt)
		case idempotent && ctx.Err() == nil && Transient(err) && transientRun < maxTransientPolls-1:
			transientRun++
			c.log.Warn("cloud: transient error, retrying", "op", op, "err", err, "in_a_row", transientRun)
		case last != nil && ctx.Err() != nil:
			return c.busyError(ctx, op, on, attempt-1, start, last)
		default:
			return err
		}
		timer.Reset(jitterFrac(delay, 0.25))
		select {
		case <-ctx.Done():
			if last == nil {
				return withCtxErr(ctx, err)
			}
			return c.busyError(ctx, op, on, attempt, start, last)
		case <-timer.C:
		}
		delay = min(delay+delay/2, c.busyMax)
	}
}

func (c *Client) busyError(ctx context.Context, op string, on busyOn, attempts int, start time.Time, last error) error {
	return &BusyError{Op: op, Resource: on.resource(last), Attempts: attempts, Waited: time.Since(start), Last: last, Cause: ctx.Err()}
}

// jitterFrac spreads d by ±frac, so many waiters do not retry in lockstep.
func jitterFrac(d time.Duration, frac float64) time.Duration {
	span := int64(float64(d) * 2 * frac)
	if span <= 0 {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(rand.Int64N(span))
}
