package ops

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
)

// Health is what dynia concludes about a ready node from everything it
// can see now. Code switches on it; the table prints it.
type Health string

// Healths, from best to worst.
const (
	// HealthUp: droplet active, fresh report, app healthy, on the newest
	// generation, peers' checks pass, failover ready.
	HealthUp Health = "up"
	// HealthApplying: serving, not yet on the newest generation.
	HealthApplying Health = "applying"
	// HealthDegraded: serving, but something needs attention (the node
	// could not move the Reserved IP to itself, or reports an error).
	HealthDegraded Health = "degraded"
	// HealthUpgradeRequired: serving its last good config, but its
	// dynia-pull is older than the state's min_pull_version and applies
	// no new state until the node is replaced or upgraded.
	HealthUpgradeRequired Health = "upgrade-required"
	// HealthStarting: joined recently and not serving yet.
	HealthStarting Health = "starting"
	// HealthDown: not serving: droplet off, peers' checks fail, app
	// unhealthy or VRRP FAULT.
	HealthDown Health = "down"
	// HealthStale: no report for ReportStaleAfter and nothing else says
	// whether it serves.
	HealthStale Health = "stale"
	// HealthUnknown: no report at all.
	HealthUnknown Health = "unknown"
)

// Serves says whether a node in this health is proven to serve now: what
// repair-ha requires before it lets a node hold the Reserved IP.
func (h Health) Serves() bool {
	return h == HealthUp || h == HealthApplying || h == HealthDegraded || h == HealthUpgradeRequired
}

// A node writes its report on every change (VRRP, backend health, errors)
// and otherwise about once a minute (Spaces limits writes per object);
// three missed beats is stale.
const ReportStaleAfter = 3 * time.Minute

// startupGrace is how long a new node may be unhealthy and still be shown as
// "starting" rather than "down".
const startupGrace = 2 * time.Minute

// Evidence is what dynia knows about a cluster's nodes right now: the
// state (desired), the DO API (placement: droplet status, the Reserved
// IP's holder) and the node reports (observed). The DO half is missing
// (APIErr set) when there is no token or the API failed: health then rests
// on the reports alone.
type Evidence struct {
	st      *cluster.State
	reports map[string]*report.Status // by node id; nil: no report
	// refused holds, by node id, why a node's report was not believed
	// (report.ReportError): such a node counts as unheard-of, and its
	// report is in no other map, so it drives nothing.
	refused  map[string]string
	droplets map[int]cloud.Droplet // by droplet id, from the cluster tag
	// Holder is the droplet holding the Reserved IP (0: unassigned), valid
	// when HolderKnown.
	Holder      int
	HolderKnown bool
	APIErr      error
	now         time.Time
}

// NodeHealth is one node's health and the evidence for it, in words.
type NodeHealth struct {
	Health Health
	Reason string
}

// GatherEvidence reads every node's report and, with cl, the cluster's
// droplets and the Reserved IP's holder (two API reads). An unreadable
// report counts as missing; a failed API read leaves the DO half empty.
func GatherEvidence(ctx context.Context, store *cluster.Store, cl *cloud.Client, st *cluster.State) (*Evidence, error) {
	e := &Evidence{st: st, reports: map[string]*report.Status{}, refused: map[string]string{}, now: time.Now()}
	for _, n := range st.Nodes {
		r, refused, err := ReadReport(ctx, store, st, n.ID)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		if refused != "" {
			e.refused[n.ID] = refused
			continue
		}
		e.reports[n.ID] = r
	}
	if cl == nil {
		e.APIErr = errors.New("no DigitalOcean token")
		return e, nil
	}
	ds, err := cl.ListDropletsByTag(ctx, cloud.ClusterTag(st.Name))
	if err != nil {
		e.APIErr = err
		return e, nil
	}
	e.droplets = map[int]cloud.Droplet{}
	for _, d := range ds {
		e.droplets[d.ID] = d
	}
	if st.ReservedIP != "" {
		r, err := cl.GetReservedIP(ctx, st.ReservedIP)
		if err != nil {
			e.APIErr = err
			return e, nil
		}
		e.Holder, e.HolderKnown = r.DropletID, true
	}
	return e, nil
}

// Report is the node's last report (nil if none, or not believed).
func (e *Evidence) Report(id string) *report.Status { return e.reports[id] }

// Refused is why the node's report was not believed ("": it was, or
// there is none).
func (e *Evidence) Refused(id string) string { return e.refused[id] }

// Droplet is the cluster's droplet id as the API listed it (false: not
// listed, or the DO half is missing).
func (e *Evidence) Droplet(id int) (cloud.Droplet, bool) {
	d, ok := e.droplets[id]
	return d, ok
}

// HolderNode is the node whose droplet holds the Reserved IP, or nil.
func (e *Evidence) HolderNode() *cluster.Node {
	if !e.HolderKnown || e.Holder == 0 {
		return nil
	}
	for i := range e.st.Nodes {
		if e.st.Nodes[i].DropletID == e.Holder {
			return &e.st.Nodes[i]
		}
	}
	return nil
}

// Fresh says whether r was written within ReportStaleAfter.
func (e *Evidence) Fresh(r *report.Status) bool {
	return r != nil && e.now.Sub(r.UpdatedAt) <= ReportStaleAfter
}

// PeersSee counts the fresh reports of other nodes whose HAProxy checks n:
// how many see it UP, how many DOWN.
func (e *Evidence) PeersSee(id string) (up, down int) {
	for peer, r := range e.reports {
		if peer == id || !e.Fresh(r) {
			continue
		}
		for _, b := range r.Backends {
			if b.ID != id {
				continue
			}
			switch b.Status {
			case "UP", "DRAIN":
				up++
			case "DOWN":
				down++
			}
		}
	}
	return up, down
}

// Of is node n's health. Placement beats observation: a droplet the API
// says is off is down whatever its last report said; then the peers'
// checks (a node that stopped reporting cannot say it is dead, its peers
// can); then its own report.
func (e *Evidence) Of(n cluster.Node) NodeHealth {
	if e.droplets != nil && n.DropletID != 0 {
		d, ok := e.droplets[n.DropletID]
		switch {
		case !ok:
			return NodeHealth{HealthDown, fmt.Sprintf("droplet %d no longer exists", n.DropletID)}
		case d.Status == "off" || d.Status == "archive":
			return NodeHealth{HealthDown, fmt.Sprintf("droplet %d is %s", n.DropletID, d.Status)}
		}
	}
	r := e.reports[n.ID]
	young := e.now.Sub(n.CreatedAt) < startupGrace
	if why := e.refused[n.ID]; why != "" {
		// Whatever it claims, it is not the node speaking: its peers'
		// checks (below) are still evidence, its own words are not.
		if up, down := e.PeersSee(n.ID); down > 0 && up == 0 {
			return NodeHealth{HealthDown, fmt.Sprintf("%d peer(s) fail its health check; its own %s", down, why)}
		}
		return NodeHealth{HealthUnknown, why}
	}
	if r == nil {
		if young {
			return NodeHealth{HealthStarting, "no report yet (booting)"}
		}
		return NodeHealth{HealthUnknown, "no report from the node"}
	}
	if up, down := e.PeersSee(n.ID); down > 0 && up == 0 {
		return NodeHealth{HealthDown, fmt.Sprintf("%d peer(s) fail its health check", down)}
	}
	age := e.now.Sub(r.UpdatedAt).Round(time.Second)
	if !e.Fresh(r) {
		return NodeHealth{HealthStale, fmt.Sprintf("last report %v ago", age)}
	}
	if r.VRRPState == report.VRRPFault || !r.AppHealthy {
		why := "its app does not answer its health check"
		if r.VRRPState == report.VRRPFault {
			why = "VRRP FAULT (its HAProxy does not answer)"
		}
		if young {
			return NodeHealth{HealthStarting, why}
		}
		return NodeHealth{HealthDown, why}
	}
	if r.UpgradeRequired != "" {
		return NodeHealth{HealthUpgradeRequired, fmt.Sprintf("dynia-pull %s refuses the state, which needs %s: it serves its last good config (generation %d); replace the node with a newer image",
			cmp.Or(r.Version, "-"), r.UpgradeRequired, r.AppliedGeneration)}
	}
	if r.AppliedGeneration < e.st.Generation {
		return NodeHealth{HealthApplying, fmt.Sprintf("applied generation %d of %d", r.AppliedGeneration, e.st.Generation)}
	}
	if !r.Failover.Ready && r.Failover.CheckedAt != nil {
		return NodeHealth{HealthDegraded, "failover not ready: " + r.Failover.Error}
	}
	if r.StateError != "" {
		return NodeHealth{HealthDegraded, "refuses the state in the bucket: " + r.StateError}
	}
	if r.LastError != "" {
		return NodeHealth{HealthDegraded, r.LastError}
	}
	return NodeHealth{HealthUp, ""}
}

// Status is the STATUS column: the lifecycle of a node that is not ready,
// else its health.
func (e *Evidence) Status(n cluster.Node) (string, NodeHealth) {
	h := e.Of(n)
	switch n.Lifecycle {
	case cluster.Provisioning, cluster.Draining, cluster.Removing:
		return string(n.Lifecycle), h
	}
	return string(h.Health), h
}

// PeersCheck says whether any other node's fresh report lists HAProxy
// backends at all (real nodes do; a node that lists none cannot vouch).
func (e *Evidence) PeersCheck(id string) bool {
	for peer, r := range e.reports {
		if peer != id && e.Fresh(r) && len(r.Backends) > 0 {
			return true
		}
	}
	return false
}

// ReadReport reads a node's status.json (written by dynia-pull), verified
// against st, whose node table holds each node's report key
// (report.ReadReport): a node that has not reported yet is nil; a report
// that cannot be believed (not signed with its node's key: forged, or
// replaced) is nil too, with why in refused, so the node counts as
// unheard-of and nothing acts on what it says. err is a failed read.
func ReadReport(ctx context.Context, store *cluster.Store, st *cluster.State, id string) (r *report.Status, refused string, err error) {
	r, err = report.ReadReport(ctx, store.B, st, id)
	var re *report.ReportError
	if errors.As(err, &re) {
		return nil, re.Reason, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("node %s: %w", id, err)
	}
	return r, "", nil
}

// FollowFailover makes the state follow an automatic failover before a
// command writes it: when the Reserved IP sits on a ready node that serves
// and the state calls another node active, that holder becomes the active
// node (top priority), a step reported through d.Report. The IP is never
// moved back: the nodes moved it for a reason. A cluster whose placement
// cannot be read is left as it is; a token DigitalOcean refuses is an
// error (*cloud.AuthError), with nothing written.
func FollowFailover(ctx context.Context, d Deps, st *cluster.State) (*cluster.State, error) {
	if st.ReservedIP == "" || d.Cloud == nil {
		return st, nil
	}
	ev, err := GatherEvidence(ctx, d.Store, d.Cloud, st)
	if err != nil {
		return nil, err
	}
	// A token DigitalOcean refuses stops the command here, before its
	// first write to the state (`node add` would otherwise commit its
	// provisioning nodes, then fail creating their droplets).
	var ae *cloud.AuthError
	if errors.As(ev.APIErr, &ae) {
		return nil, ev.APIErr
	}
	h := ev.HolderNode()
	if !serves(ev, h) || h.Role == cluster.RoleActive {
		return st, nil
	}
	id := h.ID
	err = d.Report.Step(fmt.Sprintf("record %s as the active node (it holds the Reserved IP since a failover; the state said %s)", id, ActiveID(st)), func() (string, error) {
		st, err = d.Store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, id) })
		return "", err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// ActiveID is the id of st's active node, "-" when there is none (as
// tables and messages print it).
func ActiveID(st *cluster.State) string {
	if a := st.Active(); a != nil {
		return a.ID
	}
	return "-"
}
