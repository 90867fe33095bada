package dosim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"time"
)

// Droplet is a snapshot of a simulated droplet, as passed to hooks and
// returned by Droplets. Addresses are allocated at creation (so hooks can
// build namespaces) even though the API hides networks until it is active.
type Droplet struct {
	ID               int
	Name             string
	Region           string
	Size             string
	ImageID          int
	ImageSlug        string // empty for private images
	Status           string // new, active, off
	Tags             []string
	UserData         string
	SSHKeys          []string
	VPCUUID          string
	PublicNetworking bool
	PublicIPv4       string // empty when PublicNetworking is false
	PublicNetmask    string
	PublicGateway    string
	PrivateIPv4      string
	PrivateNetmask   string
	PrivateGateway   string
	AnchorIPv4       string // empty when PublicNetworking is false
	AnchorNetmask    string
	Monitoring       bool
	IPv6             bool
	CreatedAt        time.Time
}

type droplet struct {
	Droplet
	activeAt       time.Time
	createActionID int
}

func (d *droplet) snapshot() Droplet {
	c := d.Droplet
	c.Tags = append([]string(nil), d.Tags...)
	c.SSHKeys = append([]string(nil), d.SSHKeys...)
	return c
}

// Droplets returns every droplet, ordered by id.
func (s *Server) Droplets() []Droplet {
	s.init()
	var out []Droplet
	s.update(func() {
		for _, id := range sortedKeys(s.droplets) {
			out = append(out, s.droplets[id].snapshot())
		}
	})
	return out
}

// SetNeverActive makes the droplet with this id (decimal) or name stay "new"
// forever, including droplets created later with that name.
func (s *Server) SetNeverActive(idOrName string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.neverActive[idOrName] = true
}

// DeleteDropletBehindBack removes a droplet as if someone deleted it in the
// console: no API call is recorded. Hooks fire as for an API delete.
func (s *Server) DeleteDropletBehindBack(id int) bool {
	s.init()
	found := false
	s.update(func() {
		if d := s.droplets[id]; d != nil {
			found = true
			s.removeDropletLocked(d)
		}
	})
	return found
}

var (
	dropletNameRE = regexp.MustCompile(`^[a-zA-Z0-9]?[a-z0-9A-Z.\-]*[a-z0-9A-Z]$`)
	tagNameRE     = regexp.MustCompile(`^[a-zA-Z0-9_\-:]+$`)
)

// dropletCreateRequest mirrors DO's body; pointer/raw fields accept null.
type dropletCreateRequest struct {
	Name             string          `json:"name"`
	Names            []string        `json:"names"`
	Region           string          `json:"region"`
	Size             string          `json:"size"`
	Image            json.RawMessage `json:"image"`
	SSHKeys          []any           `json:"ssh_keys"`
	Backups          bool            `json:"backups"`
	IPv6             bool            `json:"ipv6"`
	Monitoring       bool            `json:"monitoring"`
	Tags             []string        `json:"tags"`
	UserData         string          `json:"user_data"`
	VPCUUID          string          `json:"vpc_uuid"`
	PublicNetworking *bool           `json:"public_networking"`
	WithDropletAgent *bool           `json:"with_droplet_agent"`
}

const maxUserData = 64 * 1024

func (s *Server) createDroplets(q *request) {
	var req dropletCreateRequest
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		plan, f := s.planDropletCreateLocked(&req)
		if f != nil {
			return f.status, *f
		}
		created, f := s.createDropletsLocked(plan, &req)
		if f != nil {
			return f.status, *f
		}
		return http.StatusAccepted, s.dropletCreateAnswer(q, plan.multi, created)
	})
}

// dropletCreatePlan is a checked create request: what its droplets get.
type dropletCreatePlan struct {
	names  []string
	multi  bool // names given (the answer lists "droplets")
	region string
	size   Size
	image  *Image
	vpc    *VPC
	public bool
	keys   []string
}

// unprocessable is DO's 422 answer to a request it cannot apply.
func unprocessable(format string, args ...any) *failure {
	return &failure{status: http.StatusUnprocessableEntity, msg: fmt.Sprintf(format, args...)}
}

// dropletNames checks the request's name or names (DO takes one or the
// other, up to 10 hostnames).
func dropletNames(req *dropletCreateRequest) ([]string, bool, *failure) {
	names := req.Names
	multi := len(names) > 0
	if !multi {
		if req.Name == "" {
			return nil, false, unprocessable("Name is required.")
		}
		names = []string{req.Name}
	} else if req.Name != "" {
		return nil, false, unprocessable("Specify either name or names, not both.")
	}
	if len(names) > 10 {
		return nil, false, unprocessable("You may only create up to 10 Droplets at a time.")
	}
	for _, n := range names {
		if len(n) > 255 || !dropletNameRE.MatchString(n) {
			return nil, false, unprocessable("Name is invalid: %q. Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)", n)
		}
	}
	return names, multi, nil
}

// planDropletCreateLocked checks a create request in DO's order and
// resolves its region, size, image and VPC.
func (s *Server) planDropletCreateLocked(req *dropletCreateRequest) (dropletCreatePlan, *failure) {
	var pl dropletCreatePlan
	var f *failure
	if pl.names, pl.multi, f = dropletNames(req); f != nil {
		return pl, f
	}
	pl.region = req.Region
	if pl.region == "" {
		pl.region = s.opts.Regions[0]
	}
	if !s.hasRegion(pl.region) {
		return pl, unprocessable("Region is not available.")
	}
	var ok bool
	if pl.size, ok = s.size(req.Size); !ok {
		return pl, unprocessable("Size is not available in this region.")
	}
	if pl.image = s.findImageLocked(req.Image); pl.image == nil {
		return pl, unprocessable("You specified an invalid image for Droplet creation.")
	}
	if !containsString(pl.image.Regions, pl.region) {
		return pl, unprocessable("The image is not available in the %s region.", pl.region)
	}
	if len(req.UserData) > maxUserData {
		return pl, unprocessable("user_data is too large: limit is 64 KiB.")
	}
	for _, t := range req.Tags {
		if !tagNameRE.MatchString(t) {
			return pl, unprocessable("Tag name %q is invalid.", t)
		}
	}
	if req.VPCUUID != "" {
		pl.vpc = s.vpcs[req.VPCUUID]
		if pl.vpc == nil {
			return pl, unprocessable("The VPC could not be found.")
		}
		if pl.vpc.Region != pl.region {
			return pl, unprocessable("The VPC must be in the same region as the Droplet.")
		}
	} else {
		pl.vpc = s.defaultVPCLocked(pl.region)
	}
	pl.public = req.PublicNetworking == nil || *req.PublicNetworking
	for _, k := range req.SSHKeys {
		pl.keys = append(pl.keys, fmt.Sprint(k))
	}
	return pl, nil
}

// createDropletsLocked creates the plan's droplets, each with its networks,
// tags and create action, and queues OnDropletCreate for each. Droplets
// created before an address runs out stay (as on DO, each is its own).
func (s *Server) createDropletsLocked(pl dropletCreatePlan, req *dropletCreateRequest) ([]*droplet, *failure) {
	now := s.opts.Now().UTC()
	var created []*droplet
	for _, n := range pl.names {
		d := &droplet{Droplet: Droplet{
			ID: s.nextDropletID, Name: n, Region: pl.region, Size: pl.size.Slug, ImageID: pl.image.ID, ImageSlug: pl.image.Slug,
			Status: "new", Tags: dedupe(req.Tags), UserData: req.UserData, SSHKeys: pl.keys, VPCUUID: pl.vpc.ID,
			PublicNetworking: pl.public, Monitoring: req.Monitoring, IPv6: req.IPv6, CreatedAt: now.Truncate(time.Second),
		}}
		if msg := s.allocNetworksLocked(d, pl.vpc); msg != "" {
			return nil, unprocessable("%s", msg)
		}
		s.nextDropletID++
		d.activeAt = now.Add(s.opts.DropletActiveDelay)
		for _, t := range d.Tags {
			if _, ok := s.tags[t]; !ok {
				s.tags[t] = now
			}
		}
		a := s.newActionLocked("create", d.ID, "droplet", pl.region, 0, nil)
		a.dropletCreate = true
		d.createActionID = a.ID
		s.droplets[d.ID] = d
		created = append(created, d)
		snap := d.snapshot()
		if h := s.opts.OnDropletCreate; h != nil {
			s.queueHook(func() { h(snap) })
		}
		s.scheduleLocked(s.opts.DropletActiveDelay)
	}
	return created, nil
}

// dropletCreateAnswer is DO's 202 body: the droplet (or, for names, the
// droplets) and links to their create actions.
func (s *Server) dropletCreateAnswer(q *request, multi bool, created []*droplet) map[string]any {
	var links []any
	for _, d := range created {
		links = append(links, map[string]any{"id": d.createActionID, "rel": "create", "href": q.abs("/v2/actions/" + strconv.Itoa(d.createActionID))})
	}
	if !multi {
		return map[string]any{"droplet": s.dropletJSON(created[0]), "links": map[string]any{"actions": links}}
	}
	var out []any
	for _, d := range created {
		out = append(out, s.dropletJSON(d))
	}
	return map[string]any{"droplets": out, "links": map[string]any{"actions": links}}
}

func dedupe(in []string) []string {
	out := []string{}
	for _, v := range in {
		if !containsString(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// abs makes an absolute URL on the server the client called.
func (q *request) abs(path string) string {
	scheme := "http"
	if q.r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + q.r.Host + path
}

// allocNetworksLocked gives d a public, anchor and private address. When a
// range is exhausted it returns DigitalOcean's message for the 422 answer
// (worded as DO words it, hence not an error value); "" means success.
func (s *Server) allocNetworksLocked(d *droplet, vpc *VPC) string {
	pfx := netip.MustParsePrefix(vpc.IPRange)
	used := map[netip.Addr]bool{}
	for _, o := range s.droplets {
		if o.VPCUUID == vpc.ID {
			used[netip.MustParseAddr(o.PrivateIPv4)] = true
		}
	}
	priv, ok := allocFrom(pfx, 2, used)
	if !ok {
		return fmt.Sprintf("The VPC %s has no free addresses.", vpc.Name)
	}
	d.PrivateIPv4, d.PrivateNetmask, d.PrivateGateway = priv.String(), netmask(pfx), pfx.Masked().Addr().Next().String()
	if !d.PublicNetworking {
		return ""
	}
	pub, ok := allocFrom(s.opts.PublicRange, 2, s.usedPublic)
	if !ok {
		return fmt.Sprintf("No public IPv4 addresses are available in %s.", d.Region)
	}
	anchor, ok := allocFrom(s.opts.AnchorRange, 2, s.usedAnchor)
	if !ok {
		return "No anchor IPv4 addresses are available."
	}
	s.usedPublic[pub], s.usedAnchor[anchor] = true, true
	d.PublicIPv4, d.PublicNetmask, d.PublicGateway = pub.String(), netmask(s.opts.PublicRange), s.opts.PublicRange.Masked().Addr().Next().String()
	d.AnchorIPv4, d.AnchorNetmask = anchor.String(), netmask(s.opts.AnchorRange)
	return ""
}

// allocFrom returns the first address of pfx at or after offset skip that is
// not used and is not the broadcast address.
func allocFrom(pfx netip.Prefix, skip int, used map[netip.Addr]bool) (netip.Addr, bool) {
	a := pfx.Masked().Addr()
	for i := 0; i < skip; i++ {
		a = a.Next()
	}
	for ; pfx.Contains(a); a = a.Next() {
		if !pfx.Contains(a.Next()) { // broadcast
			break
		}
		if !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func netmask(p netip.Prefix) string {
	bits := p.Bits()
	m := uint32(0xffffffff) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

func (s *Server) findImageLocked(raw json.RawMessage) *Image {
	var slug string
	if json.Unmarshal(raw, &slug) == nil {
		if id, err := strconv.Atoi(slug); err == nil {
			return s.images[id]
		}
		for _, id := range sortedKeys(s.images) {
			if img := s.images[id]; img.Slug != "" && img.Slug == slug {
				return img
			}
		}
		return nil
	}
	var id int
	if json.Unmarshal(raw, &id) == nil {
		return s.images[id]
	}
	return nil
}

func (s *Server) dropletJSON(d *droplet) map[string]any {
	sz, _ := s.size(d.Size)
	v4 := []any{}
	if d.Status != "new" {
		if d.PublicIPv4 != "" {
			v4 = append(v4, map[string]any{"ip_address": d.PublicIPv4, "netmask": d.PublicNetmask, "gateway": d.PublicGateway, "type": "public"})
		}
		v4 = append(v4, map[string]any{"ip_address": d.PrivateIPv4, "netmask": d.PrivateNetmask, "gateway": d.PrivateGateway, "type": "private"})
	}
	features := []string{"private_networking"}
	if d.Monitoring {
		features = append(features, "monitoring")
	}
	if d.IPv6 {
		features = append(features, "ipv6")
	}
	var img map[string]any
	if im := s.images[d.ImageID]; im != nil {
		img = imageJSON(im)
	} else {
		img = map[string]any{"id": d.ImageID, "name": "deleted image", "slug": nil}
	}
	return map[string]any{
		"id": d.ID, "name": d.Name, "memory": sz.Memory, "vcpus": sz.VCPUs, "disk": sz.Disk,
		"disk_info": []any{map[string]any{"type": "local", "size": map[string]any{"amount": sz.Disk, "unit": "gib"}}},
		"locked":    false, "status": d.Status, "created_at": d.CreatedAt.Format(time.RFC3339),
		"features": features, "backup_ids": []int{}, "next_backup_window": nil, "snapshot_ids": []int{},
		"image": img, "volume_ids": []string{}, "size": s.sizeJSON(sz), "size_slug": sz.Slug,
		"networks": map[string]any{"v4": v4, "v6": []any{}}, "region": s.regionJSON(d.Region),
		"tags": append([]string{}, d.Tags...), "vpc_uuid": d.VPCUUID,
	}
}

func (s *Server) listDroplets(q *request) {
	tag := q.r.URL.Query().Get("tag_name")
	name := q.r.URL.Query().Get("name")
	q.do(func() (int, any) {
		var out []map[string]any
		for _, id := range sortedKeys(s.droplets) {
			d := s.droplets[id]
			if tag != "" && !containsString(d.Tags, tag) {
				continue
			}
			if name != "" && d.Name != name {
				continue
			}
			out = append(out, s.dropletJSON(d))
		}
		return paged(q, "droplets", out)
	})
}

func (s *Server) dropletParam(q *request) (*droplet, bool) {
	id, err := strconv.Atoi(q.param("id"))
	if err != nil {
		return nil, false
	}
	d := s.droplets[id]
	return d, d != nil
}

func (s *Server) getDroplet(q *request) {
	q.do(func() (int, any) {
		d, ok := s.dropletParam(q)
		if !ok {
			return notFound()
		}
		return http.StatusOK, map[string]any{"droplet": s.dropletJSON(d)}
	})
}

func (s *Server) deleteDroplet(q *request) {
	q.do(func() (int, any) {
		d, ok := s.dropletParam(q)
		if !ok {
			return notFound()
		}
		s.removeDropletLocked(d)
		return http.StatusNoContent, nil
	})
}

func (s *Server) deleteDropletsByTag(q *request) {
	tag := q.r.URL.Query().Get("tag_name")
	q.do(func() (int, any) {
		if tag == "" {
			return fail(http.StatusBadRequest, "tag_name is required to delete Droplets in bulk.")
		}
		for _, id := range sortedKeys(s.droplets) {
			if d := s.droplets[id]; containsString(d.Tags, tag) {
				s.removeDropletLocked(d)
			}
		}
		return http.StatusNoContent, nil
	})
}

// removeDropletLocked deletes d, unassigning its reserved IP, dropping it from
// firewalls and freeing its addresses.
func (s *Server) removeDropletLocked(d *droplet) {
	delete(s.droplets, d.ID)
	for _, ip := range sortedRIPs(s.rips) {
		rp := s.rips[ip]
		if rp.DropletID == d.ID {
			rp.DropletID = 0
			if h := s.opts.OnReservedIPAssign; h != nil {
				s.queueHook(func() { h(ip, 0) })
			}
		}
	}
	for _, fw := range s.sortedFirewalls() {
		if slices.Contains(fw.DropletIDs, d.ID) {
			fw.DropletIDs = removeInt(fw.DropletIDs, d.ID)
			s.firewallChangedLocked(fw, false)
		}
	}
	if a, err := netip.ParseAddr(d.PublicIPv4); err == nil {
		delete(s.usedPublic, a)
	}
	if a, err := netip.ParseAddr(d.AnchorIPv4); err == nil {
		delete(s.usedAnchor, a)
	}
	snap := d.snapshot()
	if h := s.opts.OnDropletDelete; h != nil {
		s.queueHook(func() { h(snap) })
	}
}

func removeInt(list []int, v int) []int {
	out := list[:0:0]
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func sortedRIPs(m map[string]*rip) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ipToUint32(ks[i]) < ipToUint32(ks[j]) })
	return ks
}

func (s *Server) postDropletAction(q *request) {
	var req struct {
		Type string `json:"type"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		d, ok := s.dropletParam(q)
		if !ok {
			return notFound()
		}
		a, msg := s.dropletActionLocked(d, req.Type)
		if a == nil {
			return fail(http.StatusUnprocessableEntity, "%s", msg)
		}
		return http.StatusCreated, map[string]any{"action": s.actionJSON(a)}
	})
}

// postDropletActionByTag runs an action on every droplet with ?tag_name=.
func (s *Server) postDropletActionByTag(q *request) {
	tag := q.r.URL.Query().Get("tag_name")
	var req struct {
		Type string `json:"type"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		if tag == "" {
			return fail(http.StatusUnprocessableEntity, "tag_name is required.")
		}
		out := []map[string]any{}
		for _, id := range sortedKeys(s.droplets) {
			d := s.droplets[id]
			if !containsString(d.Tags, tag) {
				continue
			}
			a, msg := s.dropletActionLocked(d, req.Type)
			if a == nil {
				return fail(http.StatusUnprocessableEntity, "%s", msg)
			}
			out = append(out, s.actionJSON(a))
		}
		return http.StatusCreated, map[string]any{"actions": out}
	})
}

// dropletActionLocked starts action typ on d, or explains why it cannot.
func (s *Server) dropletActionLocked(d *droplet, typ string) (*action, string) {
	for _, a := range s.actions {
		if a.ResourceType == "droplet" && a.ResourceID == d.ID && a.Status == "in-progress" {
			return nil, "Droplet already has a pending event."
		}
	}
	var apply func()
	switch typ {
	case "power_off", "shutdown":
		apply = func() { s.powerLocked(d, false) }
	case "power_on":
		apply = func() { s.powerLocked(d, true) }
	case "reboot", "power_cycle":
		apply = func() {}
	default:
		return nil, fmt.Sprintf("Action type %q is not supported by the simulator.", typ)
	}
	return s.newActionLocked(typ, d.ID, "droplet", d.Region, s.opts.ActionDelay, apply), ""
}

func (s *Server) powerLocked(d *droplet, on bool) {
	if s.droplets[d.ID] != d {
		return
	}
	if on {
		d.Status = "active"
	} else {
		d.Status = "off"
	}
	snap := d.snapshot()
	if h := s.opts.OnDropletPower; h != nil {
		s.queueHook(func() { h(snap, on) })
	}
}

func (s *Server) listDropletActions(q *request) {
	q.do(func() (int, any) {
		d, ok := s.dropletParam(q)
		if !ok {
			return notFound()
		}
		return paged(q, "actions", s.actionsFor("droplet", d.ID))
	})
}

func (s *Server) getDropletAction(q *request) {
	q.do(func() (int, any) {
		d, ok := s.dropletParam(q)
		if !ok {
			return notFound()
		}
		id, _ := strconv.Atoi(q.param("action_id"))
		a := s.actions[id]
		if a == nil || a.ResourceType != "droplet" || a.ResourceID != d.ID {
			return notFound()
		}
		return http.StatusOK, map[string]any{"action": s.actionJSON(a)}
	})
}

func (s *Server) listDropletFirewalls(q *request) {
	q.do(func() (int, any) {
		d, ok := s.dropletParam(q)
		if !ok {
			return notFound()
		}
		var out []map[string]any
		for _, fw := range s.sortedFirewalls() {
			if s.firewallCovers(fw, d) {
				out = append(out, s.firewallJSON(fw, "succeeded"))
			}
		}
		return paged(q, "firewalls", out)
	})
}

func (s *Server) listDropletSnapshots(q *request) {
	q.do(func() (int, any) {
		if _, ok := s.dropletParam(q); !ok {
			return notFound()
		}
		return paged(q, "snapshots", []any{})
	})
}
