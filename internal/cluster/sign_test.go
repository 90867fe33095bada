package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/signing"
)

// keysIn keeps a machine's state keys in dir.
func keysIn(dir string) cluster.FileKeys {
	return cluster.FileKeys{Base: func(name string) (string, error) { return filepath.Join(dir, name), nil }}
}

func fileBucket(t *testing.T) bucket.Store {
	t.Helper()
	b, err := bucket.Open(context.Background(), "file://"+t.TempDir(), bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rawState(t *testing.T, b bucket.Store, name string) []byte {
	t.Helper()
	obj, err := b.Get(context.Background(), cluster.StateKey(name), "")
	if err != nil {
		t.Fatal(err)
	}
	return obj.Body
}

func putRaw(t *testing.T, b bucket.Store, name string, body []byte) {
	t.Helper()
	if _, err := b.Put(context.Background(), cluster.StateKey(name), body, bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
}

func setAdvert(v float64) func(*cluster.State) (*cluster.State, error) {
	return func(s *cluster.State) (*cluster.State, error) { s.HA.AdvertInterval = v; return s, nil }
}

// TestSignedStore: a store with keys signs every write with the cluster's
// key (made once, 0600), names its public half in the state, and verifies
// every read.
func TestSignedStore(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	dir := t.TempDir()
	store := cluster.NewSignedStore(b, keysIn(dir))
	st := newCluster(t, store, "shop")
	key, err := signing.LoadPrivateKey(filepath.Join(dir, "shop.sign.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "shop.sign.key")); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o", fi.Mode().Perm())
	}
	if want := signing.PublicKeyString(signing.Public(key)); st.SigningKey != want {
		t.Fatalf("signing_key %q, want the key file's %q", st.SigningKey, want)
	}
	raw := rawState(t, b, "shop")
	if _, err := cluster.DecodeSigned(raw, signing.Public(key)); err != nil {
		t.Fatalf("the object does not verify with the key file's key: %v", err)
	}
	if _, err := store.Update(ctx, "shop", setAdvert(2)); err != nil {
		t.Fatal(err)
	}
	got, _, err := store.Load(ctx, "shop")
	if err != nil || got.HA.AdvertInterval != 2 || got.Generation != 2 {
		t.Fatalf("after update: %+v, %v", got, err)
	}
	// The same key every time: no second key file, same signing_key.
	if got.SigningKey != st.SigningKey {
		t.Fatalf("signing key changed: %q → %q", st.SigningKey, got.SigningKey)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.key")); len(m) != 1 {
		t.Fatalf("key files %v, want one", m)
	}
}

// TestTamperedStateRefused: whatever a holder of the bucket key writes in
// place of a signed state — an altered body, an unsigned document, a state
// signed with another key, an old signed state — every reader with the key
// refuses it, naming the object; nodes (DecodeSigned) refuse the first
// three, and replays are theirs to refuse by generation (internal/pull).
func TestTamperedStateRefused(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	dir := t.TempDir()
	store := cluster.NewSignedStore(b, keysIn(dir))
	newCluster(t, store, "shop")
	old := rawState(t, b, "shop") // generation 1
	if _, err := store.Update(ctx, "shop", setAdvert(2)); err != nil {
		t.Fatal(err)
	}
	good := rawState(t, b, "shop") // generation 2
	key, _ := signing.LoadPrivateKey(filepath.Join(dir, "shop.sign.key"))
	pub := signing.Public(key)

	// Another cluster's key, as an attacker who made their own would.
	mallory := cluster.NewSignedStore(fileBucket(t), keysIn(t.TempDir()))
	mst := newCluster(t, mallory, "shop")
	foreign := rawState(t, mallory.B, "shop")

	st, err := cluster.DecodeSigned(good, pub)
	if err != nil {
		t.Fatal(err)
	}
	unsigned, _ := st.Encode()
	st.SigningKey = mst.SigningKey
	unsignedNamingOther, _ := st.Encode()

	for _, tc := range []struct {
		name   string
		body   []byte
		replay bool
	}{
		{"advert_interval changed in the signed body", bytes.Replace(good, []byte(`"advert_interval": 2`), []byte(`"advert_interval": 9`), 1), false},
		{"a priority changed", bytes.Replace(good, []byte(`"priority": 150`), []byte(`"priority": 151`), 1), false},
		{"unsigned document", unsigned, false},
		{"unsigned document naming another key", unsignedNamingOther, false},
		{"signed with another key", foreign, false},
		{"an older signed state put back", old, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if bytes.Equal(tc.body, good) {
				t.Fatal("the test's tampering changed nothing")
			}
			putRaw(t, b, "shop", tc.body)
			_, _, err := store.Load(ctx, "shop")
			if err == nil {
				t.Fatal("Load accepted it")
			}
			if !strings.Contains(err.Error(), b.String()+"/clusters/shop/state.json") {
				t.Errorf("error does not name the object: %v", err)
			}
			var se *cluster.SignatureError
			if tc.replay != errors.Is(err, cluster.ErrReplayed) || !tc.replay != errors.As(err, &se) {
				t.Errorf("error %v: replay %v, signature error %v", err, errors.Is(err, cluster.ErrReplayed), errors.As(err, &se))
			}
			// A write never launders it: Update reads first and fails.
			if _, err := store.Update(ctx, "shop", setAdvert(3)); err == nil {
				t.Error("Update wrote over it")
			}
			_, err = cluster.DecodeSigned(tc.body, pub)
			if tc.replay && err != nil {
				t.Errorf("DecodeSigned of a genuine old state: %v", err)
			}
			if !tc.replay && !errors.As(err, &se) {
				t.Errorf("DecodeSigned: %v, want a SignatureError", err)
			}
			putRaw(t, b, "shop", good)
			if _, _, err := store.Load(ctx, "shop"); err != nil {
				t.Fatalf("the good state put back: %v", err)
			}
		})
	}
}

// TestUnsignedClusterIsSignedByTheNextWrite: a cluster written before
// signing (no key anywhere) still loads; the first write makes the key and
// signs; from then on an unsigned document is refused (no downgrade), and
// a machine without the key file refuses too, saying where to copy it.
func TestUnsignedClusterIsSignedByTheNextWrite(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	newCluster(t, cluster.NewStore(b), "old") // an unsigned state
	if cluster.IsSigned(rawState(t, b, "old")) {
		t.Fatal("NewStore wrote a signed state")
	}
	dir := t.TempDir()
	store := cluster.NewSignedStore(b, keysIn(dir))
	st, _, err := store.Load(ctx, "old")
	if err != nil || st.SigningKey != "" {
		t.Fatalf("unsigned cluster: %+v, %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.sign.key")); !os.IsNotExist(err) {
		t.Fatalf("a read made a key: %v", err)
	}
	unsigned := rawState(t, b, "old")
	next, err := store.Update(ctx, "old", setAdvert(2))
	if err != nil {
		t.Fatal(err)
	}
	if next.SigningKey == "" || !cluster.IsSigned(rawState(t, b, "old")) {
		t.Fatal("the first write did not sign")
	}
	putRaw(t, b, "old", unsigned)
	if _, _, err := store.Load(ctx, "old"); err == nil {
		t.Fatal("an unsigned state accepted once the cluster is signed")
	}
	putRaw(t, b, "old", mustSigned(t, store, "old", next))

	other := cluster.NewSignedStore(b, keysIn(t.TempDir()))
	_, _, err = other.Load(ctx, "old")
	if !errors.Is(err, cluster.ErrNoSigningKey) || !strings.Contains(err.Error(), "old.sign.key") {
		t.Fatalf("machine without the key: %v", err)
	}
	// A store without keys reads it but never writes over it.
	if _, err := cluster.NewStore(b).Update(ctx, "old", setAdvert(3)); !errors.Is(err, cluster.ErrNoSigningKey) {
		t.Fatalf("keyless Update of a signed state: %v", err)
	}
}

func mustSigned(t *testing.T, store *cluster.Store, name string, st *cluster.State) []byte {
	t.Helper()
	key, _, err := store.Keys.SigningKey(name, false)
	if err != nil || key == nil {
		t.Fatalf("no key: %v", err)
	}
	b, err := st.EncodeSigned(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAcceptAfterRecreate: a cluster destroyed and created again under the
// same name (a later created_at) starts its generations over; the replay
// check follows it, and still refuses the older cluster's states.
func TestAcceptAfterRecreate(t *testing.T) {
	k := keysIn(t.TempDir())
	first := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "42", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	first.Generation = 40
	if err := k.Accept(first); err != nil {
		t.Fatal(err)
	}
	second := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "42", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC))
	second.Generation = 1
	if err := k.Accept(second); err != nil {
		t.Fatalf("new cluster under the same name: %v", err)
	}
	if err := k.Accept(first); !errors.Is(err, cluster.ErrReplayed) {
		t.Fatalf("the old cluster's state after the new one: %v", err)
	}
	second.Generation = 2
	if err := k.Accept(second); err != nil {
		t.Fatal(err)
	}
	second.Generation = 1
	if err := k.Accept(second); !errors.Is(err, cluster.ErrReplayed) {
		t.Fatalf("generation 1 after 2: %v", err)
	}
}

// TestKeyFieldsValidated: signing_key and report_key must be Ed25519 public
// keys; the error names the field and the value.
func TestKeyFieldsValidated(t *testing.T) {
	st := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "42", time.Now())
	st, _, err := cluster.AddNodes(st, 1, cluster.NewNamer(1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  func(*cluster.State)
		want string
	}{
		{"signing_key", func(s *cluster.State) { s.SigningKey = "AAAA" }, `signing_key "AAAA": not an Ed25519 public key`},
		{"report_key", func(s *cluster.State) { s.Nodes[0].ReportKey = "not base64!" }, `nodes[0].report_key "not base64!": not an Ed25519 public key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := st.Clone()
			tc.set(s)
			if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}

// staleOnce answers the first Get of the state with an older object, as a
// read racing another command's write on the same machine can.
type staleOnce struct {
	bucket.Store
	old  []byte
	used bool
}

func (s *staleOnce) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	if !s.used && key == cluster.StateKey("shop") {
		s.used = true
		return &bucket.Object{Body: s.old, ETag: `"stale"`}, nil
	}
	return s.Store.Get(ctx, key, ifNoneMatch)
}

// TestStaleReadIsNotAReplay: a read that returns an older state than this
// machine accepted (another command's write overtook it) is read again and
// succeeds; only a state that stays old is refused.
func TestStaleReadIsNotAReplay(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	keys := keysIn(t.TempDir())
	store := cluster.NewSignedStore(b, keys)
	newCluster(t, store, "shop")
	old := rawState(t, b, "shop")
	if _, err := store.Update(ctx, "shop", setAdvert(2)); err != nil {
		t.Fatal(err)
	}
	racing := cluster.NewSignedStore(&staleOnce{Store: b, old: old}, keys)
	st, _, err := racing.Load(ctx, "shop")
	if err != nil || st.Generation != 2 {
		t.Fatalf("a stale first read: %+v, %v; want generation 2 from the second", st, err)
	}
	putRaw(t, b, "shop", old)
	if _, _, err := store.Load(ctx, "shop"); !errors.Is(err, cluster.ErrReplayed) {
		t.Fatalf("an old state that stays: %v, want ErrReplayed", err)
	}
}

// overtaken is a bucket whose first n reads of the state are each
// overtaken by another command's write (and its record of the accepted
// state) before the reader gets the answer: a storm of commands on one
// machine.
type overtaken struct {
	bucket.Store
	n      int
	writer *cluster.Store
	t      *testing.T
}

func (o *overtaken) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	obj, err := o.Store.Get(ctx, key, ifNoneMatch)
	if err == nil && o.n > 0 && key == cluster.StateKey("shop") {
		o.n--
		if _, err := o.writer.Update(ctx, "shop", setAdvert(float64(1+o.n%2))); err != nil {
			o.t.Fatal(err)
		}
	}
	return obj, err
}

// TestOvertakenReadsAreNotAReplay: reads overtaken again and again by
// other commands' writes are read again until one is new enough; the same
// old object read twice is a replay.
func TestOvertakenReadsAreNotAReplay(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	keys := keysIn(t.TempDir())
	writer := cluster.NewSignedStore(b, keys)
	newCluster(t, writer, "shop")
	if _, err := writer.Update(ctx, "shop", setAdvert(2)); err != nil {
		t.Fatal(err)
	}
	reader := cluster.NewSignedStore(&overtaken{Store: b, n: 5, writer: writer, t: t}, keys)
	st, _, err := reader.Load(ctx, "shop")
	if err != nil || st.Generation != 7 {
		t.Fatalf("after 5 overtaken reads: %+v, %v; want generation 7", st, err)
	}
	old := rawState(t, b, "shop")
	if _, err := writer.Update(ctx, "shop", setAdvert(3)); err != nil {
		t.Fatal(err)
	}
	gets := &countGets{Store: b}
	putRaw(t, b, "shop", old)
	if _, _, err := cluster.NewSignedStore(gets, keys).Load(ctx, "shop"); !errors.Is(err, cluster.ErrReplayed) {
		t.Fatalf("an old state put back: %v, want ErrReplayed", err)
	}
	if gets.n != 2 {
		t.Errorf("an old state put back was read %d times, want 2 (the same object twice)", gets.n)
	}
}

// countGets counts reads.
type countGets struct {
	bucket.Store
	n int
}

func (c *countGets) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	c.n++
	return c.Store.Get(ctx, key, ifNoneMatch)
}

// TestConcurrentAcceptOnlyGrows: commands accepting states at once never
// lower the machine's record: 64 writers each accepting 16 increasing
// generations, interleaved, leave it at the highest, and each state was
// either recorded or refused as older.
func TestConcurrentAcceptOnlyGrows(t *testing.T) {
	keys := keysIn(t.TempDir())
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const writers, rounds = 64, 16
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				g := int64(r*writers + w + 1)
				if err := keys.Accept(&cluster.State{Name: "shop", CreatedAt: created, Generation: g}); err != nil && !errors.Is(err, cluster.ErrReplayed) {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, err := keys.Seen("shop"); err != nil || got != writers*rounds {
		t.Fatalf("Seen after concurrent accepts: %d, %v; want %d", got, err, writers*rounds)
	}
}

// TestRecreateSignsWithANewKey: a cluster destroyed and created again
// under the same name is signed with a new key (the old one is set aside,
// not deleted), so a state of the earlier cluster put back in the bucket
// fails the signature check of the new cluster's nodes and of this machine.
// A key never used for an accepted state is kept by Create.
func TestRecreateSignsWithANewKey(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	dir := t.TempDir()
	store := cluster.NewSignedStore(b, keysIn(dir))
	first := newCluster(t, store, "shop")
	old := rawState(t, b, "shop")
	if err := store.Delete(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	second := newCluster(t, store, "shop")
	if second.SigningKey == "" || second.SigningKey == first.SigningKey {
		t.Fatalf("recreated cluster signed with key %q, the destroyed one's was %q: want a new key", second.SigningKey, first.SigningKey)
	}
	if retired, _ := filepath.Glob(filepath.Join(dir, "shop.sign.key.retired-*")); len(retired) != 1 {
		t.Fatalf("retired keys: %v, want the old key set aside once", retired)
	}
	putRaw(t, b, "shop", old)
	if _, _, err := store.Load(ctx, "shop"); err == nil {
		t.Fatal("the destroyed cluster's state accepted after the cluster was created again")
	}
	pub, err := signing.ParsePublicKey(second.SigningKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.DecodeSigned(old, pub); err == nil {
		t.Fatal("a node pinning the new key accepts the destroyed cluster's state")
	}

	// A key made by a create that never wrote (nothing accepted) is kept.
	fresh := keysIn(t.TempDir())
	key, _, err := fresh.SigningKey("web", true)
	if err != nil {
		t.Fatal(err)
	}
	st := newCluster(t, cluster.NewSignedStore(fileBucket(t), fresh), "web")
	if st.SigningKey != signing.PublicKeyString(signing.Public(key)) {
		t.Fatal("Create replaced a key no state was ever accepted with")
	}
}

// TestStrippedSignatureRefused: a signed-era state (its nodes carry report
// keys) put back without its signature is refused by a machine that has no
// key file, rather than accepted and signed with a new key (which would
// accept the forgery and strand every node pinning the real key).
func TestStrippedSignatureRefused(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	store := cluster.NewSignedStore(b, keysIn(t.TempDir()))
	newCluster(t, store, "shop")
	st, err := store.Update(ctx, "shop", func(s *cluster.State) (*cluster.State, error) {
		s.Nodes[0].ReportKey = signing.PublicKeyString(signing.Public(newKey(t)))
		return s, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st.SigningKey = ""
	bare, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	putRaw(t, b, "shop", bare)
	dir := t.TempDir()
	other := cluster.NewSignedStore(b, keysIn(dir))
	if _, _, err := other.Load(ctx, "shop"); !errors.Is(err, cluster.ErrNoSigningKey) || !strings.Contains(err.Error(), "report keys") {
		t.Fatalf("stripped signed-era state on a machine without the key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "shop.sign.key")); !os.IsNotExist(err) {
		t.Fatalf("a key was made for a stripped state: %v", err)
	}
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k, err := signing.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestResignNeedsTheKey: resigning a signed cluster on a machine without
// its state key is refused (the nodes pin that key; a new one would strand
// them) and writes nothing.
func TestResignNeedsTheKey(t *testing.T) {
	ctx := context.Background()
	b := fileBucket(t)
	newCluster(t, cluster.NewSignedStore(b, keysIn(t.TempDir())), "shop")
	before := rawState(t, b, "shop")
	dir := t.TempDir()
	if _, err := cluster.NewSignedStore(b, keysIn(dir)).Resign(ctx, "shop", 0); !errors.Is(err, cluster.ErrNoSigningKey) {
		t.Fatalf("resign without the key: %v, want ErrNoSigningKey", err)
	}
	if !bytes.Equal(rawState(t, b, "shop"), before) {
		t.Fatal("a refused resign changed the state")
	}
	if _, err := os.Stat(filepath.Join(dir, "shop.sign.key")); !os.IsNotExist(err) {
		t.Fatalf("a refused resign made a key: %v", err)
	}
}
