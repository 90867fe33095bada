package pull

import (
	"context"
	"errors"
	"testing"

	"github.com/dynia/dynia/internal/cluster"
)

// TestNoReportsOnceRemoved: a node the state marks removing stops writing
// its status report (the CLI deletes it), and one the state no longer has
// neither applies nor reports; the report is not brought back, however
// often the node is asked for one. Back in the state, it reports again.
func TestNoReportsOnceRemoved(t *testing.T) {
	t.Parallel()
	d, m, _ := newTestDaemon(t, "true")
	ctx := context.Background()
	key := cluster.StatusKey("shop", "amber-fox")
	reported := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		_, ok := m.objs[key]
		return ok
	}
	deleteReport := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.objs, key)
	}

	putState(t, m, testState(1, 2))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatal(err)
	}
	d.rep.write(ctx)
	if !reported() {
		t.Fatal("a node in the state wrote no report")
	}

	s := testState(2, 2)
	s.Node("amber-fox").Lifecycle = cluster.Removing
	s.Node("amber-fox").Role = cluster.RoleStandby
	s.Node("brisk-owl").Role = cluster.RoleActive
	putState(t, m, s)
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatalf("removing: %v", err)
	}
	deleteReport() // what `dynia node remove` does
	d.rep.write(ctx)
	if reported() {
		t.Error("a node marked removing wrote its report again")
	}

	s = testState(3, 2)
	s.Nodes = s.Nodes[1:] // amber-fox gone
	s.Nodes[0].Role = cluster.RoleActive
	putState(t, m, s)
	_, err := d.Step(ctx, false)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != "removed" {
		t.Fatalf("step on a state without the node = %v, want a removed ApplyError", err)
	}
	for range 3 {
		d.Step(ctx, true)
		d.rep.write(ctx)
	}
	if reported() {
		t.Error("a node gone from the state wrote its report again")
	}
	if d.rep.snapshot().AppliedGeneration != 2 {
		t.Errorf("applied generation %d, want 2: nothing applied once gone", d.rep.snapshot().AppliedGeneration)
	}

	putState(t, m, testState(4, 2))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatalf("back in the state: %v", err)
	}
	d.rep.write(ctx)
	if !reported() {
		t.Error("a node back in the state wrote no report")
	}
}
