package pull

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
)

// snapshot returns a copy of the current status.
func (d *Daemon) snapshot() report.Status {
	d.smu.Lock()
	defer d.smu.Unlock()
	s := d.status
	s.Backends = append([]report.BackendStatus(nil), s.Backends...)
	if s.App != nil {
		a := *s.App
		a.Logs = append([]string(nil), a.Logs...)
		s.App = &a
	}
	return s
}

func (d *Daemon) updateStatus(f func(*report.Status)) {
	d.smu.Lock()
	f(&d.status)
	d.smu.Unlock()
}

// kickStatus asks the reporter to write soon (coalesced).
func (d *Daemon) kickStatus() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// reportLoop writes status.json on kicks (at most one per statusMinGap) and
// as a heartbeat every statusEvery, because Spaces limits PUTs per object.
func (d *Daemon) reportLoop(ctx context.Context) {
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		case <-tick.C:
		}
		d.writeStatus(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(statusMinGap):
		}
	}
}

func (d *Daemon) writeStatus(ctx context.Context) {
	if d.noReports.Load() {
		return // being removed: a report now would outlive the node (pull.go, reportsFor)
	}
	d.refreshHealth(ctx)
	d.refreshMesh()
	s := d.snapshot()
	s.UpdatedAt = time.Now().UTC()
	d.updateStatus(func(st *report.Status) { st.UpdatedAt = s.UpdatedAt })
	b, err := report.SignReport(s, d.reportKey)
	if err != nil {
		d.log.Error("encode status", "err", err)
		return
	}
	set, store := d.current()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := store.Put(pctx, cluster.StatusKey(set.Cluster, set.NodeID), b, bucket.Cond{}); err != nil {
		d.m.statusErrors.Inc()
		d.log.Warn("write status report", "err", err)
		return
	}
	d.m.statusWrites.Inc()
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
			d.kickStatus()
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
	d.updateStatus(func(s *report.Status) {
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
