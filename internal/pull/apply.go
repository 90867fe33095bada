package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
)

// FileResult is what one apply did with one config file, step by step:
// each step ran only if the one before it did (or, for Reloaded, if the
// daemon still had a reload pending from an earlier failed apply).
type FileResult struct {
	Component string // "haproxy" or "keepalived"
	Path      string
	// Changed: the render differs from the file on disk.
	Changed bool
	// Validated: the staged file passed haproxy -c or keepalived -t.
	Validated bool
	// Installed: the staged file was renamed into place.
	Installed bool
	// Reloaded: the daemon was told to load it (its reload command, the
	// master socket or SIGHUP), or it was not running yet and loads it
	// when it starts.
	Reloaded bool
}

// ApplyResult is what an apply did with haproxy.cfg and keepalived.conf.
type ApplyResult struct {
	HAProxy, Keepalived FileResult
}

// Result is the apply's Step result: Changed when a file was installed or
// a daemon reloaded.
func (r ApplyResult) Result() Result {
	for _, f := range []FileResult{r.HAProxy, r.Keepalived} {
		if f.Installed || f.Reloaded {
			return Changed
		}
	}
	return Unchanged
}

// applier installs a render: stage each changed file next to its target,
// validate it with the real tool, rename it into place, reload each
// daemon once. It owns what must survive between applies: which daemons
// still need a reload and when the last reload was. Daemon.Apply
// serializes calls to install.
type applier struct {
	log   *slog.Logger
	paths render.Paths
	m     *metrics
	sup   *supervisor
	// settings are the daemon's current ones (binaries and reload
	// commands change with a config reload).
	settings func() Settings
	// startDaemons starts (supervise mode) what is not running yet.
	startDaemons func(context.Context)

	mu sync.Mutex // guards needReload and lastReload
	// needReload is set before a file is installed and cleared after its
	// daemon reloaded, so after a failed rename or reload the next apply
	// reloads even though the files on disk already match.
	needReload struct{ haproxy, keepalived bool }
	lastReload time.Time
}

// markReload records that the named daemons must reload at the next apply.
func (ap *applier) markReload(haproxy, keepalived bool) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	ap.needReload.haproxy = ap.needReload.haproxy || haproxy
	ap.needReload.keepalived = ap.needReload.keepalived || keepalived
}

// clearReload records that the named daemons reloaded.
func (ap *applier) clearReload(haproxy, keepalived bool) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	ap.needReload.haproxy = ap.needReload.haproxy && !haproxy
	ap.needReload.keepalived = ap.needReload.keepalived && !keepalived
}

// pending says which daemons still need a reload.
func (ap *applier) pending() (haproxy, keepalived bool) {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return ap.needReload.haproxy, ap.needReload.keepalived
}

// fileJob is one config file through install.
type fileJob struct {
	res      *FileResult
	tmp      string
	content  []byte
	validate func(context.Context, string, string) error
	bin      string
}

// install validates, commits and reloads what res changes on disk. A
// failure leaves every target it did not rename untouched; the result
// says how far each file got.
func (ap *applier) install(ctx context.Context, log *slog.Logger, res *render.Result) (ApplyResult, *ApplyError) {
	set := ap.settings()
	out := ApplyResult{
		HAProxy:    FileResult{Component: "haproxy", Path: set.HAProxyConfig},
		Keepalived: FileResult{Component: "keepalived", Path: set.KeepalivedConfig},
	}
	var jobs []*fileJob
	for _, j := range []*fileJob{
		{res: &out.HAProxy, content: res.HAProxy.Content, validate: validateHAProxy, bin: set.HAProxyBin},
		{res: &out.Keepalived, content: res.Keepalived.Content, validate: validateKeepalived, bin: set.KeepalivedBin},
	} {
		if cur, err := os.ReadFile(j.res.Path); err == nil {
			h, ok := render.FileHash(cur)
			want, _ := render.FileHash(j.content)
			if ok && h == want {
				continue
			}
		}
		j.res.Changed = true
		jobs = append(jobs, j)
	}
	if err := ap.stage(ctx, jobs); err != nil {
		return out, err
	}
	if err := ap.commit(ctx, log, jobs, res); err != nil {
		return out, err
	}
	haproxy, keepalived := ap.pending()
	if !haproxy && !keepalived {
		return out, nil // nothing changed, nothing pending
	}
	did, err := ap.reload(ctx, log, haproxy, keepalived, res.Backends)
	// Clear only what this reload did: a daemon marked meanwhile (an
	// adopted one found predating its config when the reload started the
	// daemons) or one whose reload failed stays pending for the next try.
	ap.clearReload(did.haproxy, did.keepalived)
	out.HAProxy.Reloaded, out.Keepalived.Reloaded = did.haproxy, did.keepalived
	if err != nil {
		return out, err
	}
	return out, nil
}

// reloadPendingKeepalived reloads keepalived if a reload is pending for
// it (the mesh interface was re-made under it) and clears that mark; it
// says whether it reloaded. Like install, the caller serializes it with
// Daemon.Apply (applyMu), so two reloads never start daemons at once and
// a mark set by an apply is never cleared unseen.
func (ap *applier) reloadPendingKeepalived(ctx context.Context, log *slog.Logger) (bool, *ApplyError) {
	if _, keepalived := ap.pending(); !keepalived {
		return false, nil
	}
	did, err := ap.reload(ctx, log, false, true, nil)
	ap.clearReload(did.haproxy, did.keepalived)
	if err != nil {
		return false, err
	}
	return did.keepalived, nil
}

// stage writes each job's content next to its target and validates it,
// before any target is touched; on failure no staged file is left.
func (ap *applier) stage(ctx context.Context, jobs []*fileJob) *ApplyError {
	cleanup := func() {
		for _, j := range jobs {
			if j.tmp != "" {
				_ = os.Remove(j.tmp) // best effort: the failure being returned matters more
				j.tmp = ""
			}
		}
	}
	for _, j := range jobs {
		tmp, err := stageFile(j.res.Path, j.content, 0o644)
		if err != nil {
			cleanup()
			return &ApplyError{"install", err}
		}
		j.tmp = tmp
		if err := j.validate(ctx, j.bin, tmp); err != nil {
			cleanup()
			return &ApplyError{"validate_" + j.res.Component, err}
		}
		j.res.Validated = true
	}
	return nil
}

// commit renames each staged file into place. Each daemon's pending
// reload is recorded before its file is renamed: if a later rename (or
// the reload) fails, the files already installed match the next render,
// and only that record makes the next apply reload the daemon instead of
// leaving it on the old config.
func (ap *applier) commit(ctx context.Context, log *slog.Logger, jobs []*fileJob, res *render.Result) *ApplyError {
	for i, j := range jobs {
		haproxy := j.res.Component == "haproxy"
		ap.markReload(haproxy, !haproxy)
		if haproxy {
			// Act on drains now, and carry states over the reload for the
			// servers whose address and port stay.
			if err := setServerStates(ctx, ap.paths.StatsSocket, res.Backends); err != nil {
				log.Debug("runtime server states not set (haproxy not running?)", "err", err)
			}
			if err := saveServerState(ctx, ap.paths.StatsSocket, ap.paths.ServerStateFile, j.content); err != nil {
				log.Warn("save server state before reload", "err", err)
			}
		}
		err := commitFile(j.tmp, j.res.Path)
		j.tmp = ""
		if err != nil {
			for _, rest := range jobs[i+1:] {
				_ = os.Remove(rest.tmp) // best effort: the failure being returned matters more
			}
			return &ApplyError{"install", err}
		}
		j.res.Installed = true
	}
	return nil
}

// reloaded says which daemons a reload told to load their config.
type reloaded struct{ haproxy, keepalived bool }

// reload reloads the named daemons once, no sooner than
// minReloadInterval after the previous reload. A daemon not running yet
// counts as reloaded: it reads the file when it starts.
func (ap *applier) reload(ctx context.Context, log *slog.Logger, haproxy, keepalived bool, backends []render.Backend) (reloaded, *ApplyError) {
	set := ap.settings()
	ap.mu.Lock()
	wait := minReloadInterval - time.Since(ap.lastReload)
	ap.mu.Unlock()
	if wait > 0 {
		if err := poll.Sleep(ctx, wait); err != nil {
			// Named by what was to be reloaded, as a reload's own failure is.
			reason := "reload_haproxy"
			if !haproxy {
				reason = "reload_keepalived"
			}
			return reloaded{}, &ApplyError{reason, err}
		}
	}
	defer func() {
		ap.mu.Lock()
		ap.lastReload = time.Now()
		ap.mu.Unlock()
	}()
	if set.Supervise {
		ap.startDaemons(ctx) // first apply: start what was not running
	}
	var did reloaded
	if haproxy {
		if err := ap.reloadHAProxy(ctx, log, set, backends); err != nil {
			return did, err
		}
		did.haproxy = true
	}
	if keepalived {
		if err := ap.reloadKeepalived(ctx, log, set); err != nil {
			return did, err
		}
		did.keepalived = true
	}
	return did, nil
}

// reloadHAProxy runs the reload command from pull.json, or reloads
// through the master socket.
func (ap *applier) reloadHAProxy(ctx context.Context, log *slog.Logger, set Settings, backends []render.Backend) *ApplyError {
	began := time.Now()
	if len(set.HAProxyReload) > 0 {
		if err := runReloadCommand(ctx, set.HAProxyReload); err != nil {
			return &ApplyError{"reload_haproxy", err}
		}
		ap.m.reloadSeconds.WithLabelValues("haproxy").Observe(time.Since(began).Seconds())
		if err := setServerStates(ctx, ap.paths.StatsSocket, backends); err != nil {
			log.Warn("runtime server states not set after reload", "err", err)
		}
		return nil
	}
	_, err := os.Stat(ap.paths.MasterSocket)
	if err != nil && ap.haproxyPredatesConfig(set) {
		// Started (by an earlier apply) from the config before this
		// one, and not listening on its master socket yet (a loaded
		// machine): skipping the reload would leave it on the old
		// config until the next change.
		wctx, cancel := context.WithTimeout(ctx, masterSocketWait)
		err = poll.Until(wctx, func() error { _, err := os.Stat(ap.paths.MasterSocket); return err })
		cancel()
		if err != nil {
			return &ApplyError{"reload_haproxy", fmt.Errorf("haproxy started before this config and its master socket is not up after %v: %w", masterSocketWait, err)}
		}
	}
	if err != nil {
		log.Info("haproxy not running yet; it will load the new config when it starts")
		return nil
	}
	if err := reloadHAProxy(ctx, ap.paths.MasterSocket); err != nil {
		return &ApplyError{"reload_haproxy", err}
	}
	ap.m.reloadSeconds.WithLabelValues("haproxy").Observe(time.Since(began).Seconds())
	// The new worker loaded the saved states; set them again for
	// servers that were not in the old worker.
	if err := setServerStates(ctx, ap.paths.StatsSocket, backends); err != nil {
		log.Warn("runtime server states not set after reload", "err", err)
	}
	return nil
}

// reloadKeepalived runs the reload command from pull.json, or sends
// keepalived SIGHUP.
func (ap *applier) reloadKeepalived(ctx context.Context, log *slog.Logger, set Settings) *ApplyError {
	began := time.Now()
	if len(set.KeepalivedReload) > 0 {
		if err := runReloadCommand(ctx, set.KeepalivedReload); err != nil {
			return &ApplyError{"reload_keepalived", err}
		}
		ap.m.reloadSeconds.WithLabelValues("keepalived").Observe(time.Since(began).Seconds())
		return nil
	}
	pid := keepalivedPid(ap.sup, ap.paths)
	if pid == 0 {
		log.Info("keepalived not running yet; it will load the new config when it starts")
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return &ApplyError{"reload_keepalived", fmt.Errorf("SIGHUP keepalived pid %d: %w", pid, err)}
	}
	ap.m.reloadSeconds.WithLabelValues("keepalived").Observe(time.Since(began).Seconds())
	return nil
}

// masterSocketWait bounds how long a reload waits for a just-started
// HAProxy's master socket; past it the apply fails and is retried.
const masterSocketWait = 10 * time.Second

// haproxyPredatesConfig says whether the HAProxy the supervisor runs
// started no later than its config file was installed, so it may run an
// older config. (An adopted one's start is known to the second at best,
// from /proc/stat's btime: a doubt reloads, which costs nothing.)
func (ap *applier) haproxyPredatesConfig(set Settings) bool {
	pid, started := ap.sup.running("haproxy")
	if pid == 0 {
		return false // none running: the next start reads the file
	}
	fi, err := os.Stat(set.HAProxyConfig)
	if err != nil {
		return false
	}
	// The inode's change time comes from the kernel's coarse clock (a few
	// ms behind), the start time from time.Now: a margin keeps a config
	// installed just after the start from looking older than the daemon.
	return !started.After(changeTime(fi).Add(predatesMargin))
}

// predatesMargin is haproxyPredatesConfig's allowance for clock grain.
const predatesMargin = 50 * time.Millisecond

// runReloadCommand runs a reload command from pull.json (an argv, no
// shell), bounded by toolTimeout; a failure names the command and carries
// the end of its output.
func runReloadCommand(ctx context.Context, argv []string) error {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	if _, err := extcmd.Combined(exec.CommandContext(ctx, argv[0], argv[1:]...)); err != nil {
		return fmt.Errorf("reload command: %w", err)
	}
	return nil
}

// Apply renders st for this node and installs what changed.
func (d *Daemon) Apply(ctx context.Context, st *cluster.State) (Result, error) {
	r, err := d.apply(ctx, st)
	if err != nil {
		return Unchanged, err
	}
	return r.Result(), nil
}

// apply is Apply with the per-file result: render, the guards, the mesh,
// then the applier's install.
func (d *Daemon) apply(ctx context.Context, st *cluster.State) (ApplyResult, error) {
	d.applyMu.Lock()
	defer d.applyMu.Unlock()
	if d.app != nil {
		d.adoptApp(ctx, st) // a restarted dynia-pull renders the running app at once
	}
	set, _ := d.current()
	log := d.log.With("generation", st.Generation)
	self := st.Node(set.NodeID)
	local := render.Local{NodeID: set.NodeID, RunDir: set.RunDir, App: d.localApp(st), NoIdleClose: set.NoIdleClose}
	local.ACME, local.TLS = d.localTLS(st)
	if set.Mesh != nil {
		local.Mesh, local.Interface = true, set.Mesh.Interface
	} else if self != nil {
		local.Interface = interfaceWith(self.PrivateIP)
	}
	res, err := render.Render(st, local)
	if err != nil {
		return ApplyResult{}, d.fail(st.Generation, &ApplyError{"render", err})
	}
	// Defence only: no state that passed cluster.Decode and Render reaches
	// this. The guard needs this node ready or draining (Decode admits no
	// other lifecycle besides provisioning and removing), render.Backends
	// keeps every ready and draining node, and Render fails without this
	// node, so this node itself is a backend. It is kept for the day
	// Backends learns to leave nodes out (e.g. unhealthy ones): an empty
	// backend while serving is an outage, never a state to apply.
	if prev := d.appliedState(); len(res.Backends) == 0 && prev != nil && len(render.Backends(prev)) > 0 &&
		self.Lifecycle != cluster.Provisioning && self.Lifecycle != cluster.Removing {
		return ApplyResult{}, d.fail(st.Generation, &ApplyError{"zero_backends",
			errors.New("the state leaves no backend while this node is in service")})
	}
	// keepalived -t checks that keepalived.conf's interface exists: bring
	// the mesh up first. Peers follow once the state is applied (meshPoll).
	if d.mesh != nil {
		if err := d.syncMesh(ctx, st, true); err != nil {
			return ApplyResult{}, d.meshFailed(st.Generation, err)
		}
	}
	out, aerr := d.ap.install(ctx, log, res)
	if aerr != nil {
		return out, d.fail(st.Generation, aerr)
	}
	d.applied1(st, res)
	if out.Result() == Unchanged {
		return out, nil
	}
	d.m.applies.Inc()
	now := time.Now().UTC()
	d.rep.update(func(s *report.Status) { s.LastApplyAt = &now })
	d.rep.kick()
	log.Info("applied", "files", countInstalled(out), "backends", len(res.Backends),
		"haproxy_hash", res.HAProxy.Hash, "keepalived_hash", res.Keepalived.Hash)
	return out, nil
}

func countInstalled(r ApplyResult) int {
	n := 0
	for _, f := range []FileResult{r.HAProxy, r.Keepalived} {
		if f.Installed {
			n++
		}
	}
	return n
}

// keepalivedPid is the node's keepalived: the one dynia-pull supervises,
// else the one its pid file names (started before this dynia-pull, or by
// systemd); 0 when none runs.
func keepalivedPid(sup *supervisor, paths render.Paths) int {
	if pid := sup.pid("keepalived"); pid != 0 {
		return pid
	}
	return readPid(paths.KeepalivedPid)
}
