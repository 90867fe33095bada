package ops

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// TestWaitReports: WaitApplied waits until every node reports the state's
// generation applied, saying what each still waits for; WaitOthers does
// not wait for the node being drained.
func TestWaitReports(t *testing.T) {
	e, st := newTwoNodes(t)
	ctx := context.Background()
	e.reportUp(st)
	if err := WaitApplied(ctx, e.d.Store, st, e.rec); err != nil {
		t.Fatalf("WaitApplied with every node on generation %d: %v", st.Generation, err)
	}
	if err := SetClusterImage(ctx, e.d, "ops", "4242"); err != nil {
		t.Fatal(err)
	}
	next := e.load()
	e.rec.lines = nil
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err := WaitApplied(wctx, e.d.Store, next, e.rec)
	phase := fmt.Sprintf("applied generation %d, not %d yet", st.Generation, next.Generation)
	if err == nil || !strings.Contains(err.Error(), "waiting for ") || !strings.Contains(err.Error(), phase) {
		t.Fatalf("WaitApplied with the nodes behind: %v, want it to name %q", err, phase)
	}
	for _, n := range next.Nodes {
		if !slices.Contains(e.rec.lines, "  waiting for "+n.ID+": "+phase) {
			t.Errorf("no line saying what %s waits for: %q", n.ID, e.rec.lines)
		}
	}
	// The standby drains: the watcher waits for the other node only.
	var standby, active cluster.Node
	for _, n := range next.Nodes {
		if n.Role == cluster.RoleStandby {
			standby = n
		} else {
			active = n
		}
	}
	// Before the active node applied it, WaitOthers waits (and here runs
	// out of time): it does not pass by skipping every node.
	octx, ocancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer ocancel()
	if err := (ReportWatcher{Store: e.d.Store, Report: e.rec}).WaitOthers(octx, next, standby.ID); err == nil || !strings.Contains(err.Error(), active.ID) {
		t.Fatalf("WaitOthers with %s behind: %v, want it to wait for %s", active.ID, err, active.ID)
	}
	if err := e.writeReport(ctx, next, active); err != nil {
		t.Fatal(err)
	}
	// Bounded: a regression fails here instead of hanging the package.
	wctx2, cancel2 := context.WithTimeout(ctx, time.Minute)
	defer cancel2()
	if err := (ReportWatcher{Store: e.d.Store, Report: e.rec}).WaitOthers(wctx2, next, standby.ID); err != nil {
		t.Fatalf("WaitOthers with %s on generation %d: %v", active.ID, next.Generation, err)
	}
}
