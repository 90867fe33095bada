package bucket

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ProbeResult is what Probe learned about a store.
type ProbeResult struct {
	// ConditionalWrites is true when create-only puts and stale If-Match
	// puts are both refused: the store is safe for dynia's CAS updates.
	ConditionalWrites bool
	// Problems describes every check that failed, in plain words.
	Problems []string
}

// ProbePrefix is where Probe writes its scratch objects.
const ProbePrefix = "_dynia/probe/"

// Probe checks on a scratch key under ProbePrefix that the store is
// reachable, the credentials can write, list and delete, and that conditional
// requests are honoured: a second create-only put and a stale If-Match put
// must fail with ErrPrecondition, and a GET with the current ETag must answer
// not-modified. It returns an error only when the checks could not run
// (unreachable, access denied); unsafe behaviour is reported in the result.
// It writes at most five times, each on a fresh key, so Spaces' per-object
// rate limits do not matter. Nothing is cached: call it once per command.
func Probe(ctx context.Context, store Store) (res ProbeResult, err error) {
	problem := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }

	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	key := ProbePrefix + hex.EncodeToString(rnd[:])
	body := func(step string) []byte { return []byte("dynia probe " + key + " " + step + "\n") }

	wrote := false
	defer func() {
		if !wrote {
			return // nothing to clean up, and maybe no store to reach
		}
		// Clean up even if ctx was cancelled meanwhile.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if derr := store.Delete(dctx, key); derr != nil {
			problem("deleting the probe object failed: %v", derr)
		}
	}()

	// landed reports whether key holds want, and its ETag: a conditional
	// put whose answer was lost after the store applied it is retried by
	// the S3 backend, and that retry gets 412 although the write happened.
	landed := func(want []byte) (string, bool) {
		obj, err := store.Get(ctx, key, "")
		if err != nil || !bytes.Equal(obj.Body, want) {
			return "", false
		}
		return obj.ETag, true
	}

	// 1. create: this also proves reachability and write permission.
	etag1, err := store.Put(ctx, key, body("create"), Cond{IfNoneMatch: true})
	if errors.Is(err, ErrPrecondition) {
		if etag, ok := landed(body("create")); ok {
			etag1, err = etag, nil
		}
	}
	switch {
	case err == nil:
		wrote = true
	case errors.Is(err, ErrPrecondition):
		return res, fmt.Errorf("probe %s: create-only put of a fresh random key was refused: %w", store, err)
	case errors.Is(err, ErrAccessDenied), errors.Is(err, ErrThrottled), ctx.Err() != nil:
		return res, fmt.Errorf("probe %s: cannot write a scratch object: %w", store, err)
	default:
		// Maybe the store rejects conditional headers outright (501/400).
		if _, perr := store.Put(ctx, key, body("plain"), Cond{}); perr != nil {
			return res, fmt.Errorf("probe %s: cannot write a scratch object: %w", store, err)
		}
		wrote = true
		problem("a create-only put (If-None-Match: *) failed (%v) while a plain put works: the store does not support conditional writes", err)
		return res, nil
	}
	current := etag1
	unsafe := false

	// 2. a second create-only put must be refused.
	etag2, err := store.Put(ctx, key, body("create again"), Cond{IfNoneMatch: true})
	switch {
	case err == nil:
		unsafe = true
		current = etag2
		problem("a create-only put (If-None-Match: *) overwrote an existing object: the store ignores If-None-Match")
	case !errors.Is(err, ErrPrecondition):
		return res, fmt.Errorf("probe %s: create-only put: %w", store, err)
	}

	// 3. a put with the current ETag must succeed...
	etag3, err := store.Put(ctx, key, body("update"), Cond{IfMatch: current})
	if errors.Is(err, ErrPrecondition) {
		if etag, ok := landed(body("update")); ok {
			etag3, err = etag, nil
		}
	}
	switch {
	case err == nil:
		current = etag3
	case errors.Is(err, ErrPrecondition):
		unsafe = true
		problem("a put with the current ETag (If-Match %s) was refused: conditional writes are broken", current)
	default:
		return res, fmt.Errorf("probe %s: conditional put: %w", store, err)
	}

	// 4. ...and one with a stale ETag must fail.
	if sameETag(etag1, current) {
		unsafe = true
		problem("the store returned the same ETag %s for different content", current)
	} else if _, err := store.Put(ctx, key, body("stale update"), Cond{IfMatch: etag1}); err == nil {
		unsafe = true
		problem("a put with a stale ETag (If-Match %s) succeeded: the store ignores If-Match", etag1)
		current = ""
	} else if !errors.Is(err, ErrPrecondition) {
		return res, fmt.Errorf("probe %s: stale conditional put: %w", store, err)
	}

	// 5. If-Match on a missing key must fail too (AWS and versitygw: 404).
	missing := key + "-missing"
	if _, err := store.Put(ctx, missing, body("missing"), Cond{IfMatch: etag1}); err == nil {
		unsafe = true
		problem("a put with If-Match on a missing key created it: the store ignores If-Match")
		_ = store.Delete(ctx, missing)
	} else if !errors.Is(err, ErrPrecondition) {
		return res, fmt.Errorf("probe %s: conditional put on a missing key: %w", store, err)
	}

	// 6. reading with the current ETag should answer not-modified: without
	// it polling still works but downloads the object every time.
	if current != "" {
		if _, err := store.Get(ctx, key, current); err == nil {
			problem("a GET with If-None-Match and the current ETag returned the object instead of not-modified (polling will download it every time)")
		} else if !errors.Is(err, ErrNotModified) {
			return res, fmt.Errorf("probe %s: conditional get: %w", store, err)
		}
	}

	// 7. listing must show the scratch key.
	infos, err := store.List(ctx, key)
	if err != nil {
		return res, fmt.Errorf("probe %s: list: %w", store, err)
	}
	if len(infos) == 0 || infos[0].Key != key {
		problem("listing %q did not return the object just written", key)
	}

	res.ConditionalWrites = !unsafe
	return res, nil
}

// UnsafeStoreError is returned by RequireSafe; it wraps ErrUnsafeStore.
type UnsafeStoreError struct {
	Store    string
	Problems []string
}

func (e *UnsafeStoreError) Error() string {
	return fmt.Sprintf("%s: %v: %s; concurrent writers could silently overwrite each other's changes to the cluster state",
		e.Store, ErrUnsafeStore, strings.Join(e.Problems, "; "))
}

func (e *UnsafeStoreError) Unwrap() error { return ErrUnsafeStore }

// RequireSafe probes store and refuses (an *UnsafeStoreError wrapping
// ErrUnsafeStore) when it ignores conditional writes, unless allowUnsafe.
// Every command that writes state calls it first. Errors from the probe
// itself (unreachable, access denied) are returned in any case.
func RequireSafe(ctx context.Context, store Store, allowUnsafe bool) error {
	res, err := Probe(ctx, store)
	if err != nil {
		return err
	}
	if res.ConditionalWrites || allowUnsafe {
		return nil
	}
	return &UnsafeStoreError{Store: store.String(), Problems: res.Problems}
}
