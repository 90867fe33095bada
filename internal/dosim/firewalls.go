package dosim

import (
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// FirewallTarget is where a rule's traffic comes from or goes to.
type FirewallTarget struct {
	Addresses        []string `json:"addresses,omitempty"`
	DropletIDs       []int    `json:"droplet_ids,omitempty"`
	LoadBalancerUIDs []string `json:"load_balancer_uids,omitempty"`
	KubernetesIDs    []string `json:"kubernetes_ids,omitempty"`
	Tags             []string `json:"tags,omitempty"`
}

// FirewallRule is an inbound (Sources) or outbound (Destinations) rule.
type FirewallRule struct {
	Protocol     string          `json:"protocol"`
	Ports        string          `json:"ports"`
	Sources      *FirewallTarget `json:"sources,omitempty"`
	Destinations *FirewallTarget `json:"destinations,omitempty"`
}

// Firewall is a snapshot of a cloud firewall.
type Firewall struct {
	ID            string
	Name          string
	InboundRules  []FirewallRule
	OutboundRules []FirewallRule
	DropletIDs    []int
	Tags          []string
	CreatedAt     time.Time
}

type firewall struct {
	Firewall
}

// DO's Cloud Firewall limits (docs.digitalocean.com, Networking → Firewalls
// → Details → Limits): rules per firewall (inbound and outbound together),
// sources or destinations per rule, droplets and tags a firewall targets.
const (
	firewallMaxRules    = 50
	firewallMaxSources  = 1000
	firewallMaxDroplets = 10
	firewallMaxTags     = 5
)

// Firewalls returns every firewall, ordered by creation.
func (s *Server) Firewalls() []Firewall {
	s.init()
	var out []Firewall
	s.update(func() {
		for _, fw := range s.sortedFirewalls() {
			out = append(out, fw.snapshot())
		}
	})
	return out
}

// snapshot is a deep copy: hooks and callers never share the server's slices.
func (fw *firewall) snapshot() Firewall {
	c := fw.Firewall
	c.InboundRules = cloneRules(fw.InboundRules)
	c.OutboundRules = cloneRules(fw.OutboundRules)
	c.DropletIDs = append([]int(nil), fw.DropletIDs...)
	c.Tags = append([]string(nil), fw.Tags...)
	return c
}

func cloneRules(rules []FirewallRule) []FirewallRule {
	out := append([]FirewallRule(nil), rules...)
	for i := range out {
		out[i].Sources = out[i].Sources.clone()
		out[i].Destinations = out[i].Destinations.clone()
	}
	return out
}

func (t *FirewallTarget) clone() *FirewallTarget {
	if t == nil {
		return nil
	}
	return &FirewallTarget{
		Addresses:        append([]string(nil), t.Addresses...),
		DropletIDs:       append([]int(nil), t.DropletIDs...),
		LoadBalancerUIDs: append([]string(nil), t.LoadBalancerUIDs...),
		KubernetesIDs:    append([]string(nil), t.KubernetesIDs...),
		Tags:             append([]string(nil), t.Tags...),
	}
}

// count is how many sources (or destinations) the target names, of every
// kind: DO's per-rule limit counts them together [U].
func (t *FirewallTarget) count() int {
	if t == nil {
		return 0
	}
	return len(t.Addresses) + len(t.DropletIDs) + len(t.LoadBalancerUIDs) + len(t.KubernetesIDs) + len(t.Tags)
}

// firewallChangedLocked queues OnFirewallChange with a snapshot of fw as it
// is now. Caller holds mu.
func (s *Server) firewallChangedLocked(fw *firewall, deleted bool) {
	if h := s.opts.OnFirewallChange; h != nil {
		snap := fw.snapshot()
		s.queueHook(func() { h(snap, deleted) })
	}
}

// firewallLimits checks a firewall as it would be after a change against
// DO's limits and returns the 422 message ("" = within them).
func firewallLimits(in, out []FirewallRule, dropletIDs []int, tags []string) string {
	if n := len(in) + len(out); n > firewallMaxRules {
		return fmt.Sprintf("A firewall can have at most %d rules (inbound and outbound together); this one would have %d.", firewallMaxRules, n)
	}
	for _, r := range in {
		if n := r.Sources.count(); n > firewallMaxSources {
			return fmt.Sprintf("A firewall rule can have at most %d sources; an inbound %s rule has %d.", firewallMaxSources, r.Protocol, n)
		}
	}
	for _, r := range out {
		if n := r.Destinations.count(); n > firewallMaxSources {
			return fmt.Sprintf("A firewall rule can have at most %d destinations; an outbound %s rule has %d.", firewallMaxSources, r.Protocol, n)
		}
	}
	if n := len(dedupeInts(dropletIDs)); n > firewallMaxDroplets {
		return fmt.Sprintf("A firewall must have no more than %d droplets (it would have %d); target more through a tag.", firewallMaxDroplets, n)
	}
	if n := len(dedupe(tags)); n > firewallMaxTags {
		return fmt.Sprintf("A firewall must have no more than %d tags (it would have %d).", firewallMaxTags, n)
	}
	return ""
}

func (s *Server) sortedFirewalls() []*firewall {
	out := make([]*firewall, 0, len(s.firewalls))
	for _, fw := range s.firewalls {
		out = append(out, fw)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func (s *Server) firewallCovers(fw *firewall, d *droplet) bool {
	for _, id := range fw.DropletIDs {
		if id == d.ID {
			return true
		}
	}
	for _, t := range fw.Tags {
		if containsString(d.Tags, t) {
			return true
		}
	}
	return false
}

func (s *Server) firewallJSON(fw *firewall, status string) map[string]any {
	in, out := fw.InboundRules, fw.OutboundRules
	if in == nil {
		in = []FirewallRule{}
	}
	if out == nil {
		out = []FirewallRule{}
	}
	ids := fw.DropletIDs
	if ids == nil {
		ids = []int{}
	}
	tags := fw.Tags
	if tags == nil {
		tags = []string{}
	}
	return map[string]any{"id": fw.ID, "status": status, "created_at": fw.CreatedAt.Format(time.RFC3339),
		"pending_changes": []any{}, "name": fw.Name, "inbound_rules": in, "outbound_rules": out,
		"droplet_ids": ids, "tags": tags}
}

type firewallRequest struct {
	Name          string         `json:"name"`
	InboundRules  []FirewallRule `json:"inbound_rules"`
	OutboundRules []FirewallRule `json:"outbound_rules"`
	DropletIDs    []int          `json:"droplet_ids"`
	Tags          []string       `json:"tags"`
}

var firewallNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9.-]+$`)

// validateLocked checks a firewall body the way DO does and returns an error
// message ("" = valid).
func (s *Server) validateFirewallLocked(req *firewallRequest) string {
	if req.Name == "" {
		return "name is required."
	}
	if !firewallNameRE.MatchString(req.Name) || len(req.Name) > 255 {
		return "name must start with a letter or digit and contain only letters, digits, dots and dashes."
	}
	if len(req.InboundRules)+len(req.OutboundRules) == 0 {
		return "At least one inbound or outbound rule is required."
	}
	check := func(r FirewallRule, t *FirewallTarget, dir string) string {
		switch r.Protocol {
		case "tcp", "udp":
			if msg := validPorts(r.Ports); msg != "" {
				return msg
			}
		case "icmp":
			if r.Ports != "" && r.Ports != "0" {
				return "ports must be 0 or omitted for icmp."
			}
		default:
			return "protocol must be one of tcp, udp or icmp."
		}
		if t == nil || len(t.Addresses)+len(t.DropletIDs)+len(t.Tags)+len(t.LoadBalancerUIDs)+len(t.KubernetesIDs) == 0 {
			return dir + " must name at least one address, droplet, tag or load balancer."
		}
		for _, a := range t.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				if _, err := netip.ParseAddr(a); err != nil {
					return "invalid address " + strconv.Quote(a) + "."
				}
			}
		}
		if msg := s.tagsExistLocked(t.Tags); msg != "" {
			return msg
		}
		return ""
	}
	for _, r := range req.InboundRules {
		if msg := check(r, r.Sources, "sources"); msg != "" {
			return msg
		}
	}
	for _, r := range req.OutboundRules {
		if msg := check(r, r.Destinations, "destinations"); msg != "" {
			return msg
		}
	}
	for _, id := range req.DropletIDs {
		if s.droplets[id] == nil {
			return "Droplet " + strconv.Itoa(id) + " could not be found."
		}
	}
	return s.tagsExistLocked(req.Tags)
}

// tagsExistLocked: DO's firewall tags must name existing tags
// (existing_tags_array in the spec).
func (s *Server) tagsExistLocked(tags []string) string {
	for _, t := range tags {
		if _, ok := s.tags[t]; !ok {
			return "tag " + strconv.Quote(t) + " does not exist."
		}
	}
	return ""
}

func validPorts(p string) string {
	if p == "0" || p == "all" {
		return ""
	}
	lo, hi, isRange := strings.Cut(p, "-")
	a, err1 := strconv.Atoi(lo)
	b := a
	var err2 error
	if isRange {
		b, err2 = strconv.Atoi(hi)
	}
	if p == "" || err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return "ports must be a port, a range like 8000-9000, or 0 for all ports."
	}
	return ""
}

// normalizeRules stores icmp rules with ports "0", as DO returns them.
func normalizeRules(rules []FirewallRule) []FirewallRule {
	out := append([]FirewallRule(nil), rules...)
	for i := range out {
		if out[i].Protocol == "icmp" {
			out[i].Ports = "0"
		}
	}
	return out
}

func (s *Server) listFirewalls(q *request) {
	q.do(func() (int, any) {
		var out []map[string]any
		for _, fw := range s.sortedFirewalls() {
			out = append(out, s.firewallJSON(fw, "succeeded"))
		}
		return paged(q, "firewalls", out)
	})
}

func (s *Server) getFirewall(q *request) {
	q.do(func() (int, any) {
		fw := s.firewalls[q.param("id")]
		if fw == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"firewall": s.firewallJSON(fw, "succeeded")}
	})
}

func (s *Server) createFirewall(q *request) {
	var req firewallRequest
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		if msg := s.validateFirewallLocked(&req); msg != "" {
			return fail(http.StatusBadRequest, "%s", msg)
		}
		if msg := firewallLimits(req.InboundRules, req.OutboundRules, req.DropletIDs, req.Tags); msg != "" {
			return fail(http.StatusUnprocessableEntity, "%s", msg)
		}
		fw := &firewall{Firewall{ID: newUUID(), Name: req.Name, InboundRules: normalizeRules(req.InboundRules), OutboundRules: normalizeRules(req.OutboundRules),
			DropletIDs: dedupeInts(req.DropletIDs), Tags: dedupe(req.Tags), CreatedAt: s.opts.Now().UTC()}}
		s.firewalls[fw.ID] = fw
		s.firewallChangedLocked(fw, false)
		return http.StatusAccepted, map[string]any{"firewall": s.firewallJSON(fw, "waiting")}
	})
}

func (s *Server) updateFirewall(q *request) {
	var req firewallRequest
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		fw := s.firewalls[q.param("id")]
		if fw == nil {
			return notFound()
		}
		if msg := s.validateFirewallLocked(&req); msg != "" {
			return fail(http.StatusBadRequest, "%s", msg)
		}
		if msg := firewallLimits(req.InboundRules, req.OutboundRules, req.DropletIDs, req.Tags); msg != "" {
			return fail(http.StatusUnprocessableEntity, "%s", msg)
		}
		fw.Name, fw.InboundRules, fw.OutboundRules = req.Name, normalizeRules(req.InboundRules), normalizeRules(req.OutboundRules)
		fw.DropletIDs, fw.Tags = dedupeInts(req.DropletIDs), dedupe(req.Tags)
		s.firewallChangedLocked(fw, false)
		return http.StatusOK, map[string]any{"firewall": s.firewallJSON(fw, "waiting")}
	})
}

func (s *Server) deleteFirewall(q *request) {
	q.do(func() (int, any) {
		fw := s.firewalls[q.param("id")]
		if fw == nil {
			return notFound()
		}
		delete(s.firewalls, fw.ID)
		s.firewallChangedLocked(fw, true)
		return http.StatusNoContent, nil
	})
}

func dedupeInts(in []int) []int {
	out := []int{}
	for _, v := range in {
		dup := false
		for _, o := range out {
			dup = dup || o == v
		}
		if !dup {
			out = append(out, v)
		}
	}
	return out
}

func (s *Server) firewallDroplets(add bool) func(*request) {
	return func(q *request) {
		var req struct {
			DropletIDs []int `json:"droplet_ids"`
		}
		if !q.decode(&req) {
			return
		}
		q.do(func() (int, any) {
			fw := s.firewalls[q.param("id")]
			if fw == nil {
				return notFound()
			}
			if len(req.DropletIDs) == 0 {
				return fail(http.StatusBadRequest, "droplet_ids is required.")
			}
			for _, id := range req.DropletIDs {
				if add && s.droplets[id] == nil {
					return fail(http.StatusBadRequest, "Droplet %d could not be found.", id)
				}
			}
			if add {
				if msg := firewallLimits(nil, nil, append(append([]int(nil), fw.DropletIDs...), req.DropletIDs...), nil); msg != "" {
					return fail(http.StatusUnprocessableEntity, "%s", msg)
				}
			}
			for _, id := range req.DropletIDs {
				fw.DropletIDs = removeInt(fw.DropletIDs, id)
				if add {
					fw.DropletIDs = append(fw.DropletIDs, id)
				}
			}
			s.firewallChangedLocked(fw, false)
			return http.StatusNoContent, nil
		})
	}
}

func (s *Server) firewallTags(add bool) func(*request) {
	return func(q *request) {
		var req struct {
			Tags []string `json:"tags"`
		}
		if !q.decode(&req) {
			return
		}
		q.do(func() (int, any) {
			fw := s.firewalls[q.param("id")]
			if fw == nil {
				return notFound()
			}
			if len(req.Tags) == 0 {
				return fail(http.StatusBadRequest, "tags is required.")
			}
			if add {
				if msg := s.tagsExistLocked(req.Tags); msg != "" {
					return fail(http.StatusBadRequest, "%s", msg)
				}
				if msg := firewallLimits(nil, nil, nil, append(append([]string(nil), fw.Tags...), req.Tags...)); msg != "" {
					return fail(http.StatusUnprocessableEntity, "%s", msg)
				}
			}
			for _, t := range req.Tags {
				var keep []string
				for _, o := range fw.Tags {
					if o != t {
						keep = append(keep, o)
					}
				}
				fw.Tags = keep
				if add {
					fw.Tags = append(fw.Tags, t)
				}
			}
			s.firewallChangedLocked(fw, false)
			return http.StatusNoContent, nil
		})
	}
}

func (s *Server) firewallRules(add bool) func(*request) {
	return func(q *request) {
		var req struct {
			InboundRules  []FirewallRule `json:"inbound_rules"`
			OutboundRules []FirewallRule `json:"outbound_rules"`
		}
		if !q.decode(&req) {
			return
		}
		q.do(func() (int, any) {
			fw := s.firewalls[q.param("id")]
			if fw == nil {
				return notFound()
			}
			if add {
				probe := firewallRequest{Name: fw.Name, InboundRules: req.InboundRules, OutboundRules: req.OutboundRules}
				if msg := s.validateFirewallLocked(&probe); msg != "" {
					return fail(http.StatusBadRequest, "%s", msg)
				}
				in := append(append([]FirewallRule(nil), fw.InboundRules...), req.InboundRules...)
				out := append(append([]FirewallRule(nil), fw.OutboundRules...), req.OutboundRules...)
				if msg := firewallLimits(in, out, nil, nil); msg != "" {
					return fail(http.StatusUnprocessableEntity, "%s", msg)
				}
				fw.InboundRules = append(fw.InboundRules, normalizeRules(req.InboundRules)...)
				fw.OutboundRules = append(fw.OutboundRules, normalizeRules(req.OutboundRules)...)
				s.firewallChangedLocked(fw, false)
				return http.StatusNoContent, nil
			}
			fw.InboundRules = removeRules(fw.InboundRules, normalizeRules(req.InboundRules))
			fw.OutboundRules = removeRules(fw.OutboundRules, normalizeRules(req.OutboundRules))
			s.firewallChangedLocked(fw, false)
			return http.StatusNoContent, nil
		})
	}
}

func removeRules(have, drop []FirewallRule) []FirewallRule {
	var out []FirewallRule
	for _, h := range have {
		gone := false
		for _, d := range drop {
			if ruleKey(h) == ruleKey(d) {
				gone = true
			}
		}
		if !gone {
			out = append(out, h)
		}
	}
	return out
}

func ruleKey(r FirewallRule) string {
	b, _ := jsonMarshal(r)
	return string(b)
}
