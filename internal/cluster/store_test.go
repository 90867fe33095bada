package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

type backend struct {
	name string
	open func(t *testing.T) bucket.Store
}

func backends() []backend {
	return []backend{
		{"file", func(t *testing.T) bucket.Store {
			s, err := bucket.Open(context.Background(), "file://"+t.TempDir(), bucket.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"s3-versitygw", func(t *testing.T) bucket.Store {
			srv := testutil.StartVersityGW(t)
			s, err := bucket.Open(context.Background(), srv.URL("dynia"), bucket.Options{
				Endpoint: srv.Endpoint, Region: srv.Region, PathStyle: true,
				AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey,
			})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
}

func newCluster(t *testing.T, store *cluster.Store, name string) *cluster.State {
	t.Helper()
	st := cluster.New(name, "sgp1", "s-1vcpu-1gb", "42", time.Now())
	st, _, err := cluster.AddNodes(st, 1, cluster.NewNamer(1), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	got, _, err := store.Load(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestConcurrentAdds is the foundations issue's concurrency check: 16
// writers each add one node through compare-and-swap; none may be lost.
func TestConcurrentAdds(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			if b.name != "file" {
				testutil.Integration(t)
			}
			store := cluster.NewStore(b.open(t))
			before := newCluster(t, store, "race")
			const writers = 16
			var wg sync.WaitGroup
			errs := make(chan error, writers)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					namer := cluster.NewNamer(uint64(100 + i))
					_, err := store.Update(context.Background(), "race", func(s *cluster.State) (*cluster.State, error) {
						next, _, err := cluster.AddNodes(s, 1, namer, time.Now())
						return next, err
					})
					errs <- err
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			after, _, err := store.Load(context.Background(), "race")
			if err != nil {
				t.Fatal(err)
			}
			if got := len(after.Nodes) - len(before.Nodes); got != writers {
				t.Fatalf("%d nodes added, want %d", got, writers)
			}
			if got := after.Generation - before.Generation; got != writers {
				t.Fatalf("generation advanced by %d, want %d", got, writers)
			}
			if err := after.Validate(); err != nil { // unique ids and priorities
				t.Fatal(err)
			}
			if store.Conflicts() == 0 {
				t.Fatalf("no compare-and-swap conflict was retried: the test did not race")
			}
			t.Logf("%s: %d conflicts retried for %d writers", b.name, store.Conflicts(), writers)
		})
	}
}

func TestUpdateNoChangeWritesNothing(t *testing.T) {
	t.Parallel()
	store := cluster.NewStore(backends()[0].open(t))
	before := newCluster(t, store, "quiet")
	_, etag1, _ := store.Load(context.Background(), "quiet")
	got, err := store.Update(context.Background(), "quiet", func(s *cluster.State) (*cluster.State, error) {
		return cluster.MarkDraining(s, "no-such") // error path
	})
	if err == nil {
		t.Fatalf("unknown node accepted: %+v", got)
	}
	got, err = store.Update(context.Background(), "quiet", func(s *cluster.State) (*cluster.State, error) {
		return nil, cluster.ErrNoChange
	})
	if err != nil || got.Generation != before.Generation {
		t.Fatalf("no-change update: %v, generation %d", err, got.Generation)
	}
	_, etag2, _ := store.Load(context.Background(), "quiet")
	if etag1 != etag2 {
		t.Fatal("a no-change update rewrote the object")
	}
}

func TestCreateTwiceFails(t *testing.T) {
	t.Parallel()
	store := cluster.NewStore(backends()[0].open(t))
	newCluster(t, store, "once")
	st := cluster.New("once", "sgp1", "s-1vcpu-1gb", "42", time.Now())
	if err := store.Create(context.Background(), st); !errors.Is(err, bucket.ErrPrecondition) {
		t.Fatalf("second create: %v, want precondition failure", err)
	}
	if _, _, err := store.Load(context.Background(), "missing"); !errors.Is(err, cluster.ErrClusterNotFound) {
		t.Fatalf("missing cluster: %v", err)
	}
	names, err := store.List(context.Background())
	if err != nil || fmt.Sprint(names) != "[once]" {
		t.Fatalf("List = %v, %v", names, err)
	}
}

// lostAnswer wraps a store: the armed conditional write of a state.json is
// applied and then answered with an error, as when a proxy or the network
// loses the answer. With retry set, the write is sent a second time first,
// as the S3 backend's retry does, and the 412 that retry gets is returned.
// With apply false the write is not applied at all (a plain failure).
type lostAnswer struct {
	bucket.Store
	mu    sync.Mutex
	armed bool
	retry bool
	apply bool
	fired int
}

var errLost = errors.New("connection reset by peer (answer lost)")

func (l *lostAnswer) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	l.mu.Lock()
	fire := l.armed && strings.HasSuffix(key, "/state.json") && (cond.IfMatch != "" || cond.IfNoneMatch)
	if fire {
		l.armed = false
		l.fired++
	}
	l.mu.Unlock()
	if !fire {
		return l.Store.Put(ctx, key, body, cond)
	}
	if !l.apply {
		return "", &bucket.Error{Op: "put", Store: l.String(), Key: key, Detail: "HTTP 500 InternalError", Err: errLost}
	}
	if _, err := l.Store.Put(ctx, key, body, cond); err != nil {
		return "", err
	}
	if l.retry {
		_, err := l.Store.Put(ctx, key, body, cond)
		if !errors.Is(err, bucket.ErrPrecondition) {
			return "", fmt.Errorf("test setup: the retried write got %v, not a precondition failure", err)
		}
		return "", err
	}
	return "", &bucket.Error{Op: "put", Store: l.String(), Key: key, Detail: "HTTP 500 InternalError", Err: errLost}
}

func (l *lostAnswer) arm(retry, apply bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.armed, l.retry, l.apply = true, retry, apply
}

// TestLostAnswers: a Create or Update whose write was applied but whose
// answer was lost (an error, or the 412 its retry gets) is recognised on
// re-read by its operation id: it succeeds once, the generation advances
// by exactly one and the mutation is not applied a second time. A write
// that was not applied still fails, saying so.
func TestLostAnswers(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			if b.name != "file" {
				testutil.Integration(t)
			}
			l := &lostAnswer{Store: b.open(t)}
			store := cluster.NewStore(l)
			ctx := context.Background()
			for _, retry := range []bool{false, true} {
				name := fmt.Sprintf("lost-%t", retry)
				l.arm(retry, true)
				before := newCluster(t, store, name) // Create's answer is lost
				if before.Generation != 1 || len(before.Nodes) != 1 || len(before.RecentOps) != 1 {
					t.Fatalf("retry %t: after a create with a lost answer: generation %d, %d nodes, ops %v",
						retry, before.Generation, len(before.Nodes), before.RecentOps)
				}
				l.arm(retry, true)
				runs := 0
				got, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
					runs++
					next, _, err := cluster.AddNodes(s, 1, cluster.NewNamer(uint64(runs)), time.Now())
					return next, err
				})
				if err != nil {
					t.Fatalf("retry %t: update with a lost answer: %v", retry, err)
				}
				after, _, err := store.Load(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				if runs != 1 || len(after.Nodes) != 2 || after.Generation != 2 || got.Generation != 2 || len(got.Nodes) != 2 {
					t.Fatalf("retry %t: mutate ran %d times; state has %d nodes at generation %d (returned %d at %d); want 1 run, 2 nodes, generation 2",
						retry, runs, len(after.Nodes), after.Generation, len(got.Nodes), got.Generation)
				}
				if l.fired != 2 {
					t.Fatalf("retry %t: %d answers lost, want 2", retry, l.fired)
				}
				l.fired = 0
			}
			if n := store.LostAnswers(); n != 4 {
				t.Fatalf("LostAnswers = %d, want 4", n)
			}

			// Not applied: the error stands and says so; nothing changed.
			l.arm(false, false)
			_, err := store.Update(ctx, "lost-false", func(s *cluster.State) (*cluster.State, error) {
				next, _, err := cluster.AddNodes(s, 1, cluster.NewNamer(9), time.Now())
				return next, err
			})
			if !errors.Is(err, errLost) || !strings.Contains(err.Error(), "not applied") {
				t.Fatalf("update whose write failed: %v, want the error and \"not applied\"", err)
			}
			l.arm(false, false)
			err = store.Create(ctx, cluster.New("never", "sgp1", "s-1vcpu-1gb", "42", time.Now()))
			if !errors.Is(err, errLost) || errors.Is(err, bucket.ErrPrecondition) {
				t.Fatalf("create whose write failed: %v", err)
			}
			if st, _, err := store.Load(ctx, "lost-false"); err != nil || st.Generation != 2 {
				t.Fatalf("after a failed update: %+v %v", st, err)
			}
			// Another writer's state is still "already exists".
			if err := store.Create(ctx, cluster.New("lost-false", "sgp1", "s-1vcpu-1gb", "42", time.Now())); !errors.Is(err, bucket.ErrPrecondition) {
				t.Fatalf("create over an existing cluster: %v", err)
			}
		})
	}
}

// TestCheckRaise: Update asks CheckRaise only before a write that raises
// min_pull_version, and its error stops the write.
func TestCheckRaise(t *testing.T) {
	t.Parallel()
	store := cluster.NewStore(backends()[0].open(t))
	newCluster(t, store, "vers")
	var asked []string
	refuse := errors.New("a ready node is older")
	store.CheckRaise = func(_ context.Context, cur, next *cluster.State) error {
		asked = append(asked, cur.MinPullVersion+"→"+next.MinPullVersion)
		if next.MinPullVersion == "v2.0.0" {
			return refuse
		}
		return nil
	}
	set := func(v string) error {
		_, err := store.Update(context.Background(), "vers", func(s *cluster.State) (*cluster.State, error) {
			return cluster.SetMinPullVersion(s, v)
		})
		return err
	}
	for _, v := range []string{"v1.2.0", "v1.10.0", "v1.3.0", ""} {
		if err := set(v); err != nil {
			t.Fatalf("set %q: %v", v, err)
		}
	}
	before, etag, _ := store.Load(context.Background(), "vers")
	if err := set("v2.0.0"); !errors.Is(err, refuse) {
		t.Fatalf("refused raise: %v", err)
	}
	after, etag2, _ := store.Load(context.Background(), "vers")
	if etag != etag2 || after.Generation != before.Generation {
		t.Fatal("a refused raise wrote the state")
	}
	// Raises only: "" → v1.2.0, v1.2.0 → v1.10.0, "" → v2.0.0; lowering and clearing are not asked.
	if diff := cmp.Diff([]string{"→v1.2.0", "v1.2.0→v1.10.0", "→v2.0.0"}, asked); diff != "" {
		t.Fatalf("CheckRaise asked (-want +got):\n%s", diff)
	}
}
