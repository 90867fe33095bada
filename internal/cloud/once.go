package cloud

import (
	"context"
	"errors"
	"net/http"

	"github.com/hashicorp/go-retryablehttp"
)

// Creates are sent once. godo's retry layer (retryablehttp) resends a
// request that got a 5xx or no answer; for a create that is a second
// droplet, firewall or VPC when DO applied the first and only its answer
// was lost (a 5xx from DO's edge, a timeout, a reset). So a create's
// context is marked, godo resends it only after a 429 (DO's rate limiter
// refuses before doing anything), and createOnce looks before it sends
// again.

type sendOnceKey struct{}

// sendOnce marks ctx: godo must not resend its request on its own.
func sendOnce(ctx context.Context) context.Context {
	return context.WithValue(ctx, sendOnceKey{}, true)
}

// onceRetryPolicy wraps godo's retry policy: a request marked sendOnce is
// retried only after a 429.
func onceRetryPolicy(next retryablehttp.CheckRetry) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Value(sendOnceKey{}) == nil {
			return next(ctx, resp, err)
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return err == nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests, nil
	}
}

// outcomeUnknown says whether a create that failed with err may have been
// applied: DO answered 5xx, or did not answer (a timeout, a reset).
// A 4xx (429 included) is DO refusing: nothing was made.
func outcomeUnknown(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode >= 500
	}
	return Transient(err)
}

// createOnce sends create (marked sendOnce) and, when its outcome is
// unknown, calls find: found means DO made it and only the answer was
// lost, so the create succeeded (find must set the caller's result); not
// found means it was not made, so it is sent again, up to
// maxTransientPolls times in a row (with whileBusy's waits; 422 "pending
// event" is waited out as for any create). An error of find leaves the
// create's error as the answer: the caller's re-run looks again (dynia
// adopts droplets by tag, firewalls and VPCs by name).
func (c *Client) createOnce(ctx context.Context, op string, on busyOn, create func(context.Context) error, find func(context.Context) (bool, error)) error {
	return c.whileBusy(ctx, op, on, true, func(ctx context.Context) error {
		err := create(sendOnce(ctx))
		if !outcomeUnknown(err) || ctx.Err() != nil {
			return err
		}
		found, ferr := find(ctx)
		switch {
		case ferr != nil:
			c.log.Warn("cloud: create's outcome unknown and the lookup failed", "op", op, "err", err, "lookup_err", ferr)
			return err
		case found:
			c.log.Info("cloud: create's answer was lost, but DigitalOcean made it: adopted", "op", op, "err", err)
			return nil
		}
		c.log.Info("cloud: create failed and made nothing; sending it again", "op", op, "err", err)
		return err
	})
}
