package bucket

import (
	"errors"
	"strings"
)

// Error is what every backend returns for a failed operation. Kind is one of
// the sentinels (or nil for an unclassified failure), so callers test with
// errors.Is(err, ErrPrecondition); the message names the store, bucket and
// key so an operator can act on it without a debugger.
type Error struct {
	Op     string // "get", "put", "delete", "list"
	Store  string // the store's String(), e.g. "s3://bucket/prefix"
	Key    string // the key relative to the store (a prefix for list)
	Kind   error  // ErrNotFound, ErrPrecondition, ... or nil
	Detail string // short server-side detail, e.g. "HTTP 412 PreconditionFailed"
	Err    error  // the underlying cause, may be nil
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("bucket: ")
	b.WriteString(e.Op)
	b.WriteString(" ")
	b.WriteString(joinKey(e.Store, e.Key))
	b.WriteString(": ")
	switch {
	case e.Kind != nil:
		b.WriteString(e.Kind.Error())
		if e.Detail != "" {
			b.WriteString(" (" + e.Detail + ")")
		}
	case e.Detail != "":
		b.WriteString(e.Detail)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("failed")
	}
	return b.String()
}

// Unwrap exposes both the sentinel and the cause to errors.Is/As.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// joinKey renders store + key as one location ("s3://b/p" + "k" = "s3://b/p/k").
func joinKey(store, key string) string {
	if key == "" {
		return store
	}
	return strings.TrimSuffix(store, "/") + "/" + key
}

// errInvalidKey is returned (wrapped) for keys no backend may store.
var errInvalidKey = errors.New("invalid key")
