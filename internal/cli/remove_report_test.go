package cli

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

// refuseDelete is a store whose Delete of one key fails.
type refuseDelete struct {
	bucket.Store
	key string
}

func (r refuseDelete) Delete(ctx context.Context, key string) error {
	if key == r.key {
		return errors.New("injected: delete refused")
	}
	return r.Store.Delete(ctx, key)
}

// TestRemoveNodeReportDeleteFails: `node remove` whose delete of the
// node's report fails says so and exits 1, leaving the node in the state
// (removing), so a re-run finds it and finishes: node and report gone.
func TestRemoveNodeReportDeleteFails(t *testing.T) {
	e := newEnv(t)
	h, stop := e.reportNodes("tidy")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "tidy", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "tidy", "--count", "1")
	st := e.state("tidy")
	victim := st.Nodes[1].ID
	if st.Nodes[1].Role == cluster.RoleActive {
		victim = st.Nodes[0].ID
	}
	key := cluster.StatusKey("tidy", victim)
	testutil.WaitFor(t, 30*time.Second, func() error {
		_, err := e.bucket.Get(context.Background(), key, "")
		return err
	})
	h.silence(victim) // dynia-pull writes no report once its node is removing

	e.store = refuseDelete{Store: e.bucket, key: key}
	r := e.run("node", "remove", "--name", "tidy", "--node", victim, "--yes")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "delete the report of node "+victim+": injected: delete refused") {
		t.Fatalf("remove with the report's delete refused: exit %d, stderr %q; want 1 naming the delete", r.code, r.stderr)
	}
	if n := e.state("tidy").Node(victim); n == nil || n.Lifecycle != cluster.Removing {
		t.Fatalf("after the failed delete: node %+v, want it in the state, removing", n)
	}

	e.store = nil
	e.mustRun("node", "remove", "--name", "tidy", "--node", victim, "--yes")
	if n := e.state("tidy").Node(victim); n != nil {
		t.Errorf("after the re-run: node %+v still in the state", n)
	}
	if _, err := e.bucket.Get(context.Background(), key, ""); !errors.Is(err, bucket.ErrNotFound) {
		t.Errorf("after the re-run: report %s: %v, want not found", key, err)
	}
}
