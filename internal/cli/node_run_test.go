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
		{"node", "remove", "--name", "tok", "--node", standby, "--confirm"},
		{"cluster", "update", "--name", "tok", "--admin-cidr", "192.0.2.7/32"},
	} {
		r := e.run(args...)
		if r.code == 0 {
			t.Fatalf("%v with a rejected token: exit 0\n%s", args, r.stderr)
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
