package acme

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dynia/dynia/internal/bucket"
)

// ErrLeaseHeld is matched (errors.Is) by a *LeaseHeldError: another holder
// has the renewal lease and it has not expired, or another holder won the
// race for it.
var ErrLeaseHeld = errors.New("renewal lease held by another node")

// LeaseHeldError names who holds the lease and until when (zero when the
// lease was lost in a race and not re-read).
type LeaseHeldError struct {
	Holder  string
	Expires time.Time
}

func (e *LeaseHeldError) Error() string {
	if e.Holder == "" {
		return "acme: lease " + KeyLease + ": " + ErrLeaseHeld.Error() + " (lost the race to take it)"
	}
	return fmt.Sprintf("acme: lease %s: %s: %q until %s", KeyLease, ErrLeaseHeld, e.Holder, e.Expires.UTC().Format(time.RFC3339))
}

func (e *LeaseHeldError) Is(target error) bool { return target == ErrLeaseHeld }

// leaseDoc is tls/lease.json.
type leaseDoc struct {
	Holder   string    `json:"holder"`
	ID       string    `json:"id"` // random per acquisition: one holder's two processes differ
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
	Released bool      `json:"released,omitempty"`
}

// Lease is a held renewal lease. It is not safe for concurrent use.
type Lease struct {
	store Store
	now   func() time.Time
	doc   leaseDoc
	etag  string
}

// Holder is who holds the lease.
func (l *Lease) Holder() string { return l.doc.Holder }

// Expires is when the lease lapses unless released earlier.
func (l *Lease) Expires() time.Time { return l.doc.Expires }

// Lease takes the renewal lease at tls/lease.json for holder (a node id)
// for ttl: it creates the object with If-None-Match: * when there is none,
// and replaces an expired or released one with If-Match on its ETag, so of
// two racing nodes exactly one wins. A lease that has not expired is
// ErrLeaseHeld (*LeaseHeldError) even for the same holder name: a holder
// keeps its own lease by not releasing it, never by taking it twice. A
// lost race is ErrLeaseHeld too. Store failures are wrapped.
func (i *Issuer) Lease(ctx context.Context, holder string, ttl time.Duration) (*Lease, error) {
	return takeLease(ctx, i.cfg.Store, i.cfg.Now, holder, ttl)
}

func takeLease(ctx context.Context, store Store, now func() time.Time, holder string, ttl time.Duration) (*Lease, error) {
	if holder == "" {
		return nil, errors.New("acme: lease: empty holder")
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("acme: lease: ttl %v must be positive", ttl)
	}
	cond := bucket.Cond{IfNoneMatch: true}
	obj, err := store.Get(ctx, KeyLease, "")
	switch {
	case errors.Is(err, bucket.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("acme: lease: read: %w", err)
	default:
		var cur leaseDoc
		if err := json.Unmarshal(obj.Body, &cur); err != nil {
			// A corrupt lease must not block renewals forever: take it
			// over like an expired one (still with If-Match).
			cur = leaseDoc{}
		}
		if !cur.Released && now().Before(cur.Expires) {
			return nil, &LeaseHeldError{Holder: cur.Holder, Expires: cur.Expires}
		}
		cond = bucket.Cond{IfMatch: obj.ETag}
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id) // crypto/rand.Read never fails (Go 1.24+)
	t := now()
	doc := leaseDoc{Holder: holder, ID: hex.EncodeToString(id), Acquired: t.UTC(), Expires: t.Add(ttl).UTC()}
	body, _ := json.Marshal(doc) // plain struct: cannot fail
	etag, err := store.Put(ctx, KeyLease, body, cond)
	if errors.Is(err, bucket.ErrPrecondition) {
		return nil, &LeaseHeldError{}
	}
	if err != nil {
		return nil, fmt.Errorf("acme: lease: write: %w", err)
	}
	return &Lease{store: store, now: now, doc: doc, etag: etag}, nil
}

// Release gives the lease up early: it rewrites the object as released
// with If-Match on the ETag this holder wrote, so a lease that expired and
// was taken over by another node is left alone (that is not an error).
// Releasing twice is a no-op.
func (l *Lease) Release(ctx context.Context) error {
	if l.doc.Released {
		return nil
	}
	doc := l.doc
	doc.Released = true
	doc.Expires = l.now().UTC()
	body, _ := json.Marshal(doc)
	etag, err := l.store.Put(ctx, KeyLease, body, bucket.Cond{IfMatch: l.etag})
	if errors.Is(err, bucket.ErrPrecondition) || errors.Is(err, bucket.ErrNotFound) {
		l.doc.Released = true // someone else's lease now: not ours to touch
		return nil
	}
	if err != nil {
		return fmt.Errorf("acme: lease: release: %w", err)
	}
	l.doc, l.etag = doc, etag
	return nil
}
