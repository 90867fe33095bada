package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/signing"
	"github.com/dynia/dynia/internal/testutil"
)

// listRows is `node list -o json`.
func (e *testEnv) listRows(name string) []NodeRow {
	e.t.Helper()
	r := e.mustRun("node", "list", "--name", name, "-o", "json")
	var rows []NodeRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		e.t.Fatalf("node list -o json: %v\n%s", err, r.stdout)
	}
	return rows
}

// TestVersionsAndMinPullVersion: `node list` shows each node's dynia-pull
// version (VERSION, `version` in -o json) and image; `cluster get` and
// `node list` say when the nodes run more than one; `cluster update
// --min-pull-version` above a ready node's reported version is refused
// (exit 2, naming the node and its version, nothing written) unless
// --force; a node that reports upgrade required shows as
// upgrade-required.
func TestVersionsAndMinPullVersion(t *testing.T) {
	e := newEnv(t)
	h, stop := e.reportNodes("ver")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "ver", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "ver", "--count", "1")
	st := e.state("ver")
	if len(st.Nodes) < 2 {
		t.Fatalf("create-ha made %d nodes", len(st.Nodes))
	}
	older, newer := st.Nodes[1].ID, st.Nodes[0].ID
	for _, n := range st.Nodes {
		h.setVersion(n.ID, "v1.3.0", "")
	}
	testutil.WaitFor(t, time.Minute, func() error {
		for _, r := range e.listRows("ver") {
			if r.Version != "v1.3.0" || r.Image != st.Image {
				return fmt.Errorf("node %s: version %q image %q", r.ID, r.Version, r.Image)
			}
		}
		return nil
	})
	r := e.mustRun("node", "list", "--name", "ver")
	if lines := strings.Split(r.stdout, "\n"); !strings.HasSuffix(lines[0], "\tVERSION") || !strings.HasSuffix(lines[1], "\tv1.3.0") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	if r = e.mustRun("cluster", "get", "--name", "ver"); strings.Contains(r.stderr, "versions") {
		t.Fatalf("cluster get of one version notes: %s", r.stderr)
	}

	h.setVersion(older, "v1.2.0", "")
	want := fmt.Sprintf("note: nodes run 2 dynia-pull versions: v1.2.0 (%s), v1.3.0 (", older)
	testutil.WaitFor(t, time.Minute, func() error {
		if r := e.mustRun("cluster", "get", "--name", "ver"); !strings.Contains(r.stderr, want) {
			return fmt.Errorf("cluster get stderr %q, want %q", r.stderr, want)
		}
		return nil
	})
	var view ClusterView
	r = e.mustRun("cluster", "get", "--name", "ver", "-o", "json")
	if err := json.Unmarshal([]byte(r.stdout), &view); err != nil || !strings.HasPrefix("note: "+view.VersionNote, want) {
		t.Fatalf("cluster get -o json: %v, version_note %q", err, view.VersionNote)
	}
	if r = e.mustRun("node", "list", "--name", "ver"); !strings.Contains(r.stderr, want) {
		t.Fatalf("node list stderr %q, want %q", r.stderr, want)
	}

	// The write guard: v1.3.0 would strand the v1.2.0 node.
	gen := e.state("ver").Generation
	r = e.run("cluster", "update", "--name", "ver", "--min-pull-version", "v1.3.0")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "min_pull_version v1.3.0: ready node(s) "+older+" (v1.2.0) run an older dynia-pull") ||
		!strings.Contains(r.stderr, "--force") || strings.Contains(r.stderr, newer+" (") {
		t.Fatalf("raise above a ready node: exit %d\n%s", r.code, r.stderr)
	}
	if st := e.state("ver"); st.MinPullVersion != "" || st.Generation != gen {
		t.Fatalf("refused raise wrote the state: min %q, generation %d (was %d)", st.MinPullVersion, st.Generation, gen)
	}
	// At the oldest node's version: nobody is stranded.
	e.mustRun("cluster", "update", "--name", "ver", "--min-pull-version", "v1.2.0")
	if st := e.state("ver"); st.MinPullVersion != "v1.2.0" {
		t.Fatalf("min_pull_version %q, want v1.2.0", st.MinPullVersion)
	}
	e.mustRun("cluster", "update", "--name", "ver", "--min-pull-version", "v1.3.0", "--force")
	if st := e.state("ver"); st.MinPullVersion != "v1.3.0" {
		t.Fatalf("min_pull_version %q after --force, want v1.3.0", st.MinPullVersion)
	}
	if r = e.mustRun("cluster", "get", "--name", "ver"); !strings.Contains(r.stdout, "min pull:     v1.3.0\n") {
		t.Fatalf("cluster get:\n%s", r.stdout)
	}

	// The older node refuses the state: upgrade-required, still serving.
	h.setVersion(older, "v1.2.0", "v1.3.0")
	testutil.WaitFor(t, time.Minute, func() error {
		for _, r := range e.listRows("ver") {
			if r.ID == older && (r.Status != "upgrade-required" || r.Health != ops.HealthUpgradeRequired || r.UpgradeRequired != "v1.3.0") {
				return fmt.Errorf("older node: status %q health %q upgrade_required %q", r.Status, r.Health, r.UpgradeRequired)
			}
			if r.ID == newer && r.Status != "up" {
				return fmt.Errorf("newer node: status %q (%s)", r.Status, r.HealthReason)
			}
		}
		return nil
	})
	r = e.mustRun("node", "list", "--name", "ver")
	if !strings.Contains(r.stderr, older+": upgrade-required: dynia-pull v1.2.0 refuses the state, which needs v1.3.0") {
		t.Fatalf("node list stderr:\n%s", r.stderr)
	}
	if !ops.HealthUpgradeRequired.Serves() {
		t.Fatal("an upgrade-required node serves its last config")
	}

	// Bad input first: exit 2, nothing written.
	wantUsage(t, e.run("cluster", "update", "--name", "ver", "--min-pull-version", "1.4"), `--min-pull-version "1.4"`, "release version")
	wantUsage(t, e.run("cluster", "update", "--name", "ver", "--force"), "--force", "--min-pull-version")
}

// TestNewerStateRefused: a state a newer dynia wrote, with a field this
// CLI does not know (signed with the cluster's key, so only its content is
// new), is refused by every command that reads it — one line naming the
// object, exit 1 (a failure, as for any state it cannot read: not bad
// input), saying to upgrade the CLI — and left as it is.
func TestNewerStateRefused(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("nx")
	e.mustRun("node", "create-ha", "--name", "nx", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	stop()
	st := e.state("nx")
	st.Generation++
	b, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(b), `"lifecycle": "ready",`, `"lifecycle": "ready", "zone": "sgp1-a",`, 1)
	key, _, err := NewFactoryForTest(e).stateKeys().SigningKey("nx", false)
	if err != nil || key == nil {
		t.Fatalf("state key: %v", err)
	}
	env, err := signing.Seal(signing.KindState, key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.bucket.Put(context.Background(), cluster.StateKey("nx"), env, bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"node", "list", "--name", "nx"},
		{"cluster", "get", "--name", "nx"},
		{"node", "add", "--name", "nx"},
	} {
		r := e.run(args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != ExitFailure || len(lines) != 1 {
			t.Fatalf("dynia %s on a newer state: exit %d, want 1 and one line\n%s", strings.Join(args, " "), r.code, r.stderr)
		}
		for _, w := range []string{"state of nx (clusters/nx/state.json in ", "state written by a newer dynia", `field "nodes[0].zone" is unknown`, "upgrade the dynia CLI"} {
			if !strings.Contains(lines[0], w) {
				t.Errorf("dynia %s: %q, want it to contain %q", strings.Join(args, " "), lines[0], w)
			}
		}
	}
	obj, err := e.bucket.Get(context.Background(), cluster.StateKey("nx"), "")
	if err != nil || string(obj.Body) != string(env) {
		t.Fatalf("the newer state was changed: %v", err)
	}
}
