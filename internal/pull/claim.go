package pull

import (
	"context"
	"errors"
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

// isMaster says whether keepalived's last reported state is MASTER.
func (d *Daemon) isMaster() bool {
	d.smu.Lock()
	defer d.smu.Unlock()
	return d.status.VRRPState == report.VRRPMaster
}

func (d *Daemon) appliedState() *cluster.State {
	d.amu.Lock()
	defer d.amu.Unlock()
	return d.applied
}

// claimLoop calls the claimer for each MASTER transition, and every
// CheckEvery while MASTER, one call at a time, so the fifo reader never
// blocks on the DO API.
func (d *Daemon) claimLoop(ctx context.Context) {
	if d.claimer == nil {
		return
	}
	tick := time.NewTicker(CheckEvery)
	defer tick.Stop()
	for {
		var reason string
		select {
		case <-ctx.Done():
			return
		case reason = <-d.claims:
		case <-tick.C:
			if !d.isMaster() {
				continue
			}
			reason = "check"
		}
		st := d.appliedState()
		if st != nil {
			if self := st.Node(d.nodeID); self != nil && self.Lifecycle == cluster.Removing {
				d.log.Debug("MASTER while being removed; not claiming the Reserved IP")
				continue
			}
		}
		// A claim queued while MASTER may be read after keepalived moved the
		// node to BACKUP or FAULT (or after a slow Claim): the new MASTER is
		// claiming, and taking the IP back would black-hole it. So the VRRP
		// state is read again right before every DO API call. A transition
		// during the call itself is left to the new MASTER's claim and
		// its every-CheckEvery repair.
		if !d.isMaster() {
			d.log.Info("no longer MASTER; reserved ip claim dropped", "reason", reason)
			continue
		}
		var res failover.Result
		var err error
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		if reason == "check" {
			res, err = d.claimer.Check(cctx, st)
		} else {
			res, err = d.claimer.Claim(cctx, st, reason)
		}
		cancel()
		d.m.apiCalls.Add(float64(res.APICalls))
		d.recordClaim(reason, res, err)
	}
}

// recordClaim puts a claim's outcome in the status report and the log. A
// condition that lasts (MASTER without the IP while a healthy holder keeps
// it) is logged and reported once, when it starts and when it ends.
func (d *Daemon) recordClaim(reason string, res failover.Result, err error) {
	now := time.Now().UTC()
	note := ""
	if res.Yielding {
		note = "MASTER without the Reserved IP: " + res.Reason + "; checking the DO API with backoff"
	}
	var prevNote string
	d.updateStatus(func(s *report.Status) {
		if err != nil {
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
			return
		}
		prevNote = s.ReservedIP.Note
		s.ReservedIP.Note = note
		s.ReservedIP.Held = s.VRRPState == report.VRRPMaster && res.Held
		if res.Moved {
			s.ReservedIP.LastMoveAt, s.ReservedIP.LastMoveReason = &now, res.Reason
		}
		if res.APICalls > 0 {
			// An API answer proves the token works.
			s.Failover = report.FailoverStatus{Ready: true, CheckedAt: &now}
		}
	})
	switch {
	case err != nil:
		d.log.Error("claim reserved ip", "reason", reason, "err", err)
		d.kickStatus()
		return
	case res.Moved:
		d.log.Info("reserved ip moved here", "reason", reason, "note", res.Reason)
	case note != "" && note != prevNote:
		d.log.Warn("MASTER, but a healthy holder keeps the reserved ip (VRRP cut between nodes?)", "note", res.Reason)
	case note == "" && prevNote != "":
		d.log.Info("reserved ip condition cleared", "was", prevNote, "now", res.Reason)
	case reason != "check":
		d.log.Info("reserved ip not moved", "reason", reason, "note", res.Reason)
	}
	d.clearError("claim reserved ip")
	if res.Moved || reason != "check" || note != prevNote {
		d.kickStatus()
	}
}

// verifyLoop checks the claimer's credentials at start, every verifyEvery
// and when the token file is replaced, so a node that could not move the
// Reserved IP says so before a failover needs it.
func (d *Daemon) verifyLoop(ctx context.Context) {
	if d.claimer == nil {
		now := time.Now().UTC()
		d.updateStatus(func(s *report.Status) {
			s.Failover = report.FailoverStatus{Error: "no node token (do_token_file) configured", CheckedAt: &now}
		})
		return
	}
	tick := time.NewTicker(verifyEvery)
	defer tick.Stop()
	forced := true // at start
	for {
		if !forced && d.failoverProvenSince(time.Now().Add(-verifyEvery)) {
			// A claim or check proved the token meanwhile: no extra call.
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			case <-d.verify:
				forced = true
			}
			continue
		}
		forced = false
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := d.claimer.Verify(vctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		var apiErr *cloud.APIError
		if err == nil || errors.As(err, &apiErr) {
			d.m.apiCalls.Inc()
		}
		now := time.Now().UTC()
		changed := false
		d.updateStatus(func(s *report.Status) {
			next := report.FailoverStatus{Ready: err == nil, CheckedAt: &now}
			if err != nil {
				next.Error = err.Error()
			}
			changed = next.Ready != s.Failover.Ready || next.Error != s.Failover.Error
			s.Failover = next
		})
		if changed {
			if err != nil {
				d.log.Error("failover not ready: the node cannot move the reserved ip", "err", err)
			} else {
				d.log.Info("failover ready: node token works")
			}
			d.kickStatus()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.verify:
			forced = true
		}
	}
}

// failoverProvenSince says whether an API answer proved the token after t.
func (d *Daemon) failoverProvenSince(t time.Time) bool {
	d.smu.Lock()
	defer d.smu.Unlock()
	f := d.status.Failover
	return f.Ready && f.CheckedAt != nil && f.CheckedAt.After(t)
}

// VerifyNow asks for a credential check at once (the token file changed).
func (d *Daemon) VerifyNow() {
	select {
	case d.verify <- struct{}{}:
	default:
	}
}

// unreachable says whether err means the DO API gave no answer at all
// (refused, reset, timed out), as opposed to an answer refusing the call.
func unreachable(err error) bool {
	var ae *cloud.APIError
	return !errors.As(err, &ae) && cloud.Transient(err)
}
