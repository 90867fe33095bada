package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// Versions across a cluster (docs/state.md, Compatibility): the CLI shows
// each node's dynia-pull version, says when they differ, and refuses to
// write a state that raises min_pull_version above a ready node's version
// unless the command runs with --force.

// checkPullVersions is the store's CheckRaise: before a write raises
// min_pull_version, every ready node's fresh report (written within
// ops.ReportStaleAfter) is read, and a node whose version is below the new
// minimum (cluster.VersionBelow) stops the write: a UsageError naming the
// nodes and their versions (exit 2). A node without a fresh report, or
// whose version names no release, is not counted: nothing says it is old.
func (f *Factory) checkPullVersions(ctx context.Context, store *cluster.Store, cur, next *cluster.State) error {
	var old []string
	now := time.Now()
	for _, n := range cluster.SortedByPriority(next.Nodes) {
		if n.Lifecycle != cluster.Ready || cur.Node(n.ID) == nil {
			continue
		}
		r, _, err := ops.ReadReport(ctx, store, cur, n.ID)
		if err != nil {
			return fmt.Errorf("check the nodes' dynia-pull versions: %w", err)
		}
		if r == nil || now.Sub(r.UpdatedAt) > ops.ReportStaleAfter {
			continue
		}
		if cluster.VersionBelow(r.Version, next.MinPullVersion) {
			old = append(old, fmt.Sprintf("%s (%s)", n.ID, r.Version))
		}
	}
	if len(old) == 0 {
		return nil
	}
	return usagef("min_pull_version %s: ready node(s) %s run an older dynia-pull and would stop applying the state (they keep their last config and report upgrade required); replace them with a newer image first, or re-run with --force",
		next.MinPullVersion, strings.Join(old, ", "))
}

// versionsNote is one line when the nodes' reports show more than one
// dynia-pull version ("" when they agree, or fewer than two report one):
// `nodes run 2 dynia-pull versions: v1.2.0 (lean-owl), v1.3.0 (apt-robin, placid-crab)`.
func versionsNote(rs []NodeRow) string {
	byVersion := map[string][]string{}
	for _, r := range rs {
		if r.Version != "" {
			byVersion[r.Version] = append(byVersion[r.Version], r.ID)
		}
	}
	if len(byVersion) < 2 {
		return ""
	}
	versions := make([]string, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	slices.SortFunc(versions, func(a, b string) int {
		switch {
		case cluster.VersionBelow(a, b):
			return -1
		case cluster.VersionBelow(b, a):
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(versions))
	for i, v := range versions {
		ids := byVersion[v]
		slices.Sort(ids)
		parts[i] = fmt.Sprintf("%s (%s)", v, strings.Join(ids, ", "))
	}
	return fmt.Sprintf("nodes run %d dynia-pull versions: %s", len(versions), strings.Join(parts, ", "))
}
