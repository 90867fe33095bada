package pull

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/secrets"
)

// fakeRuntime runs "instances" in memory: Start succeeds unless the
// release is in fail.
type fakeRuntime struct {
	mu      sync.Mutex
	running map[int64]appInstance
	fail    map[int64]*appFailure
	starts  []int64
	stops   []int64
	port    uint16
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{running: map[int64]appInstance{}, fail: map[int64]*appFailure{}, port: 20000}
}

func (f *fakeRuntime) Instances(context.Context) ([]appInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []appInstance
	for _, i := range f.running {
		out = append(out, i)
	}
	return out, nil
}

func (f *fakeRuntime) Start(_ context.Context, rel cluster.Release, _ secrets.Release, bind netip.Addr) (appInstance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, rel.Number)
	if e := f.fail[rel.Number]; e != nil {
		c := *e
		return appInstance{}, &c
	}
	f.port++
	inst := appInstance{Release: rel.Number, Image: rel.Image, Addr: netip.AddrPortFrom(bind, f.port), ID: fmt.Sprint(f.port), Since: time.Now()}
	f.running[rel.Number] = inst
	return inst, nil
}

func (f *fakeRuntime) Stop(_ context.Context, inst appInstance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, inst.Release)
	delete(f.running, inst.Release)
	return nil
}

func (f *fakeRuntime) Healthy(_ context.Context, inst appInstance, _ string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.running[inst.Release]
	return ok
}

func (f *fakeRuntime) GC(context.Context, []cluster.Release) error { return nil }

// appWorld is one node (brisk-owl) of a three-node cluster with a fake
// runtime; the peers' reports are what the test says.
type appWorld struct {
	t     *testing.T
	d     *Daemon
	rt    *fakeRuntime
	st    *cluster.State
	peers map[string]*report.Status
}

func newAppWorld(t *testing.T) *appWorld {
	t.Helper()
	tool, err := exec.LookPath("true")
	if err != nil {
		t.Skip("true not found")
	}
	dir := t.TempDir()
	rt := newFakeRuntime()
	set := Settings{Cluster: "shop", NodeID: "brisk-owl", RunDir: filepath.Join(dir, "run"), PollInterval: time.Second,
		HAProxyConfig: filepath.Join(dir, "haproxy.cfg"), KeepalivedConfig: filepath.Join(dir, "keepalived.conf"),
		HAProxyBin: tool, KeepalivedBin: tool}
	w := &appWorld{t: t, rt: rt, peers: map[string]*report.Status{}}
	w.d = New(set, newMemStore(), Options{App: rt})
	w.d.app.readPeers = func(_ context.Context, _ *cluster.State, id string) (*report.Status, error) { return w.peers[id], nil }
	w.st = testState(1, 3) // amber-fox, brisk-owl, calm-heron
	return w
}

// deploy adds a release with the rollout order and applies the state.
func (w *appWorld) deploy(image string, order ...string) int64 {
	w.t.Helper()
	var n int64
	var err error
	w.st, n, err = cluster.AddRelease(w.st, cluster.Release{Image: image + "@sha256:" + strings.Repeat("a", 64), Port: 8080}, order, 5, time.Now())
	if err != nil {
		w.t.Fatal(err)
	}
	w.st.Generation++
	if _, err := w.d.Apply(context.Background(), w.st.Clone()); err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *appWorld) step() { w.d.appStep(context.Background(), w.d.appliedState()) }

func (w *appWorld) running() int64 {
	if c := w.d.currentApp(); c != nil {
		return c.Release
	}
	return 0
}

func (w *appWorld) report() report.AppStatus { return *w.d.rep.snapshot().App }

func (w *appWorld) peer(id string, release int64, healthy bool, since time.Duration, failed int64) {
	t := time.Now().Add(-since).UTC()
	w.peers[id] = &report.Status{NodeID: id, UpdatedAt: time.Now(), App: &report.AppStatus{Release: release, Healthy: healthy, Since: &t,
		State: report.AppRunning, FailedRelease: failed, Error: map[bool]string{true: "exited with status 3"}[failed != 0]}}
}

// TestRolloutWaitsItsTurn: a node with a running release starts a new one
// only when every node before it in the order runs it healthy for the soak;
// a failure before it halts it; the first release starts at once.
func TestRolloutWaitsItsTurn(t *testing.T) {
	t.Parallel()
	w := newAppWorld(t)
	// The first release: nothing to protect, so no waiting.
	r1 := w.deploy("app", "amber-fox", "brisk-owl", "calm-heron")
	w.step()
	if w.running() != r1 {
		t.Fatalf("first release: node runs %d, want %d", w.running(), r1)
	}
	r2 := w.deploy("app", "amber-fox", "brisk-owl", "calm-heron")
	w.peer("amber-fox", r1, true, time.Hour, 0)
	w.step()
	if w.running() != r1 || w.report().State != report.AppWaiting || !strings.Contains(w.report().Waiting, "amber-fox") {
		t.Fatalf("before amber-fox moved: runs %d, report %+v", w.running(), w.report())
	}
	w.peer("amber-fox", r2, true, time.Second, 0) // healthy, not soaked yet
	w.step()
	if w.running() != r1 || !strings.Contains(w.report().Waiting, "healthy") {
		t.Fatalf("during amber-fox's soak: runs %d, report %+v", w.running(), w.report())
	}
	w.peer("amber-fox", r2, true, 6*time.Second, 0)
	w.step()
	if w.running() != r2 || w.report().Release != r2 || !w.report().Healthy {
		t.Fatalf("after the soak: runs %d, report %+v", w.running(), w.report())
	}
	if got := w.rt.stops; len(got) != 1 || got[0] != r1 {
		t.Errorf("stopped %v, want the old release %d", got, r1)
	}

	// A release that failed on amber-fox halts the rollout here.
	r3 := w.deploy("app", "amber-fox", "brisk-owl", "calm-heron")
	w.peer("amber-fox", r2, true, time.Hour, r3)
	w.step()
	if w.running() != r2 || !strings.Contains(w.report().Waiting, "halted") {
		t.Fatalf("after a failure before it: runs %d, report %+v", w.running(), w.report())
	}
	// A node that stopped reporting (dead) does not hold the rollout.
	w.peers["amber-fox"].UpdatedAt = time.Now().Add(-time.Hour)
	w.step()
	if w.running() != r3 {
		t.Fatalf("with the node before it dead: runs %d, want %d", w.running(), r3)
	}
}

// TestUnhealthyReleaseNeverReplacesAHealthyOne: a release that fails its
// health check leaves the old one serving, is reported with its log lines
// (secrets redacted) and is not retried; a later release is.
func TestUnhealthyReleaseNeverReplacesAHealthyOne(t *testing.T) {
	t.Parallel()
	w := newAppWorld(t)
	r1 := w.deploy("app")
	w.step()
	if w.running() != r1 {
		t.Fatalf("runs %d, want %d", w.running(), r1)
	}
	r2 := w.deploy("app")
	w.rt.fail[r2] = &appFailure{Reason: "no 200 from /healthz after 2m0s", Logs: []string{"panic: password=hunter22 missing"}}
	w.step()
	if w.running() != r1 {
		t.Fatalf("after a failed start: runs %d, want the old %d", w.running(), r1)
	}
	rep := w.report()
	if rep.FailedRelease != r2 || rep.Release != r1 || !strings.Contains(rep.Error, "no 200") || len(rep.Logs) != 1 ||
		strings.Contains(rep.Logs[0], "hunter22") {
		t.Fatalf("report after a failed start: %+v", rep)
	}
	w.step()
	if n := len(w.rt.starts); n != 2 {
		t.Errorf("the failed release was started %d times in all, want once", n-1)
	}
	r3 := w.deploy("app")
	w.step()
	if w.running() != r3 || w.report().FailedRelease != 0 {
		t.Fatalf("a new release after a failure: runs %d, report %+v", w.running(), w.report())
	}
}

// TestTransientStartFailureIsRetried: a failure the release is not to
// blame for (registry down) is retried, and not reported as a failed
// release (which would halt the rollout).
func TestTransientStartFailureIsRetried(t *testing.T) {
	t.Parallel()
	w := newAppWorld(t)
	r1 := w.deploy("app")
	w.rt.fail[r1] = &appFailure{Reason: "registry unreachable", Retry: true}
	w.step()
	if w.running() != 0 || w.report().FailedRelease != 0 || !strings.Contains(w.report().Error, "registry") {
		t.Fatalf("after a transient failure: runs %d, report %+v", w.running(), w.report())
	}
	delete(w.rt.fail, r1)
	w.d.app.mu.Lock()
	w.d.app.retryAt = time.Time{} // the backoff has passed
	w.d.app.mu.Unlock()
	w.step()
	if w.running() != r1 || w.report().Error != "" {
		t.Fatalf("after the retry: runs %d, report %+v", w.running(), w.report())
	}
}

// TestProvenReleaseIsRetried is the reproduction of a node left without
// its app: its container was killed while it got healthy again after a
// dynia-pull restart, and the release, already rolled out, was taken for a
// bad one and never tried again. A proven release (rolled out, or running
// healthy on every other node that reports) is retried after a backoff and
// never reported failed; one still being rolled out is not.
func TestProvenReleaseIsRetried(t *testing.T) {
	t.Parallel()
	killed := &appFailure{Reason: "crashed and was restarted 1 times (its exit status was gone by the time it was seen)"}
	for _, tc := range []struct {
		name    string
		outcome string
		peers   map[string]bool // peer → runs the release healthy
		retried bool
	}{
		{"rolled out", cluster.OutcomeRolledOut, nil, true},
		{"failed rollout", cluster.OutcomeFailed, map[string]bool{"amber-fox": true, "calm-heron": true}, false},
		{"every peer runs it", "", map[string]bool{"amber-fox": true, "calm-heron": true}, true},
		{"one peer does not run it yet", "", map[string]bool{"amber-fox": true, "calm-heron": false}, false},
		{"no peer reports", "", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newAppWorld(t)
			r1 := w.deploy("app")
			w.st.App.Releases[len(w.st.App.Releases)-1].Outcome = tc.outcome
			w.st.Generation++
			if _, err := w.d.Apply(context.Background(), w.st.Clone()); err != nil {
				t.Fatal(err)
			}
			for id, ok := range tc.peers {
				rel := r1
				if !ok {
					rel = 0
				}
				w.peer(id, rel, ok, time.Minute, 0)
			}
			w.rt.fail[r1] = killed
			w.step()
			rep := w.report()
			if w.running() != 0 || !strings.Contains(rep.Error, "crashed") {
				t.Fatalf("after the failure: runs %d, report %+v", w.running(), rep)
			}
			if got := rep.FailedRelease == 0; got != tc.retried {
				t.Fatalf("retried %v (report %+v), want %v", got, rep, tc.retried)
			}
			delete(w.rt.fail, r1)
			w.d.app.mu.Lock()
			w.d.app.retryAt = time.Time{} // the backoff has passed
			w.d.app.mu.Unlock()
			w.step()
			if want := map[bool]int64{true: r1}[tc.retried]; w.running() != want {
				t.Fatalf("after the backoff: runs %d, want %d", w.running(), want)
			}
		})
	}
}
