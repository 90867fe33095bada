package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRejectedTokenWritesNoState is issue 16 item 12's defect: a command
// whose DO token DigitalOcean refuses must fail before it writes the state.
// `node add` used to commit its new nodes (provisioning) first and fail at
// its first DO call, leaving them for repair-ha; `node remove` marked its
// node draining; `cluster update --admin-cidr` wrote the CIDRs. Each now
// reads with the token first: the state keeps its generation and nodes.
func TestRejectedTokenWritesNoState(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("tok")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "tok", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "tok", "--count", "1")
	before := e.state("tok")
	if len(before.Nodes) != 2 {
		t.Fatalf("setup: %d nodes, want 2", len(before.Nodes))
	}
	standby := before.Nodes[1].ID
	if before.Nodes[1].Role == "active" {
		standby = before.Nodes[0].ID
	}
	e.env["DIGITALOCEAN_ACCESS_TOKEN"] = "no-such-token"
	for _, args := range [][]string{
		{"node", "add", "--name", "tok", "--count", "1"},
		{"node", "remove", "--name", "tok", "--node", standby, "--yes"},
		{"cluster", "update", "--name", "tok", "--admin-cidr", "192.0.2.7/32"},
	} {
		r := e.run(args...)
		if r.code != ExitAuth {
			t.Fatalf("%v with a rejected token: exit %d, want %d\n%s", args, r.code, ExitAuth, r.stderr)
		}
		after := e.state("tok")
		if after.Generation != before.Generation {
			t.Errorf("%v with a rejected token: generation %d, want %d (unchanged)", args, after.Generation, before.Generation)
		}
		if diff := cmp.Diff(before.Nodes, after.Nodes); diff != "" {
			t.Errorf("%v with a rejected token changed the node table (-before +after):\n%s", args, diff)
		}
	}
}

// TestRemoveLastNodeIsBadInput: removing a cluster's last node without
// --force is bad input found in the state: exit 2 before any API call
// and before any write (the write probe, the failover follow-up), so
// nothing in the bucket or at DigitalOcean changes. With --force it goes.
func TestRemoveLastNodeIsBadInput(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("last")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "last", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	st := e.state("last")
	writes, calls := e.writes.Load(), len(e.sim.Calls())
	r := e.run("node", "remove", "--name", "last", "--node", st.Nodes[0].ID, "--yes")
	wantUsage(t, r, "--node", "the last node", "--force")
	if n := e.writes.Load() - writes; n != 0 {
		t.Errorf("bucket writes: %d, want 0", n)
	}
	if n := len(e.sim.Calls()) - calls; n != 0 {
		t.Errorf("DO API calls: %d, want 0", n)
	}
	e.mustRun("node", "remove", "--name", "last", "--node", st.Nodes[0].ID, "--yes", "--force")
	if got := e.state("last"); len(got.Nodes) != 0 {
		t.Errorf("after remove --force: nodes %+v, want none", got.Nodes)
	}
}

// TestBucketOnlyWriteWithoutDO: a command that only writes the bucket
// works while DigitalOcean's API does not answer. Checking the token
// before a write stops only on a refused token, not on an outage.
func TestBucketOnlyWriteWithoutDO(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("nodo")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "nodo", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.api.Close() // connections refused from now on
	e.mustRun("cluster", "update", "--name", "nodo", "--min-pull-version", "v0.0.1", "--force")
	if st := e.state("nodo"); st.MinPullVersion != "v0.0.1" {
		t.Errorf("min_pull_version %q, want v0.0.1", st.MinPullVersion)
	}
}
