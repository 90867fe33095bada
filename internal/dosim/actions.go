package dosim

import (
	"net/http"
	"strconv"
	"time"
)

// Action is a snapshot of an asynchronous DO action.
type Action struct {
	ID           int
	Type         string // create, power_off, assign_ip, unassign_ip, ...
	Status       string // in-progress, completed, errored
	ResourceID   int    // droplet id, or a reserved IPv4 as uint32
	ResourceType string // droplet, reserved_ip
	Region       string
	StartedAt    time.Time
	CompletedAt  time.Time
}

type action struct {
	Action
	dueAt time.Time
	// apply performs the action's effect at completion (under the lock). It
	// returns false when the action errors.
	apply         func() bool
	dropletCreate bool   // completes when its droplet becomes active
	ripIP         string // reserved IP this action locks
	target        int    // droplet an assign_ip action moves the IP to
}

// PauseActions stops actions from completing until ResumeActions; droplets
// still become active.
func (s *Server) PauseActions() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused = true
}

// ResumeActions lets paused actions complete (those already due complete now).
func (s *Server) ResumeActions() {
	s.init()
	s.update(func() { s.paused = false })
	s.update(func() {}) // advance with the pause lifted
}

// Actions returns every action, oldest first.
func (s *Server) Actions() []Action {
	s.init()
	var out []Action
	s.update(func() {
		for _, id := range sortedKeys(s.actions) {
			out = append(out, s.actions[id].Action)
		}
	})
	return out
}

// newActionLocked records an in-progress action due after delay. apply may be
// nil (nothing happens at completion).
func (s *Server) newActionLocked(typ string, resID int, resType, region string, delay time.Duration, apply func()) *action {
	now := s.opts.Now().UTC()
	a := &action{Action: Action{ID: s.nextActionID, Type: typ, Status: "in-progress", ResourceID: resID,
		ResourceType: resType, Region: region, StartedAt: now.Truncate(time.Second)}, dueAt: now.Add(delay)}
	if apply != nil {
		a.apply = func() bool { apply(); return true }
	}
	s.nextActionID++
	s.actions[a.ID] = a
	if !a.dropletCreate {
		s.scheduleLocked(delay)
	}
	return a
}

// scheduleLocked makes sure time-driven state advances after d even if no
// request arrives (hooks must fire for the sandbox without polling).
func (s *Server) scheduleLocked(d time.Duration) {
	if s.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d+time.Millisecond, func() {
		s.update(func() { delete(s.timers, t) })
	})
	s.timers[t] = true
}

// advanceLocked applies every transition whose time has come: droplets
// becoming active and actions completing.
func (s *Server) advanceLocked() {
	now := s.opts.Now()
	for _, id := range sortedKeys(s.droplets) {
		d := s.droplets[id]
		if d.Status != "new" || now.Before(d.activeAt) || s.neverActive[strconv.Itoa(d.ID)] || s.neverActive[d.Name] {
			continue
		}
		d.Status = "active"
		if a := s.actions[d.createActionID]; a != nil {
			a.Status, a.CompletedAt = "completed", now.UTC().Truncate(time.Second)
		}
		snap := d.snapshot()
		if h := s.opts.OnDropletActive; h != nil {
			s.queueHook(func() { h(snap) })
		}
	}
	if s.paused {
		return
	}
	for _, id := range sortedKeys(s.actions) {
		a := s.actions[id]
		if a.Status != "in-progress" || a.dropletCreate || now.Before(a.dueAt) {
			continue
		}
		a.Status = "completed"
		if a.apply != nil && !a.apply() {
			a.Status = "errored"
		}
		a.CompletedAt = now.UTC().Truncate(time.Second)
	}
}

func (s *Server) actionJSON(a *action) map[string]any {
	var completed any
	if a.Status != "in-progress" {
		completed = a.CompletedAt.Format(time.RFC3339)
	}
	return map[string]any{
		"id": a.ID, "status": a.Status, "type": a.Type, "started_at": a.StartedAt.Format(time.RFC3339),
		"completed_at": completed, "resource_id": a.ResourceID, "resource_type": a.ResourceType,
		"region": s.regionJSON(a.Region), "region_slug": a.Region,
	}
}

func (s *Server) actionsFor(resType string, resID int) []map[string]any {
	var out []map[string]any
	for _, id := range sortedKeys(s.actions) {
		if a := s.actions[id]; a.ResourceType == resType && a.ResourceID == resID {
			out = append(out, s.actionJSON(a))
		}
	}
	return out
}

func (s *Server) listActions(q *request) {
	q.do(func() (int, any) {
		var out []map[string]any
		for _, id := range sortedKeys(s.actions) {
			out = append(out, s.actionJSON(s.actions[id]))
		}
		return paged(q, "actions", out)
	})
}

func (s *Server) getAction(q *request) {
	q.do(func() (int, any) {
		id, _ := strconv.Atoi(q.param("id"))
		a := s.actions[id]
		if a == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"action": s.actionJSON(a)}
	})
}
