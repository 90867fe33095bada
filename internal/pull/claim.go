package pull

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/failover"
	"github.com/dynia/dynia/internal/report"
)

// ReservedIPClaimer moves the cluster's Reserved IP to this node
// (failover.Claimer with the node token). It is handed the state this node
// last applied, from memory: at failover time the claim needs neither the
// bucket nor the metadata service.
type ReservedIPClaimer interface {
	// Claim is called on a MASTER transition: move the IP here if it
	// should be.
	Claim(ctx context.Context, st *cluster.State, reason string) (failover.Result, error)
	// Check is called every CheckEvery while MASTER: the level-triggered
	// repair of a MASTER that does not hold the IP.
	Check(ctx context.Context, st *cluster.State) (failover.Result, error)
	// Verify checks the credentials a claim needs (one cheap API read).
	Verify(ctx context.Context) error
}

// CheckEvery is how often a MASTER checks that it holds the Reserved IP.
// Most checks cost no DO API call (failover.Claimer.Check).
const CheckEvery = 5 * time.Second

// verifyEvery is how often the node token is checked when nothing else
// proved it works: 6 API calls an hour.
const verifyEvery = 10 * time.Minute

// claimTimeout bounds one claim or check (API reads, the assign and its
// action): a claim stuck on an unreachable API must not keep the loop
// from the next attempt. DO's assignments take seconds (its spec's
// example: about 11 s).
const claimTimeout = time.Minute

func (d *Daemon) appliedState() *cluster.State {
	d.amu.Lock()
	defer d.amu.Unlock()
	return d.applied
}

// claimLoop owns the Reserved IP side of the node: it calls the claimer on
// MASTER transitions and every CheckEvery while MASTER, checks the node
// token, and records each outcome in the report. Its only state is its
// two request channels; what it reads (the VRRP state, the applied state)
// belongs to the reporter and the daemon.
type claimLoop struct {
	log     *slog.Logger
	m       *metrics
	rep     *statusReporter
	claimer ReservedIPClaimer // nil: no Reserved IP handling
	nodeID  string
	applied func() *cluster.State
	claims  chan string
	verify  chan struct{} // check the claimer's credentials now (token file replaced)
}

func newClaimLoop(log *slog.Logger, m *metrics, rep *statusReporter, claimer ReservedIPClaimer, nodeID string, applied func() *cluster.State) *claimLoop {
	return &claimLoop{log: log, m: m, rep: rep, claimer: claimer, nodeID: nodeID, applied: applied,
		claims: make(chan string, 1), verify: make(chan struct{}, 1)}
}

// request queues a claim for reason (a MASTER transition); a claim already
// pending covers it.
func (c *claimLoop) request(reason string) {
	if c.claimer == nil {
		return
	}
	select {
	case c.claims <- reason:
	default: // a claim is already pending
	}
}

// run calls the claimer for each MASTER transition, and every
// CheckEvery while MASTER, one call at a time, so the fifo reader never
// blocks on the DO API.
func (c *claimLoop) run(ctx context.Context) {
	if c.claimer == nil {
		return
	}
	tick := time.NewTicker(CheckEvery)
	defer tick.Stop()
	for {
		var reason string
		select {
		case <-ctx.Done():
			return
		case reason = <-c.claims:
		case <-tick.C:
			if !c.rep.isMaster() {
				continue
			}
			reason = "check"
		}
		st := c.applied()
		if st != nil {
			if self := st.Node(c.nodeID); self != nil && self.Lifecycle == cluster.Removing {
				c.log.Debug("MASTER while being removed; not claiming the Reserved IP")
				continue
			}
		}
		// A claim queued while MASTER may be read after keepalived moved the
		// node to BACKUP or FAULT (or after a slow Claim): the new MASTER is
		// claiming, and taking the IP back would black-hole it. So the VRRP
		// state is read again right before every DO API call. A transition
		// during the call itself is left to the new MASTER's claim and
		// its every-CheckEvery repair.
		if !c.rep.isMaster() {
			c.log.Info("no longer MASTER; reserved ip claim dropped", "reason", reason)
			continue
		}
		var res failover.Result
		var err error
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		if reason == "check" {
			res, err = c.claimer.Check(cctx, st)
		} else {
			res, err = c.claimer.Claim(cctx, st, reason)
		}
		cancel()
		c.m.apiCalls.Add(float64(res.APICalls))
		c.record(reason, res, err)
	}
}

// record puts a claim's outcome in the status report and the log. A
// condition that lasts (MASTER without the IP while a healthy holder keeps
// it) is logged and reported once, when it starts and when it ends.
func (c *claimLoop) record(reason string, res failover.Result, err error) {
	if err != nil {
		c.recordError(reason, err)
		return
	}
	now := time.Now().UTC()
	note := ""
	if res.Outcome == failover.Yielding {
		note = "MASTER without the Reserved IP: " + res.Reason + "; checking the DO API with backoff"
	}
	var prevNote string
	c.rep.update(func(s *report.Status) {
		prevNote = s.ReservedIP.Note
		s.ReservedIP.Note = note
		s.ReservedIP.Held = s.VRRPState == report.VRRPMaster && res.Held()
		if res.Moved() {
			s.ReservedIP.LastMoveAt, s.ReservedIP.LastMoveReason = &now, res.Reason
		}
		if res.APICalls > 0 {
			// An API answer proves the token works.
			s.Failover = report.FailoverStatus{Ready: true, CheckedAt: &now}
		}
	})
	switch {
	case res.Outcome == failover.Assigned:
		c.log.Info("reserved ip moved here", "reason", reason, "note", res.Reason)
	case note != "" && note != prevNote:
		c.log.Warn("MASTER, but a healthy holder keeps the reserved ip (VRRP cut between nodes?)", "note", res.Reason)
	case note == "" && prevNote != "":
		c.log.Info("reserved ip condition cleared", "was", prevNote, "now", res.Reason)
	case reason != "check":
		c.log.Info("reserved ip not moved", "reason", reason, "note", res.Reason, "outcome", res.Outcome)
	}
	c.rep.clearError("claim reserved ip")
	if res.Moved() || reason != "check" || note != prevNote {
		c.rep.kick()
	}
}

// recordError reports a failed claim or check; an answer refusing the
// token or no answer at all also means failover is not ready.
func (c *claimLoop) recordError(reason string, err error) {
	now := time.Now().UTC()
	c.rep.update(func(s *report.Status) {
		s.LastError, s.LastErrorAt = "claim reserved ip: "+err.Error(), &now
		switch {
		case errors.Is(err, cloud.ErrAuth):
			s.Failover = report.FailoverStatus{Ready: false, Error: "claim reserved ip: " + err.Error(), CheckedAt: &now}
		case unreachable(err):
			// No answer from the DO API: this node cannot move the IP
			// now, whatever its token. The next claim or check that
			// gets an answer makes it ready again.
			s.Failover = report.FailoverStatus{Ready: false, Error: "claim reserved ip: cannot reach the DO API: " + err.Error(), CheckedAt: &now}
		}
	})
	c.log.Error("claim reserved ip", "reason", reason, "err", err)
	c.rep.kick()
}

// verifyLoop checks the claimer's credentials at start, every verifyEvery
// and when the token file is replaced, so a node that could not move the
// Reserved IP says so before a failover needs it.
func (c *claimLoop) verifyLoop(ctx context.Context) {
	if c.claimer == nil {
		now := time.Now().UTC()
		c.rep.update(func(s *report.Status) {
			s.Failover = report.FailoverStatus{Error: "no node token (do_token_file) configured", CheckedAt: &now}
		})
		return
	}
	tick := time.NewTicker(verifyEvery)
	defer tick.Stop()
	forced := true // at start
	for {
		if forced || !c.rep.failoverProvenSince(time.Now().Add(-verifyEvery)) {
			c.verifyOnce(ctx)
		}
		// else a claim or check proved the token meanwhile: no extra call.
		forced = false
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.verify:
			forced = true
		}
	}
}

// verifyOnce checks the token and reports a change of failover readiness.
func (c *claimLoop) verifyOnce(ctx context.Context) {
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := c.claimer.Verify(vctx)
	cancel()
	if ctx.Err() != nil {
		return
	}
	var apiErr *cloud.APIError
	if err == nil || errors.As(err, &apiErr) {
		c.m.apiCalls.Inc()
	}
	now := time.Now().UTC()
	changed := false
	c.rep.update(func(s *report.Status) {
		next := report.FailoverStatus{Ready: err == nil, CheckedAt: &now}
		if err != nil {
			next.Error = err.Error()
		}
		changed = next.Ready != s.Failover.Ready || next.Error != s.Failover.Error
		s.Failover = next
	})
	if changed {
		if err != nil {
			c.log.Error("failover not ready: the node cannot move the reserved ip", "err", err)
		} else {
			c.log.Info("failover ready: node token works")
		}
		c.rep.kick()
	}
}

// VerifyNow asks for a credential check at once (the token file changed).
func (d *Daemon) VerifyNow() {
	select {
	case d.claim.verify <- struct{}{}:
	default:
	}
}

// unreachable says whether err means the DO API gave no answer at all
// (refused, reset, timed out), as opposed to an answer refusing the call.
func unreachable(err error) bool {
	var ae *cloud.APIError
	return !errors.As(err, &ae) && cloud.Transient(err)
}
