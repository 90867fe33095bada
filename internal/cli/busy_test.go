package cli

import (
	"net/http"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
)

// DO's 422 answers to a request that another event on the droplet or the
// reserved IP blocks.
const (
	dropletPending = "Droplet already has a pending event."
	ripPending     = "The floating IP already has a pending event."
)

// busyOnce makes the next request of method under pathPrefix answer 422
// with DO's pending-event message, and returns a check that it did and that
// the request was then sent again and accepted.
func (e *testEnv) busyOnce(method, pathPrefix, message string) (check func()) {
	e.t.Helper()
	before := len(e.sim.Calls())
	e.sim.InjectFault(dosim.Fault{Method: method, PathPrefix: pathPrefix, Status: http.StatusUnprocessableEntity, Message: message, Count: 1})
	return func() {
		e.t.Helper()
		e.sim.ClearFaults()
		var got []int
		for _, c := range e.sim.Calls()[before:] {
			if c.Method == method && strings.HasPrefix(c.Path, pathPrefix) {
				got = append(got, c.Status)
			}
		}
		if len(got) < 2 || got[0] != http.StatusUnprocessableEntity || got[1]/100 != 2 {
			e.t.Fatalf("%s %s answered %v: want the injected 422, then the retry accepted", method, pathPrefix, got)
		}
	}
}

// TestCommandsRideOutPendingEvents is issue 11's reproduction (create-ha's
// first POST /v2/reserved_ips answered 422 "Droplet already has a pending
// event.") and its kind: each command's first action, create or delete
// gets one pending-event refusal and the command still succeeds, with the
// state and DigitalOcean in agreement.
func TestCommandsRideOutPendingEvents(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	defer e.fakeNodes("busy")()

	check := e.busyOnce("POST", "/v2/reserved_ips", dropletPending)
	e.mustRun("node", "create-ha", "--name", "busy", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	check()
	if st := e.consistent("busy"); st.ReservedIP == "" || len(st.Nodes) != 1 {
		t.Fatalf("create-ha: %+v", st)
	}

	check = e.busyOnce("POST", "/v2/droplets", dropletPending)
	e.mustRun("node", "add", "--name", "busy", "--count", "3")
	check()
	if st := e.consistent("busy"); len(st.Nodes) != 4 {
		t.Fatalf("add --count 3: %d nodes, want 4", len(st.Nodes))
	}

	st := e.state("busy")
	target := st.Nodes[1].ID
	check = e.busyOnce("POST", "/v2/reserved_ips/", ripPending)
	e.mustRun("node", "make-active", "--name", "busy", "--node", target)
	check()
	if st := e.consistent("busy"); st.Active().ID != target {
		t.Fatalf("make-active: active %s, want %s", st.Active().ID, target)
	}

	standby := st.Nodes[2]
	check = e.busyOnce("DELETE", "/v2/droplets/", dropletPending)
	e.mustRun("node", "remove", "--name", "busy", "--node", standby.ID, "--yes")
	check()
	if st := e.consistent("busy"); st.Node(standby.ID) != nil || len(st.Nodes) != 3 {
		t.Fatalf("remove of a standby: %+v", st.Nodes)
	}

	// Removing the active node moves the Reserved IP first.
	check = e.busyOnce("POST", "/v2/reserved_ips/", dropletPending)
	e.mustRun("node", "remove", "--name", "busy", "--node", target, "--yes")
	check()
	if st := e.consistent("busy"); st.Node(target) != nil || len(st.Nodes) != 2 || st.Active() == nil {
		t.Fatalf("remove of the active node: %+v", st.Nodes)
	}

	// repair-ha puts an unassigned Reserved IP back.
	st = e.state("busy")
	e.sim.UnassignReservedIP(st.ReservedIP)
	check = e.busyOnce("POST", "/v2/reserved_ips/", ripPending)
	e.mustRun("node", "repair-ha", "--name", "busy", "--force")
	check()
	e.consistent("busy")

	// A resource that stays busy: the command gives up at its timeout and
	// says which resource stayed busy.
	st = e.state("busy")
	other := st.Nodes[0]
	if other.Role == cluster.RoleActive {
		other = st.Nodes[1]
	}
	e.sim.InjectFault(dosim.Fault{Method: "POST", PathPrefix: "/v2/reserved_ips/", Status: http.StatusUnprocessableEntity, Message: ripPending})
	r := e.run("node", "make-active", "--name", "busy", "--node", other.ID, "--timeout", "2s")
	e.sim.ClearFaults()
	if r.code != ExitFailure || !strings.Contains(r.stderr, "reserved IP "+st.ReservedIP+" stayed busy with a pending event") {
		t.Fatalf("make-active on a Reserved IP that stays busy: exit %d, want 1 and the IP named as busy:\n%s", r.code, r.stderr)
	}
	if st := e.consistent("busy"); st.Active().ID == other.ID {
		t.Fatal("the state made the node active although the Reserved IP never moved")
	}

	check = e.busyOnce("DELETE", "/v2/reserved_ips/", ripPending)
	e.mustRun("cluster", "destroy", "--name", "busy", "--yes")
	check()
	if n := len(e.sim.ReservedIPs()); n != 0 {
		t.Fatalf("%d Reserved IPs left after destroy", n)
	}
}
