package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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
