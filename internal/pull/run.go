package pull

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/failover"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/report"
)

// OpenStore opens the state store named by a node config, with the Spaces
// key from its credentials file.
func OpenStore(ctx context.Context, c *nodeconfig.Config, log *slog.Logger) (bucket.Store, error) {
	opts := bucket.Options{Endpoint: c.Endpoint, Region: c.Region, PathStyle: c.PathStyle, Logger: log}
	if c.CredentialsFile != "" {
		id, secret, err := bucket.LoadCredentialsFile(c.CredentialsFile)
		if err != nil {
			return nil, err
		}
		opts.AccessKeyID, opts.SecretAccessKey = id, secret
	}
	return bucket.Open(ctx, c.StateURL, opts)
}

// RunOptions configure Run.
type RunOptions struct {
	ConfigPath string
	Logger     *slog.Logger
	Version    string
	// Reload delivers SIGHUP: re-read the config and credentials.
	Reload <-chan struct{}
	// Logs holds dynia-pull's own recent log lines (the logger writes
	// through it); its tail is uploaded for `dynia node logs`.
	Logs *Ring
	// Level is the Logger's level: set from the config's log_level at
	// start and on each reload. nil leaves the Logger's level alone.
	Level *slog.LevelVar
}

// setLevel sets level (when not nil) from cfg's log_level.
func setLevel(level *slog.LevelVar, cfg *nodeconfig.Config) {
	if level != nil {
		level.Set(cfg.SlogLevel())
	}
}

// Run is `dynia-pull run`: load the config, serve metrics, and converge
// until ctx ends. Changes to the config or credentials file (fsnotify) and
// Reload re-read both without a restart; a bad new config is logged and
// the old one kept. At startup, unknown keys in the config (LoadConfig)
// are ignored and reported in last_error until a fixed file is reloaded.
func Run(ctx context.Context, o RunOptions) error {
	log := o.Logger
	cfg, warning, err := LoadConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	setLevel(o.Level, cfg)
	if warning != "" {
		log.Error("node config has errors; running without the keys it ignores", "err", warning)
	}
	store, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	set := SettingsFrom(cfg)
	set.Image = nodeconfig.ReadImage(o.ConfigPath)
	// Reserved IP failover needs the node token; a node without one (tests,
	// a node that must never move the IP) runs without it and says so.
	var claimer *failover.Claimer
	var opts = Options{Logger: log, Version: o.Version}
	if cfg.DOTokenFile != "" {
		claimer = failover.NewNode(cfg, log)
		opts.Claimer = claimer
	}
	rt, err := newAppRuntime(set, log)
	if err != nil {
		return err
	}
	opts.App = rt
	d := New(set, store, opts)
	d.rep.setConfigWarning(warning)

	ln, err := net.Listen("tcp", set.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w", set.MetricsAddr, err)
	}
	srv := &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", set.MetricsAddr, "err", err)
		}
	}()
	defer func() { _ = srv.Close() }() // shutting down; nothing to do about a close error

	changed := make(chan struct{}, 1)
	if w, err := watchFiles(log, changed, o.ConfigPath, cfg.CredentialsFile, cfg.DOTokenFile); err != nil {
		log.Warn("not watching config files; SIGHUP still reloads", "err", err)
	} else {
		defer func() { _ = w.Close() }() // shutting down; nothing to do about a close error
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-o.Reload:
			case <-changed:
			}
			reconfigure(ctx, log, o.Level, o.ConfigPath, d, &cfg)
			if claimer != nil {
				// A replaced token file is picked up by the claimer too,
				// and checked at once.
				claimer.Reload(cfg)
				d.VerifyNow()
			}
		}
	}()
	ship := &shipper{d: d, sources: logSources(o.Logs, set.LogDir, set.CloudInitLog),
		last: map[string]string{}, at: map[string]time.Time{},
		secrets: func() []string { return nodeSecrets(cfg) }}
	// The start line first, so the first upload carries it.
	log.Info("dynia-pull running", "version", o.Version, "store", store.String(),
		"supervise", set.Supervise, "metrics", set.MetricsAddr, "poll_interval", set.PollInterval)
	go d.logLoop(ctx, ship)
	return d.Run(ctx)
}

// reconfigure re-reads the config. Unlike at startup there is a working
// config to keep, so a file with a new unknown key is refused whole rather
// than applied without it. The same unknown key the node already runs with
// is accepted again, ignored as before: otherwise a typo nobody has fixed
// yet would block a rotation of the Spaces key (which also lands here).
// A good file clears the startup warning.
func reconfigure(ctx context.Context, log *slog.Logger, level *slog.LevelVar, path string, d *Daemon, cur **nodeconfig.Config) {
	cfg, warning, err := LoadConfig(path)
	if err == nil && warning != "" && warning != d.rep.currentConfigWarning() {
		err = errors.New(strings.TrimSuffix(warning, " (ignored)")) // refused, not ignored
	}
	if err == nil {
		var store bucket.Store
		if store, err = OpenStore(ctx, cfg, log); err == nil {
			d.rep.setConfigWarning(warning)
			d.rep.clearError("node config: ") // an earlier refused reload
			d.Reconfigure(SettingsFrom(cfg), store)
			setLevel(level, cfg)
			*cur = cfg
			return
		}
	}
	log.Error("node config not reloaded; keeping the old one", "err", err)
	now := time.Now().UTC()
	d.rep.update(func(s *report.Status) { s.LastError, s.LastErrorAt = "node config: "+err.Error(), &now })
	d.rep.kick()
}

// watchFiles signals changed when one of files is written, replaced or
// removed. It watches the directories: editors and cloud-init replace files
// by rename, which a watch on the file itself would miss.
func watchFiles(log *slog.Logger, changed chan<- struct{}, files ...string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, f := range files {
		if f == "" {
			continue
		}
		abs, err := filepath.Abs(f)
		if err != nil {
			continue
		}
		names[abs] = true
		if err := w.Add(filepath.Dir(abs)); err != nil {
			_ = w.Close() // the Add error is the one to report
			return nil, fmt.Errorf("watch %s: %w", filepath.Dir(abs), err)
		}
	}
	go func() {
		for {
			select {
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if names[ev.Name] && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
					select {
					case changed <- struct{}{}:
					default:
					}
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				log.Warn("config watch", "err", err)
			}
		}
	}()
	return w, nil
}

// Once is `dynia-pull once`: one forced poll and apply. It reloads the
// daemons if they run but never starts them. level, when not nil, is log's
// level, set from the config's log_level.
func Once(ctx context.Context, configPath string, log *slog.Logger, level *slog.LevelVar, version string) (Result, error) {
	cfg, warning, err := LoadConfig(configPath)
	if err != nil {
		return Unchanged, err
	}
	setLevel(level, cfg)
	if warning != "" {
		log.Error("node config has errors; running without the keys it ignores", "err", warning)
	}
	store, err := OpenStore(ctx, cfg, log)
	if err != nil {
		return Unchanged, err
	}
	set := SettingsFrom(cfg)
	set.Image = nodeconfig.ReadImage(configPath)
	set.Supervise = false
	d := New(set, store, Options{Logger: log, Version: version})
	d.rep.setConfigWarning(warning)
	if err := d.Prepare(ctx); err != nil {
		return Unchanged, err
	}
	res, err := d.Step(ctx, true)
	if err == nil {
		d.rep.write(ctx)
	}
	return res, err
}

// Check is `dynia-pull check`: config, credentials, store reachability and
// tools, one line each on w. It returns an error when any check fails.
func Check(ctx context.Context, configPath string, w io.Writer) error {
	failed := 0
	line := func(name string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(w, "✗ %s: %v\n", name, err)
			return
		}
		fmt.Fprintf(w, "✓ %s\n", name)
	}
	cfg, warning, err := LoadConfig(configPath)
	if err == nil && warning != "" {
		err = errors.New(warning) // runs, but the file needs fixing
	}
	line("config "+configPath, err)
	if cfg == nil {
		return errors.New("check failed")
	}
	set := SettingsFrom(cfg)
	store, err := OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
	line("credentials and store URL", err)
	if err == nil {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var obj *bucket.Object
		obj, err = store.Get(cctx, cluster.StateKey(cfg.Cluster), "")
		cancel()
		line("state object "+cluster.StateKey(cfg.Cluster)+" in "+store.String(), err)
		if err == nil && set.StatePublicKey != nil {
			// "" counts as the newest dynia-pull: this checks the signature.
			_, err = cluster.DecodeSignedNode(obj.Body, set.StatePublicKey, "")
			line("state signed with state_public_key", err)
		}
	}
	tools := []string{set.HAProxyBin, set.KeepalivedBin, "/usr/bin/curl"}
	if set.Mesh != nil {
		tools = append(tools, "ip") // links and addresses of the mesh interface
		if set.Mesh.WireGuardGo != "" {
			tools = append(tools, set.Mesh.WireGuardGo)
		}
	}
	for _, bin := range tools {
		_, err := exec.LookPath(bin)
		line("tool "+bin, err)
	}
	if failed > 0 {
		return fmt.Errorf("%d check(s) failed", failed)
	}
	return nil
}

// nodeSecrets are the secrets a node holds, for redacting log tails: the
// node token, the Spaces key, the cluster key and the report key (every
// node can read the uploaded tails; a leaked report key would let one
// forge this node's reports), read from their files now.
func nodeSecrets(cfg *nodeconfig.Config) []string {
	var out []string
	for _, f := range []string{cfg.DOTokenFile, cfg.ClusterKeyFile, cfg.ReportKeyFile} {
		if f == "" {
			continue
		}
		if b, err := os.ReadFile(f); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				// age identity files carry comment lines; the key is the rest.
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					out = append(out, line)
				}
			}
		}
	}
	if cfg.CredentialsFile != "" {
		if id, secret, err := bucket.LoadCredentialsFile(cfg.CredentialsFile); err == nil {
			out = append(out, id, secret)
		}
	}
	return out
}

// newAppRuntime builds the runtime pull.json names: Docker (the default)
// or processes of app_command.
func newAppRuntime(set Settings, log *slog.Logger) (appRuntime, error) {
	switch set.Runtime {
	case nodeconfig.RuntimeProcess:
		return newProcessApp(set.AppCommand, set.RunDir, set.LogDir, set.NodeID, log.With("component", "app")), nil
	case "", nodeconfig.RuntimeDocker:
		rt, err := newDockerApp(set.DockerHost, set.Cluster, set.NodeID, log.With("component", "app"))
		if err != nil {
			return nil, fmt.Errorf("app runtime: %w", err)
		}
		return rt, nil
	}
	return nil, fmt.Errorf("app runtime %q: want docker or process", set.Runtime)
}
