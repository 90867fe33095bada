package ops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/signing"
)

// reportKey is node n's report key, read from its droplet's user-data as
// dynia-pull reads it on the droplet (an error: no droplet, or no key).
func (e *env) reportKey(n cluster.Node) (ed25519.PrivateKey, error) {
	for _, d := range e.sim.Droplets() {
		if d.ID != n.DropletID {
			continue
		}
		cc, err := cloudinit.Parse([]byte(d.UserData))
		if err != nil {
			return nil, err
		}
		for _, f := range cc.WriteFiles {
			if f.Path == cloudinit.ReportKeyPath {
				return signing.ParsePrivateKey(f.Content)
			}
		}
	}
	return nil, fmt.Errorf("node %s: no report key in droplet %d's user-data", n.ID, n.DropletID)
}

// writeReport writes node n's signed report, as dynia-pull does: st's
// generation applied, app healthy, failover ready, written now.
func (e *env) writeReport(ctx context.Context, st *cluster.State, n cluster.Node) error {
	key, err := e.reportKey(n)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	s := report.Status{NodeID: n.ID, Cluster: st.Name, AppliedGeneration: st.Generation, VRRPState: report.VRRPBackup,
		AppHealthy: true, UpdatedAt: now, Failover: report.FailoverStatus{Ready: true, CheckedAt: &now}}
	b, err := report.SignReport(s, key)
	if err != nil {
		return err
	}
	_, err = e.d.Store.B.Put(ctx, cluster.StatusKey(st.Name, n.ID), b, bucket.Cond{})
	return err
}

// reportUp writes every node's report once (writeReports).
func (e *env) reportUp(st *cluster.State) {
	e.t.Helper()
	for _, n := range st.Nodes {
		if err := e.writeReport(context.Background(), st, n); err != nil {
			e.t.Fatal(err)
		}
	}
}

// fakeNodes stands in for dynia-pull on every node until stopped: every
// 20 ms each node with a droplet reports the current state applied, up.
func (e *env) fakeNodes() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if st, _, err := e.d.Store.Load(ctx, "ops"); err == nil {
				for _, n := range st.Nodes {
					_ = e.writeReport(ctx, st, n) // a node without its droplet (yet, or any more) reports nothing
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// load is the cluster's state now.
func (e *env) load() *cluster.State {
	e.t.Helper()
	st, _, err := e.d.Store.Load(context.Background(), "ops")
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// holder is the droplet the simulator has the Reserved IP on.
func (e *env) holder(ip string) int {
	for _, r := range e.sim.ReservedIPs() {
		if r.IP == ip {
			return r.DropletID
		}
	}
	return 0
}

// newTwoNodes is a two-node cluster "ops" (create-ha, then add) and its
// state.
func newTwoNodes(t *testing.T) (*env, *cluster.State) {
	t.Helper()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := CreateHA(ctx, e.d, CreateHAOptions{Name: "ops", Region: "sgp1", Size: "s-1vcpu-1gb",
		RequireSafe: func(context.Context) error { return nil }}); err != nil {
		t.Fatalf("CreateHA: %v", err)
	}
	if _, _, err := AddNodes(ctx, e.d, AddOptions{Name: "ops", Count: 1, JournalDir: t.TempDir()}); err != nil {
		t.Fatalf("AddNodes: %v", err)
	}
	return e, e.check("after add", 2)
}

// writes counts the simulator's non-GET calls.
func (e *env) writes() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.Method != "GET" {
			n++
		}
	}
	return n
}

// TestReservedIPDrift runs repair's Reserved IP check on a two-node
// cluster (the simulator, a file:// state, signed reports): the IP moved
// to a serving standby behind the state's back is a drift whose fix makes
// the state follow without an API write; the IP on a powered-off droplet
// with a serving standby is a drift whose fix moves the IP there and
// records it active; once fixed, repair's checks find nothing.
func TestReservedIPDrift(t *testing.T) {
	e, st := newTwoNodes(t)
	ctx := context.Background()
	a := *st.Active()
	var b cluster.Node
	for _, n := range st.Nodes {
		if n.ID != a.ID {
			b = n
		}
	}
	e.reportUp(st)
	if ds, err := FindDrift(ctx, e.d, st); err != nil || len(ds) != 0 {
		t.Fatalf("drift on a healthy cluster: %+v, %v", ds, err)
	}

	// A failover the state missed: b's dynia-pull moved the IP to itself.
	if err := e.d.Cloud.AssignReservedIP(ctx, st.ReservedIP, b.DropletID); err != nil {
		t.Fatal(err)
	}
	ds, err := CheckReservedIP(ctx, e.d, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 || ds[0].Do == nil || !strings.HasPrefix(ds[0].What, "state behind a failover: Reserved IP "+st.ReservedIP+" is on "+b.ID+" (up)") ||
		ds[0].Fix != "record "+b.ID+" as the active node (the Reserved IP stays where it is)" {
		t.Fatalf("IP on the serving standby %s: drift %+v", b.ID, ds)
	}
	writes := e.writes()
	if manual, err := Repair(ctx, e.d.Report, ds); err != nil || manual != 0 {
		t.Fatalf("Repair: %d manual, %v", manual, err)
	}
	st = e.load()
	if got := st.Active(); got == nil || got.ID != b.ID {
		t.Fatalf("after following the failover: active %v, want %s", got, b.ID)
	}
	if w := e.writes(); w != writes {
		t.Errorf("following the failover made %d API write(s), want none", w-writes)
	}
	if h := e.holder(st.ReservedIP); h != b.DropletID {
		t.Errorf("Reserved IP on droplet %d, want it left on %s's %d", h, b.ID, b.DropletID)
	}
	if ds, err := FindDrift(ctx, e.d, st); err != nil || len(ds) != 0 {
		t.Fatalf("drift after following the failover: %+v, %v", ds, err)
	}

	// The holder's droplet is powered off; a (the standby now) serves.
	if err := e.d.Cloud.PowerOff(ctx, b.DropletID); err != nil {
		t.Fatal(err)
	}
	ds, err = CheckReservedIP(ctx, e.d, st)
	if err != nil {
		t.Fatal(err)
	}
	wantWhat := "Reserved IP " + st.ReservedIP + " is on " + b.ID + " (down: droplet " + strconv.Itoa(b.DropletID) + " is off); " + a.ID + " ("
	if len(ds) != 1 || ds[0].Do == nil || !strings.HasPrefix(ds[0].What, wantWhat) ||
		ds[0].Fix != "assign it to "+a.ID+" and record "+a.ID+" as the active node" {
		t.Fatalf("IP on the powered-off %s: drift %+v, want What %q…", b.ID, ds, wantWhat)
	}
	if manual, err := Repair(ctx, e.d.Report, ds); err != nil || manual != 0 {
		t.Fatalf("Repair: %d manual, %v", manual, err)
	}
	st = e.load()
	if got := st.Active(); got == nil || got.ID != a.ID {
		t.Fatalf("after moving the IP: active %v, want %s", got, a.ID)
	}
	if h := e.holder(st.ReservedIP); h != a.DropletID {
		t.Errorf("Reserved IP on droplet %d, want %s's %d", h, a.ID, a.DropletID)
	}
	if ds, err := CheckReservedIP(ctx, e.d, st); err != nil || len(ds) != 0 {
		t.Fatalf("Reserved IP drift after the fix: %+v, %v", ds, err)
	}
}

// TestFollowFailover: before a write, the state follows the Reserved IP to
// a serving node that holds it (a step named for it, no API write); with
// the IP on the active node it writes nothing.
func TestFollowFailover(t *testing.T) {
	e, st := newTwoNodes(t)
	ctx := context.Background()
	e.reportUp(st)
	got, err := FollowFailover(ctx, e.d, st)
	if err != nil || got.Generation != st.Generation {
		t.Fatalf("FollowFailover with the IP on the active node: generation %d, %v; want %d unchanged", got.Generation, err, st.Generation)
	}
	var standby cluster.Node
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleStandby {
			standby = n
		}
	}
	if err := e.d.Cloud.AssignReservedIP(ctx, st.ReservedIP, standby.DropletID); err != nil {
		t.Fatal(err)
	}
	steps := len(e.rec.lines)
	writes := e.writes()
	if got, err = FollowFailover(ctx, e.d, st); err != nil {
		t.Fatal(err)
	}
	if a := got.Active(); a == nil || a.ID != standby.ID || e.load().Active().ID != standby.ID {
		t.Fatalf("after FollowFailover: active %v, want %s", a, standby.ID)
	}
	if w := e.writes(); w != writes {
		t.Errorf("FollowFailover made %d API write(s), want none", w-writes)
	}
	if s := e.rec.lines[steps:]; len(s) != 1 || !strings.HasPrefix(s[0], "record "+standby.ID+" as the active node") {
		t.Errorf("FollowFailover's steps: %q", s)
	}
}

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
	st, err = ReplaceNode(ctx, e.d, ReplaceOptions{Name: "ops", Node: old.ID, Image: image, HealthTimeout: time.Minute})
	if err != nil {
		t.Fatalf("ReplaceNode: %v", err)
	}
	st = e.check("after replace", 2)
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
	if err := e.writeReport(ctx, next, active); err != nil {
		t.Fatal(err)
	}
	if err := (ReportWatcher{Store: e.d.Store, Report: e.rec}).WaitOthers(ctx, next, standby.ID); err != nil {
		t.Fatalf("WaitOthers with %s on generation %d: %v", active.ID, next.Generation, err)
	}
}
