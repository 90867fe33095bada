package cluster

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/signing"
)

// Keys in the bucket, relative to the store's prefix.
func StateKey(name string) string { return "clusters/" + name + "/state.json" }
func StatusKey(name, nodeID string) string {
	return "clusters/" + name + "/nodes/" + nodeID + "/status.json"
}
func ClusterPrefix(name string) string { return "clusters/" + name + "/" }

// ErrClusterNotFound means no state object exists for the cluster.
var ErrClusterNotFound = errors.New("cluster not found")

// ErrConflict means a compare-and-swap kept losing to other writers.
var ErrConflict = errors.New("state changed concurrently too many times")

// Store reads and writes cluster state with compare-and-swap on the ETag.
type Store struct {
	B bucket.Store
	// Keys, when set, signs every state written and verifies every state
	// read (NewSignedStore); nil reads without checking signatures and
	// writes unsigned states only (NewStore: tests and tools).
	Keys Keys
	// MaxAttempts bounds Update's read-mutate-write loop (default 40).
	MaxAttempts int
	// Now stamps updated_at; default time.Now.
	Now func() time.Time
	// CheckRaise, when set, is asked before Update writes a state that
	// raises min_pull_version (RaisesMinPullVersion): an error stops the
	// write and is returned as is. The CLI refuses there to strand a ready
	// node whose dynia-pull is older (internal/cli, compat.go).
	CheckRaise func(ctx context.Context, cur, next *State) error

	conflicts   atomic.Int64
	lostAnswers atomic.Int64
}

// opIDBytes is the size of an operation id: 128 random bits, so no two
// writes ever share one.
const opIDBytes = 16

// NewOpID returns a fresh operation id: 32 lowercase hex digits.
func NewOpID() string {
	var b [opIDBytes]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// NewStore wraps a bucket without keys: it reads states without checking
// their signatures and refuses to write over a signed one. The CLI uses
// NewSignedStore; this is for tests and tools that only read.
func NewStore(b bucket.Store) *Store { return &Store{B: b} }

// NewSignedStore wraps a bucket with this machine's state keys: every
// state read must verify (or, for a cluster never signed and whose key
// this machine does not have, be unsigned), every state written is signed.
func NewSignedStore(b bucket.Store, keys Keys) *Store { return &Store{B: b, Keys: keys} }

// Keys is a machine's trust in cluster states: each cluster's state key
// and the newest state of it this machine accepted.
type Keys interface {
	// SigningKey returns the cluster's state key and the file it is kept
	// in (for messages). No key on this machine: nil, with its would-be
	// path. With create, a missing key is made and kept first.
	SigningKey(cluster string, create bool) (key ed25519.PrivateKey, path string, err error)
	// Accept is told every state this machine verified or wrote; it
	// refuses (an error) a state older than one it accepted before: an
	// old signed state put back in the bucket.
	Accept(st *State) error
}

// ErrNoSigningKey means a signed state was met by a store without its key.
var ErrNoSigningKey = errors.New("no state signing key")

// object names a cluster's state object for messages.
func (s *Store) object(name string) string { return s.B.String() + "/" + StateKey(name) }

// open decodes a state object read from the bucket, verifying it as
// Keys requires (see Store.Keys).
func (s *Store) open(name string, b []byte) (*State, error) {
	if s.Keys == nil {
		return DecodeSigned(b, nil)
	}
	key, path, err := s.Keys.SigningKey(name, false)
	if err != nil {
		return nil, err
	}
	if key == nil {
		st, err := DecodeSigned(b, nil)
		if err != nil {
			return nil, err
		}
		if IsSigned(b) || st.SigningKey != "" {
			return nil, fmt.Errorf("%w: cluster %s's state %s is signed (key %s), but this machine has no key file for it: copy it from the machine that created the cluster to %s (mode 0600)",
				ErrNoSigningKey, name, s.object(name), st.SigningKey, path)
		}
		if signedEra(st) {
			// Unsigned, yet written since dynia signs states (its nodes
			// have report keys): a signed state stripped of its signature
			// by something with bucket access. Signing it with a new key
			// here would accept the forgery and strand every node.
			return nil, fmt.Errorf("%w: cluster %s's state %s is unsigned but its nodes carry report keys (a signed state stripped of its signature?); this machine has no key file for it (%s): use the machine that holds the key",
				ErrNoSigningKey, name, s.object(name), path)
		}
		return st, nil // a cluster never signed; the next write signs it
	}
	st, err := DecodeSigned(b, signing.Public(key))
	var se *SignatureError
	if errors.As(err, &se) {
		return nil, fmt.Errorf("%s: %w: the bucket holds a state this machine's key (%s) did not sign — changed by something other than dynia (a node's bucket key?); refusing to use it (docs/security.md; after inspecting it: `dynia state resign --name %s --confirm`)",
			s.object(name), err, path, name)
	}
	if err != nil {
		return nil, err
	}
	if err := s.Keys.Accept(st); err != nil {
		return nil, fmt.Errorf("%s: %w", s.object(name), err)
	}
	return st, nil
}

// signedEra says whether st was written by a dynia that signs states: any
// node carries a report key (made with the state key, since both landed
// together).
func signedEra(st *State) bool {
	for _, n := range st.Nodes {
		if n.ReportKey != "" {
			return true
		}
	}
	return false
}

// retirer is the Keys that can set aside an earlier cluster's state key
// (FileKeys.Retire).
type retirer interface{ Retire(cluster string) error }

// encode signs st for writing (Keys), or encodes it unsigned (no Keys,
// and st never signed).
func (s *Store) encode(st *State) ([]byte, error) {
	if s.Keys == nil {
		if st.SigningKey != "" {
			return nil, fmt.Errorf("%w: cannot write cluster %s's signed state without its key", ErrNoSigningKey, st.Name)
		}
		return st.Encode()
	}
	key, _, err := s.Keys.SigningKey(st.Name, true)
	if err != nil {
		return nil, err
	}
	st.SigningKey = signing.PublicKeyString(signing.Public(key))
	return st.EncodeSigned(key)
}

// accepted tells Keys about a state this store wrote. Its generation is
// above the one it was made from, so Accept has no reason to refuse it;
// an error (the record could not be kept) costs only the replay check's
// memory, not the write.
func (s *Store) accepted(st *State) {
	if s.Keys != nil {
		_ = s.Keys.Accept(st)
	}
}

// Conflicts counts lost compare-and-swaps (retried) since the Store was made.
// A 412 that turns out to answer this Store's own applied write (counted by
// LostAnswers) is counted here too: the loop only learns so on its re-read.
func (s *Store) Conflicts() int64 { return s.conflicts.Load() }

// LostAnswers counts writes that failed to answer but were found applied
// on re-reading (their operation id was in the state), since the Store was
// made.
func (s *Store) LostAnswers() int64 { return s.lostAnswers.Load() }

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// Load reads and strictly decodes a cluster's state and returns its ETag.
//
// A state older than one this machine accepted is a replay only when it
// stays: another command on this machine may have written (and accepted)
// a newer one while this read was on its way, and under a storm of
// commands that can happen again during the next read. So the object is
// read again until it is new enough, or until the same old object (same
// ETag) is read twice in a row: since this machine's record was written
// after the newer state was in the bucket, a read that starts after the
// refusal shows at least that one, unless an old state was put back.
func (s *Store) Load(ctx context.Context, name string) (*State, string, error) {
	st, etag, err := s.load(ctx, name)
	for i := 0; i < maxReplayRereads && errors.Is(err, ErrReplayed); i++ {
		refused := etag
		if st, etag, err = s.load(ctx, name); errors.Is(err, ErrReplayed) && etag == refused {
			break
		}
	}
	if err != nil {
		return nil, "", err
	}
	return st, etag, nil
}

// maxReplayRereads bounds Load's re-reads of a state older than this
// machine accepted (each a different object: writers keep overtaking).
const maxReplayRereads = 20

// load reads and opens the state once. A refused replay still returns the
// object's ETag, so Load can tell the same object read again.
func (s *Store) load(ctx context.Context, name string) (*State, string, error) {
	obj, err := s.B.Get(ctx, StateKey(name), "")
	if errors.Is(err, bucket.ErrNotFound) {
		return nil, "", fmt.Errorf("%w: %s (no %s in %s)", ErrClusterNotFound, name, StateKey(name), s.B)
	}
	if err != nil {
		return nil, "", fmt.Errorf("read state of %s: %w", name, err)
	}
	st, err := s.open(name, obj.Body)
	var newer *NewerStateError
	if errors.As(err, &newer) {
		// Nothing to fix in the object: this CLI is too old for it.
		return nil, obj.ETag, fmt.Errorf("state of %s (%s in %s): %w", name, StateKey(name), s.B, err)
	}
	if err != nil {
		// Every write reads first (Update) or creates only where nothing
		// is (Create): an unreadable state is never overwritten.
		return nil, obj.ETag, fmt.Errorf("state of %s (%s in %s, left as it is: fix or restore it): %w", name, StateKey(name), s.B, err)
	}
	return st, obj.ETag, nil
}

// Create writes a new cluster's state, only if none exists (If-None-Match: *).
//
// The document carries a fresh operation id (State.RecentOps). When the
// answer to the write is lost (a 5xx or a dropped connection after the store
// applied it; the bucket's own retry then gets 412), Create re-reads the
// state and, finding its id there, reports success: the cluster was created
// once, by this call. A state without the id is another writer's, and the
// error wraps bucket.ErrPrecondition ("state already exists").
func (s *Store) Create(ctx context.Context, st *State) error {
	st = st.Clone()
	st.Generation = 1
	st.UpdatedAt = s.now()
	op := NewOpID()
	st.RecentOps = nil
	st.withOp(op)
	// No state in the bucket: a key this machine used for an earlier
	// cluster of the name (destroyed, perhaps elsewhere) is set aside, so
	// the new cluster's nodes pin a key the old states were not signed with.
	if r, ok := s.Keys.(retirer); ok {
		if _, err := s.B.Get(ctx, StateKey(st.Name), ""); errors.Is(err, bucket.ErrNotFound) {
			if err := r.Retire(st.Name); err != nil {
				return err
			}
		}
	}
	b, err := s.encode(st)
	if err != nil {
		return err
	}
	_, err = s.B.Put(ctx, StateKey(st.Name), b, bucket.Cond{IfNoneMatch: true})
	if err == nil {
		s.accepted(st)
		return nil
	}
	got, rerr := s.reread(ctx, st.Name, op)
	if got != nil {
		return nil
	}
	if errors.Is(err, bucket.ErrPrecondition) {
		return fmt.Errorf("create cluster %s: state already exists: %w", st.Name, err)
	}
	return fmt.Errorf("create cluster %s: %w%s", st.Name, err, unknownOutcome(rerr))
}

// Update runs the optimistic loop: read, mutate (pure), write with If-Match
// and generation+1; when another writer won, re-read and run mutate again.
// A mutate that returns ErrNoChange writes nothing and returns the current
// state. Any other mutate error is returned as is.
//
// Every write of one Update carries the same fresh operation id in
// State.RecentOps, so a write whose answer was lost is recognised instead of
// applied twice: after a 412 (which is also what the bucket's retry of an
// applied write gets) the loop's next read finds the id and returns that
// state; after an error whose outcome is unknown (5xx, timeout, reset, once
// the bucket's retries are spent) one re-read decides between success and
// the error. mutate may run more than once; the run whose write was applied
// is always the last one, so values it records for the caller are that
// run's.
func (s *Store) Update(ctx context.Context, name string, mutate func(*State) (*State, error)) (*State, error) {
	attempts := s.MaxAttempts
	if attempts <= 0 {
		attempts = 40
	}
	op := NewOpID()
	sent := false // a write carrying op may have reached the store
	for attempt := 0; attempt < attempts; attempt++ {
		cur, etag, err := s.Load(ctx, name)
		if err != nil {
			return nil, err
		}
		if sent && cur.HasOp(op) {
			s.lostAnswers.Add(1)
			return cur, nil
		}
		next, err := mutate(cur.Clone())
		if errors.Is(err, ErrNoChange) {
			return cur, nil
		}
		if err != nil {
			return nil, err
		}
		if s.CheckRaise != nil && RaisesMinPullVersion(cur, next) {
			if err := s.CheckRaise(ctx, cur, next); err != nil {
				return nil, err
			}
		}
		next.Generation = cur.Generation + 1
		next.UpdatedAt = s.now()
		next.withOp(op)
		b, err := s.encode(next)
		if err != nil {
			return nil, fmt.Errorf("update %s: new state invalid: %w", name, err)
		}
		_, err = s.B.Put(ctx, StateKey(name), b, bucket.Cond{IfMatch: etag})
		sent = true
		if err == nil {
			s.accepted(next)
			return next, nil
		}
		if !errors.Is(err, bucket.ErrPrecondition) {
			got, rerr := s.reread(ctx, name, op)
			if got != nil {
				return got, nil
			}
			return nil, fmt.Errorf("update %s: %w%s", name, err, unknownOutcome(rerr))
		}
		// Another writer won, or this write was applied and only its
		// answer was lost: the next read tells which.
		s.conflicts.Add(1)
		if err := sleepJitter(ctx, attempt); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("update %s: %w (%d attempts)", name, ErrConflict, attempts)
}

// rereadTimeout bounds the read that settles a write's unknown outcome. It
// runs even when ctx has ended (a timed-out write is exactly the case to
// settle), on a budget of its own.
const rereadTimeout = 15 * time.Second

// reread reads the state after a failed write and returns it when it
// carries op (the write was applied: its answer was lost), else nil and why
// not (nil error: read fine, op absent).
func (s *Store) reread(ctx context.Context, name, op string) (*State, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rereadTimeout)
	defer cancel()
	st, _, err := s.Load(rctx, name)
	if err != nil {
		return nil, err
	}
	if !st.HasOp(op) {
		return nil, nil
	}
	s.lostAnswers.Add(1)
	return st, nil
}

// unknownOutcome says what the re-read after a failed write showed.
func unknownOutcome(rerr error) string {
	if rerr == nil {
		return " (not applied: the state does not carry this write)"
	}
	return fmt.Sprintf(" (maybe applied: re-reading the state failed: %v)", rerr)
}

// sleepJitter waits a full-jitter exponential backoff: random in
// [0, min(1s, 10ms·2^attempt)], so racing writers spread out.
func sleepJitter(ctx context.Context, attempt int) error {
	ceiling := poll.Backoff(10*time.Millisecond, time.Second, attempt+1)
	return poll.Sleep(ctx, rand.N(ceiling)+time.Millisecond)
}

// Delete removes every object of the cluster: state last, so a crash midway
// leaves a cluster that can still be found and destroyed again. A delete
// whose answer was lost (it failed, but the object is gone on re-reading)
// is done.
func (s *Store) Delete(ctx context.Context, name string) error {
	objs, err := s.B.List(ctx, ClusterPrefix(name))
	if err != nil {
		return fmt.Errorf("delete cluster %s: %w", name, err)
	}
	for _, o := range objs {
		if o.Key == StateKey(name) {
			continue
		}
		if err := s.deleteKey(ctx, o.Key); err != nil {
			return fmt.Errorf("delete cluster %s: %w", name, err)
		}
	}
	if err := s.deleteKey(ctx, StateKey(name)); err != nil {
		return fmt.Errorf("delete cluster %s: %w", name, err)
	}
	return nil
}

// deleteKey deletes key; when the delete fails, a re-read that finds the
// key gone means it was applied and only its answer was lost.
func (s *Store) deleteKey(ctx context.Context, key string) error {
	err := s.B.Delete(ctx, key)
	if err == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rereadTimeout)
	defer cancel()
	if _, gerr := s.B.Get(rctx, key, ""); errors.Is(gerr, bucket.ErrNotFound) {
		s.lostAnswers.Add(1)
		return nil
	}
	return err
}

// List returns the names of every cluster in the bucket, sorted.
func (s *Store) List(ctx context.Context) ([]string, error) {
	objs, err := s.B.List(ctx, "clusters/")
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	var names []string
	for _, o := range objs {
		rest, ok := strings.CutPrefix(o.Key, "clusters/")
		if !ok {
			continue
		}
		if name, ok := strings.CutSuffix(rest, "/state.json"); ok && !strings.Contains(name, "/") {
			names = append(names, name)
		}
	}
	return names, nil
}
