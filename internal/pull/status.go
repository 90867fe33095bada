package pull

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
)

// statusReporter owns the node's status report: the report as it stands,
// the pull.json warning shown in last_error, and the loop that writes it to
// the bucket (coalesced kicks plus a heartbeat). Everything else updates
// the report through update and asks for a write with kick.
type statusReporter struct {
	log *slog.Logger
	m   *metrics
	key ed25519.PrivateKey // signs the report (nil: unsigned; sign.go)
	// refresh brings what the report reads from elsewhere up to date
	// before each write (backend and app health, mesh peers).
	refresh func(context.Context)
	// target is where the report goes: its key and the current store.
	target func() (string, bucket.Store)
	kickc  chan struct{}
	// off is set while the applied state marks this node removing or no
	// longer has it: `dynia node remove` deletes the node's report, and a
	// report written after that would bring a removed node back.
	off atomic.Bool

	mu     sync.Mutex // guards status and the config warning
	status report.Status
	// configWarning is a problem with pull.json the daemon runs despite
	// (keys ignored): reported as last_error whenever no other error is,
	// until a reload of a fixed file clears it.
	configWarning   string
	configWarningAt *time.Time
}

// snapshot returns a copy of the current status.
func (r *statusReporter) snapshot() report.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.status
	s.Backends = append([]report.BackendStatus(nil), s.Backends...)
	if s.App != nil {
		a := *s.App
		a.Logs = append([]string(nil), a.Logs...)
		s.App = &a
	}
	return s
}

func (r *statusReporter) update(f func(*report.Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

// kick asks the reporter to write soon (coalesced).
func (r *statusReporter) kick() {
	select {
	case r.kickc <- struct{}{}:
	default:
	}
}

// isMaster says whether keepalived's last reported state is MASTER.
func (r *statusReporter) isMaster() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status.VRRPState == report.VRRPMaster
}

// failoverProvenSince says whether an API answer proved the token after t.
func (r *statusReporter) failoverProvenSince(t time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.status.Failover
	return f.Ready && f.CheckedAt != nil && f.CheckedAt.After(t)
}

// loop writes status.json on kicks (at most one per statusMinGap) and
// as a heartbeat every statusEvery, because Spaces limits PUTs per object.
func (r *statusReporter) loop(ctx context.Context) {
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kickc:
		case <-tick.C:
		}
		r.write(ctx)
		if poll.Sleep(ctx, statusMinGap) != nil {
			return
		}
	}
}

func (r *statusReporter) write(ctx context.Context) {
	if r.off.Load() {
		return // being removed: a report now would outlive the node (pull.go, reportsFor)
	}
	if r.refresh != nil {
		r.refresh(ctx)
	}
	s := r.snapshot()
	s.UpdatedAt = time.Now().UTC()
	r.update(func(st *report.Status) { st.UpdatedAt = s.UpdatedAt })
	b, err := report.SignReport(s, r.key)
	if err != nil {
		r.log.Error("encode status", "err", err)
		return
	}
	key, store := r.target()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := store.Put(pctx, key, b, bucket.Cond{}); err != nil {
		r.m.statusErrors.Inc()
		r.log.Warn("write status report", "err", err)
		return
	}
	r.m.statusWrites.Inc()
}

// clearError clears the reported error once its cause is gone: any error
// after a good apply, a poll error after a good poll (prefix "" matches all).
// A config warning is never cleared here: it is reported again instead.
func (r *statusReporter) clearError(prefix string) {
	cleared := false
	r.update(func(s *report.Status) {
		if s.LastError != "" && s.LastError != r.configWarning && strings.HasPrefix(s.LastError, prefix) {
			s.LastError, s.LastErrorAt, cleared = r.configWarning, r.configWarningAt, true
		}
	})
	if cleared {
		r.kick()
	}
}

// setError reports msg as last_error (now), asking for a write when it
// is news.
func (r *statusReporter) setError(msg string) {
	now := time.Now().UTC()
	changed := false
	r.update(func(s *report.Status) {
		changed = s.LastError != msg
		s.LastError, s.LastErrorAt = msg, &now
	})
	if changed {
		r.kick()
	}
}

// setConfigWarning records (or, with "", clears) a pull.json problem the
// daemon runs despite; it stays in last_error until cleared.
func (r *statusReporter) setConfigWarning(msg string) {
	changed := false
	r.update(func(s *report.Status) {
		if msg == r.configWarning {
			return
		}
		changed = true
		old := r.configWarning
		r.configWarning, r.configWarningAt = msg, nil
		if msg != "" {
			now := time.Now().UTC()
			r.configWarningAt = &now
		}
		// Replace the shown error if it is the old warning or none; a
		// failed apply shown now keeps its place until it clears.
		if s.LastError == "" || s.LastError == old {
			s.LastError, s.LastErrorAt = r.configWarning, r.configWarningAt
		}
	})
	if changed {
		r.kick()
	}
}

// currentConfigWarning is the pull.json problem the daemon runs despite ("" if none).
func (r *statusReporter) currentConfigWarning() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.configWarning
}

// healthEvery is how often the node reads its HAProxy's view of every
// backend (a local socket, cheap) to report a change at once: the CLI
// tells a dead node from its peers' checks within seconds instead of
// waiting for its report to go stale.
const healthEvery = 2 * time.Second

// healthLoop refreshes backend and app health every healthEvery and asks
// for a report when either changed.
func (d *Daemon) healthLoop(ctx context.Context) {
	tick := time.NewTicker(healthEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if d.refreshHealth(ctx) {
			d.rep.kick()
		}
	}
}

// refreshHealth updates backend health (HAProxy's view) and the node's own
// app health (probed directly, so a provisioning node can report it before
// it is in any backend); it says whether either changed.
func (d *Daemon) refreshHealth(ctx context.Context) bool {
	backends, err := showBackends(ctx, d.paths.StatsSocket)
	if err != nil {
		backends = nil
	}
	healthy, known := d.refreshAppHealth(ctx)
	if url := d.appHealthURL(); url != "" && !known {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if req, err := http.NewRequestWithContext(hctx, http.MethodGet, url, nil); err == nil {
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
				healthy = resp.StatusCode == http.StatusOK
			}
		}
	}
	changed := false
	d.rep.update(func(s *report.Status) {
		changed = s.AppHealthy != healthy || !sameBackends(s.Backends, backends)
		s.Backends = backends
		s.AppHealthy = healthy
	})
	return changed
}

func sameBackends(a, b []report.BackendStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (d *Daemon) appHealthURL() string {
	d.amu.Lock()
	st := d.applied
	d.amu.Unlock()
	if st == nil {
		return ""
	}
	n := st.Node(d.nodeID)
	if n == nil || n.PrivateIP == "" {
		return ""
	}
	// Through this node's HAProxy app frontend, as peers check it: it maps
	// AppHealthURI to the health path of the release it forwards to.
	return "http://" + net.JoinHostPort(n.PrivateIP, strconv.Itoa(n.Port(st.App))) + render.AppHealthURI
}
