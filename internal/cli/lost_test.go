package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

// answerLoser loses the answer to one write of a cluster's state: the store
// applies the write, the CLI gets an error.
type answerLoser interface {
	// loseNth loses the answer to the nth conditional write (1-based, from
	// now on) of cluster name's state.json.
	loseNth(name string, nth int)
	// loseDelete loses the answer to the next DELETE of name's state.json.
	loseDelete(name string)
	// lostSoFar counts the answers lost so far.
	lostSoFar() int
}

// s3Loser is testutil.S3Proxy between dynia and versitygw: the lost write
// is answered 500, the S3 backend retries it and gets 412.
type s3Loser struct{ p *testutil.S3Proxy }

func (l s3Loser) loseNth(name string, nth int) {
	l.p.LoseAnswer(nth, testutil.ConditionalPut("/"+cluster.StateKey(name)))
}
func (l s3Loser) loseDelete(name string) {
	l.p.LoseAnswer(1, testutil.Request(http.MethodDelete, "/"+cluster.StateKey(name)))
}
func (l s3Loser) lostSoFar() int { return len(l.p.Lost()) }

// loseS3Answers puts an S3Proxy between every dynia run and versitygw (the
// test's own client still talks to versitygw directly).
func (e *testEnv) loseS3Answers() answerLoser {
	e.t.Helper()
	p := testutil.StartS3Proxy(e.t, e.s3.Endpoint)
	c, err := LoadConfig(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Contexts["test"].SpacesEndpoint = p.Endpoint
	if err := c.Save(); err != nil {
		e.t.Fatal(err)
	}
	return s3Loser{p}
}

// fileLoser wraps a file:// store: the lost write is applied, then Put (or
// Delete) returns an error whose outcome the caller cannot know (a reset).
type fileLoser struct {
	bucket.Store
	mu        sync.Mutex
	key       string
	nth       int
	lost      int
	armed     bool
	deleteKey string
}

var errAnswerLost = errors.New("connection reset by peer")

func (l *fileLoser) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	l.mu.Lock()
	fire := false
	if l.armed && key == l.key && (cond.IfMatch != "" || cond.IfNoneMatch) {
		if l.nth--; l.nth == 0 {
			fire, l.armed = true, false
			l.lost++
		}
	}
	l.mu.Unlock()
	etag, err := l.Store.Put(ctx, key, body, cond)
	if err != nil || !fire {
		return etag, err
	}
	return "", &bucket.Error{Op: "put", Store: l.String(), Key: key, Err: errAnswerLost}
}

func (l *fileLoser) Delete(ctx context.Context, key string) error {
	l.mu.Lock()
	fire := key == l.deleteKey
	if fire {
		l.deleteKey = ""
		l.lost++
	}
	l.mu.Unlock()
	if err := l.Store.Delete(ctx, key); err != nil || !fire {
		return err
	}
	return &bucket.Error{Op: "delete", Store: l.String(), Key: key, Err: errAnswerLost}
}

func (l *fileLoser) loseDelete(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deleteKey = cluster.StateKey(name)
}

func (l *fileLoser) loseNth(name string, nth int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.key, l.nth, l.armed = cluster.StateKey(name), nth, true
}

func (l *fileLoser) lostSoFar() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// loseFileAnswers switches the environment to a file:// state store that
// can lose answers: every dynia run and the test itself use it.
func (e *testEnv) loseFileAnswers() answerLoser {
	e.t.Helper()
	dir := e.t.TempDir()
	b, err := bucket.Open(context.Background(), "file://"+dir, bucket.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := LoadConfig(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	c.Contexts["test"].State = "file://" + dir
	if err := c.Save(); err != nil {
		e.t.Fatal(err)
	}
	l := &fileLoser{Store: b}
	e.bucket, e.store = b, l
	return l
}

// TestLostAnswers is issue 11's reproduction turned into a check, for every
// write of every mutating command, on both backends: the nth write of the
// command's state is applied but its answer is lost (S3: answered 500 by a
// proxy, and the backend's retry gets 412; file: Put applies and then
// fails). Every command still succeeds and has its effect exactly once: the
// generation advances by exactly the writes a clean run makes, `node add
// --count 2` adds exactly two ready nodes (no orphan provisioning node),
// create-ha makes one cluster, and state, droplets and Reserved IP agree.
func TestLostAnswers(t *testing.T) {
	t.Parallel() // its own environment; mostly waiting on the simulator
	for _, backend := range []string{"s3", "file"} {
		t.Run(backend, func(t *testing.T) {
			var e *testEnv
			var l answerLoser
			if backend == "s3" {
				e = newS3Env(t)
				l = e.loseS3Answers()
			} else {
				e = newEnv(t)
				l = e.loseFileAnswers()
			}
			// run runs a command with the answer to its nth state write
			// lost and returns how far the generation moved.
			run := func(name string, nth int, args ...string) int64 {
				t.Helper()
				var before int64
				if st, _, err := cluster.NewStore(e.bucket).Load(context.Background(), name); err == nil {
					before = st.Generation
				}
				lost := l.lostSoFar()
				l.loseNth(name, nth)
				r := e.run(args...)
				if r.code != 0 {
					t.Fatalf("%s with write %d's answer lost: exit %d\n%s", strings.Join(args, " "), nth, r.code, r.stderr)
				}
				if l.lostSoFar() != lost+1 {
					t.Fatalf("%s: write %d's answer was not lost (the command made fewer writes): tested nothing", strings.Join(args, " "), nth)
				}
				return e.state(name).Generation - before
			}

			// create-ha writes the state 9 times (8 on file://): create, cluster key,
			// VPC (and admin CIDRs), firewall id, report key, the nodes'
			// Spaces key (an s3:// state only), droplet id, addresses,
			// Reserved IP. A clean run says how many; each is lost once.
			createWrites := int64(9)
			if backend == "file" {
				createWrites = 8
			}
			{
				stop := e.fakeNodes("lost-clean")
				e.mustRun("node", "create-ha", "--name", "lost-clean", "--region", "sgp1", "--size", "s-1vcpu-1gb")
				if g := e.state("lost-clean").Generation; g != createWrites {
					t.Fatalf("a clean create-ha wrote the state %d times, want %d (update this test with the new write)", g, createWrites)
				}
				stop()
				e.mustRun("cluster", "destroy", "--name", "lost-clean", "--yes")
			}
			for n := 1; n <= int(createWrites); n++ {
				name := fmt.Sprintf("lost-create-%d", n)
				stop := e.fakeNodes(name)
				if d := run(name, n, "node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb"); d != createWrites {
					t.Errorf("create-ha, write %d lost: generation %d, want %d", n, d, createWrites)
				}
				st := e.consistent(name)
				if len(st.Nodes) != 1 || st.Nodes[0].Lifecycle != cluster.Ready || st.ReservedIP == "" || len(e.taggedDroplets(name)) != 1 {
					t.Errorf("create-ha, write %d lost: %d nodes %+v, Reserved IP %q, %d droplets", n, len(st.Nodes), st.Nodes, st.ReservedIP, len(e.taggedDroplets(name)))
				}
				// One Spaces key for the cluster's nodes, the one the state
				// names (a lost answer to its write must not make the CLI
				// take it for another command's and delete it).
				if backend == "s3" {
					var keys []string
					for _, k := range e.sim.SpacesKeys() {
						keys = append(keys, k.AccessKey)
					}
					if st.NodeSpacesKey == nil || !cmp.Equal(keys, []string{st.NodeSpacesKey.AccessKeyID}) {
						t.Errorf("create-ha, write %d lost: Spaces keys %v, state's %+v; want exactly the state's", n, keys, st.NodeSpacesKey)
					}
				}
				stop()
				// destroy deletes the state; its answer is lost too.
				e.runLosingDelete(l, name)
			}

			name := "lost"
			defer e.fakeNodes(name)()
			e.mustRun("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")

			// add --count 2 writes 5 times: the two ids, both report keys,
			// each droplet id, both nodes' addresses.
			const addWrites = 5
			for n := 1; n <= addWrites; n++ {
				before := len(e.state(name).Nodes)
				if d := run(name, n, "node", "add", "--name", name, "--count", "2"); d != addWrites {
					t.Errorf("add --count 2, write %d lost: generation %d, want %d", n, d, addWrites)
				}
				st := e.consistent(name)
				if got := len(st.Nodes) - before; got != 2 {
					t.Errorf("add --count 2, write %d lost: %d nodes added, want 2", n, got)
				}
				for _, nd := range st.Nodes {
					if nd.Lifecycle != cluster.Ready {
						t.Errorf("add --count 2, write %d lost: node %s is %s", n, nd.ID, nd.Lifecycle)
					}
				}
			}

			// make-active writes once.
			st := e.state(name)
			target := st.Nodes[len(st.Nodes)-1].ID
			if d := run(name, 1, "node", "make-active", "--name", name, "--node", target); d != 1 {
				t.Errorf("make-active, write lost: generation %d, want 1", d)
			}
			if st := e.consistent(name); st.Active().ID != target || st.Active().Priority != cluster.FirstPriority {
				t.Errorf("make-active, write lost: active %+v, want %s at priority %d", st.Active(), target, cluster.FirstPriority)
			}

			// remove of a standby writes 3 times: draining, removing, gone.
			const removeWrites = 3
			for n := 1; n <= removeWrites; n++ {
				st := e.state(name)
				var victim string
				for _, nd := range st.Nodes {
					if nd.Role == cluster.RoleStandby {
						victim = nd.ID
					}
				}
				if d := run(name, n, "node", "remove", "--name", name, "--node", victim, "--yes"); d != removeWrites {
					t.Errorf("remove, write %d lost: generation %d, want %d", n, d, removeWrites)
				}
				after := e.consistent(name)
				if after.Node(victim) != nil || len(after.Nodes) != len(st.Nodes)-1 {
					t.Errorf("remove, write %d lost: %d nodes (had %d), %s still there: %v", n, len(after.Nodes), len(st.Nodes), victim, after.Node(victim) != nil)
				}
			}

			// repair-ha --force removing a node whose droplet vanished
			// writes once.
			st = e.state(name)
			victim := st.Nodes[len(st.Nodes)-1]
			if victim.Role == cluster.RoleActive {
				victim = st.Nodes[0]
			}
			e.sim.DeleteDropletBehindBack(victim.DropletID)
			if d := run(name, 1, "node", "repair-ha", "--name", name, "--force"); d != 1 {
				t.Errorf("repair-ha --force, write lost: generation %d, want 1", d)
			}
			if after := e.consistent(name); after.Node(victim.ID) != nil || len(after.Nodes) != len(st.Nodes)-1 {
				t.Errorf("repair-ha --force, write lost: %d nodes (had %d), %s still there", len(after.Nodes), len(st.Nodes), victim.ID)
			}
			if r := e.run("node", "repair-ha", "--name", name, "--check-only"); r.code != 0 {
				t.Errorf("drift left after repair-ha: %s", r.stdout)
			}

			e.runLosingDelete(l, name)
			if n := len(e.sim.Droplets()); n != 0 {
				t.Errorf("%d droplets left after destroying every cluster", n)
			}
			if n := len(e.sim.ReservedIPs()); n != 0 {
				t.Errorf("%d Reserved IPs left after destroying every cluster", n)
			}
		})
	}
}

// runLosingDelete runs cluster destroy with the answer to the state's
// DELETE lost and checks the cluster is gone.
func (e *testEnv) runLosingDelete(l answerLoser, name string) {
	e.t.Helper()
	lost := l.lostSoFar()
	l.loseDelete(name)
	e.mustRun("cluster", "destroy", "--name", name, "--yes")
	if l.lostSoFar() != lost+1 {
		e.t.Fatalf("cluster destroy %s: the state's DELETE answer was not lost: tested nothing", name)
	}
	if _, _, err := cluster.NewStore(e.bucket).Load(context.Background(), name); !errors.Is(err, cluster.ErrClusterNotFound) {
		e.t.Fatalf("cluster %s after destroy: %v", name, err)
	}
	if n := len(e.taggedDroplets(name)); n != 0 {
		e.t.Fatalf("cluster %s: %d droplets left after destroy", name, n)
	}
}
