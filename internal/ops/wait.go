package ops

import (
	"context"
	"fmt"
	"strings"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
)

// WaitApplied waits, as a step reported through r, until every node of st
// that should be serving (all but those being removed) reports st's
// generation (or a later one) applied (WaitReports).
func WaitApplied(ctx context.Context, store *cluster.Store, st *cluster.State, r Reporter) error {
	return r.Step(fmt.Sprintf("nodes apply generation %d", st.Generation), func() (string, error) {
		return "", WaitReports(ctx, store, st, r, func(n cluster.Node) bool { return n.Lifecycle != cluster.Removing })
	})
}

// ReportWatcher is the Watcher that reads the nodes' reports from Store,
// saying through Report what it waits for.
type ReportWatcher struct {
	Store  *cluster.Store
	Report Reporter
}

// WaitOthers waits until every other ready node applied st (where id is
// draining: HAProxy there no longer sends it new requests).
func (w ReportWatcher) WaitOthers(ctx context.Context, st *cluster.State, id string) error {
	return WaitReports(ctx, w.Store, st, w.Report, func(n cluster.Node) bool { return n.ID != id && n.Lifecycle == cluster.Ready })
}

// WaitReports polls the reports of the nodes that match until each has
// applied st's generation. Every wait says why: whenever what a waiting
// node reports changes (its phase, its last error), one line says so.
//
// The nodes are those of the current state, re-read at every poll, as they
// are now: a node another operator removed (or is removing) meanwhile is
// not waited for, since it will never report again.
func WaitReports(ctx context.Context, store *cluster.Store, st *cluster.State, p Reporter, match func(cluster.Node) bool) error {
	said := map[string]string{}
	return PollUntil(ctx, func() (bool, string, error) {
		cur := st
		if now, _, err := store.Load(ctx, st.Name); err == nil {
			cur = now
		}
		var waiting []string
		for _, n := range st.Nodes {
			now := cur.Node(n.ID)
			if now == nil || !match(*now) {
				continue
			}
			r, refused, err := ReadReport(ctx, store, st, n.ID)
			if err != nil {
				return false, "", err
			}
			if r != nil && r.AppliedGeneration >= st.Generation {
				continue
			}
			phase := waitPhase(r, st.Generation)
			if refused != "" {
				phase = "report not believed: " + refused
			}
			waiting = append(waiting, n.ID+": "+phase)
			if said[n.ID] != phase {
				said[n.ID] = phase
				p.Info("  waiting for %s: %s", n.ID, phase)
			}
		}
		return len(waiting) == 0, "waiting for " + strings.Join(waiting, "; "), nil
	})
}

// waitPhase says where a node is on its way to applying generation gen.
func waitPhase(r *report.Status, gen int64) string {
	var phase string
	switch {
	case r == nil:
		phase = "no report yet (booting: cloud-init, then dynia-pull)"
	case r.AppliedGeneration == 0:
		phase = "dynia-pull running, nothing applied yet"
	default:
		phase = fmt.Sprintf("applied generation %d, not %d yet", r.AppliedGeneration, gen)
	}
	if r != nil && r.StateError != "" && r.StateError != r.LastError {
		phase += "; refused the state: " + r.StateError
	}
	if r != nil && r.LastError != "" {
		phase += "; last error: " + r.LastError
	}
	return phase
}
