package cloud

import (
	"context"
	"errors"
	"net/http"
	"time"

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

// createdLookups is how many times createOnce looks for what a create
// whose answer was lost may have made before it sends the create again.
// DigitalOcean's lists are not guaranteed to show a resource the moment
// its create was applied: a droplet made a moment ago can be missing from
// GET /v2/droplets?name= for a while, and one lookup that misses it sends
// a second create, which makes a second droplet (DO droplet names need not
// be unique). The lookups are spaced like the client's polls: the first at
// once, then after Options.PollInterval growing by half up to PollMax —
// with the defaults (1 s, 5 s) the last lookup is about 13 s after the
// first. The cost is that long before a create DO really refused with a
// 5xx is sent again.
const createdLookups = 6

// createOnce sends create (marked sendOnce) and, when its outcome is
// unknown, looks for its result with find (lookForCreated): found means
// DO made it and only the answer was lost, so the create succeeded (find
// must set the caller's result); not found by any of createdLookups
// lookups means it was not made, so it is sent again, up to
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
		found, ferr := c.lookForCreated(ctx, op, find)
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

// lookForCreated calls find until it finds what a create made, at most
// createdLookups times, spaced like the client's polls (see
// createdLookups). A transient error of find counts as a miss but the
// last one; any other error, or ctx ending, ends the search with it.
func (c *Client) lookForCreated(ctx context.Context, op string, find func(context.Context) (bool, error)) (bool, error) {
	delay := c.pollMin
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for lookup := 1; ; lookup++ {
		found, err := find(ctx)
		switch {
		case found:
			return true, nil
		case err != nil && (!Transient(err) || ctx.Err() != nil), lookup == createdLookups:
			return false, err
		}
		c.log.Debug("cloud: create's answer lost and its result not listed (yet); looking again", "op", op, "lookup", lookup, "err", err)
		timer.Reset(jitter(delay))
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-timer.C:
		}
		delay = min(delay+delay/2, c.pollMax)
	}
}
