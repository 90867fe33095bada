package ops

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/secrets"
)

const testToken = "ops-test-token"

// env is an operation's dependencies on the in-process DO simulator and a
// file:// state.
type env struct {
	t   *testing.T
	sim *dosim.Server
	api string
	d   Deps
	rec *recorder
}

// noWait stands in for the nodes: every node has always applied the state.
type noWait struct{}

func (noWait) WaitOthers(context.Context, *cluster.State, string) error { return nil }

func newEnv(t *testing.T) *env {
	t.Helper()
	sim := dosim.New(dosim.Options{})
	sim.AddToken(testToken, dosim.FullScopes()...)
	sim.RegisterImage(dosim.Image{Name: "dynia-node-test-1", Regions: []string{"sgp1"}, CreatedAt: time.Now().Add(-time.Hour)})
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	t.Cleanup(sim.Close)
	cl, err := cloud.New(testToken, cloud.Options{BaseURL: api.URL, RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond,
		PollInterval: 10 * time.Millisecond, PollMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := bucket.Open(context.Background(), "file://"+dir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	identity, recipient, err := secrets.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	return &env{t: t, sim: sim, api: api.URL, rec: rec, d: Deps{
		Store: cluster.NewStore(b), Cloud: cl, Report: rec, Nodes: noWait{},
		Boot: &BootSpec{
			StateURL: "file://" + dir, NodeToken: "node-token", PullVersion: "v0.0.0-test",
			ClusterKey: func(*cluster.State, bool) (string, string, error) { return identity, recipient, nil },
		},
	}}
}

// nodes is the state's node table as "id role lifecycle" lines, sorted.
func nodes(st *cluster.State) []string {
	var out []string
	for _, n := range st.Nodes {
		out = append(out, n.ID+" "+string(n.Role)+" "+string(n.Lifecycle))
	}
	sort.Strings(out)
	return out
}

// check asserts that the state's nodes are ready with droplets that exist,
// one droplet per node, tagged for it, and returns the state.
func (e *env) check(what string, want int) *cluster.State {
	e.t.Helper()
	st, _, err := e.d.Store.Load(context.Background(), "ops")
	if err != nil {
		e.t.Fatal(err)
	}
	if len(st.Nodes) != want {
		e.t.Fatalf("%s: %d nodes %v, want %d", what, len(st.Nodes), nodes(st), want)
	}
	var stateDroplets, simDroplets []int
	for _, n := range st.Nodes {
		if n.Lifecycle != cluster.Ready || n.DropletID == 0 || n.PrivateIP == "" {
			e.t.Errorf("%s: node %+v is not ready with a droplet", what, n)
		}
		stateDroplets = append(stateDroplets, n.DropletID)
	}
	for _, d := range e.sim.Droplets() {
		simDroplets = append(simDroplets, d.ID)
		if n := st.Node(nodeIDFromTags(d.Tags)); n == nil || n.DropletID != d.ID {
			e.t.Errorf("%s: droplet %d (%v) is no node's", what, d.ID, d.Tags)
		}
	}
	slices.Sort(stateDroplets)
	if diff := cmp.Diff(stateDroplets, simDroplets); diff != "" {
		e.t.Errorf("%s: droplets (-state +DigitalOcean):\n%s", what, diff)
	}
	if a := st.Active(); a == nil {
		e.t.Errorf("%s: no active node", what)
	} else if rips := e.sim.ReservedIPs(); len(rips) != 1 || rips[0].IP != st.ReservedIP || rips[0].DropletID != a.DropletID {
		e.t.Errorf("%s: Reserved IPs %+v, want %s on the active node's droplet %d", what, rips, st.ReservedIP, a.DropletID)
	}
	return st
}

// TestLifecycle runs create-ha, add, remove, repair and destroy on a fresh state
// against the simulator, checking the node table and the droplets after
// each, and that running create-ha again creates nothing.
func TestLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The region's first VPC is DO's default, never deleted: the cluster's
	// is another, so Destroy must delete it.
	if _, _, err := e.d.Cloud.EnsureVPC(ctx, "first", "sgp1", ""); err != nil {
		t.Fatal(err)
	}
	safe := func(ctx context.Context) error { return bucket.RequireSafe(ctx, e.d.Store.B, false) }
	create := CreateHAOptions{Name: "ops", Region: "sgp1", Size: "s-1vcpu-1gb", AdminCIDRs: []string{"192.0.2.7/32"}, RequireSafe: safe}
	if _, err := CreateHA(ctx, e.d, create); err != nil {
		t.Fatalf("CreateHA: %v", err)
	}
	st := e.check("after create-ha", 1)
	if st.VPC.ID == "" || !st.VPC.Created || st.FirewallID == "" || st.SecretsRecipient == "" || st.Nodes[0].Role != cluster.RoleActive {
		t.Fatalf("after create-ha: VPC %+v, firewall %q, recipient %q, node %+v", st.VPC, st.FirewallID, st.SecretsRecipient, st.Nodes[0])
	}
	if fws := e.sim.Firewalls(); len(fws) != 1 || fws[0].ID != st.FirewallID {
		t.Fatalf("firewalls %+v, want the state's %s", fws, st.FirewallID)
	}
	calls := len(e.sim.Calls())
	if _, err := CreateHA(ctx, e.d, create); err != nil {
		t.Fatalf("CreateHA again: %v", err)
	}
	for _, c := range e.sim.Calls()[calls:] {
		if c.Method != "GET" {
			t.Errorf("CreateHA again changed something: %s %s", c.Method, c.Path)
		}
	}
	gen := e.check("after create-ha again", 1).Generation
	if gen != st.Generation {
		t.Errorf("CreateHA again wrote the state: generation %d, was %d", gen, st.Generation)
	}

	_, added, err := AddNodes(ctx, e.d, AddOptions{Name: "ops", Count: 2, JournalDir: t.TempDir()})
	if err != nil {
		t.Fatalf("AddNodes: %v", err)
	}
	st = e.check("after add", 3)
	for _, id := range added {
		if n := st.Node(id); n == nil || n.Role != cluster.RoleStandby {
			t.Errorf("added node %s: %+v, want a standby", id, n)
		}
	}

	// Removing the active node moves the Reserved IP to another first.
	active := st.Active().ID
	if _, err = RemoveNode(ctx, e.d, st, active); err != nil {
		t.Fatalf("RemoveNode %s: %v", active, err)
	}
	st = e.check("after removing the active node", 2)
	if st.Node(active) != nil || st.Active() == nil || st.Active().ID == active {
		t.Fatalf("after removing %s: nodes %v", active, nodes(st))
	}

	// A standby's droplet deleted behind dynia's back: repair finds it,
	// and the fix removes the node.
	var standby cluster.Node
	for _, n := range st.Nodes {
		if n.Role == cluster.RoleStandby {
			standby = n
		}
	}
	if !e.sim.DeleteDropletBehindBack(standby.DropletID) {
		t.Fatalf("no droplet %d", standby.DropletID)
	}
	checks := []Check{CheckProvisioning, CheckDroplets, CheckVPC, CheckFirewall}
	drifts, err := FindDrift(ctx, e.d, st, checks...)
	if err != nil {
		t.Fatal(err)
	}
	if len(drifts) != 1 || drifts[0].Do == nil || drifts[0].Fix != "remove the node from the state" {
		t.Fatalf("drift after deleting %s's droplet: %+v", standby.ID, drifts)
	}
	if manual, err := Repair(ctx, e.d.Report, drifts); err != nil || manual != 0 {
		t.Fatalf("Repair: %d manual, %v", manual, err)
	}
	st = e.check("after repair", 1)
	if st.Node(standby.ID) != nil {
		t.Fatalf("after repair: %s still in the state: %v", standby.ID, nodes(st))
	}
	if drifts, err := FindDrift(ctx, e.d, st, checks...); err != nil || len(drifts) != 0 {
		t.Fatalf("drift after repair: %+v, %v", drifts, err)
	}

	// Destroy leaves nothing: no droplet, Reserved IP, firewall, VPC or
	// state.
	if err := Destroy(ctx, e.d, st, DestroyOptions{StateURL: e.d.Boot.StateURL}); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if ds, rips, fws := e.sim.Droplets(), e.sim.ReservedIPs(), e.sim.Firewalls(); len(ds)+len(rips)+len(fws) != 0 {
		t.Errorf("after destroy: droplets %+v, Reserved IPs %+v, firewalls %+v", ds, rips, fws)
	}
	for _, v := range e.sim.VPCs() {
		if v.ID == st.VPC.ID {
			t.Errorf("after destroy: VPC %s left", v.ID)
		}
	}
	if _, _, err := e.d.Store.Load(ctx, "ops"); !errors.Is(err, cluster.ErrClusterNotFound) {
		t.Errorf("after destroy: state load %v, want ErrClusterNotFound", err)
	}
}

// TestAddRejectedToken: AddNodes with a token DigitalOcean refuses fails
// before its first write: the state keeps its generation and nodes, and no
// journal is left.
func TestAddRejectedToken(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := CreateHA(ctx, e.d, CreateHAOptions{Name: "ops", Region: "sgp1", Size: "s-1vcpu-1gb",
		RequireSafe: func(context.Context) error { return nil }}); err != nil {
		t.Fatalf("CreateHA: %v", err)
	}
	before := e.check("after create-ha", 1)
	bad, err := cloud.New("no-such-token", cloud.Options{BaseURL: e.api})
	if err != nil {
		t.Fatal(err)
	}
	d := e.d
	d.Cloud = bad
	jdir := t.TempDir()
	if _, _, err := AddNodes(ctx, d, AddOptions{Name: "ops", Count: 1, JournalDir: jdir}); err == nil {
		t.Fatal("AddNodes with a rejected token: no error")
	}
	after := e.check("after the refused add", 1)
	if after.Generation != before.Generation {
		t.Errorf("generation %d, want %d (unchanged)", after.Generation, before.Generation)
	}
	if diff := cmp.Diff(before.Nodes, after.Nodes); diff != "" {
		t.Errorf("node table changed (-before +after):\n%s", diff)
	}
}
