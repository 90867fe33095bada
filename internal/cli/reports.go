package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/pull"
)

// A node writes its report on every change and otherwise about once a
// minute (Spaces limits writes per object); three missed beats is stale.
const reportStaleAfter = 3 * time.Minute

// startupGrace is how long a new node may be unhealthy and still be shown as
// "starting" rather than "down".
const startupGrace = 2 * time.Minute

// readReport reads a node's status.json (written by dynia-pull); a node that
// has not reported yet is nil.
func readReport(ctx context.Context, store *cluster.Store, name, id string) (*pull.Status, error) {
	obj, err := store.B.Get(ctx, cluster.StatusKey(name, id), "")
	if errors.Is(err, bucket.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r, err := pull.DecodeStatus(obj.Body)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", id, err)
	}
	return r, nil
}

// waitApplied waits until every node of st that should be serving reports
// st's generation (or a later one) applied.
func waitApplied(ctx context.Context, f *Factory, store *cluster.Store, st *cluster.State, p *Progress) error {
	return p.Step(fmt.Sprintf("nodes apply generation %d", st.Generation), func() (string, error) {
		return "", waitReports(ctx, store, st, func(n cluster.Node) bool { return n.Lifecycle != cluster.Removing })
	})
}

// waitOthers waits until every other ready node applied st (where id is
// draining: HAProxy there no longer sends it new requests).
func waitOthers(ctx context.Context, store *cluster.Store, st *cluster.State, id string) error {
	return waitReports(ctx, store, st, func(n cluster.Node) bool { return n.ID != id && n.Lifecycle == cluster.Ready })
}

// waitReports polls the reports of the nodes that match until each has
// applied st's generation.
func waitReports(ctx context.Context, store *cluster.Store, st *cluster.State, match func(cluster.Node) bool) error {
	return pollUntil(ctx, func() (bool, string, error) {
		var waiting []string
		for _, n := range st.Nodes {
			if !match(n) {
				continue
			}
			r, err := readReport(ctx, store, st.Name, n.ID)
			if err != nil {
				return false, "", err
			}
			if r == nil || r.AppliedGeneration < st.Generation {
				waiting = append(waiting, n.ID)
			}
		}
		return len(waiting) == 0, fmt.Sprintf("waiting for %v", waiting), nil
	})
}

// pollUntil polls cond with backoff (250 ms to 2 s) until it holds or ctx
// ends; a cancelled wait is an error naming what it waited for.
func pollUntil(ctx context.Context, cond func() (bool, string, error)) error {
	delay := 250 * time.Millisecond
	for {
		ok, what, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-t.C:
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// nodeStatus is the Status column: lifecycle first, then the report.
func nodeStatus(n cluster.Node, r *pull.Status, gen int64, now time.Time) string {
	switch n.Lifecycle {
	case cluster.Provisioning, cluster.Draining, cluster.Removing:
		return string(n.Lifecycle)
	}
	switch {
	case r == nil:
		return "stale"
	case now.Sub(r.UpdatedAt) > reportStaleAfter:
		return "stale"
	case r.VRRPState == pull.VRRPFault, !r.AppHealthy:
		// A node that just joined is unhealthy until HAProxy's checks pass
		// (rise 2 × inter 2 s) and its app starts: say so, not "down".
		if now.Sub(n.CreatedAt) < startupGrace {
			return "starting"
		}
		return "down"
	case r.AppliedGeneration < gen:
		return "up (applying)"
	}
	return "up"
}

func maskUserData(ud []byte) []byte { return cloudinit.Mask(ud) }
