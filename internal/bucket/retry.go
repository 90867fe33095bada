package bucket

import (
	"math/rand/v2"
	"time"

	"github.com/dynia/dynia/internal/poll"
)

// retryPolicy is the one retry loop of the package: exponential backoff with
// full jitter (sleep a random time in [0, min(cap, base·2^n))), bounded by
// max retries. The S3 SDK's own retryer is disabled so a 412 is never retried
// and the loop stays in one readable place.
type retryPolicy struct {
	max  int
	base time.Duration
	cap  time.Duration
}

func newRetryPolicy(opts Options) retryPolicy {
	p := retryPolicy{max: opts.MaxRetries, base: opts.RetryBaseDelay, cap: 5 * time.Second}
	switch {
	case p.max == 0:
		p.max = 4
	case p.max < 0:
		p.max = 0
	}
	if p.base <= 0 {
		p.base = 200 * time.Millisecond
	}
	return p
}

// delay is the sleep before retry number n (0-based).
func (p retryPolicy) delay(n int) time.Duration {
	d := poll.Backoff(p.base, p.cap, n+1)
	return time.Duration(rand.Int64N(int64(d) + 1))
}
