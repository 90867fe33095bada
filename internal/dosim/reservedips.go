package dosim

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// ReservedIP is a snapshot of a reserved IPv4.
type ReservedIP struct {
	IP        string
	Region    string
	DropletID int // 0 = unassigned
	Locked    bool
	ProjectID string
}

type rip struct {
	ReservedIP
}

// ReservedIPs returns every reserved IP, ordered by address.
func (s *Server) ReservedIPs() []ReservedIP {
	s.init()
	var out []ReservedIP
	s.update(func() {
		for _, ip := range sortedRIPs(s.rips) {
			r := s.rips[ip].ReservedIP
			r.Locked = s.ripLockedLocked(ip)
			out = append(out, r)
		}
	})
	return out
}

// UnassignReservedIP unassigns ip as if done in the console (drift): no API
// call is recorded, the hook fires.
func (s *Server) UnassignReservedIP(ip string) bool {
	s.init()
	found := false
	s.update(func() {
		if rp := s.rips[ip]; rp != nil {
			found = true
			if rp.DropletID != 0 {
				rp.DropletID = 0
				if h := s.opts.OnReservedIPAssign; h != nil {
					s.queueHook(func() { h(ip, 0) })
				}
			}
		}
	})
	return found
}

// rootKey is reserved_ip or floating_ip, after the path the client used.
func rootKey(q *request) string {
	if strings.HasPrefix(q.r.URL.Path, "/v2/floating_ips") {
		return "floating_ip"
	}
	return "reserved_ip"
}

func (s *Server) ripLockedLocked(ip string) bool {
	for _, a := range s.actions {
		if a.ripIP == ip && a.Status == "in-progress" {
			return true
		}
	}
	return false
}

func (s *Server) ripJSON(rp *rip) map[string]any {
	var d any
	if dd := s.droplets[rp.DropletID]; dd != nil {
		d = s.dropletJSON(dd)
	}
	return map[string]any{"ip": rp.IP, "region": s.regionJSON(rp.Region), "droplet": d,
		"locked": s.ripLockedLocked(rp.IP), "project_id": rp.ProjectID}
}

// dropletHoldsOtherRIPLocked reports whether droplet id holds, or is about to
// receive, a reserved IP other than ip.
func (s *Server) dropletHoldsOtherRIPLocked(id int, ip string) bool {
	for _, rp := range s.rips {
		if rp.IP != ip && rp.DropletID == id {
			return true
		}
	}
	for _, a := range s.actions {
		if a.Status == "in-progress" && a.ripIP != "" && a.ripIP != ip && a.Type == "assign_ip" && a.target == id {
			return true
		}
	}
	return false
}

func (s *Server) listReservedIPs(q *request) {
	q.do(func() (int, any) {
		var out []map[string]any
		for _, ip := range sortedRIPs(s.rips) {
			out = append(out, s.ripJSON(s.rips[ip]))
		}
		return paged(q, rootKey(q)+"s", out)
	})
}

func (s *Server) getReservedIP(q *request) {
	q.do(func() (int, any) {
		rp := s.rips[q.param("ip")]
		if rp == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{rootKey(q): s.ripJSON(rp)}
	})
}

func (s *Server) createReservedIP(q *request) {
	var req struct {
		DropletID int    `json:"droplet_id"`
		Region    string `json:"region"`
		ProjectID string `json:"project_id"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		if req.DropletID != 0 && req.Region != "" {
			return fail(http.StatusUnprocessableEntity, "Cannot specify Droplet and region, they are mutually exclusive.")
		}
		if req.DropletID == 0 && req.Region == "" {
			return fail(http.StatusUnprocessableEntity, "Either a droplet_id or a region is required.")
		}
		if len(s.rips) >= s.opts.ReservedIPLimit {
			return fail(http.StatusUnprocessableEntity, "You have reached your reserved IP limit of %d.", s.opts.ReservedIPLimit)
		}
		region := req.Region
		var d *droplet
		if req.DropletID != 0 {
			d = s.droplets[req.DropletID]
			if d == nil {
				return fail(http.StatusUnprocessableEntity, "The Droplet %d could not be found.", req.DropletID)
			}
			if msg := s.assignableLocked(d, ""); msg != "" {
				return fail(http.StatusUnprocessableEntity, "%s", msg)
			}
			region = d.Region
		} else if !s.hasRegion(region) {
			return fail(http.StatusUnprocessableEntity, "Region %q is not available.", region)
		}
		addr, ok := allocFrom(s.opts.PublicRange, 2, s.usedPublic)
		if !ok {
			return fail(http.StatusUnprocessableEntity, "No reserved IPs are available in %s.", region)
		}
		s.usedPublic[addr] = true
		projectID := req.ProjectID
		if projectID == "" {
			projectID = "746c6152-2fa2-11ed-92d3-27aaa54e4988"
		}
		ip := addr.String()
		rp := &rip{ReservedIP{IP: ip, Region: region, ProjectID: projectID}}
		s.rips[ip] = rp
		links := map[string]any{}
		if d != nil {
			a := s.assignActionLocked(rp, d.ID)
			links["droplets"] = []any{map[string]any{"id": d.ID, "rel": "droplet", "href": q.abs("/v2/droplets/" + strconv.Itoa(d.ID))}}
			links["actions"] = []any{map[string]any{"id": a.ID, "rel": "assign_ip", "href": q.abs("/v2/actions/" + strconv.Itoa(a.ID))}}
		}
		return http.StatusAccepted, map[string]any{rootKey(q): s.ripJSON(rp), "links": links}
	})
}

// assignableLocked explains why d cannot receive reserved IP ip ("" = it can).
func (s *Server) assignableLocked(d *droplet, ip string) string {
	if !d.PublicNetworking {
		return "Droplets created without public networking cannot be assigned a reserved IP."
	}
	if s.dropletHoldsOtherRIPLocked(d.ID, ip) {
		return "The Droplet already has a reserved IP assigned."
	}
	return ""
}

func (s *Server) assignActionLocked(rp *rip, dropletID int) *action {
	ip := rp.IP
	a := s.newActionLocked("assign_ip", ipToUint32(ip), "reserved_ip", rp.Region, s.opts.ActionDelay, nil)
	a.ripIP, a.target = ip, dropletID
	a.apply = func() bool {
		if s.rips[ip] != rp || s.droplets[dropletID] == nil {
			return false
		}
		if rp.DropletID == dropletID {
			return true
		}
		rp.DropletID = dropletID
		if h := s.opts.OnReservedIPAssign; h != nil {
			s.queueHook(func() { h(ip, dropletID) })
		}
		return true
	}
	return a
}

func (s *Server) deleteReservedIP(q *request) {
	q.do(func() (int, any) {
		ip := q.param("ip")
		rp := s.rips[ip]
		if rp == nil {
			return notFound()
		}
		if s.ripLockedLocked(ip) {
			return fail(http.StatusUnprocessableEntity, "The floating IP already has a pending event.")
		}
		delete(s.rips, ip)
		if a, err := netip.ParseAddr(ip); err == nil {
			delete(s.usedPublic, a)
		}
		if rp.DropletID != 0 {
			rp.DropletID = 0
			if h := s.opts.OnReservedIPAssign; h != nil {
				s.queueHook(func() { h(ip, 0) })
			}
		}
		return http.StatusNoContent, nil
	})
}

func (s *Server) postReservedIPAction(q *request) {
	var req struct {
		Type      string `json:"type"`
		DropletID int    `json:"droplet_id"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		ip := q.param("ip")
		rp := s.rips[ip]
		if rp == nil {
			return notFound()
		}
		if s.ripLockedLocked(ip) {
			return fail(http.StatusUnprocessableEntity, "The floating IP already has a pending event.")
		}
		var a *action
		switch req.Type {
		case "assign":
			d := s.droplets[req.DropletID]
			if d == nil {
				return fail(http.StatusUnprocessableEntity, "The Droplet %d could not be found.", req.DropletID)
			}
			if d.Region != rp.Region {
				return fail(http.StatusUnprocessableEntity, "The reserved IP and the Droplet must be in the same region.")
			}
			if msg := s.assignableLocked(d, ip); msg != "" {
				return fail(http.StatusUnprocessableEntity, "%s", msg)
			}
			a = s.assignActionLocked(rp, d.ID)
		case "unassign":
			if rp.DropletID == 0 {
				return fail(http.StatusUnprocessableEntity, "The reserved IP is not assigned to a Droplet.")
			}
			a = s.newActionLocked("unassign_ip", ipToUint32(ip), "reserved_ip", rp.Region, s.opts.ActionDelay, nil)
			a.ripIP = ip
			a.apply = func() bool {
				if s.rips[ip] != rp {
					return false
				}
				if rp.DropletID != 0 {
					rp.DropletID = 0
					if h := s.opts.OnReservedIPAssign; h != nil {
						s.queueHook(func() { h(ip, 0) })
					}
				}
				return true
			}
		default:
			return fail(http.StatusUnprocessableEntity, "Action type %q is not valid: use assign or unassign.", req.Type)
		}
		body := s.actionJSON(a)
		body["project_id"] = rp.ProjectID
		return http.StatusCreated, map[string]any{"action": body}
	})
}

func (s *Server) listReservedIPActions(q *request) {
	q.do(func() (int, any) {
		ip := q.param("ip")
		if s.rips[ip] == nil {
			return notFound()
		}
		return paged(q, "actions", s.actionsFor("reserved_ip", ipToUint32(ip)))
	})
}

func (s *Server) getReservedIPAction(q *request) {
	q.do(func() (int, any) {
		ip := q.param("ip")
		id, _ := strconv.Atoi(q.param("action_id"))
		a := s.actions[id]
		if s.rips[ip] == nil || a == nil || a.ResourceType != "reserved_ip" || a.ResourceID != ipToUint32(ip) {
			return notFound()
		}
		body := s.actionJSON(a)
		body["project_id"] = s.rips[ip].ProjectID
		return http.StatusOK, map[string]any{"action": body}
	})
}
