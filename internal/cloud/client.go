// Package cloud is what dynia needs from DigitalOcean, built on godo: the
// VPC, firewall and tags of a cluster, droplets from a snapshot, the reserved
// IP and its actions, and a DNS record.
//
// The *Client is concrete on purpose: each consumer (the CLI, dynia-pull)
// declares the few methods it uses as a small interface where it uses them,
// so this package stays free of cobra and of the simulator and dynia-pull can
// link it.
//
// Every wait is ctx-aware polling with backoff: a cancelled context is an
// error, never a success (doctl's WaitForActive reports success when
// cancelled; we do not). godo itself retries 429 and 5xx, honouring
// Retry-After, except for creates, which it sends again only after a 429:
// a create whose answer was lost may have been made, so createOnce (once.go)
// looks for it first. Beyond that the operations here only retry what DO reports as a
// conflict worth waiting out: every action, create and delete that DO can
// refuse with 422 "pending event" (a droplet or reserved IP another action
// still holds) goes through one helper, whileBusy.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/digitalocean/godo"
	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/oauth2"
)

// Tags dynia puts on everything it creates. DO tag names match
// ^[a-zA-Z0-9_\-:]+$, so ':' is allowed.
const BaseTag = "dynia"

// ClusterTag is the tag on every droplet of cluster name; the firewall targets it.
func ClusterTag(name string) string { return "dynia:cluster:" + name }

// NodeTag is the tag naming one node of a cluster by its dynia node id.
func NodeTag(id string) string { return "dynia:node:" + id }

// Options tune a Client. The zero value talks to api.digitalocean.com with
// godo's default retry policy.
type Options struct {
	// BaseURL points the client at another API root, e.g. the simulator
	// ("http://127.0.0.1:8080"). A trailing slash is added when missing:
	// godo silently drops a path prefix without it.
	BaseURL string
	// RetryMax is how many times godo retries 429/5xx (0 means 4; negative
	// disables retries).
	RetryMax int
	// RetryWaitMin and RetryWaitMax bound godo's exponential backoff between
	// retries (defaults 1 s and 30 s). A 429's Retry-After is honoured up
	// to RetryWaitMax.
	RetryWaitMin, RetryWaitMax time.Duration
	// RequestTimeout bounds one HTTP attempt (default 60 s).
	RequestTimeout time.Duration
	// UserAgent is prepended to godo's own.
	UserAgent string
	// Logger receives debug lines about requests and waits (never the token).
	Logger *slog.Logger
	// PollInterval is the first delay between polls while waiting for a
	// droplet or an action (default 1 s); it grows by half each round up to
	// PollMax (default 5 s).
	PollInterval, PollMax time.Duration
	// BusyWaitMin and BusyWaitMax bound the waits between retries of a
	// request DO refuses with 422 "pending event" (default PollInterval and
	// twice PollMax: 1 s growing to 10 s). The retries last as long as the
	// caller's context.
	BusyWaitMin, BusyWaitMax time.Duration
	// CreateParallelism bounds concurrent droplet creates (default 5).
	CreateParallelism int
}

// Client is dynia's DigitalOcean client. It is safe for concurrent use.
type Client struct {
	godo    *godo.Client
	log     *slog.Logger
	calls   *callCounter
	wire    http.RoundTripper // the transport under the counter
	pollMin time.Duration
	pollMax time.Duration
	busyMin time.Duration
	busyMax time.Duration
	par     int
}

// New builds a Client for the API token. The token is sent as a bearer token
// by an oauth2 transport and never appears in errors or logs.
func New(token string, opts Options) (*Client, error) {
	token = strings.Trim(strings.TrimSpace(token), "'\"")
	if token == "" {
		return nil, errors.New("cloud: new client: empty API token")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = 4
	}
	if opts.RetryWaitMin <= 0 {
		opts.RetryWaitMin = time.Second
	}
	if opts.RetryWaitMax <= 0 {
		opts.RetryWaitMax = 30 * time.Second
	}
	if opts.RetryWaitMax < opts.RetryWaitMin {
		opts.RetryWaitMax = opts.RetryWaitMin
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 60 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.PollMax <= 0 {
		opts.PollMax = 5 * time.Second
	}
	if opts.PollMax < opts.PollInterval {
		opts.PollMax = opts.PollInterval
	}
	if opts.BusyWaitMin <= 0 {
		opts.BusyWaitMin = opts.PollInterval
	}
	if opts.BusyWaitMax <= 0 {
		opts.BusyWaitMax = 2 * opts.PollMax
	}
	if opts.BusyWaitMax < opts.BusyWaitMin {
		opts.BusyWaitMax = opts.BusyWaitMin
	}
	if opts.CreateParallelism <= 0 {
		opts.CreateParallelism = 5
	}

	c := &Client{
		log:     opts.Logger,
		calls:   newCallCounter(),
		pollMin: opts.PollInterval,
		pollMax: opts.PollMax,
		busyMin: opts.BusyWaitMin,
		busyMax: opts.BusyWaitMax,
		par:     opts.CreateParallelism,
	}

	// godo.New with retries requires the client's transport to be an
	// *oauth2.Transport (it panics otherwise) and keeps only its token
	// source: it rebuilds the stack as oauth2 -> retryablehttp -> pooled
	// transport. We add the call counter at the bottom afterwards, so every
	// attempt on the wire is counted, retries included.
	ts := oauth2.StaticTokenSource(&oauth2.Token{AccessToken: token, TokenType: "Bearer"})
	base := oauth2.NewClient(context.Background(), ts)
	base.Timeout = opts.RequestTimeout

	var godoOpts []godo.ClientOpt
	if opts.BaseURL != "" {
		u := opts.BaseURL
		if !strings.HasSuffix(u, "/") {
			u += "/"
		}
		godoOpts = append(godoOpts, godo.SetBaseURL(u))
	}
	if opts.UserAgent != "" {
		godoOpts = append(godoOpts, godo.SetUserAgent(opts.UserAgent))
	}
	if opts.RetryMax > 0 {
		godoOpts = append(godoOpts, godo.WithRetryAndBackoffs(godo.RetryConfig{
			RetryMax:     opts.RetryMax,
			RetryWaitMin: godo.PtrTo(opts.RetryWaitMin.Seconds()),
			RetryWaitMax: godo.PtrTo(opts.RetryWaitMax.Seconds()),
			Logger:       retryLogger{opts.Logger},
		}))
	}
	gc, err := godo.New(base, godoOpts...)
	if err != nil {
		return nil, fmt.Errorf("cloud: new client: %w", err)
	}
	c.installCounter(gc)
	c.godo = gc
	return c, nil
}

// installCounter puts the counting transport under godo's retry layer when it
// can find it, and around the whole stack otherwise (then a retried request
// counts once).
func (c *Client) installCounter(gc *godo.Client) {
	if ot, ok := gc.HTTPClient.Transport.(*oauth2.Transport); ok {
		if rt, ok := ot.Base.(*retryablehttp.RoundTripper); ok && rt.Client != nil && rt.Client.HTTPClient != nil {
			inner := rt.Client.HTTPClient.Transport
			if inner == nil {
				inner = http.DefaultTransport
			}
			rt.Client.HTTPClient.Transport = &countingTransport{base: inner, counter: c.calls}
			rt.Client.Backoff = cappedBackoff
			rt.Client.CheckRetry = onceRetryPolicy(rt.Client.CheckRetry)
			c.wire = inner
			return
		}
		if ot.Base == nil {
			// Retries disabled: oauth2 would use the shared default
			// transport; give this client its own.
			wire := http.DefaultTransport.(*http.Transport).Clone()
			ot.Base = &countingTransport{base: wire, counter: c.calls}
			c.wire = wire
			return
		}
	}
	c.wire = gc.HTTPClient.Transport
	gc.HTTPClient.Transport = &countingTransport{base: gc.HTTPClient.Transport, counter: c.calls}
}

// CloseIdleConnections closes kept-alive connections (a short-lived CLI
// does not need it; tests checking for leaked goroutines do).
func (c *Client) CloseIdleConnections() {
	if ci, ok := c.wire.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// cappedBackoff is retryablehttp's default (exponential from RetryWaitMin,
// Retry-After on 429/503) except that Retry-After is capped at RetryWaitMax:
// a server asking for longer than we are prepared to wait gets one more
// attempt at our limit rather than a goroutine parked for an hour.
func cappedBackoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	return min(retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp), maxWait)
}

// Calls returns how many HTTP requests the client sent, keyed by
// "METHOD /v2/path-template" (e.g. "GET /v2/droplets/{id}"). Retries count.
func (c *Client) Calls() map[string]int { return c.calls.snapshot() }

// Total is the sum of Calls.
func (c *Client) Total() int { return c.calls.total() }

// ResetCalls zeroes the counters (benchmarks measure one phase at a time).
func (c *Client) ResetCalls() { c.calls.reset() }

// retryLogger adapts slog to retryablehttp's LeveledLogger. retryablehttp
// logs method and URL only; the Authorization header never reaches it.
type retryLogger struct{ l *slog.Logger }

func (r retryLogger) Error(msg string, kv ...any) { r.l.Warn("godo: "+msg, kv...) }
func (r retryLogger) Warn(msg string, kv ...any)  { r.l.Warn("godo: "+msg, kv...) }
func (r retryLogger) Info(msg string, kv ...any)  { r.l.Debug("godo: "+msg, kv...) }
func (r retryLogger) Debug(msg string, kv ...any) { r.l.Debug("godo: "+msg, kv...) }

// maxTransientPolls: a wait gives up at the maxTransientPolls-th poll in a
// row that fails with a transient error after godo's own retries. A wait is
// read-only, so trying again on the next tick is safe (whileBusy applies
// the same bound to actions and deletes); the bound keeps an API that stays
// down from holding a command until its deadline.
const maxTransientPolls = 5

// poll calls check until it reports done, an error, or ctx ends. Delays start
// at PollInterval and grow by half (with ±10% jitter, so many waiters do not
// poll in lockstep) up to PollMax. A transient error (429, 5xx, a dropped
// connection, a request timeout) that outlasted godo's retries is logged and
// polled through, until maxTransientPolls of them in a row. Cancellation is
// an error, never success.
func (c *Client) poll(ctx context.Context, what string, check func(ctx context.Context) (bool, error)) error {
	delay := c.pollMin
	// Since Go 1.23 a stopped timer can be Reset without draining it.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	transientRun := 0
	for attempt := 1; ; attempt++ {
		done, err := check(ctx)
		switch {
		case err == nil:
			transientRun = 0
		case ctx.Err() == nil && Transient(err) && transientRun < maxTransientPolls-1:
			transientRun++
			c.log.Warn("cloud: transient error while waiting, polling on", "for", what, "err", err, "in_a_row", transientRun)
		default:
			return err
		}
		if done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("cloud: waiting for %s: %w", what, err)
		}
		d := jitter(delay)
		c.log.Debug("cloud: waiting", "for", what, "attempt", attempt, "next", d)
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return fmt.Errorf("cloud: waiting for %s: %w", what, ctx.Err())
		case <-timer.C:
		}
		delay = min(delay+delay/2, c.pollMax)
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	span := int64(d) / 5
	if span <= 0 {
		return d
	}
	return d - time.Duration(span/2) + time.Duration(rand.Int64N(span))
}
