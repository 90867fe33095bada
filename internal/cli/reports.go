package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/report"
)

// waitApplied waits until every node of st that should be serving reports
// st's generation (or a later one) applied.
func waitApplied(ctx context.Context, f *Factory, store *cluster.Store, st *cluster.State, p *Progress) error {
	return p.Step(fmt.Sprintf("nodes apply generation %d", st.Generation), func() (string, error) {
		return "", waitReports(ctx, store, st, p, func(n cluster.Node) bool { return n.Lifecycle != cluster.Removing })
	})
}

// waitOthers waits until every other ready node applied st (where id is
// draining: HAProxy there no longer sends it new requests).
func waitOthers(ctx context.Context, store *cluster.Store, st *cluster.State, id string, p *Progress) error {
	return waitReports(ctx, store, st, p, func(n cluster.Node) bool { return n.ID != id && n.Lifecycle == cluster.Ready })
}

// waitReports polls the reports of the nodes that match until each has
// applied st's generation. Every wait says why: whenever what a waiting
// node reports changes (its phase, its last error), one line says so.
//
// The nodes are those of the current state, re-read at every poll, as they
// are now: a node another operator removed (or is removing) meanwhile is
// not waited for, since it will never report again.
func waitReports(ctx context.Context, store *cluster.Store, st *cluster.State, p *Progress, match func(cluster.Node) bool) error {
	said := map[string]string{}
	return ops.PollUntil(ctx, func() (bool, string, error) {
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
			r, refused, err := ops.ReadReport(ctx, store, st, n.ID)
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

func maskUserData(ud []byte) []byte { return cloudinit.Mask(ud) }
