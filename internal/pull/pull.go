// Package pull is dynia-pull's daemon: it polls the cluster's state object
// and converges this node on it. Each change set is rendered (internal/render),
// staged next to its target, checked by the real tool (haproxy -c,
// keepalived -t), fsynced and renamed into place, then each daemon is
// reloaded once: HAProxy through its master socket, keepalived with SIGHUP.
// Drain flips also go through HAProxy's runtime API so they act at once, and
// `show servers state` is saved before each reload so they survive it.
//
// Nothing bad is ever applied: a state that fails validation, a render a
// tool rejects or a reload that fails leaves the last good config serving;
// the reason is logged, counted and reported in status.json. keepalived's
// state changes arrive through its notify fifo; becoming MASTER calls the
// ReservedIPClaimer hook.
package pull

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
)

// Daemon converges one node. Create it with New; Run polls until ctx ends,
// Step applies once. It runs the poll loop and wires three pieces that
// each own their state and lock: the applier (apply.go: validate, commit
// and reload a render, with a per-file ApplyResult), the status reporter
// (status.go: the report and its writes) and the claim loop (claim.go:
// the Reserved IP, switching on failover's typed Outcome).
type Daemon struct {
	log     *slog.Logger
	nodeID  string
	version string
	notify  notifyFunc
	paths   render.Paths
	m       *metrics
	sup     *supervisor
	mesh    *meshState // nil: VRRP over the VPC interface (mesh_disabled)
	app     *appState  // nil: no app runtime
	tls     *tlsState
	// applyMu serializes Apply (render, mesh, the applier's install, the
	// applied state): the poll loop applies new states, the app loop
	// re-applies when the node's app instance changes.
	applyMu sync.Mutex
	ap      *applier
	rep     *statusReporter
	claim   *claimLoop
	wake    chan struct{} // Reconfigure: poll now with the new settings
	// stateKey verifies states (nil: a node made before signing; sign.go).
	stateKey ed25519.PublicKey

	mu       sync.Mutex // guards set (live-reloadable fields), store and storeGen
	set      Settings
	store    bucket.Store
	storeGen int // bumped by Reconfigure: an ETag from an older store is not reused

	// Loop state, touched only by the goroutine running Step/Run.
	etag     string
	etagGen  int // the storeGen etag was read from
	lastFull time.Time
	failures int
	keptGen  int64 // generation in the accepted-state file

	amu          sync.Mutex // guards applied, accepted, lastPollOK, firstApplied
	applied      *cluster.State
	accepted     int64 // newest generation applied: older ones are replays
	lastPollOK   time.Time
	firstApplied bool
}

// Options are a Daemon's collaborators.
type Options struct {
	Logger  *slog.Logger
	Version string
	// Claimer is called on becoming MASTER; nil means no Reserved IP handling.
	Claimer ReservedIPClaimer
	// App runs the app's releases on this node; nil: no app (tests, or a
	// node whose app something else runs on its app port).
	App appRuntime
}

// New returns a daemon for the given settings and store.
func New(set Settings, store bucket.Store, opts Options) *Daemon {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("cluster", set.Cluster, "node", set.NodeID)
	d := &Daemon{
		log: log, nodeID: set.NodeID, version: opts.Version,
		paths: render.PathsIn(set.RunDir), set: set, store: store,
		sup: newSupervisor(log, set.LogDir), mesh: newMeshState(set.Mesh), wake: make(chan struct{}, 1),
	}
	// systemd notifications (sd_notify(3): READY=1 after the first apply
	// attempt, STOPPING=1 at shutdown) go to $NOTIFY_SOCKET when set.
	d.notify = sdNotify(log)
	d.m = newMetrics(d.sinceLastPoll)
	d.rep = &statusReporter{log: log, m: d.m, kickc: make(chan struct{}, 1),
		refresh: func(ctx context.Context) { d.refreshHealth(ctx); d.refreshMesh() },
		target: func() (string, bucket.Store) {
			set, store := d.current()
			return cluster.StatusKey(set.Cluster, set.NodeID), store
		}}
	d.ap = &applier{log: log, paths: d.paths, m: d.m, sup: d.sup, settings: func() Settings { set, _ := d.current(); return set },
		startDaemons: d.superviseStart}
	d.claim = newClaimLoop(log, d.m, d.rep, opts.Claimer, set.NodeID, d.appliedState)
	d.rep.status = report.Status{NodeID: set.NodeID, Cluster: set.Cluster, VRRPState: report.VRRPUnknown, Version: opts.Version, Image: set.Image, Backends: []report.BackendStatus{},
		StateSignature: report.StateVerified}
	d.stateKey = set.StatePublicKey
	if d.stateKey == nil {
		d.rep.status.StateSignature = report.StateUnchecked
		log.Warn("no state_public_key in the node config: state signatures are not checked (a node made before state signing; replace it to re-key)")
	}
	if set.ReportKeyFile != "" {
		key, err := loadReportKey(set.ReportKeyFile, log)
		if err != nil {
			// Peers and the CLI will not believe unsigned reports of a node
			// the state holds a report key for: it shows as unverifiable.
			log.Error("report key not loaded: reports are written unsigned", "err", err)
		}
		d.rep.key = key
	}
	d.loadAccepted(set)
	// The CLI's floor from the user-data: no state older than the one
	// the droplet was made from, not even the first.
	d.accepted = max(d.accepted, set.MinStateGeneration)
	d.tls = &tlsState{kick: make(chan struct{}, 1)}
	if opts.App != nil {
		d.app = &appState{rt: opts.App, keyFile: set.ClusterKeyFile, kick: make(chan struct{}, 1), nodeID: set.NodeID,
			bind: d.privateIP, readPeers: readPeerReport(func() bucket.Store { _, st := d.current(); return st })}
		d.rep.status.App = &report.AppStatus{State: report.AppNone}
	}
	return d
}

// privateIP is this node's private IP as the applied state names it.
func (d *Daemon) privateIP() (netip.Addr, bool) {
	st := d.appliedState()
	if st == nil {
		return netip.Addr{}, false
	}
	n := st.Node(d.nodeID)
	if n == nil {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(n.PrivateIP)
	return a, err == nil
}

func (d *Daemon) current() (Settings, bucket.Store) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.set, d.store
}

// Reconfigure swaps in a new store (new credentials) and poll interval.
// Paths, node identity and supervise mode need a restart.
func (d *Daemon) Reconfigure(set Settings, store bucket.Store) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.set
	if set.Cluster != old.Cluster || set.NodeID != old.NodeID || set.RunDir != old.RunDir ||
		set.HAProxyConfig != old.HAProxyConfig || set.KeepalivedConfig != old.KeepalivedConfig ||
		set.Supervise != old.Supervise || set.MetricsAddr != old.MetricsAddr || !sameMesh(set.Mesh, old.Mesh) ||
		!set.StatePublicKey.Equal(old.StatePublicKey) || set.ReportKeyFile != old.ReportKeyFile || set.AcceptedStateFile != old.AcceptedStateFile ||
		set.MinStateGeneration != old.MinStateGeneration {
		d.log.Warn("node config changed fields that need a restart; keeping the old values for them")
	}
	d.set.PollInterval = set.PollInterval
	d.set.HAProxyBin, d.set.KeepalivedBin = set.HAProxyBin, set.KeepalivedBin
	d.set.HAProxyReload, d.set.KeepalivedReload = set.HAProxyReload, set.KeepalivedReload
	if store.String() != d.store.String() {
		// Another state object (pull.json now names another bucket or
		// prefix): generations there have nothing to do with the old
		// one's, so the replay floor starts over, from the floor the CLI
		// gave the node (never 0: that would take back old signed states).
		// A new key for the same store (a rotation) keeps it.
		d.amu.Lock()
		d.accepted = d.set.MinStateGeneration
		d.amu.Unlock()
	}
	d.store = store
	d.storeGen++ // Step reads the state again through the new store
	d.log.Info("node config reloaded", "store", store.String(), "poll_interval", set.PollInterval)
	// Poll now: the loop may be waiting out an old, longer interval or a
	// backoff caused by the credentials this reload replaces.
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Daemon) sinceLastPoll() float64 {
	d.amu.Lock()
	defer d.amu.Unlock()
	if d.lastPollOK.IsZero() {
		return -1
	}
	return time.Since(d.lastPollOK).Seconds()
}

func (d *Daemon) healthy() error {
	set, _ := d.current()
	d.amu.Lock()
	defer d.amu.Unlock()
	if !d.firstApplied {
		return errors.New("no state applied yet")
	}
	if age := time.Since(d.lastPollOK); age > staleAfter(set.PollInterval) {
		return fmt.Errorf("last successful poll %v ago", age.Round(time.Second))
	}
	return nil
}

// Result says what one Step did.
type Result int

// Step results.
const (
	Unchanged Result = iota // nothing to do (not modified, or identical render)
	Changed                 // files replaced and daemons reloaded
)

// ApplyError is a refused or failed apply; Reason is the metric label.
type ApplyError struct {
	Reason string // poll, decode, wrong_cluster, render, zero_backends, mesh, validate_haproxy, validate_keepalived, install, reload_haproxy, reload_keepalived
	Err    error
}

func (e *ApplyError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Reason+":") {
		return msg // the error already says which step ("render: node … has no private IP yet")
	}
	return e.Reason + ": " + msg
}
func (e *ApplyError) Unwrap() error { return e.Err }

// Prepare makes the run dir and notify fifo, and in supervise mode adopts
// the daemons a previous dynia-pull left running, or starts them from the
// configs already on disk (the last good ones), so a restarted dynia-pull
// serves at once.
func (d *Daemon) Prepare(ctx context.Context) error {
	set, _ := d.current()
	// HAProxy binds its sockets at a temporary name <path>.<pid>.tmp
	// first; a unix socket path holds 107 bytes. Too long a run dir makes
	// haproxy exit 1 at start with nothing on its output.
	if n := len(d.paths.MasterSocket) + len(".4194304.tmp"); n > 107 {
		return fmt.Errorf("run dir %q is too long for HAProxy's sockets (%d bytes of at most 107); use a shorter run_dir", set.RunDir, n)
	}
	if err := os.MkdirAll(set.RunDir, 0o755); err != nil {
		return fmt.Errorf("create run dir: %w", err)
	}
	if err := ensureFIFO(d.paths.NotifyFIFO); err != nil {
		return err
	}
	d.prepareMesh(ctx, set)
	if set.Supervise {
		d.superviseStart(ctx)
	}
	return nil
}

// superviseStart supervises each daemon whose config exists: it adopts one
// already running from its pid file (left by a previous dynia-pull) or
// starts it. An adopted daemon whose config changed after it started may
// not have loaded it (dynia-pull stopped between installing a file and
// reloading), so the next apply reloads it.
func (d *Daemon) superviseStart(ctx context.Context) {
	set, _ := d.current()
	for _, spec := range d.daemonSpecs(set) {
		fi, err := os.Stat(spec.config)
		if err != nil {
			continue
		}
		if spec.name == "keepalived" && !d.sup.supervising(spec.name) && !d.meshReady() {
			if pid, _, _ := adoptable(spec); pid == 0 {
				// keepalived exits on a missing interface: the mesh step
				// starts it once the interface is up with its address.
				d.log.Info("keepalived waits for the mesh interface", "component", spec.name)
				continue
			}
		}
		a := d.sup.start(ctx, spec)
		if a == nil {
			continue
		}
		if spec.name == "keepalived" {
			d.restoreVRRP(set, a)
		}
		if !changeTime(fi).After(a.started) {
			continue
		}
		d.log.Info("adopted daemon may predate its config on disk; reloading it at the next apply",
			"component", spec.name, "pid", a.pid)
		d.ap.markReload(spec.name == "haproxy", spec.name == "keepalived")
	}
}

// changeTime is a file's inode change time, which the rename installing a
// config sets; its modification time is the staged file's, written before
// validation, and may predate a daemon (re)started meanwhile.
func changeTime(fi os.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
	}
	return fi.ModTime()
}

// daemonSpecs returns how supervise mode runs haproxy and keepalived.
func (d *Daemon) daemonSpecs(set Settings) []daemonSpec {
	return []daemonSpec{
		{name: "haproxy", bin: set.HAProxyBin, config: set.HAProxyConfig, pidFile: d.paths.HAProxyPid,
			args:     []string{"-W", "-db", "-S", d.paths.MasterSocket + ",mode,600", "-f", set.HAProxyConfig, "-p", d.paths.HAProxyPid},
			prestart: func() error { return pruneServerState(set.HAProxyConfig) }},
		{name: "keepalived", bin: set.KeepalivedBin, config: set.KeepalivedConfig, pidFile: d.paths.KeepalivedPid,
			args: []string{"-n", "-l", "-f", set.KeepalivedConfig, "-p", d.paths.KeepalivedPid, "-r", d.paths.VRRPPid, "-c", d.paths.CheckersPid}},
	}
}

// Run polls and applies until ctx ends. HAProxy and keepalived keep
// running with the last good config: in supervise mode the next Run adopts
// them.
func (d *Daemon) Run(ctx context.Context) error {
	if err := d.Prepare(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(8)
	go func() { defer wg.Done(); notifyLoop(ctx, d.log, d.paths.NotifyFIFO, d.onVRRP, time.Second) }()
	go func() { defer wg.Done(); d.rep.loop(ctx) }()
	go func() { defer wg.Done(); d.claim.run(ctx) }()
	go func() { defer wg.Done(); d.claim.verifyLoop(ctx) }()
	go func() { defer wg.Done(); d.healthLoop(ctx) }()
	go func() { defer wg.Done(); d.appLoop(ctx) }()
	go func() { defer wg.Done(); d.tlsLoop(ctx) }()
	go func() { defer wg.Done(); d.serveChallenges(ctx) }()
	defer d.sup.wait()
	defer d.closeMesh()

	for first := true; ; first = false {
		set, _ := d.current()
		force := time.Since(d.lastFull) >= fullRenderEvery
		_, err := d.Step(ctx, force)
		if first && ctx.Err() == nil {
			var gen int64
			if st := d.appliedState(); st != nil {
				gen = st.Generation
			}
			_, cerr := os.Stat(set.HAProxyConfig)
			d.notify(readyState(gen, err, cerr == nil))
		}
		var ae *ApplyError
		refused := errors.As(err, &ae) && (ae.Reason == "decode" || ae.Reason == "signature" || ae.Reason == "replay")
		if force && (err == nil || refused) {
			// A refused object was read in full too: the next full read
			// waits its turn instead of fetching (and logging) it each poll.
			d.lastFull = time.Now()
		}
		d.meshPoll(ctx)
		wait := jitter(set.PollInterval, 0.2)
		if err != nil && ctx.Err() == nil {
			if refused {
				d.failures = 0 // a bad object waits for the next one, at the normal pace
			} else {
				d.failures++
				wait = backoff(set.PollInterval, d.failures)
			}
		} else {
			d.failures = 0
		}
		select {
		case <-ctx.Done():
			d.log.Info("stopping")
			d.notify("STOPPING=1")
			return nil
		case <-time.After(wait):
		case <-d.wake:
			d.failures = 0
		}
	}
}

// jitter spreads d by ±frac so nodes do not poll in lockstep.
func jitter(d time.Duration, frac float64) time.Duration {
	return time.Duration(float64(d) * (1 - frac + 2*frac*rand.Float64()))
}

// backoff is base·2^(n-1) capped at maxBackoff, with jitter in its upper half.
func backoff(base time.Duration, n int) time.Duration {
	d := poll.Backoff(base, maxBackoff, n)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Step polls once and applies a new state. With force, the state is read
// without If-None-Match and re-rendered, repairing hand edits on disk.
func (d *Daemon) Step(ctx context.Context, force bool) (Result, error) {
	d.mu.Lock()
	set, store, gen := d.set, d.store, d.storeGen
	d.mu.Unlock()
	if gen != d.etagGen {
		d.etag, d.etagGen = "", gen
	}
	etag := d.etag
	if force {
		etag = ""
	}
	d.m.polls.Inc()
	// One poll is bounded: the store retries an attempt that got no
	// answer, and an unreachable bucket must not hold the loop (and the
	// first poll after it comes back) for the store's whole retry budget.
	pctx, cancel := context.WithTimeout(ctx, pollTimeout)
	obj, err := store.Get(pctx, cluster.StateKey(set.Cluster), etag)
	cancel()
	if errors.Is(err, bucket.ErrNotModified) {
		d.m.notModified.Inc()
		d.pollOK()
		return Unchanged, nil
	}
	if err != nil {
		d.m.pollErrors.Inc()
		return Unchanged, d.fail(0, &ApplyError{"poll", err})
	}
	d.pollOK()
	st, aerr := d.openState(obj.Body)
	if aerr != nil {
		// Remember the ETag: the same bad object is reported once, and the
		// next write by the CLI is picked up at the normal pace. Nothing
		// is applied: the last good config keeps serving.
		d.etag = obj.ETag
		if aerr.Reason == "decode" {
			return Unchanged, d.fail(0, aerr)
		}
		return Unchanged, d.refuseState(0, aerr)
	}
	d.stateOK()
	if st.Name != set.Cluster {
		d.etag = obj.ETag
		return Unchanged, d.fail(st.Generation, &ApplyError{"wrong_cluster", fmt.Errorf("state is for cluster %q, this node is in %q", st.Name, set.Cluster)})
	}
	if d.reportsFor(st, set.NodeID) {
		// Removed: nothing to render for a node the state does not have.
		// HAProxy and keepalived keep their last config until the droplet
		// goes; the ETag is kept, so this is said once per state.
		d.etag = obj.ETag
		return Unchanged, d.fail(st.Generation, &ApplyError{"removed", fmt.Errorf("node %s is not in cluster %s", set.NodeID, st.Name)})
	}
	res, err := d.Apply(ctx, st)
	if err != nil {
		return Unchanged, err // fail() already recorded it; ETag not kept, so it is retried
	}
	d.etag = obj.ETag
	d.keepAccepted(set, st, obj.Body)
	d.kickApp()
	d.kickTLS()
	return res, nil
}

// reportsFor turns status reports off while st marks this node removing
// or no longer has it, and back on otherwise, logging each change. It
// says whether the node is gone from st.
func (d *Daemon) reportsFor(st *cluster.State, nodeID string) (gone bool) {
	self := st.Node(nodeID)
	off := self == nil || self.Lifecycle == cluster.Removing
	if d.rep.off.Swap(off) != off {
		if off {
			d.log.Info("this node is being removed from the state; no more status reports", "generation", st.Generation, "in_state", self != nil)
		} else {
			d.log.Info("this node is in the state again; reporting", "generation", st.Generation)
		}
	}
	return self == nil
}

func (d *Daemon) pollOK() {
	d.amu.Lock()
	d.lastPollOK = time.Now()
	d.amu.Unlock()
	d.rep.clearError("poll")
}

// fail records a refused or failed apply: one log line, a metric and the
// status report. The last good config keeps serving.
func (d *Daemon) fail(gen int64, err *ApplyError) error {
	d.m.applyFailures.WithLabelValues(err.Reason).Inc()
	log := d.log
	if gen != 0 {
		log = log.With("generation", gen)
	}
	log.Error("state not applied; last good config keeps serving", "reason", err.Reason, "err", err.Err)
	d.rep.setError(err.Error())
	return err
}

// applied1 records st as the node's applied state (files on disk match it).
func (d *Daemon) applied1(st *cluster.State, res *render.Result) {
	d.amu.Lock()
	d.applied = st
	d.accepted = max(d.accepted, st.Generation)
	d.firstApplied = true
	d.amu.Unlock()
	d.m.generation.Set(float64(st.Generation))
	d.rep.clearError("")
	newGen := false
	d.rep.update(func(s *report.Status) {
		newGen = s.AppliedGeneration != st.Generation
		s.AppliedGeneration = st.Generation
		s.HAProxyConfigHash = res.HAProxy.Hash
		s.KeepalivedConfigHash = res.Keepalived.Hash
	})
	// Report a new generation at once even when it changed nothing here
	// (e.g. the Reserved IP recorded): the CLI waits for every node to
	// report the generation it wrote, and the heartbeat is a minute away.
	if newGen {
		d.rep.kick()
	}
}

// readPid is the running process the pid file at path names, 0 for none
// (or a malformed file).
func readPid(path string) int {
	pid, _, _ := procstat.ReadPidFile(path)
	return pid
}

// interfaceWith returns the interface holding ip, or "" (render's default).
func interfaceWith(ip string) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, i := range ifs {
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
				return i.Name
			}
		}
	}
	return ""
}

// vrrpStateFile holds the last VRRP state keepalived reported, so a
// dynia-pull that adopts a running keepalived knows its state: keepalived
// notifies only transitions.
func vrrpStateFile(set Settings) string { return filepath.Join(set.RunDir, "vrrp.state") }

// restoreVRRP takes the VRRP state an adopted keepalived last reported, if
// it was recorded since that keepalived started. Transitions while no
// dynia-pull ran wait in the fifo (keepalived holds it open) and follow.
func (d *Daemon) restoreVRRP(set Settings, a *adopted) {
	path := vrrpStateFile(set)
	fi, err := os.Stat(path)
	if err != nil || fi.ModTime().Before(a.started) {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	state := strings.TrimSpace(string(b))
	switch state {
	case report.VRRPMaster, report.VRRPBackup, report.VRRPFault:
		d.log.Info("vrrp state of the adopted keepalived restored", "state", state, "pid", a.pid)
		d.onVRRP(state)
	}
}

// onVRRP handles a state line from keepalived's notify fifo.
func (d *Daemon) onVRRP(state string) {
	prev := ""
	d.rep.update(func(s *report.Status) {
		prev = s.VRRPState
		s.VRRPState = state
		if state != report.VRRPMaster {
			s.ReservedIP.Held, s.ReservedIP.Note = false, ""
		}
	})
	if prev == state {
		return
	}
	d.m.setVRRP(state)
	d.log.Info("vrrp state", "from", prev, "to", state)
	set, _ := d.current()
	if err := writeFileAtomic(vrrpStateFile(set), []byte(state+"\n"), 0o644); err != nil {
		d.log.Warn("record vrrp state", "err", err)
	}
	if state == report.VRRPMaster {
		d.kickTLS() // the new MASTER orders or renews if due
	}
	if state == report.VRRPMaster {
		d.claim.request("vrrp " + prev + " -> MASTER")
	}
	d.rep.kick()
}
