package cli

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/dosim"
)

// apiFault is one kind of DO API failure, injected from the k-th API
// request of a command on.
type apiFault struct {
	name string
	// fault is the injection starting at request k.
	fault func(k int) dosim.Fault
	// hit says whether a call in the log is one the fault answered.
	hit func(c dosim.Call) bool
	// step is how far apart the points tried are (1: every request).
	step int
}

// stormLength outlasts every single request (godo's 5 attempts) but not a
// wait, which polls through 5 failed polls of 5 attempts each.
const stormLength = 8

var apiFaults = []apiFault{
	{
		name: "503 storm",
		fault: func(k int) dosim.Fault {
			return dosim.Fault{PathPrefix: "/v2/", Status: 503, After: k, Count: stormLength}
		},
		hit:  func(c dosim.Call) bool { return c.Status == 503 },
		step: 2,
	},
	{
		name: "429 storm",
		fault: func(k int) dosim.Fault {
			return dosim.Fault{PathPrefix: "/v2/", Status: 429, After: k, Count: stormLength}
		},
		hit:  func(c dosim.Call) bool { return c.Status == 429 },
		step: 3,
	},
	{
		// Each attempt outlives the client's request timeout (the env's
		// requestTimeout): the client gives up, the simulator applies
		// nothing (it honours the cancellation).
		name: "timeouts",
		fault: func(k int) dosim.Fault {
			return dosim.Fault{PathPrefix: "/v2/", Latency: time.Second, After: k, Count: stormLength}
		},
		hit:  func(c dosim.Call) bool { return c.Status == 0 },
		step: 3,
	},
	{
		// The request is applied and its answer lost: a 500, or a dropped
		// connection on every other point.
		name: "lost answer",
		fault: func(k int) dosim.Fault {
			status := 500
			if k%2 == 1 {
				status = 0
			}
			return dosim.Fault{PathPrefix: "/v2/", Status: status, AnswerLost: true, After: k, Count: 1}
		},
		hit:  func(c dosim.Call) bool { return c.Status == 500 || c.Status == 0 },
		step: 1,
	},
}

// TestAPIFaultsEveryCommand injects each kind of DO API failure at every
// point of every command (from its k-th request on, k = 0, step, 2·step,
// … until a command no longer reaches it) in a cluster's whole life:
// create-ha, add --count 2, make-active, replace the active node, remove a standby, repair-ha
// --force replacing a vanished droplet, destroy. Each command must finish
// or fail cleanly (exit 1, one line, a retryable one for a storm or a
// timeout); a re-run without the fault must finish it; and after each
// command the cluster holds exactly its nodes' droplets (no orphan, no
// duplicate), one Reserved IP and one firewall, state and DO agreeing;
// after destroy nothing of it is left.
func TestAPIFaultsEveryCommand(t *testing.T) {
	if testing.Short() {
		// Every fault at every request of every command: minutes, not
		// seconds, of simulator work (TestCommandsSurviveFaults is the
		// short form).
		t.Skip("exhaustive fault sweep skipped under -short")
	}
	for _, kind := range apiFaults {
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if kind.name == "timeouts" {
				e.requestTimeout = 200 * time.Millisecond
			}
			// The first VPC of a region becomes its default, which DO never
			// deletes: someone else's takes that place, so destroy can be
			// checked for leaving no VPC.
			if _, _, err := e.cloud().EnsureVPC(t.Context(), "first", "sgp1", ""); err != nil {
				t.Fatal(err)
			}
			tried, failed := 0, 0
			for k := 0; ; k += kind.step {
				name := fmt.Sprintf("k%d", k)
				hits, fails := e.apiFaultLife(kind, k, name)
				tried++
				failed += fails
				if hits == 0 {
					break
				}
				if k > 200 {
					t.Fatal("the fault still fires after 200 requests into every command")
				}
			}
			t.Logf("%s: %d points tried, %d command runs failed and were completed by a re-run", kind.name, tried, failed)
			if failed == 0 && kind.name != "lost answer" {
				t.Errorf("no command ever failed under %s: the storm is too weak to test anything", kind.name)
			}
		})
	}
}

// apiFaultLife runs one cluster's life with kind injected at request k of
// every command; it returns how many calls the fault answered and how many
// commands failed under it.
func (e *testEnv) apiFaultLife(kind apiFault, k int, name string) (hits, fails int) {
	t := e.t
	stop := e.fakeNodes(name)
	defer stop()
	step := func(args ...string) {
		t.Helper()
		e.sim.ClearFaults()
		from := len(e.sim.Calls())
		e.sim.InjectFault(kind.fault(k))
		r := e.run(args...)
		e.sim.ClearFaults()
		for _, c := range e.sim.Calls()[from:] {
			if kind.hit(c) {
				hits++
			}
		}
		what := fmt.Sprintf("%s at request %d: dynia %s", kind.name, k, strings.Join(args, " "))
		if r.code != 0 {
			fails++
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			last := lines[len(lines)-1]
			if r.code != ExitFailure || !strings.HasPrefix(last, "error: ") {
				t.Fatalf("%s: exit %d, want 0 or 1 with an error line\n%s", what, r.code, r.stderr)
			}
			if kind.name != "lost answer" && !strings.Contains(last, "retryable") {
				t.Errorf("%s: failed without saying it is retryable: %s", what, last)
			}
			if rr := e.run(args...); rr.code != 0 {
				t.Fatalf("%s failed (%s), and so did the re-run without the fault: exit %d\n%s", what, last, rr.code, rr.stderr)
			}
		}
		if args[0] == "cluster" && args[1] == "destroy" {
			e.nothingLeft(what, name)
			return
		}
		e.exactlyOnce(what, name)
	}
	step("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")
	step("node", "add", "--name", name, "--count", "2")
	st := e.state(name)
	step("node", "make-active", "--name", name, "--node", st.Nodes[1].ID)
	st = e.state(name)
	step("node", "replace", "--name", name, "--node", st.Active().ID)
	st = e.state(name)
	step("node", "remove", "--name", name, "--node", st.Nodes[2].ID, "--yes")
	st = e.state(name)
	e.sim.DeleteDropletBehindBack(st.Nodes[1].DropletID)
	step("node", "repair-ha", "--name", name, "--force")
	step("cluster", "destroy", "--name", name, "--yes")
	return hits, fails
}

// exactlyOnce checks that the cluster's resources are exactly what its
// state names: one droplet per node (none orphaned, none duplicated), one
// Reserved IP, one firewall, and state, DO and `node list` agreeing.
func (e *testEnv) exactlyOnce(what, name string) {
	t := e.t
	t.Helper()
	st := e.consistent(name)
	perNode := map[string][]int{}
	for _, d := range e.taggedDroplets(name) {
		for _, tag := range d.Tags {
			if id, ok := strings.CutPrefix(tag, "dynia:node:"); ok {
				perNode[id] = append(perNode[id], d.ID)
			}
		}
	}
	for id, ds := range perNode {
		if len(ds) != 1 || st.Node(id) == nil {
			t.Errorf("%s: node %s has droplets %v (in the state: %v)", what, id, ds, st.Node(id) != nil)
		}
	}
	var fws []string
	for _, fw := range e.sim.Firewalls() {
		if fw.Name == resourceName(name) {
			fws = append(fws, fw.ID)
		}
	}
	if len(fws) != 1 || fws[0] != st.FirewallID {
		t.Errorf("%s: firewalls named %s: %v, the state's %s", what, resourceName(name), fws, st.FirewallID)
	}
	var rips []string
	drops := map[int]bool{}
	for _, d := range e.taggedDroplets(name) {
		drops[d.ID] = true
	}
	for _, r := range e.sim.ReservedIPs() {
		if drops[r.DropletID] || r.IP == st.ReservedIP {
			rips = append(rips, r.IP)
		}
	}
	if !slices.Equal(rips, []string{st.ReservedIP}) {
		t.Errorf("%s: Reserved IPs on the cluster's droplets: %v, the state's %s", what, rips, st.ReservedIP)
	}
}

// nothingLeft checks that a destroyed cluster left no droplet, firewall,
// Reserved IP, VPC or state behind.
func (e *testEnv) nothingLeft(what, name string) {
	t := e.t
	t.Helper()
	if ds := e.taggedDroplets(name); len(ds) != 0 {
		t.Errorf("%s: droplets left: %v", what, ds)
	}
	for _, fw := range e.sim.Firewalls() {
		if fw.Name == resourceName(name) {
			t.Errorf("%s: firewall %s left", what, fw.ID)
		}
	}
	for _, v := range e.sim.VPCs() {
		if v.Name == vpcName(name, "sgp1") {
			t.Errorf("%s: VPC %s left", what, v.ID)
		}
	}
	for _, r := range e.sim.ReservedIPs() {
		if r.DropletID == 0 {
			t.Errorf("%s: an unassigned Reserved IP %s left", what, r.IP)
		}
	}
	if _, err := e.bucket.Get(t.Context(), "clusters/"+name+"/state.json", ""); err == nil {
		t.Errorf("%s: the state is still there", what)
	}
}

// TestNeverActiveDroplet: a droplet that never becomes active makes `node
// add` fail at its timeout naming the droplet, and deletes that droplet
// (nothing of it stays behind); the node stays in the state as
// provisioning, and the re-run creates a droplet that does become active
// and finishes the add: one droplet per node, none orphaned.
func TestNeverActiveDroplet(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	e.stuckAfter = time.Second
	defer e.fakeNodes("stuck")()
	e.mustRun("node", "create-ha", "--name", "stuck", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	before := len(e.taggedDroplets("stuck"))
	// The next droplet the simulator creates stays "new".
	next := 0
	for _, d := range e.sim.Droplets() {
		next = max(next, d.ID+1)
	}
	e.sim.SetNeverActive(fmt.Sprint(next))
	r := e.run("node", "add", "--name", "stuck", "--timeout", "2s")
	if r.code != ExitFailure || !strings.Contains(r.stderr, fmt.Sprint(next)) || !strings.Contains(r.stderr, "never became active") {
		t.Fatalf("add with a droplet that never becomes active: exit %d\n%s\nwant exit 1 naming droplet %d", r.code, r.stderr, next)
	}
	if got := len(e.taggedDroplets("stuck")); got != before {
		t.Errorf("%d droplets after the failed add, want %d: the stuck one must go", got, before)
	}
	st := e.state("stuck")
	if len(st.Nodes) != 2 || st.Nodes[1].Lifecycle != "provisioning" || st.Nodes[1].DropletID != 0 {
		t.Errorf("after the failed add the state has %+v; want the new node provisioning, with no droplet", st.Nodes)
	}
	e.mustRun("node", "add", "--name", "stuck")
	st = e.consistent("stuck")
	if len(st.Nodes) != 2 {
		t.Errorf("after the re-run: %d nodes, want 2", len(st.Nodes))
	}
	for _, d := range e.sim.Droplets() {
		if d.ID == next {
			t.Errorf("the stuck droplet %d is still there: %+v", next, d)
		}
	}
}
