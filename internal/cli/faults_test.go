package cli

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/oauth2"

	"github.com/dynia/dynia/internal/dosim"
)

// injectAPIFaults answers about a quarter of all API calls with 429 or 500.
// The faults follow a fixed pattern rather than a random rate: at 30 %
// random, a call fails all five of godo's attempts about once in 400, which
// made the fault tests fail about one run in five.
func (e *testEnv) injectAPIFaults() {
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/", Status: http.StatusTooManyRequests, Every: 7})
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/", Status: http.StatusInternalServerError, Every: 5})
}

// clearAPIFaults removes the faults, failing the test if none was injected
// (it would not have tested anything).
func (e *testEnv) clearAPIFaults() {
	e.t.Helper()
	faulted := 0
	for _, c := range e.sim.Calls() {
		if c.Status == http.StatusTooManyRequests || c.Status == http.StatusInternalServerError {
			faulted++
		}
	}
	if faulted == 0 {
		e.t.Fatal("no fault was injected: the test did not test anything")
	}
	e.t.Logf("%d of %d API calls answered 429/500", faulted, len(e.sim.Calls()))
	e.sim.ClearFaults()
}

// TestCommandsSurviveFaults: with 429s and 500s injected on about a quarter
// of all calls, every command still finishes (godo retries, dynia's waits
// poll on).
func TestCommandsSurviveFaults(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	stop := e.fakeNodes("shaky")
	defer stop()
	e.injectAPIFaults()
	e.mustRun("node", "create-ha", "--name", "shaky", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "shaky", "--count", "2")
	st := e.state("shaky")
	e.mustRun("node", "make-active", "--name", "shaky", "--node", st.Nodes[1].ID)
	e.mustRun("node", "remove", "--name", "shaky", "--node", st.Nodes[2].ID, "--yes")
	e.mustRun("node", "list", "--name", "shaky")
	e.clearAPIFaults()
	e.consistent("shaky")
}

// TestMoreCommandsSurviveFaults: the commands TestCommandsSurviveFaults
// leaves out (removing the active node, repair-ha, cluster list/get/destroy)
// finish under the same deterministic 429s and 500s.
func TestMoreCommandsSurviveFaults(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	defer e.fakeNodes("shaky2")()
	e.injectAPIFaults()
	e.mustRun("node", "create-ha", "--name", "shaky2", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "shaky2", "--count", "2")
	st := e.state("shaky2")
	active := st.Active().ID
	e.mustRun("node", "remove", "--name", "shaky2", "--node", active, "--yes")
	if st := e.state("shaky2"); len(st.Nodes) != 2 || st.Node(active) != nil || st.Active() == nil {
		t.Fatalf("after removing the active node: %+v", st.Nodes)
	}
	e.waitReported("shaky2")
	e.mustRun("node", "repair-ha", "--name", "shaky2", "--check-only")
	e.mustRun("node", "repair-ha", "--name", "shaky2", "--force")
	if r := e.mustRun("cluster", "list"); !strings.Contains(r.stdout, "shaky2") {
		t.Fatalf("cluster list: %s", r.stdout)
	}
	if r := e.mustRun("cluster", "get", "--name", "shaky2", "-o", "json"); !strings.Contains(r.stdout, st.ReservedIP) {
		t.Fatalf("cluster get: %s", r.stdout)
	}
	e.mustRun("cluster", "destroy", "--name", "shaky2", "--yes")
	e.clearAPIFaults()
	if n := len(e.sim.Droplets()); n != 0 {
		t.Errorf("%d droplets left after destroy", n)
	}
	if n := len(e.sim.Firewalls()); n != 0 {
		t.Errorf("%d firewalls left after destroy", n)
	}
	if n := len(e.sim.ReservedIPs()); n != 0 {
		t.Errorf("%d Reserved IPs left after destroy", n)
	}
}

// TestInterruptedAddResumes: an add that dies after creating droplets (here
// by its timeout, while droplet reads hang) leaves a state that re-running
// the same command completes with exactly the nodes asked for; repair-ha
// --force does the same for a second interrupted add.
func TestInterruptedAddResumes(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	stop := e.fakeNodes("halfway")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "halfway", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	// Every droplet read hangs past the command's timeout.
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Latency: 3 * time.Second})
	r := e.run("node", "add", "--name", "halfway", "--count", "2", "--timeout", "1s")
	if r.code == 0 {
		t.Fatal("add with hanging droplet reads succeeded")
	}
	e.sim.ClearFaults()
	st := e.state("halfway")
	if len(st.Nodes) != 3 {
		t.Fatalf("after the interrupted add: %d nodes in the state", len(st.Nodes))
	}
	r = e.mustRun("node", "add", "--name", "halfway", "--count", "2")
	if !strings.Contains(r.stderr, "resuming") {
		t.Errorf("re-run does not say it resumes: %s", r.stderr)
	}
	st = e.consistent("halfway")
	if len(st.Nodes) != 3 {
		t.Fatalf("after re-running add: %d nodes, want 3", len(st.Nodes))
	}
	// A second interrupted add, finished by repair-ha instead.
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Latency: 3 * time.Second})
	if r := e.run("node", "add", "--name", "halfway", "--timeout", "1s"); r.code == 0 {
		t.Fatal("add with hanging droplet reads succeeded")
	}
	e.sim.ClearFaults()
	e.mustRun("node", "repair-ha", "--name", "halfway", "--force")
	st = e.consistent("halfway")
	if len(st.Nodes) != 4 {
		t.Fatalf("after repair: %d nodes, want 4", len(st.Nodes))
	}
	for _, n := range st.Nodes {
		if n.Lifecycle != "ready" {
			t.Fatalf("node %s is %s after repair", n.ID, n.Lifecycle)
		}
	}
	if got := len(e.sim.Droplets()); got != 4 {
		t.Fatalf("%d droplets, want 4 (no duplicates)", got)
	}
	// The second add's journal is stale now: a new add adds a new node.
	e.mustRun("node", "add", "--name", "halfway")
	if st := e.consistent("halfway"); len(st.Nodes) != 5 {
		t.Fatalf("after a fresh add: %d nodes, want 5", len(st.Nodes))
	}
}

// TestConcurrentAdds: four `node add` at once on one cluster.
func TestConcurrentNodeAdds(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("busy")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "busy", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	var wg sync.WaitGroup
	results := make([]result, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.run("node", "add", "--name", "busy")
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("add %d: exit %d: %s", i, r.code, r.stderr)
		}
	}
	st := e.consistent("busy")
	if len(st.Nodes) != 5 {
		t.Fatalf("%d nodes, want 5", len(st.Nodes))
	}
	if err := st.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestDestroyDeletesVPCOfCrashedCreate: a create-ha that died after making
// its VPC but before recording it leaves a VPC with dynia's marker; the
// re-run adopts it as dynia's own, so destroy deletes it. A user's VPC of
// the same name without the marker is used but never deleted.
func TestDestroyDeletesVPCOfCrashedCreate(t *testing.T) {
	e := newEnv(t)
	defer e.fakeNodes("crashed")()
	defer e.fakeNodes("mine")()
	ctx := context.Background()
	c, err := godo.New(oauth2.NewClient(ctx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: fullToken})), godo.SetBaseURL(e.api.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	// The first VPC of a region becomes its default, which DO never
	// deletes: a VPC of someone else's takes that place.
	for _, v := range []godo.VPCCreateRequest{
		{Name: "first", RegionSlug: "sgp1"},
		{Name: vpcName("crashed", "sgp1"), RegionSlug: "sgp1", Description: "dynia cluster network"},
		{Name: vpcName("mine", "sgp1"), RegionSlug: "sgp1", Description: "my own network"},
	} {
		if _, _, err := c.VPCs.Create(ctx, &v); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"crashed", "mine"} {
		e.mustRun("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")
		e.mustRun("cluster", "destroy", "--name", name, "--yes")
	}
	var left []string
	for _, v := range e.sim.VPCs() {
		left = append(left, v.Name)
	}
	slices.Sort(left)
	if want := []string{vpcName("mine", "sgp1"), "first"}; !slices.Equal(left, want) {
		t.Fatalf("VPCs after destroying both clusters: %v, want %v", left, want)
	}
}
