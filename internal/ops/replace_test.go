package ops

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
)

// TestReplaceNode replaces the active node of a two-node cluster with one
// made from another image while the nodes report up: the replacement takes
// the old node's priority, becomes active and holds the Reserved IP, the
// old node and its droplet are gone, and the steps run in order. Without
// reports the replacement never serves: a *ReplacementUnhealthyError, and
// the old node is left active, holding the IP.
func TestReplaceNode(t *testing.T) {
	e, st := newTwoNodes(t)
	ctx := context.Background()
	old := *st.Active()
	image := strconv.Itoa(e.sim.RegisterImage(dosim.Image{Name: "dynia-node-test-2", Regions: []string{"sgp1"}, CreatedAt: time.Now()}))

	// No reports: the replacement never serves.
	_, err := ReplaceNode(ctx, e.d, ReplaceOptions{Name: "ops", Node: old.ID, Image: image, HealthTimeout: 300 * time.Millisecond})
	var ue *ReplacementUnhealthyError
	if !errors.As(err, &ue) || ue.Old != old.ID || ue.New == "" {
		t.Fatalf("ReplaceNode without reports: %v, want a *ReplacementUnhealthyError", err)
	}
	st = e.load()
	if a := st.Active(); a == nil || a.ID != old.ID || e.holder(st.ReservedIP) != old.DropletID {
		t.Fatalf("after the unhealthy replacement: active %v, Reserved IP on %d; want %s on %d", a, e.holder(st.ReservedIP), old.ID, old.DropletID)
	}

	// The nodes report: the re-run resumes the same replacement.
	defer e.fakeNodes()()
	e.rec.lines = nil
	done, err := ReplaceNode(ctx, e.d, ReplaceOptions{Name: "ops", Node: old.ID, Image: image, HealthTimeout: time.Minute})
	if err != nil {
		t.Fatalf("ReplaceNode: %v", err)
	}
	st = e.check("after replace", 2)
	if done.Generation != st.Generation {
		t.Errorf("ReplaceNode returned generation %d, the state is at %d", done.Generation, st.Generation)
	}
	repl := st.Node(ue.New)
	if st.Node(old.ID) != nil || repl == nil || repl.Role != cluster.RoleActive || repl.Priority != old.Priority || repl.Replaces != "" {
		t.Fatalf("after replace: nodes %v, replacement %+v; want %s gone, %s active with priority %d", nodes(st), repl, old.ID, ue.New, old.Priority)
	}
	var steps []string
	for _, l := range e.rec.lines {
		if strings.Contains(l, ": ok ") {
			steps = append(steps, l[:strings.Index(l, ": ok ")])
		}
	}
	want := []string{"replacement for " + old.ID, ue.New + " serves", "move the Reserved IP to " + ue.New}
	var got []string
	for _, s := range steps {
		if slices.Contains(want, s) {
			got = append(got, s)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("steps (-want +got):\n%s\nall: %q", diff, e.rec.lines)
	}
	if !slices.Contains(e.rec.lines, "replacement for "+old.ID+": ok "+ue.New+" (resumed)") {
		t.Errorf("the re-run did not resume %s: %q", ue.New, e.rec.lines)
	}
}

// cancelAfter is a Reporter that cancels the operation's context once the
// step named after has run: the time running out between two steps.
type cancelAfter struct {
	Reporter
	after  string
	cancel context.CancelFunc
}

func (r cancelAfter) Step(name string, fn func() (string, error)) error {
	err := r.Reporter.Step(name, fn)
	if strings.HasPrefix(name, r.after) {
		r.cancel()
	}
	return err
}

// TestReplaceNodeTimeBeforeServing: when the time runs out after the
// replacement is in the state but before it was seen serving, the result
// is still a *ReplacementUnhealthyError (the old node serves untouched; a
// re-run keeps waiting), not a bare context error.
func TestReplaceNodeTimeBeforeServing(t *testing.T) {
	e, st := newTwoNodes(t)
	old := *st.Active()
	image := strconv.Itoa(e.sim.RegisterImage(dosim.Image{Name: "dynia-node-test-2", Regions: []string{"sgp1"}, CreatedAt: time.Now()}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := e.d
	d.Report = cancelAfter{Reporter: e.d.Report, after: "replacement for", cancel: cancel}
	_, err := ReplaceNode(ctx, d, ReplaceOptions{Name: "ops", Node: old.ID, Image: image, HealthTimeout: time.Minute})
	var ue *ReplacementUnhealthyError
	if !errors.As(err, &ue) || ue.Old != old.ID || ue.New == "" || !errors.Is(err, context.Canceled) {
		t.Fatalf("ReplaceNode with the time out after its first step: %v, want a *ReplacementUnhealthyError wrapping context.Canceled", err)
	}
	st = e.load()
	if a := st.Active(); a == nil || a.ID != old.ID || e.holder(st.ReservedIP) != old.DropletID {
		t.Fatalf("after: active %v, Reserved IP on %d; want %s on %d", a, e.holder(st.ReservedIP), old.ID, old.DropletID)
	}
}
