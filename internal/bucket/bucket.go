// Package bucket is dynia's object store: the DigitalOcean Spaces (S3) backend
// and a file:// backend with the same semantics, behind one small interface.
//
// Every write that matters is conditional: Put with IfMatch is compare-and-swap
// on the ETag, Put with IfNoneMatch is create-only. Errors are typed so callers
// can tell a lost race (ErrPrecondition) from a missing object or a throttle.
//
// Open("s3://bucket/prefix" or "file:///dir") returns a Store scoped to the
// prefix: callers use relative keys such as "clusters/demo/state.json".
// Conditional writes are the whole safety story, and DigitalOcean does not
// document them, so every command that writes state first calls RequireSafe,
// which probes the store and refuses one that ignores If-Match.
package bucket

import (
	"context"
	"errors"
	"time"
)

// Store is what dynia needs from an object store.
type Store interface {
	// Get reads key. With ifNoneMatch set to the caller's ETag and the object
	// unchanged it returns ErrNotModified and no body.
	Get(ctx context.Context, key string, ifNoneMatch string) (*Object, error)
	// Put writes key under the given condition and returns the new ETag.
	// A failed condition is ErrPrecondition.
	Put(ctx context.Context, key string, body []byte, cond Cond) (etag string, err error)
	// Delete removes key; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Info, error)
	// String names the store for messages (never includes credentials).
	String() string
}

// Object is a read object.
type Object struct {
	Body         []byte
	ETag         string
	LastModified time.Time
}

// Info describes a listed object.
type Info struct {
	Key          string
	ETag         string
	Size         int64
	LastModified time.Time
}

// Cond is a write precondition. The zero value writes unconditionally.
type Cond struct {
	IfMatch     string // write only if the current ETag equals this (CAS)
	IfNoneMatch bool   // write only if the key does not exist (If-None-Match: *)
}

// Sentinel errors; backends wrap them with the bucket and key involved.
var (
	ErrNotFound     = errors.New("object not found")
	ErrNotModified  = errors.New("object not modified")
	ErrPrecondition = errors.New("precondition failed")
	ErrThrottled    = errors.New("throttled by the object store")
	ErrAccessDenied = errors.New("access denied")
	// ErrUnavailable means the store gave no answer at all (connection
	// refused, reset or timed out) on every attempt: unreachable now,
	// worth trying again later.
	ErrUnavailable = errors.New("object store unreachable")
	// ErrUnsafeStore means the store ignores conditional writes, so two
	// writers could silently overwrite each other (see Probe, RequireSafe).
	ErrUnsafeStore = errors.New("object store ignores conditional writes")
)

// Presigner is implemented by stores that can hand out time-limited GET URLs
// (the S3 backend). --bootstrap droplets fetch the dynia-pull binary with one.
type Presigner interface {
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
}
