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
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	pr := &prober{ctx: ctx, store: store, key: ProbePrefix + hex.EncodeToString(rnd[:])}
	defer func() {
		pr.cleanUp()
		res = pr.res
	}()

	supported, err := pr.create()
	if err != nil || !supported {
		return pr.res, err
	}
	for _, check := range []func() error{
		pr.createAgain, pr.update, pr.staleUpdate, pr.missingKey, pr.conditionalGet, pr.list,
	} {
		if err := check(); err != nil {
			return pr.res, err
		}
	}
	pr.res.ConditionalWrites = !pr.unsafe
	return pr.res, nil
}

// prober is one run of Probe: its scratch key and what the checks learned
// so far. Each check is one numbered step of Probe's doc comment.
type prober struct {
	ctx   context.Context
	store Store
	key   string
	res   ProbeResult
	// wrote: the scratch key exists (cleanUp deletes it).
	wrote bool
	// unsafe: a check found conditional writes ignored or broken.
	unsafe bool
	// etag1 is the first version's ETag; current the key's ETag now ("":
	// unknown).
	etag1, current string
}

func (pr *prober) problem(format string, args ...any) {
	pr.res.Problems = append(pr.res.Problems, fmt.Sprintf(format, args...))
}

func (pr *prober) body(step string) []byte {
	return []byte("dynia probe " + pr.key + " " + step + "\n")
}

// cleanUp deletes the scratch key if a check wrote it, even if ctx was
// cancelled meanwhile.
func (pr *prober) cleanUp() {
	if !pr.wrote {
		return // nothing to clean up, and maybe no store to reach
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(pr.ctx), 30*time.Second)
	defer cancel()
	if derr := pr.store.Delete(dctx, pr.key); derr != nil {
		pr.problem("deleting the probe object failed: %v", derr)
	}
}

// landed reports whether key holds want, and its ETag: a conditional
// put whose answer was lost after the store applied it is retried by
// the S3 backend, and that retry gets 412 although the write happened.
func (pr *prober) landed(want []byte) (string, bool) {
	obj, err := pr.store.Get(pr.ctx, pr.key, "")
	if err != nil || !bytes.Equal(obj.Body, want) {
		return "", false
	}
	return obj.ETag, true
}

// create is step 1, a create-only put: this also proves reachability and
// write permission. It answers false (and a problem) when the store
// rejects conditional headers while a plain put works: no further check
// can run.
func (pr *prober) create() (bool, error) {
	ctx, store := pr.ctx, pr.store
	etag1, err := store.Put(ctx, pr.key, pr.body("create"), Cond{IfNoneMatch: true})
	if errors.Is(err, ErrPrecondition) {
		if etag, ok := pr.landed(pr.body("create")); ok {
			etag1, err = etag, nil
		}
	}
	switch {
	case err == nil:
		pr.wrote = true
	case errors.Is(err, ErrPrecondition):
		return false, fmt.Errorf("probe %s: create-only put of a fresh random key was refused: %w", store, err)
	case errors.Is(err, ErrAccessDenied), errors.Is(err, ErrThrottled), ctx.Err() != nil:
		return false, fmt.Errorf("probe %s: cannot write a scratch object: %w", store, err)
	default:
		// Maybe the store rejects conditional headers outright (501/400).
		if _, perr := store.Put(ctx, pr.key, pr.body("plain"), Cond{}); perr != nil {
			return false, fmt.Errorf("probe %s: cannot write a scratch object: %w", store, err)
		}
		pr.wrote = true
		pr.problem("a create-only put (If-None-Match: *) failed (%v) while a plain put works: the store does not support conditional writes", err)
		return false, nil
	}
	pr.etag1, pr.current = etag1, etag1
	return true, nil
}

// createAgain is step 2: a second create-only put must be refused.
func (pr *prober) createAgain() error {
	etag2, err := pr.store.Put(pr.ctx, pr.key, pr.body("create again"), Cond{IfNoneMatch: true})
	switch {
	case err == nil:
		pr.unsafe = true
		pr.current = etag2
		pr.problem("a create-only put (If-None-Match: *) overwrote an existing object: the store ignores If-None-Match")
	case !errors.Is(err, ErrPrecondition):
		return fmt.Errorf("probe %s: create-only put: %w", pr.store, err)
	}
	return nil
}

// update is step 3: a put with the current ETag must succeed...
func (pr *prober) update() error {
	etag3, err := pr.store.Put(pr.ctx, pr.key, pr.body("update"), Cond{IfMatch: pr.current})
	if errors.Is(err, ErrPrecondition) {
		if etag, ok := pr.landed(pr.body("update")); ok {
			etag3, err = etag, nil
		}
	}
	switch {
	case err == nil:
		pr.current = etag3
	case errors.Is(err, ErrPrecondition):
		pr.unsafe = true
		pr.problem("a put with the current ETag (If-Match %s) was refused: conditional writes are broken", pr.current)
	default:
		return fmt.Errorf("probe %s: conditional put: %w", pr.store, err)
	}
	return nil
}

// staleUpdate is step 4: ...and one with a stale ETag must fail.
func (pr *prober) staleUpdate() error {
	if sameETag(pr.etag1, pr.current) {
		pr.unsafe = true
		pr.problem("the store returned the same ETag %s for different content", pr.current)
	} else if _, err := pr.store.Put(pr.ctx, pr.key, pr.body("stale update"), Cond{IfMatch: pr.etag1}); err == nil {
		pr.unsafe = true
		pr.problem("a put with a stale ETag (If-Match %s) succeeded: the store ignores If-Match", pr.etag1)
		pr.current = ""
	} else if !errors.Is(err, ErrPrecondition) {
		return fmt.Errorf("probe %s: stale conditional put: %w", pr.store, err)
	}
	return nil
}

// missingKey is step 5: If-Match on a missing key must fail too (AWS and
// versitygw: 404).
func (pr *prober) missingKey() error {
	missing := pr.key + "-missing"
	if _, err := pr.store.Put(pr.ctx, missing, pr.body("missing"), Cond{IfMatch: pr.etag1}); err == nil {
		pr.unsafe = true
		pr.problem("a put with If-Match on a missing key created it: the store ignores If-Match")
		_ = pr.store.Delete(pr.ctx, missing)
	} else if !errors.Is(err, ErrPrecondition) {
		return fmt.Errorf("probe %s: conditional put on a missing key: %w", pr.store, err)
	}
	return nil
}

// conditionalGet is step 6: reading with the current ETag should answer
// not-modified: without it polling still works but downloads the object
// every time.
func (pr *prober) conditionalGet() error {
	if pr.current == "" {
		return nil
	}
	if _, err := pr.store.Get(pr.ctx, pr.key, pr.current); err == nil {
		pr.problem("a GET with If-None-Match and the current ETag returned the object instead of not-modified (polling will download it every time)")
	} else if !errors.Is(err, ErrNotModified) {
		return fmt.Errorf("probe %s: conditional get: %w", pr.store, err)
	}
	return nil
}

// list is step 7: listing must show the scratch key.
func (pr *prober) list() error {
	infos, err := pr.store.List(pr.ctx, pr.key)
	if err != nil {
		return fmt.Errorf("probe %s: list: %w", pr.store, err)
	}
	if len(infos) == 0 || infos[0].Key != pr.key {
		pr.problem("listing %q did not return the object just written", pr.key)
	}
	return nil
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
