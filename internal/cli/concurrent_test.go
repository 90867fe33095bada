package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// TestConcurrentOperators: eight `node add` and two `node remove` (the
// active node and a standby) run at once, as ten operators' processes of
// the real binary. The cluster afterwards is exactly what the commands that
// reported success did: the initial nodes, plus one per add that exited 0,
// minus each node whose remove exited 0; a command that failed left
// nothing (no provisioning node, no orphan droplet); the Reserved IP is on
// the active node; state, DO and `node list` agree.
func TestConcurrentOperators(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	defer e.fakeNodes("crowd")()
	e.mustRun("node", "create-ha", "--name", "crowd", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "crowd", "--count", "2")
	dyniaBinary(t) // build before the race starts
	before := e.state("crowd")
	removed := []string{before.Active().ID, before.Nodes[2].ID}
	type op struct {
		args []string
		p    *proc
	}
	var ops []op
	for range 8 {
		ops = append(ops, op{args: []string{"node", "add", "--name", "crowd", "--timeout", "2m"}})
	}
	for _, id := range removed {
		ops = append(ops, op{args: []string{"node", "remove", "--name", "crowd", "--node", id, "--yes", "--timeout", "2m"}})
	}
	for i := range ops {
		ops[i].p = e.startDynia(ops[i].args...)
	}
	adds, removes := 0, map[string]bool{}
	for _, o := range ops {
		select {
		case <-o.p.done:
		case <-time.After(3 * time.Minute):
			t.Fatalf("dynia %s still runs after 3 minutes:\n%s", strings.Join(o.args, " "), o.p.out)
		}
		code := o.p.cmd.ProcessState.ExitCode()
		t.Logf("dynia %s: exit %d", strings.Join(o.args, " "), code)
		if code != 0 {
			t.Logf("its output:\n%s", o.p.out)
			continue
		}
		if o.args[1] == "add" {
			adds++
		} else {
			removes[o.args[5]] = true
		}
	}
	st := e.consistent("crowd")
	want := len(before.Nodes) + adds - len(removes)
	var ids []string
	for _, n := range st.Nodes {
		ids = append(ids, n.ID)
		if n.Lifecycle != cluster.Ready {
			t.Errorf("node %s is %s: a command left it half done", n.ID, n.Lifecycle)
		}
	}
	if len(st.Nodes) != want {
		t.Errorf("%d nodes %v; want %d: %d before, %d adds and %d removes succeeded", len(st.Nodes), ids, want, len(before.Nodes), adds, len(removes))
	}
	for id := range removes {
		if slices.Contains(ids, id) {
			t.Errorf("node %s is still there although its remove exited 0", id)
		}
	}
	for _, n := range before.Nodes {
		if !removes[n.ID] && !slices.Contains(ids, n.ID) {
			t.Errorf("node %s, which nobody removed successfully, is gone", n.ID)
		}
	}
	if adds+len(removes) != len(ops) {
		t.Errorf("%d of %d commands failed (see their output above): concurrent operators must all succeed", len(ops)-adds-len(removes), len(ops))
	}
	if err := st.Validate(); err != nil {
		t.Error(err)
	}
	t.Logf("final: %d nodes, active %s, generation %d", len(st.Nodes), st.Active().ID, st.Generation)
}
