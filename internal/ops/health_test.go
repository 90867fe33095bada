package ops

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
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
