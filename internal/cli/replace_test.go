package cli

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
)

// newImage registers a dynia-node snapshot newer than newEnv's in both
// regions and returns its id: the image an upgrade moves to by default.
func (e *testEnv) newImage(name string) int {
	return e.sim.RegisterImage(dosim.Image{Name: name, Regions: []string{"sgp1", "nyc3"}, CreatedAt: time.Now()})
}

// dropletImages maps each droplet tagged for the cluster to its image id.
func (e *testEnv) dropletImages(name string) map[int]int {
	out := map[int]int{}
	for _, d := range e.sim.Droplets() {
		for _, tg := range d.Tags {
			if tg == cloud.ClusterTag(name) {
				out[d.ID] = d.ImageID
			}
		}
	}
	return out
}

// dropletCreates counts the droplet-create calls since call index from.
func (e *testEnv) dropletCreates(from int) int {
	n := 0
	for _, c := range e.sim.Calls()[from:] {
		if c.Method == "POST" && c.Path == "/v2/droplets" {
			n++
		}
	}
	return n
}

// TestReplaceBadInput: every bad flag of `node replace` and `cluster
// upgrade` is exit 2, one line naming the flag and the value, with no
// bucket write and no API call but reads (an image is known to exist only
// by asking DigitalOcean).
func TestReplaceBadInput(t *testing.T) {
	e := newEnv(t)
	e.mustRun("node", "create-ha", "--name", "exists", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--no-wait")
	id := e.state("exists").Nodes[0].ID
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown node", []string{"node", "replace", "--name", "exists", "--node", "blue-whale"}, `--node "blue-whale"`},
		{"bad node id", []string{"node", "replace", "--name", "exists", "--node", "Blue Whale"}, `--node "Blue Whale"`},
		{"missing node", []string{"node", "replace", "--name", "exists"}, `--node: required`},
		{"no such cluster", []string{"node", "replace", "--name", "ghost", "--node", "blue-whale"}, `ghost`},
		{"image shape", []string{"node", "replace", "--name", "exists", "--node", id, "--image", "my image!"}, `--image "my image!"`},
		{"distribution image", []string{"node", "replace", "--name", "exists", "--node", id, "--image", "debian-12-x64"}, `--image "debian-12-x64"`},
		{"unknown image id", []string{"node", "replace", "--name", "exists", "--node", id, "--image", "4242"}, `--image "4242"`},
		// DO answers GET /v2/images/{id} for its public images too: Debian
		// by id would boot a node without dynia-pull.
		{"public image id", []string{"node", "replace", "--name", "exists", "--node", id, "--image", "170000001"}, `--image "170000001": a public base image is not a private snapshot`},
		{"upgrade: public image id", []string{"cluster", "upgrade", "--name", "exists", "--image", "170000001"}, `--image "170000001"`},
		{"unknown image name", []string{"node", "replace", "--name", "exists", "--node", id, "--image", "dynia-node-nope"}, `--image "dynia-node-nope"`},
		{"health timeout", []string{"node", "replace", "--name", "exists", "--node", id, "--health-timeout", "0s"}, `--health-timeout "0s"`},
		{"upgrade: no such cluster", []string{"cluster", "upgrade", "--name", "ghost"}, `ghost`},
		{"upgrade: unknown image", []string{"cluster", "upgrade", "--name", "exists", "--image", "dynia-node-nope"}, `--image "dynia-node-nope"`},
		{"upgrade: image shape", []string{"cluster", "upgrade", "--name", "exists", "--image", "a/b"}, `--image "a/b"`},
		{"upgrade: timeout", []string{"cluster", "upgrade", "--name", "exists", "--timeout", "0s"}, `--timeout "0s"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.sim.Calls())
			writesBefore := e.writes.Load()
			r := e.run(tc.args...)
			if r.code != ExitUsage {
				t.Fatalf("exit %d, want 2\nstderr: %s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
			if last := lines[len(lines)-1]; !strings.Contains(last, tc.want) || strings.Count(r.stderr, "Error") > 1 {
				t.Fatalf("stderr %q: want one error line containing %q", r.stderr, tc.want)
			}
			for _, c := range e.sim.Calls()[before:] {
				if c.Method != "GET" {
					t.Errorf("API call on bad input: %s %s", c.Method, c.Path)
				}
			}
			if n := e.writes.Load() - writesBefore; n != 0 {
				t.Errorf("%d bucket write requests on bad input", n)
			}
		})
	}
}

// TestReplaceNode: a standby and then the active node are replaced from the
// newest snapshot. Each replacement gets a new id and the old node's
// priority; the active one's replacement holds the Reserved IP; state,
// simulator and `node list` agree after each.
func TestReplaceNode(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	stop := e.fakeNodes("rep")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "rep", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "rep", "--count", "2")
	img := e.newImage("dynia-node-test-2")
	before := e.consistent("rep")

	for _, which := range []string{"standby", "active"} {
		t.Run(which, func(t *testing.T) {
			st := e.state("rep")
			old := st.Nodes[1]
			if which == "active" {
				old = *st.Active()
			}
			// The id written with a leading zero is the same image: the
			// replacement must be recorded as DO writes it, or an upgrade
			// would take it for outdated for ever.
			e.mustRun("node", "replace", "--name", "rep", "--node", old.ID, "--image", "0"+strconv.Itoa(img))
			after := e.consistent("rep")
			if after.Node(old.ID) != nil || len(after.Nodes) != len(st.Nodes) {
				t.Fatalf("after replacing %s: %+v", old.ID, after.Nodes)
			}
			var repl *cluster.Node
			for i, n := range after.Nodes {
				if st.Node(n.ID) == nil {
					repl = &after.Nodes[i]
				}
				if n.Replaces != "" {
					t.Errorf("node %s still replaces %s", n.ID, n.Replaces)
				}
			}
			if repl == nil {
				t.Fatal("no new node")
			}
			if repl.Priority != old.Priority || repl.Role != old.Role {
				t.Errorf("replacement %s: priority %d role %s, want the old node's %d %s", repl.ID, repl.Priority, repl.Role, old.Priority, old.Role)
			}
			if got := e.dropletImages("rep")[repl.DropletID]; got != img {
				t.Errorf("replacement's droplet on image %d, want %d", got, img)
			}
		})
	}
	// The order of the priorities is what it was.
	after := e.state("rep")
	var was, is []int
	for _, n := range cluster.SortedByPriority(before.Nodes) {
		was = append(was, n.Priority)
	}
	for _, n := range cluster.SortedByPriority(after.Nodes) {
		is = append(is, n.Priority)
	}
	if fmt.Sprint(was) != fmt.Sprint(is) {
		t.Errorf("priorities %v, were %v", is, was)
	}
}

// TestUpgradeResumes: an upgrade that died after writing a replacement to
// the state and creating its droplet (tagged with the new id) is finished
// by running it again: the droplet is adopted, not made twice; every node
// ends on the new image, the Reserved IP on the active node.
func TestUpgradeResumes(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	stop := e.fakeNodes("up")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "up", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "up", "--count", "2")
	img := e.newImage("dynia-node-test-2")
	st := e.state("up")
	standby := st.Nodes[2]

	// The crashed run's writes: the replacement in the state, its droplet.
	var repl string
	store := e.signedStore()
	if _, err := store.Update(t.Context(), "up", func(s *cluster.State) (*cluster.State, error) {
		next, id, err := cluster.AddReplacement(s, standby.ID, strconv.Itoa(img), cluster.NewNamer(7), time.Now())
		repl = id
		return next, err
	}); err != nil {
		t.Fatal(err)
	}
	cl, err := cloud.New(fullToken, cloud.Options{BaseURL: e.api.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.CreateDroplets(t.Context(), []cloud.DropletSpec{{Name: cluster.Hostname("up", repl), Region: "sgp1",
		Size: "s-1vcpu-1gb", Image: strconv.Itoa(img), VPCUUID: st.VPC.ID, Tags: nodeTags("up", repl)}}); err != nil {
		t.Fatal(err)
	}

	calls := len(e.sim.Calls())
	r := e.mustRun("cluster", "upgrade", "--name", "up")
	if !strings.Contains(r.stderr, "resum") {
		t.Errorf("upgrade does not say it resumed the replacement of %s: %s", standby.ID, r.stderr)
	}
	// Three nodes replaced, one of them by the crashed run's droplet.
	if n := e.dropletCreates(calls); n != 2 {
		t.Errorf("%d droplets created on the re-run, want 2 (the crashed run's adopted)", n)
	}
	after := e.consistent("up")
	if after.Node(repl) == nil {
		t.Errorf("the crashed run's replacement %s is not in the state: %+v", repl, after.Nodes)
	}
	for id, im := range e.dropletImages("up") {
		if im != img {
			t.Errorf("droplet %d on image %d, want %d", id, im, img)
		}
	}
	for _, n := range st.Nodes {
		if after.Node(n.ID) != nil {
			t.Errorf("old node %s still in the state", n.ID)
		}
	}
	if after.Image != strconv.Itoa(img) {
		t.Errorf("cluster image %q, want %d", after.Image, img)
	}
	// Once done, a re-run replaces nothing.
	calls = len(e.sim.Calls())
	e.mustRun("cluster", "upgrade", "--name", "up")
	if n := e.dropletCreates(calls); n != 0 {
		t.Errorf("a finished upgrade run again created %d droplets", n)
	}
}

// TestUpgradeHaltsOnUnhealthyReplacement: a replacement that never reports
// healthy halts the upgrade (exit 1, a line saying so) with the old node
// still there, ready and holding what it held; once the replacement gets
// healthy, the same command finishes.
func TestUpgradeHaltsOnUnhealthyReplacement(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	h, stop := e.reportNodes("halt")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "halt", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "halt", "--count", "1")
	img := e.newImage("dynia-node-test-2")
	st := e.state("halt")
	known := map[string]bool{}
	for _, n := range st.Nodes {
		known[n.ID] = true
	}
	// Every node the upgrade makes reports VRRP FAULT, app unhealthy.
	var mu sync.Mutex
	healthy := false
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if cur, _, err := cluster.NewStore(e.bucket).Load(ctx, "halt"); err == nil {
				mu.Lock()
				for _, n := range cur.Nodes {
					if !known[n.ID] {
						h.set(n.ID, !healthy, false)
					}
				}
				mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	r := e.run("cluster", "upgrade", "--name", "halt", "--health-timeout", "3s")
	if r.code != ExitFailure || !strings.Contains(r.stderr, "did not become healthy") || !strings.Contains(r.stderr, "halted") {
		t.Fatalf("upgrade with an unhealthy replacement: exit %d, want 1 saying it halted\nstderr: %s", r.code, r.stderr)
	}
	mid := e.state("halt")
	for _, n := range st.Nodes {
		m := mid.Node(n.ID)
		if m == nil || m.Lifecycle != cluster.Ready || m.Role != n.Role || m.DropletID != n.DropletID {
			t.Errorf("old node %s after the halt: %+v, was %+v", n.ID, m, n)
		}
	}
	if len(mid.Nodes) != len(st.Nodes)+1 {
		t.Errorf("%d nodes after the halt, want the %d old ones and the replacement", len(mid.Nodes), len(st.Nodes))
	}
	var holder int
	for _, rip := range e.sim.ReservedIPs() {
		if rip.IP == st.ReservedIP {
			holder = rip.DropletID
		}
	}
	if holder != st.Active().DropletID {
		t.Errorf("Reserved IP on droplet %d after the halt, want the active node's %d", holder, st.Active().DropletID)
	}

	mu.Lock()
	healthy = true
	mu.Unlock()
	calls := len(e.sim.Calls())
	e.mustRun("cluster", "upgrade", "--name", "halt", "--health-timeout", "1m")
	if n := e.dropletCreates(calls); n != 1 {
		t.Errorf("%d droplets created by the re-run, want 1 (the halted replacement kept)", n)
	}
	after := e.consistent("halt")
	if len(after.Nodes) != len(st.Nodes) {
		t.Fatalf("%d nodes after the upgrade, want %d", len(after.Nodes), len(st.Nodes))
	}
	for id, im := range e.dropletImages("halt") {
		if im != img {
			t.Errorf("droplet %d on image %d, want %d", id, im, img)
		}
	}
}

// TestKilledUpgradeResumes: SIGKILL the real binary in the middle of
// `cluster upgrade` at two points — while it waits for the replacement's
// droplet (the replacement and its droplet id already in the state), and
// while it destroys the old node's droplet (the old node removing) — and
// re-run the same command: it finishes, with 3 droplets created in all
// (none twice), exactly one droplet per node, every node on the new image.
func TestKilledUpgradeResumes(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	defer e.fakeNodes("kup")()
	e.mustRun("node", "create-ha", "--name", "kup", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "kup", "--count", "2")
	img := e.newImage("dynia-node-test-2")
	old := e.state("kup")
	dyniaBinary(t) // build before anything is timed
	calls := len(e.sim.Calls())

	// 1. Killed while waiting for the replacement's droplet to be active.
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Latency: holdOpen, Status: http.StatusServiceUnavailable})
	p := e.startDynia("cluster", "upgrade", "--name", "kup")
	e.killWhen(p, "the replacement's droplet recorded", func() bool {
		for _, n := range e.state("kup").Nodes {
			if n.Replaces != "" && n.DropletID != 0 {
				return true
			}
		}
		return false
	})
	e.sim.ClearFaults()

	// 2. The re-run resumes it and is killed while destroying the old node.
	e.sim.InjectFault(dosim.Fault{Method: "DELETE", PathPrefix: "/v2/droplets/", Latency: holdOpen, Status: http.StatusServiceUnavailable})
	p = e.startDynia("cluster", "upgrade", "--name", "kup")
	e.killWhen(p, "an old node removing", func() bool {
		for _, n := range e.state("kup").Nodes {
			if n.Lifecycle == cluster.Removing {
				return true
			}
		}
		return false
	})
	e.sim.ClearFaults()

	r := e.mustRun("cluster", "upgrade", "--name", "kup")
	if !strings.Contains(r.stderr, "resum") {
		t.Errorf("the last run does not say it resumed a replacement:\n%s", r.stderr)
	}
	e.exactlyOnce("after the killed upgrades", "kup")
	if n := e.dropletCreates(calls); n != 3 {
		t.Errorf("%d droplets created over the three runs, want 3", n)
	}
	st := e.state("kup")
	for _, n := range old.Nodes {
		if st.Node(n.ID) != nil {
			t.Errorf("old node %s still in the state", n.ID)
		}
	}
	for id, im := range e.dropletImages("kup") {
		if im != img {
			t.Errorf("droplet %d on image %d, want %d", id, im, img)
		}
	}
}

// TestUpgradeAfterOldNodeRemovedByHand: the node a replacement was made for
// was removed by `node remove` before the replacement finished; the upgrade
// finishes the replacement (its `replaces` cleared) instead of looping on it.
func TestUpgradeAfterOldNodeRemovedByHand(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	e := newEnv(t)
	defer e.fakeNodes("hand")()
	e.mustRun("node", "create-ha", "--name", "hand", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	e.mustRun("node", "add", "--name", "hand", "--count", "1")
	img := e.newImage("dynia-node-test-2")
	standby := e.state("hand").Nodes[1]
	if _, err := e.signedStore().Update(t.Context(), "hand", func(s *cluster.State) (*cluster.State, error) {
		next, _, err := cluster.AddReplacement(s, standby.ID, strconv.Itoa(img), cluster.NewNamer(3), time.Now())
		return next, err
	}); err != nil {
		t.Fatal(err)
	}
	e.mustRun("node", "remove", "--name", "hand", "--node", standby.ID, "--yes")
	e.mustRun("cluster", "upgrade", "--name", "hand")
	st := e.consistent("hand")
	if len(st.Nodes) != 2 {
		t.Fatalf("%d nodes after the upgrade, want 2: %+v", len(st.Nodes), st.Nodes)
	}
	for _, n := range st.Nodes {
		if n.Replaces != "" {
			t.Errorf("node %s still replaces %s", n.ID, n.Replaces)
		}
	}
	for id, im := range e.dropletImages("hand") {
		if im != img {
			t.Errorf("droplet %d on image %d, want %d", id, im, img)
		}
	}
}
