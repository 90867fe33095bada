package cli

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/dosim"
)

// TestCommandsSurviveFaults: with 429s and 500s injected on every route,
// every command still finishes (godo retries, dynia's waits poll on).
func TestCommandsSurviveFaults(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("shaky")
	defer stop()
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/", Status: http.StatusTooManyRequests, Rate: 0.15})
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/", Status: http.StatusInternalServerError, Rate: 0.15})
	e.mustRun("node", "create-ha", "--name", "shaky", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "shaky", "--count", "2")
	st := e.state("shaky")
	e.mustRun("node", "make-active", "--name", "shaky", "--node", st.Nodes[1].ID)
	e.mustRun("node", "remove", "--name", "shaky", "--node", st.Nodes[2].ID, "--confirm")
	e.mustRun("node", "list", "--name", "shaky")
	faulted := 0
	for _, c := range e.sim.Calls() {
		if c.Status == 429 || c.Status == 500 {
			faulted++
		}
	}
	if faulted == 0 {
		t.Fatal("no fault was injected: the test did not test anything")
	}
	t.Logf("%d of %d API calls answered 429/500", faulted, len(e.sim.Calls()))
	e.sim.ClearFaults()
	e.consistent("shaky")
}

// TestInterruptedAddResumes: an add that dies after creating droplets (here
// by its timeout, while droplets never become active) leaves a state that
// repair-ha --force completes with exactly the nodes asked for.
func TestInterruptedAddResumes(t *testing.T) {
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
	e.mustRun("node", "repair-ha", "--name", "halfway", "--force")
	st = e.consistent("halfway")
	if len(st.Nodes) != 3 {
		t.Fatalf("after repair: %d nodes, want 3", len(st.Nodes))
	}
	for _, n := range st.Nodes {
		if n.Lifecycle != "ready" {
			t.Fatalf("node %s is %s after repair", n.ID, n.Lifecycle)
		}
	}
	if got := len(e.sim.Droplets()); got != 3 {
		t.Fatalf("%d droplets, want 3 (no duplicates)", got)
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
