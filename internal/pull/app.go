package pull

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/secrets"
)

// The node's app: dynia-pull runs the state's current release (a container,
// or a process) on the node's private address, and HAProxy's node-local
// frontend (render's app_local) forwards to it. A new release is started
// beside the old one, waited on until its health path answers 200, switched
// in by a hitless HAProxy reload, and only then is the old one drained and
// stopped. A release that does not become healthy never replaces a healthy
// one: the node keeps the old one and reports why.
//
// Releases reach the nodes one at a time, in the state's rollout order: a
// node starts the current release only when every node before it reports
// it healthy for the rollout's soak, so a failing release halts the rollout
// with the rest of the cluster still serving the old one.

// appRuntime runs app instances on this node (Docker, or processes).
type appRuntime interface {
	// Instances lists the cluster's running instances on this node, the
	// newest release first (adopted at start: they outlive dynia-pull).
	Instances(ctx context.Context) ([]appInstance, error)
	// Start starts rel on bind (pulling its image first) and waits until
	// its health path answers 200; a release that does not become healthy
	// is stopped and removed, and the error is an *appFailure.
	Start(ctx context.Context, rel cluster.Release, sec secrets.Release, bind netip.Addr) (appInstance, error)
	// Stop stops an instance (gone or stopped already is success).
	Stop(ctx context.Context, inst appInstance) error
	// Healthy probes an instance's health path once.
	Healthy(ctx context.Context, inst appInstance, path string) bool
	// GC removes what releases other than keep left behind.
	GC(ctx context.Context, keep []cluster.Release) error
}

// appInstance is one running release on this node.
type appInstance struct {
	Release int64
	Image   string
	Addr    netip.AddrPort // where it listens: the private IP and a host port
	ID      string         // container id, or pid
	Since   time.Time
}

// appFailure is a release that could not be made healthy.
type appFailure struct {
	Reason string
	Logs   []string // the instance's last lines, redacted
	// Retry: the release itself is not at fault (its image could not be
	// pulled, HAProxy could not be reloaded, the runtime did not answer):
	// try again after a backoff instead of reporting the release failed.
	Retry bool
}

func (e *appFailure) Error() string { return e.Reason }

// Bounds of a release switch.
const (
	// appDrainMax bounds the wait for the old HAProxy worker (still
	// sending to the old instance) to finish: HAProxy's hard-stop-after.
	appDrainMax = 35 * time.Second
	// appStopGrace is how long an old instance gets between SIGTERM and
	// SIGKILL.
	appStopGrace = 10 * time.Second
	appTick      = 2 * time.Second
)

// appState is the daemon's app bookkeeping.
type appState struct {
	rt        appRuntime
	bind      func() (netip.Addr, bool) // this node's private IP, once the state names it
	keyFile   string                    // the cluster key (opens sealed release secrets)
	mu        sync.Mutex
	local     *appInstance // what app_local forwards to
	failed    int64        // a release that failed here: not retried until the state moves on
	failure   *appFailure
	retryAt   time.Time // after a failure the release is not to blame for, when to try again
	retries   int
	adopted   bool // Instances answered once (guarded by mu)
	kick      chan struct{}
	nodeID    string
	readPeers func(ctx context.Context, st *cluster.State, id string) (*report.Status, error)
}

// localApp is what HAProxy's app_local forwards to (nil: nothing), with
// the health path st gives its release.
func (d *Daemon) localApp(st *cluster.State) *render.LocalApp {
	if d.app == nil {
		return nil
	}
	d.app.mu.Lock()
	defer d.app.mu.Unlock()
	inst := d.app.local
	if inst == nil {
		return nil
	}
	path := cluster.DefaultHealthPath
	if r := st.App.Release(inst.Release); r != nil {
		path = r.HealthPath
	}
	return &render.LocalApp{Release: inst.Release, Addr: inst.Addr.String(), HealthPath: path}
}

func (d *Daemon) setLocalApp(inst *appInstance) {
	d.app.mu.Lock()
	d.app.local = inst
	d.app.mu.Unlock()
}

func (d *Daemon) currentApp() *appInstance {
	d.app.mu.Lock()
	defer d.app.mu.Unlock()
	if d.app.local == nil {
		return nil
	}
	c := *d.app.local
	return &c
}

// kickApp asks the app loop to look now (a new state was applied).
func (d *Daemon) kickApp() {
	if d.app == nil {
		return
	}
	select {
	case d.app.kick <- struct{}{}:
	default:
	}
}

// appLoop converges the node's app on the applied state, one step at a time.
func (d *Daemon) appLoop(ctx context.Context) {
	if d.app == nil {
		return
	}
	tick := time.NewTicker(appTick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.app.kick:
		}
		if st := d.appliedState(); st != nil {
			d.appStep(ctx, st)
		}
	}
}

// appStep moves the node one step towards the release it should run.
func (d *Daemon) appStep(ctx context.Context, st *cluster.State) {
	a := d.app
	if d.adoptApp(ctx, st) {
		if err := d.reapply(ctx); err != nil {
			d.log.Warn("switch HAProxy to the adopted release", "err", err)
		}
	}
	a.mu.Lock()
	adopted := a.adopted
	a.mu.Unlock()
	if !adopted {
		return // the runtime does not answer yet (dockerd starting)
	}
	cur := d.currentApp()
	target, waiting := d.appTarget(ctx, st, cur)
	if target == nil {
		d.appReport(func(s *report.AppStatus) {
			s.Target, s.Waiting = 0, waiting
			if cur == nil {
				s.State = report.AppNone
			}
		})
		return
	}
	if cur != nil && cur.Release == target.Number {
		d.appReport(func(s *report.AppStatus) { s.Target, s.Waiting = 0, "" })
		return
	}
	a.mu.Lock()
	failed, retryAt := a.failed, a.retryAt
	a.mu.Unlock()
	if failed == target.Number {
		return // reported; a new release (or a restart) tries again
	}
	if time.Now().Before(retryAt) {
		return
	}
	if waiting != "" {
		d.appReport(func(s *report.AppStatus) { s.State, s.Target, s.Waiting = report.AppWaiting, target.Number, waiting })
		return
	}
	d.switchRelease(ctx, st, cur, target)
}

// provenRelease says whether r is known good: its rollout finished (the
// CLI that waited for it recorded rolled-out), or every other ready node
// that reports runs it healthy, at least one (a release deployed with
// --no-wait, once it reached them all). A release that is not proven (one
// still being rolled out) and fails here is the release's fault, which
// halts its rollout.
func (d *Daemon) provenRelease(ctx context.Context, st *cluster.State, r *cluster.Release) bool {
	switch r.Outcome {
	case cluster.OutcomeRolledOut:
		return true
	case cluster.OutcomeFailed:
		return false
	}
	healthy := 0
	for _, n := range st.Nodes {
		if n.ID == d.nodeID || n.Lifecycle != cluster.Ready {
			continue
		}
		rep, err := d.app.readPeers(ctx, st, n.ID)
		if err != nil || rep == nil || time.Since(rep.UpdatedAt) > peerReportStale {
			continue // not heard from: neither for nor against
		}
		if rep.App == nil || rep.App.Release != r.Number || !rep.App.Healthy {
			return false
		}
		healthy++
	}
	return healthy > 0
}

// adoptApp, once, takes over the instance a previous dynia-pull left
// running (instances outlive it, and survive a reboot through Docker's
// restart policy): the newest one of a release in st that answers its
// health path. It says whether it adopted one. The first Apply calls it,
// so a restarted dynia-pull's first render already forwards to the app.
func (d *Daemon) adoptApp(ctx context.Context, st *cluster.State) bool {
	a := d.app
	a.mu.Lock()
	done := a.adopted
	a.mu.Unlock()
	if done {
		return false
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	insts, err := a.rt.Instances(lctx)
	if err != nil {
		d.appReport(func(s *report.AppStatus) { s.Error = "app runtime: " + err.Error() })
		return false
	}
	a.mu.Lock()
	a.adopted = true
	a.mu.Unlock()
	for _, inst := range insts {
		r := st.App.Release(inst.Release)
		if r != nil && a.rt.Healthy(lctx, inst, r.HealthPath) {
			d.log.Info("adopted running release", "release", inst.Release, "addr", inst.Addr.String())
			d.setLocalApp(&inst)
			now := time.Now().UTC()
			since := inst.Since
			if since.IsZero() {
				since = now
			}
			d.appReport(func(s *report.AppStatus) {
				s.Release, s.Image, s.State, s.Healthy, s.Since, s.Error = inst.Release, inst.Image, report.AppRunning, true, &since, ""
			})
			return true
		}
	}
	return false
}

// switchRelease starts target beside cur, switches HAProxy to it and stops
// cur. Any failure before the switch leaves cur serving.
func (d *Daemon) switchRelease(ctx context.Context, st *cluster.State, cur *appInstance, target *cluster.Release) {
	a := d.app
	bind, ok := a.bind()
	if !ok {
		return // no private IP in the state yet
	}
	log := d.log.With("release", target.Number, "image", target.Image)
	d.appReport(func(s *report.AppStatus) { s.State, s.Target, s.Waiting = report.AppStarting, target.Number, "" })
	fail := func(f *appFailure) {
		if !f.Retry && d.provenRelease(ctx, st, target) {
			// What failed is this node's copy (its container killed while
			// it got healthy, its dockerd restarting), not the release.
			// Not retrying left the node without its app until the next
			// release (found by the fault suite's process chaos).
			f.Retry = true
		}
		a.mu.Lock()
		if f.Retry {
			a.retries++
			a.retryAt = time.Now().Add(backoff(appTick, a.retries))
		} else {
			a.failed, a.failure = target.Number, f
		}
		a.mu.Unlock()
		serving := int64(0)
		if cur != nil {
			serving = cur.Release
		}
		log.Error("release not started", "err", f.Reason, "retry", f.Retry, "serving_release", serving)
		d.appReport(func(s *report.AppStatus) {
			s.State = report.AppRunning
			if cur == nil {
				s.State = report.AppNone
			}
			s.Target, s.Error, s.Logs = target.Number, f.Reason, report.TrimLogs(f.Logs)
			if !f.Retry {
				s.Target, s.FailedRelease = 0, target.Number
			}
		})
	}
	var sec secrets.Release
	if target.Sealed != "" {
		id, err := secrets.LoadIdentity(a.keyFile)
		if err == nil {
			sec, err = secrets.OpenRelease(id, target.Sealed)
		}
		if err != nil {
			fail(&appFailure{Reason: "open the release's secrets: " + err.Error(), Retry: true})
			return
		}
	}
	started := time.Now()
	inst, err := a.rt.Start(ctx, *target, sec, bind)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		var f *appFailure
		if !errors.As(err, &f) {
			f = &appFailure{Reason: err.Error(), Retry: true}
		}
		f.Reason = fmt.Sprintf("release %d: %s", target.Number, f.Reason)
		f.Logs = redactLines(f.Logs, d.appSecrets(sec))
		fail(f)
		return
	}
	log.Info("release healthy; switching HAProxy to it", "addr", inst.Addr.String(), "took", time.Since(started).Round(time.Millisecond))
	d.setLocalApp(&inst)
	if err := d.reapply(ctx); err != nil {
		// HAProxy still forwards to cur: put it back and drop the new one.
		d.setLocalApp(cur)
		_ = a.rt.Stop(context.WithoutCancel(ctx), inst) // the reason reported is the reload's
		fail(&appFailure{Reason: fmt.Sprintf("release %d: switch HAProxy: %v", target.Number, err), Retry: true})
		return
	}
	now := time.Now().UTC()
	a.mu.Lock()
	a.failed, a.failure, a.retries, a.retryAt = 0, nil, 0, time.Time{}
	a.mu.Unlock()
	d.appReport(func(s *report.AppStatus) {
		s.Release, s.Image, s.State, s.Healthy, s.Since = inst.Release, inst.Image, report.AppRunning, true, &now
		s.Target, s.Waiting, s.FailedRelease, s.Error, s.Logs = 0, "", 0, "", nil
	})
	if cur != nil {
		// The old HAProxy worker may still be sending to cur: let it finish.
		d.waitOldWorkers(ctx, appDrainMax)
		if err := a.rt.Stop(ctx, *cur); err != nil {
			log.Warn("stop the old release", "old", cur.Release, "err", err)
		} else {
			log.Info("old release stopped", "old", cur.Release)
		}
	}
	if err := a.rt.GC(ctx, keepReleases(st, target.Number, cur)); err != nil {
		log.Warn("garbage-collect old releases", "err", err)
	}
}

// keepReleases are what GC keeps: the new release and the one before it.
func keepReleases(st *cluster.State, current int64, prev *appInstance) []cluster.Release {
	var keep []cluster.Release
	if r := st.App.Release(current); r != nil {
		keep = append(keep, *r)
	}
	if prev != nil {
		if r := st.App.Release(prev.Release); r != nil {
			keep = append(keep, *r)
		} else {
			keep = append(keep, cluster.Release{Number: prev.Release, Image: prev.Image})
		}
	}
	return keep
}

// appTarget is the release this node should run, and why it waits when it
// should not start it yet. No release in the state: nil. A rollout of the
// current release gates it: the node starts it only when every node before
// it in the order runs it healthy for the soak. A node with nothing running
// (a new node, a first deploy) starts it at once: there is nothing to keep.
func (d *Daemon) appTarget(ctx context.Context, st *cluster.State, cur *appInstance) (*cluster.Release, string) {
	target := st.App.CurrentRelease()
	if target == nil {
		return nil, ""
	}
	ro := st.App.Rollout
	if ro == nil || ro.Release != target.Number || cur == nil || cur.Release == target.Number {
		return target, ""
	}
	preds := ro.Order
	for i, id := range ro.Order {
		if id == d.nodeID {
			preds = ro.Order[:i]
			break
		}
	}
	soak := time.Duration(ro.SoakSeconds) * time.Second
	for _, id := range preds {
		if id == d.nodeID {
			continue
		}
		n := st.Node(id)
		if n == nil || n.Lifecycle != cluster.Ready {
			continue // gone or leaving: not waited for
		}
		r, err := d.app.readPeers(ctx, st, id)
		if err != nil || r == nil || time.Since(r.UpdatedAt) > peerReportStale {
			continue // a dead node must not halt the rollout forever
		}
		app := r.App
		if app == nil {
			return target, fmt.Sprintf("for %s (no app report yet)", id)
		}
		if app.FailedRelease == target.Number {
			return target, fmt.Sprintf("halted: release %d failed on %s: %s", target.Number, id, app.Error)
		}
		if app.Release != target.Number || !app.Healthy || app.Since == nil {
			return target, fmt.Sprintf("for %s to run release %d (it runs %d)", id, target.Number, app.Release)
		}
		if age := time.Since(*app.Since); age < soak {
			return target, fmt.Sprintf("for %s: release %d healthy %v of %v", id, target.Number, age.Round(time.Second), soak)
		}
	}
	return target, ""
}

// peerReportStale: a peer whose report is older than this is not waited for.
const peerReportStale = 3 * time.Minute

// appReport changes the app part of the report and asks for a write when
// it changed.
func (d *Daemon) appReport(f func(*report.AppStatus)) {
	changed := false
	d.rep.update(func(s *report.Status) {
		var before report.AppStatus
		if s.App != nil {
			before = *s.App
		} else {
			s.App = &report.AppStatus{State: report.AppNone}
		}
		f(s.App)
		changed = !sameAppStatus(before, *s.App)
	})
	if changed {
		d.rep.kick()
	}
}

func sameAppStatus(a, b report.AppStatus) bool {
	if a.Release != b.Release || a.Image != b.Image || a.State != b.State || a.Healthy != b.Healthy ||
		a.Target != b.Target || a.Waiting != b.Waiting || a.FailedRelease != b.FailedRelease || a.Error != b.Error ||
		len(a.Logs) != len(b.Logs) || (a.Since == nil) != (b.Since == nil) {
		return false
	}
	return a.Since == nil || a.Since.Equal(*b.Since)
}

// refreshAppHealth probes the local instance (healthLoop) and says whether
// its health changed.
func (d *Daemon) refreshAppHealth(ctx context.Context) (healthy bool, known bool) {
	if d.app == nil {
		return false, false
	}
	inst := d.currentApp()
	st := d.appliedState()
	if inst == nil || st == nil {
		return false, true
	}
	path := cluster.DefaultHealthPath
	if r := st.App.Release(inst.Release); r != nil {
		path = r.HealthPath
	}
	hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	healthy = d.app.rt.Healthy(hctx, *inst, path)
	d.appReport(func(s *report.AppStatus) {
		if s.Release == 0 && inst != nil {
			now := time.Now().UTC()
			s.Release, s.Image, s.State, s.Since = inst.Release, inst.Image, report.AppRunning, &now
		}
		s.Healthy = healthy
	})
	return healthy, true
}

// reapply renders the applied state again (the local app changed) and
// installs it: HAProxy's app_local now forwards to the new instance.
func (d *Daemon) reapply(ctx context.Context) error {
	st := d.appliedState()
	if st == nil {
		return errors.New("no state applied yet")
	}
	_, err := d.Apply(ctx, st)
	return err
}

// waitOldWorkers waits until HAProxy runs no old worker (the one a reload
// left serving its open connections), at most max.
func (d *Daemon) waitOldWorkers(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		pids, err := oldWorkerPIDs(ctx, d.paths.MasterSocket)
		if err != nil || len(pids) == 0 {
			if err != nil {
				// No master socket (haproxy run by systemd without one):
				// give in-flight requests a moment.
				_ = poll.Sleep(ctx, 2*time.Second)
			}
			return
		}
		_ = poll.Sleep(ctx, 250*time.Millisecond)
	}
}

// appSecrets are the values to redact from a release's log lines.
func (d *Daemon) appSecrets(sec secrets.Release) []string {
	var out []string
	for _, v := range sec.Env {
		out = append(out, v)
	}
	if a := sec.RegistryAuth; a != nil {
		out = append(out, a.Password, a.IdentityToken)
	}
	return out
}

func redactLines(lines, secrets []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = string(Redact([]byte(l), secrets))
	}
	return out
}

// readPeerReport reads a peer's report (the rollout waits on it), verified
// against st (report.ReadReport): a report not believed is an error, so the peer
// counts as unheard-of, exactly as one whose report is missing.
func readPeerReport(store func() bucket.Store) func(context.Context, *cluster.State, string) (*report.Status, error) {
	return func(ctx context.Context, st *cluster.State, id string) (*report.Status, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return report.ReadReport(ctx, store(), st, id)
	}
}

// appEnv is what every instance gets besides the release's environment.
func appEnv(nodeID string, rel cluster.Release, addr netip.AddrPort) map[string]string {
	return map[string]string{
		"DYNIA_NODE_ID": nodeID,
		"DYNIA_RELEASE": strconv.FormatInt(rel.Number, 10),
		"DYNIA_IMAGE":   rel.Image,
		"DYNIA_APP_ADDR": func() string {
			if addr.IsValid() {
				return addr.String()
			}
			return ""
		}(),
	}
}
