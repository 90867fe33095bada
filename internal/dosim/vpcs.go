package dosim

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"time"
)

// VPC is a snapshot of a VPC.
type VPC struct {
	ID          string
	Name        string
	Description string
	Region      string
	IPRange     string
	Default     bool
	CreatedAt   time.Time
}

// VPCs returns every VPC, ordered by creation.
func (s *Server) VPCs() []VPC {
	s.init()
	var out []VPC
	s.update(func() {
		for _, v := range s.sortedVPCs() {
			out = append(out, *v)
		}
	})
	return out
}

var vpcNameRE = regexp.MustCompile(`^[a-zA-Z0-9\-.]+$`)

func (s *Server) sortedVPCs() []*VPC {
	out := make([]*VPC, 0, len(s.vpcs))
	for _, v := range s.vpcs {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// nextRangeLocked returns a free 10.10.N.0/24 (DO picks a free range when
// ip_range is omitted).
func (s *Server) nextRangeLocked() (netip.Prefix, bool) {
	for ; s.nextVPCNet < 256; s.nextVPCNet++ {
		p := netip.MustParsePrefix(fmt.Sprintf("10.10.%d.0/24", s.nextVPCNet))
		if !s.overlapsLocked(p) {
			s.nextVPCNet++
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func (s *Server) overlapsLocked(p netip.Prefix) bool {
	for _, v := range s.vpcs {
		if q, err := netip.ParsePrefix(v.IPRange); err == nil && q.Overlaps(p) {
			return true
		}
	}
	return false
}

// defaultVPCLocked returns the region's default VPC, creating it on first use
// as DO does when the first resource lands in a region.
func (s *Server) defaultVPCLocked(region string) *VPC {
	for _, v := range s.vpcs {
		if v.Region == region && v.Default {
			return v
		}
	}
	p, _ := s.nextRangeLocked()
	v := &VPC{ID: newUUID(), Name: "default-" + region, Region: region, IPRange: p.String(), Default: true, CreatedAt: s.opts.Now().UTC()}
	s.vpcs[v.ID] = v
	return v
}

func vpcJSON(v *VPC) map[string]any {
	return map[string]any{"id": v.ID, "urn": "do:vpc:" + v.ID, "name": v.Name, "description": v.Description,
		"region": v.Region, "ip_range": v.IPRange, "default": v.Default, "created_at": v.CreatedAt.Format(time.RFC3339Nano)}
}

func (s *Server) listVPCs(q *request) {
	q.do(func() (int, any) {
		var out []map[string]any
		for _, v := range s.sortedVPCs() {
			out = append(out, vpcJSON(v))
		}
		return paged(q, "vpcs", out)
	})
}

func (s *Server) getVPC(q *request) {
	q.do(func() (int, any) {
		v := s.vpcs[q.param("id")]
		if v == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"vpc": vpcJSON(v)}
	})
}

func (s *Server) createVPC(q *request) {
	var req struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Region      string `json:"region"`
		IPRange     string `json:"ip_range"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		if req.Name == "" || !vpcNameRE.MatchString(req.Name) || len(req.Name) > 64 {
			return fail(http.StatusUnprocessableEntity, "name must contain only letters, numbers, dashes and dots.")
		}
		if !s.hasRegion(req.Region) {
			return fail(http.StatusUnprocessableEntity, "Region %q is not available.", req.Region)
		}
		for _, v := range s.vpcs {
			if v.Name == req.Name {
				return fail(http.StatusConflict, "A VPC with the name %q already exists.", req.Name)
			}
		}
		var p netip.Prefix
		if req.IPRange != "" {
			var err error
			p, err = netip.ParsePrefix(req.IPRange)
			if err != nil || !p.Addr().Is4() || !p.Addr().IsPrivate() || p.Bits() < 16 || p.Bits() > 28 || p.Masked() != p {
				return fail(http.StatusUnprocessableEntity, "ip_range %q must be a private IPv4 network between /16 and /28.", req.IPRange)
			}
			if s.overlapsLocked(p) {
				return fail(http.StatusUnprocessableEntity, "ip_range %s overlaps another VPC.", p)
			}
		} else {
			var ok bool
			if p, ok = s.nextRangeLocked(); !ok {
				return fail(http.StatusUnprocessableEntity, "No free ip_range is left.")
			}
		}
		def := true
		for _, v := range s.vpcs {
			if v.Region == req.Region && v.Default {
				def = false
			}
		}
		v := &VPC{ID: newUUID(), Name: req.Name, Description: req.Description, Region: req.Region, IPRange: p.String(),
			Default: def, CreatedAt: s.opts.Now().UTC()}
		s.vpcs[v.ID] = v
		return http.StatusCreated, map[string]any{"vpc": vpcJSON(v)}
	})
}

func (s *Server) updateVPC(q *request) {
	var req struct {
		Name        *string `json:"name"`
		Description *string `json:"description"`
		Default     *bool   `json:"default"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		v := s.vpcs[q.param("id")]
		if v == nil {
			return notFound()
		}
		if req.Name != nil {
			if !vpcNameRE.MatchString(*req.Name) {
				return fail(http.StatusUnprocessableEntity, "name must contain only letters, numbers, dashes and dots.")
			}
			v.Name = *req.Name
		}
		if req.Description != nil {
			v.Description = *req.Description
		}
		if req.Default != nil && *req.Default {
			for _, o := range s.vpcs {
				if o.Region == v.Region {
					o.Default = false
				}
			}
			v.Default = true
		}
		return http.StatusOK, map[string]any{"vpc": vpcJSON(v)}
	})
}

func (s *Server) deleteVPC(q *request) {
	q.do(func() (int, any) {
		v := s.vpcs[q.param("id")]
		if v == nil {
			return notFound()
		}
		if v.Default {
			return fail(http.StatusForbidden, "A default VPC cannot be deleted.")
		}
		for _, d := range s.droplets {
			if d.VPCUUID == v.ID {
				return fail(http.StatusForbidden, "The VPC still has members and cannot be deleted.")
			}
		}
		delete(s.vpcs, v.ID)
		return http.StatusNoContent, nil
	})
}

func (s *Server) listVPCMembers(q *request) {
	q.do(func() (int, any) {
		v := s.vpcs[q.param("id")]
		if v == nil {
			return notFound()
		}
		var out []map[string]any
		for _, id := range sortedKeys(s.droplets) {
			if d := s.droplets[id]; d.VPCUUID == v.ID {
				out = append(out, map[string]any{"name": d.Name, "urn": fmt.Sprintf("do:droplet:%d", d.ID), "created_at": d.CreatedAt.Format(time.RFC3339)})
			}
		}
		return paged(q, "members", out)
	})
}
