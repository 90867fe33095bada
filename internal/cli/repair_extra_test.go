package cli

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/oauth2"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// simGodo is a plain godo client on the simulator, for what the user (or
// someone else) does behind dynia's back.
func simGodo(t *testing.T, e *testEnv) *godo.Client {
	t.Helper()
	ctx := context.Background()
	c, err := godo.New(oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fullToken})), godo.SetBaseURL(e.api.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// updateState edits a cluster's state directly, as a crash or a hand edit
// would leave it.
func (e *testEnv) updateState(name string, mutate func(*cluster.State)) {
	e.t.Helper()
	_, err := e.signedStore().Update(context.Background(), name, func(s *cluster.State) (*cluster.State, error) {
		mutate(s)
		return s, nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// waitReported waits until every node's report covers the current state,
// so repair-ha reads reports of the state it compares.
func (e *testEnv) waitReported(name string) {
	e.t.Helper()
	store := cluster.NewStore(e.bucket)
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.state(name)
		ok := true
		for _, n := range st.Nodes {
			r, _, err := ops.ReadReport(ctx, store, st, n.ID)
			if err != nil || r == nil || r.AppliedGeneration < st.Generation {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("nodes of %s never reported generation %d", name, st.Generation)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStatus waits until node id's Status (as `node list` shows it) is one
// of want.
func (e *testEnv) waitStatus(name, id string, want ...string) {
	e.t.Helper()
	store := e.signedStore()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.state(name)
		var got string
		if n := st.Node(id); n != nil {
			ev, err := ops.GatherEvidence(context.Background(), store, e.cloud(), st)
			if err != nil {
				e.t.Fatal(err)
			}
			got, _ = ev.Status(*n)
		}
		if slices.Contains(want, got) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("node %s of %s is %q, want one of %v", id, name, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *testEnv) ripHolder(ip string) int {
	for _, r := range e.sim.ReservedIPs() {
		if r.IP == ip {
			return r.DropletID
		}
	}
	return -1
}

// TestDestroyFindsUnrecordedRIPAndFirewall: create-ha died after creating
// the firewall and the Reserved IP but before recording them (simulated by
// clearing them from the state). Destroy finds the firewall by its name and
// cluster tag and the IP by the cluster's droplet holding it, and leaves
// another cluster's and the user's own alone.
func TestDestroyFindsUnrecordedRIPAndFirewall(t *testing.T) {
	e := newEnv(t)
	defer e.fakeNodes("leaky")()
	defer e.fakeNodes("keeper")()
	ctx := context.Background()
	c := simGodo(t, e)
	// The user's own firewall and Reserved IP in the same region.
	if _, _, err := c.Firewalls.Create(ctx, &godo.FirewallRequest{Name: "users-own",
		InboundRules: []godo.InboundRule{{Protocol: "tcp", PortRange: "22", Sources: &godo.Sources{Addresses: []string{"0.0.0.0/0"}}}}}); err != nil {
		t.Fatal(err)
	}
	userRIP, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "sgp1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"leaky", "keeper"} {
		e.mustRun("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")
	}
	e.mustRun("node", "add", "--name", "leaky")
	e.updateState("leaky", func(s *cluster.State) { s.ReservedIP, s.FirewallID = "", "" })

	e.mustRun("cluster", "destroy", "--name", "leaky", "--yes")

	for _, d := range e.sim.Droplets() {
		if slices.Contains(d.Tags, cloud.ClusterTag("leaky")) {
			t.Errorf("droplet %d (%s) of the destroyed cluster left", d.ID, d.Name)
		}
	}
	var fws []string
	for _, fw := range e.sim.Firewalls() {
		fws = append(fws, fw.Name)
	}
	slices.Sort(fws)
	if want := []string{"dynia-keeper", "users-own"}; !slices.Equal(fws, want) {
		t.Errorf("firewalls after destroy: %v, want %v", fws, want)
	}
	keeper := e.consistent("keeper")
	var rips []string
	for _, r := range e.sim.ReservedIPs() {
		rips = append(rips, r.IP)
	}
	want := []string{keeper.ReservedIP, userRIP.IP}
	slices.Sort(rips)
	slices.Sort(want)
	if !slices.Equal(rips, want) {
		t.Errorf("Reserved IPs after destroy: %v, want keeper's and the user's %v", rips, want)
	}
}

// TestRepairMovesRIPOffAnActiveThatIsNotUp: the RIP target is the active
// node only while its report says up; otherwise the highest-priority node
// that is up takes it and the state follows. A failover the state missed
// (the IP already on a standby that is up) makes the state follow it.
func TestRepairMovesRIPOffAnActiveThatIsNotUp(t *testing.T) {
	e := newEnv(t)
	h, stop := e.reportNodes("wobbly")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "wobbly", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "wobbly", "--count", "2")
	e.waitReported("wobbly")
	if r := e.run("node", "repair-ha", "--name", "wobbly", "--check-only"); r.code != 0 {
		t.Fatalf("clean cluster: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}

	// 1. The active node stops reporting (its droplet still exists).
	st := e.state("wobbly")
	old := *st.Active()
	next := cluster.NextActive(st, old.ID)
	h.set(old.ID, false, true)
	e.waitStatus("wobbly", old.ID, "stale")
	r := e.run("node", "repair-ha", "--name", "wobbly", "--check-only")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "(stale: last report") || !strings.Contains(r.stdout, "assign it to "+next.ID) {
		t.Fatalf("check-only with a stale active node: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.mustRun("node", "repair-ha", "--name", "wobbly", "--force")
	st = e.consistent("wobbly")
	if a := st.Active(); a.ID != next.ID {
		t.Fatalf("after repair the active node is %s, want %s", a.ID, next.ID)
	}
	if r := e.run("node", "repair-ha", "--name", "wobbly", "--check-only"); r.code != 0 {
		t.Fatalf("drift left after --force: %s", r.stdout)
	}

	// 2. A failover the state missed: the active node is down and the IP
	// already moved to the best standby that is up.
	h.set(old.ID, false, false)
	st = e.state("wobbly")
	cur := *st.Active()
	h.set(cur.ID, true, false)
	e.waitStatus("wobbly", old.ID, "up")
	// Just created, a failing node shows as starting rather than down.
	e.waitStatus("wobbly", cur.ID, "starting", "down")
	standby := cluster.NextActive(st, cur.ID)
	cl, err := NewFactoryForTest(e).Cloud()
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.AssignReservedIP(t.Context(), st.ReservedIP, standby.DropletID); err != nil {
		t.Fatal(err)
	}
	r = e.run("node", "repair-ha", "--name", "wobbly", "--check-only")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "state behind a failover") ||
		!strings.Contains(r.stdout, "the state's active node is "+cur.ID) {
		t.Fatalf("check-only after an unrecorded failover: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before := len(e.sim.Calls())
	e.mustRun("node", "repair-ha", "--name", "wobbly", "--force")
	for _, c := range e.sim.Calls()[before:] {
		if c.Method == http.MethodPost {
			t.Errorf("following a failover made API call %s %s", c.Method, c.Path)
		}
	}
	if st = e.consistent("wobbly"); st.Active().ID != standby.ID {
		t.Fatalf("after repair the active node is %s, want %s", st.Active().ID, standby.ID)
	}

	// 3. The active node's droplet deleted behind dynia's back: the node
	// leaves the state and the IP goes to the next node that is up.
	h.set(cur.ID, false, false)
	e.waitStatus("wobbly", cur.ID, "up")
	gone := *st.Active()
	e.sim.DeleteDropletBehindBack(gone.DropletID)
	r = e.run("node", "repair-ha", "--name", "wobbly", "--check-only")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "is on no droplet") {
		t.Fatalf("check-only after the active droplet vanished: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.mustRun("node", "repair-ha", "--name", "wobbly", "--force")
	st = e.consistent("wobbly")
	if len(st.Nodes) != 2 || st.Node(gone.ID) != nil || e.ripHolder(st.ReservedIP) != st.Active().DropletID {
		t.Fatalf("after repair: %+v", st.Nodes)
	}

	// 4. No report says up (reports not flowing) and the IP sits on a ready
	// standby: it stays there, since neither node is known to serve, and
	// the state follows it.
	act := *st.Active()
	var holder cluster.Node
	for _, n := range st.Nodes {
		if n.ID != act.ID {
			holder = n
		}
		h.set(n.ID, false, true)
	}
	e.waitStatus("wobbly", act.ID, "stale")
	e.waitStatus("wobbly", holder.ID, "stale")
	if err := cl.AssignReservedIP(t.Context(), st.ReservedIP, holder.DropletID); err != nil {
		t.Fatal(err)
	}
	r = e.run("node", "repair-ha", "--name", "wobbly", "--check-only")
	if r.code != ExitFailure || strings.Contains(r.stdout, "assign it to") || !strings.Contains(r.stdout, "stays where it is") {
		t.Fatalf("check-only with no node up: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	before = len(e.sim.Calls())
	e.mustRun("node", "repair-ha", "--name", "wobbly", "--force")
	for _, c := range e.sim.Calls()[before:] {
		if c.Method == http.MethodPost {
			t.Errorf("repair with no node up made API call %s %s", c.Method, c.Path)
		}
	}
	if st = e.consistent("wobbly"); st.Active().ID != holder.ID {
		t.Fatalf("after repair the active node is %s, want the holder %s", st.Active().ID, holder.ID)
	}
}

// TestRepairReportsVanishedVPC: a VPC gone from DO (here: a state naming a
// VPC that does not exist) is reported with a hint; --force cannot fix it
// and says so with exit 1, changing nothing.
func TestRepairReportsVanishedVPC(t *testing.T) {
	e := newEnv(t)
	defer e.fakeNodes("novpc")()
	e.mustRun("node", "create-ha", "--name", "novpc", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	const ghost = "5a4b3c2d-0000-4000-8000-000000000001"
	e.updateState("novpc", func(s *cluster.State) { s.VPC.ID = ghost })
	r := e.run("node", "repair-ha", "--name", "novpc", "--check-only")
	if r.code != ExitFailure || !strings.Contains(r.stdout, "VPC "+ghost) || !strings.Contains(r.stdout, "no longer exists") ||
		!strings.Contains(r.stdout, "none automatic") {
		t.Fatalf("check-only with a vanished VPC: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	gen := e.state("novpc").Generation
	r = e.run("node", "repair-ha", "--name", "novpc", "--force")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "manual action") || !strings.Contains(r.stderr, "cluster destroy") {
		t.Fatalf("--force with a vanished VPC: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if st := e.state("novpc"); st.Generation != gen || st.VPC.ID != ghost {
		t.Fatalf("--force changed the state: generation %d → %d, VPC %s", gen, st.Generation, st.VPC.ID)
	}
}

// cloud is a DO client on the simulator with the operator's token.
func (e *testEnv) cloud() *cloud.Client {
	e.t.Helper()
	cl, err := cloud.New(fullToken, cloud.Options{BaseURL: e.api.URL})
	if err != nil {
		e.t.Fatal(err)
	}
	return cl
}
