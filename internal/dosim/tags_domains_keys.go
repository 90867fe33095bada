package dosim

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ---- tags ----

func (s *Server) tagJSON(name string) map[string]any {
	n, last := 0, ""
	for _, id := range sortedKeys(s.droplets) {
		if containsString(s.droplets[id].Tags, name) {
			n++
			last = "https://api.digitalocean.com/v2/droplets/" + strconv.Itoa(id)
		}
	}
	imgN := 0
	for _, im := range s.images {
		if containsString(im.Tags, name) {
			imgN++
		}
	}
	empty := map[string]any{"count": 0}
	drops := map[string]any{"count": n}
	if last != "" {
		drops["last_tagged_uri"] = last
	}
	res := map[string]any{"count": n + imgN, "droplets": drops, "images": map[string]any{"count": imgN},
		"volumes": empty, "volume_snapshots": empty, "databases": empty}
	if last != "" {
		res["last_tagged_uri"] = last
	}
	return map[string]any{"name": name, "resources": res}
}

func (s *Server) sortedTags() []string {
	out := make([]string, 0, len(s.tags))
	for t := range s.tags {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func (s *Server) listTags(q *request) {
	q.do(func() (int, any) {
		var out []map[string]any
		for _, t := range s.sortedTags() {
			out = append(out, s.tagJSON(t))
		}
		return paged(q, "tags", out)
	})
}

func (s *Server) createTag(q *request) {
	var req struct {
		Name string `json:"name"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		if req.Name == "" || len(req.Name) > 255 || !tagNameRE.MatchString(req.Name) {
			return fail(http.StatusBadRequest, "tag name must match ^[a-zA-Z0-9_\\-\\:]+$ and be at most 255 characters.")
		}
		if _, ok := s.tags[req.Name]; !ok {
			s.tags[req.Name] = s.opts.Now()
		}
		return http.StatusCreated, map[string]any{"tag": s.tagJSON(req.Name)}
	})
}

func (s *Server) getTag(q *request) {
	q.do(func() (int, any) {
		t := q.param("tag")
		if _, ok := s.tags[t]; !ok {
			return notFound()
		}
		return http.StatusOK, map[string]any{"tag": s.tagJSON(t)}
	})
}

func (s *Server) deleteTag(q *request) {
	q.do(func() (int, any) {
		t := q.param("tag")
		if _, ok := s.tags[t]; !ok {
			return notFound()
		}
		delete(s.tags, t)
		for _, id := range sortedKeys(s.droplets) {
			if d := s.droplets[id]; containsString(d.Tags, t) {
				d.Tags = removeString(d.Tags, t)
				s.dropletTagsChangedLocked(d)
			}
		}
		for _, im := range s.images {
			im.Tags = removeString(im.Tags, t)
		}
		for _, fw := range s.sortedFirewalls() {
			if containsString(fw.Tags, t) {
				fw.Tags = removeString(fw.Tags, t)
				s.firewallChangedLocked(fw, false)
			}
		}
		return http.StatusNoContent, nil
	})
}

// dropletTagsChangedLocked queues OnDropletTags. Caller holds mu.
func (s *Server) dropletTagsChangedLocked(d *droplet) {
	if h := s.opts.OnDropletTags; h != nil {
		snap := d.snapshot()
		s.queueHook(func() { h(snap) })
	}
}

func removeString(list []string, v string) []string {
	out := []string{}
	for _, x := range list {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func (s *Server) tagResources(add bool) func(*request) {
	return func(q *request) {
		var req struct {
			Resources []struct {
				ID   string `json:"resource_id"`
				Type string `json:"resource_type"`
			} `json:"resources"`
		}
		if !q.decode(&req) {
			return
		}
		q.do(func() (int, any) {
			t := q.param("tag")
			if _, ok := s.tags[t]; !ok {
				return notFound()
			}
			if len(req.Resources) == 0 {
				return fail(http.StatusBadRequest, "resources is required.")
			}
			// Validate everything first so a bad entry changes nothing.
			for _, rs := range req.Resources {
				id, err := strconv.Atoi(rs.ID)
				switch {
				case rs.Type == "droplet" && err == nil && s.droplets[id] != nil:
				case rs.Type == "image" && err == nil && s.images[id] != nil && !s.images[id].Public:
				default:
					return fail(http.StatusNotFound, "%s %s could not be found.", rs.Type, rs.ID)
				}
			}
			for _, rs := range req.Resources {
				id, _ := strconv.Atoi(rs.ID)
				var tags *[]string
				if rs.Type == "droplet" {
					tags = &s.droplets[id].Tags
				} else {
					tags = &s.images[id].Tags
				}
				had := containsString(*tags, t)
				*tags = removeString(*tags, t)
				if add {
					*tags = append(*tags, t)
				}
				if rs.Type == "droplet" && had != add {
					s.dropletTagsChangedLocked(s.droplets[id])
				}
			}
			return http.StatusNoContent, nil
		})
	}
}

// ---- domains ----

type domain struct {
	Name    string
	TTL     int
	Records map[int]*record
}

type record struct {
	ID       int     `json:"id"`
	Type     string  `json:"type"`
	Name     string  `json:"name"`
	Data     string  `json:"data"`
	Priority *int    `json:"priority"`
	Port     *int    `json:"port"`
	TTL      int     `json:"ttl"`
	Weight   *int    `json:"weight"`
	Flags    *int    `json:"flags"`
	Tag      *string `json:"tag"`
}

func (s *Server) domainJSON(d *domain) map[string]any {
	var zone strings.Builder
	zone.WriteString("$ORIGIN " + d.Name + ".\n$TTL 1800\n")
	for _, id := range sortedKeys(d.Records) {
		r := d.Records[id]
		zone.WriteString(r.Name + " " + strconv.Itoa(r.TTL) + " IN " + r.Type + " " + r.Data + "\n")
	}
	return map[string]any{"name": d.Name, "ttl": d.TTL, "zone_file": zone.String()}
}

func (s *Server) addRecordLocked(d *domain, r record) *record {
	r.ID = s.nextRecordID
	s.nextRecordID++
	if r.TTL == 0 {
		r.TTL = 1800
	}
	c := r
	d.Records[c.ID] = &c
	return &c
}

func (s *Server) listDomains(q *request) {
	q.do(func() (int, any) {
		names := make([]string, 0, len(s.domains))
		for n := range s.domains {
			names = append(names, n)
		}
		sort.Strings(names)
		var out []map[string]any
		for _, n := range names {
			out = append(out, s.domainJSON(s.domains[n]))
		}
		return paged(q, "domains", out)
	})
}

func (s *Server) createDomain(q *request) {
	var req struct {
		Name      string `json:"name"`
		IPAddress string `json:"ip_address"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		name := domainName(req.Name)
		if !validDomainName(name) {
			return fail(http.StatusUnprocessableEntity, "Name is invalid.")
		}
		if s.domains[name] != nil {
			return fail(http.StatusUnprocessableEntity, "Name already exists.")
		}
		d := s.addDomainLocked(name, req.IPAddress)
		return http.StatusCreated, map[string]any{"domain": s.domainJSON(d)}
	})
}

func domainName(n string) string { return strings.ToLower(strings.TrimSuffix(n, ".")) }

func validDomainName(n string) bool { return n != "" && strings.Contains(n, ".") }

// addDomainLocked creates a domain as DO does: NS×3 and SOA at the apex,
// plus an A record at the apex when ip is set.
func (s *Server) addDomainLocked(name, ip string) *domain {
	d := &domain{Name: name, TTL: 1800, Records: map[int]*record{}}
	s.domains[name] = d
	for _, ns := range []string{"ns1.digitalocean.com", "ns2.digitalocean.com", "ns3.digitalocean.com"} {
		s.addRecordLocked(d, record{Type: "NS", Name: "@", Data: ns})
	}
	s.addRecordLocked(d, record{Type: "SOA", Name: "@", Data: "1800"})
	if ip != "" {
		s.addRecordLocked(d, record{Type: "A", Name: "@", Data: ip})
	}
	return d
}

// AddDomain creates the domain name (as `POST /v2/domains` without an
// ip_address would: NS and SOA records only) if it does not exist yet; no
// API call is recorded. The sandbox uses it for the zone it offers. An
// invalid name (empty, or without a dot) is an error.
func (s *Server) AddDomain(name string) error {
	s.init()
	name = domainName(name)
	if !validDomainName(name) {
		return fmt.Errorf("dosim: domain name %q is invalid", name)
	}
	s.update(func() {
		if s.domains[name] == nil {
			s.addDomainLocked(name, "")
		}
	})
	return nil
}

// DomainRecord is one record of a domain, as the domains API stores it.
type DomainRecord struct {
	Domain string // the domain ("example.com"), lower case, no trailing dot
	ID     int
	Type   string // "A", "AAAA", "CNAME", "NS", "SOA", "TXT", ...
	Name   string // relative to Domain: "@" for the apex, "www", "app.eu"
	Data   string // the address of an A record
	TTL    int    // seconds
}

// FQDN is the record's fully qualified name without the trailing dot:
// Domain for "@", else Name + "." + Domain (DO's names are relative).
func (r DomainRecord) FQDN() string {
	if r.Name == "@" || r.Name == "" {
		return r.Domain
	}
	return r.Name + "." + r.Domain
}

// DomainRecords returns a copy of every record of every domain, sorted by
// domain, then id (creation order). The sandbox's DNS server answers from
// it, so a record created through the API decides where a name resolves.
func (s *Server) DomainRecords() []DomainRecord {
	s.init()
	var out []DomainRecord
	s.update(func() {
		names := make([]string, 0, len(s.domains))
		for n := range s.domains {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			d := s.domains[n]
			for _, id := range sortedKeys(d.Records) {
				r := d.Records[id]
				out = append(out, DomainRecord{Domain: d.Name, ID: r.ID, Type: r.Type, Name: r.Name, Data: r.Data, TTL: r.TTL})
			}
		}
	})
	return out
}

func (s *Server) getDomain(q *request) {
	q.do(func() (int, any) {
		d := s.domains[q.param("domain")]
		if d == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"domain": s.domainJSON(d)}
	})
}

func (s *Server) deleteDomain(q *request) {
	q.do(func() (int, any) {
		if s.domains[q.param("domain")] == nil {
			return notFound()
		}
		delete(s.domains, q.param("domain"))
		return http.StatusNoContent, nil
	})
}

// relName turns a record name given as FQDN into DO's relative form ("@" for
// the apex), which is what the API stores and returns.
func relName(name, domain string) string {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	switch {
	case name == "" || name == domain:
		return "@"
	case strings.HasSuffix(name, "."+domain):
		return strings.TrimSuffix(name, "."+domain)
	}
	return name
}

func (s *Server) listRecords(q *request) {
	v := q.r.URL.Query()
	typ, name := v.Get("type"), v.Get("name")
	q.do(func() (int, any) {
		d := s.domains[q.param("domain")]
		if d == nil {
			return notFound()
		}
		var out []*record
		for _, id := range sortedKeys(d.Records) {
			r := d.Records[id]
			if typ != "" && r.Type != typ {
				continue
			}
			// DO's name filter takes the fully qualified name.
			if name != "" && relName(name, d.Name) != r.Name {
				continue
			}
			out = append(out, r)
		}
		return paged(q, "domain_records", out)
	})
}

var recordTypes = map[string]bool{"A": true, "AAAA": true, "CAA": true, "CNAME": true, "MX": true, "NS": true, "SOA": true, "SRV": true, "TXT": true}

func (s *Server) createRecord(q *request) {
	var req record
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		d := s.domains[q.param("domain")]
		if d == nil {
			return notFound()
		}
		if !recordTypes[req.Type] || req.Type == "SOA" {
			return fail(http.StatusUnprocessableEntity, "Type is invalid.")
		}
		if req.Data == "" {
			return fail(http.StatusUnprocessableEntity, "Data needs to be a valid value.")
		}
		req.Name = relName(req.Name, d.Name)
		r := s.addRecordLocked(d, req)
		return http.StatusCreated, map[string]any{"domain_record": r}
	})
}

func (s *Server) recordParam(q *request) (*domain, *record) {
	d := s.domains[q.param("domain")]
	if d == nil {
		return nil, nil
	}
	id, _ := strconv.Atoi(q.param("id"))
	return d, d.Records[id]
}

func (s *Server) getRecord(q *request) {
	q.do(func() (int, any) {
		_, r := s.recordParam(q)
		if r == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"domain_record": r}
	})
}

func (s *Server) updateRecord(q *request) {
	var req struct {
		Type     *string `json:"type"`
		Name     *string `json:"name"`
		Data     *string `json:"data"`
		TTL      *int    `json:"ttl"`
		Priority *int    `json:"priority"`
		Port     *int    `json:"port"`
		Weight   *int    `json:"weight"`
		Flags    *int    `json:"flags"`
		Tag      *string `json:"tag"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		d, r := s.recordParam(q)
		if r == nil {
			return notFound()
		}
		if req.Type != nil && *req.Type != "" {
			if !recordTypes[*req.Type] {
				return fail(http.StatusUnprocessableEntity, "Type is invalid.")
			}
			r.Type = *req.Type
		}
		if req.Name != nil && *req.Name != "" {
			r.Name = relName(*req.Name, d.Name)
		}
		if req.Data != nil && *req.Data != "" {
			r.Data = *req.Data
		}
		if req.TTL != nil && *req.TTL != 0 {
			r.TTL = *req.TTL
		}
		if req.Priority != nil {
			r.Priority = req.Priority
		}
		if req.Port != nil {
			r.Port = req.Port
		}
		if req.Weight != nil {
			r.Weight = req.Weight
		}
		if req.Flags != nil {
			r.Flags = req.Flags
		}
		if req.Tag != nil {
			r.Tag = req.Tag
		}
		return http.StatusOK, map[string]any{"domain_record": r}
	})
}

func (s *Server) deleteRecord(q *request) {
	q.do(func() (int, any) {
		d, r := s.recordParam(q)
		if r == nil {
			return notFound()
		}
		delete(d.Records, r.ID)
		return http.StatusNoContent, nil
	})
}

// ---- spaces keys ----

// SpacesKey is a Spaces access key; Secret is only ever returned by create.
type SpacesKey struct {
	Name      string
	AccessKey string
	Secret    string
	Grants    []SpacesGrant
	CreatedAt time.Time
}

// SpacesGrant is a per-bucket permission (read, readwrite, fullaccess).
type SpacesGrant struct {
	Bucket     string `json:"bucket"`
	Permission string `json:"permission"`
}

// SpacesKeys returns every Spaces key (with secrets, for tests).
func (s *Server) SpacesKeys() []SpacesKey {
	s.init()
	var out []SpacesKey
	s.update(func() {
		for _, k := range s.sortedKeysList() {
			out = append(out, *k)
		}
	})
	return out
}

func (s *Server) sortedKeysList() []*SpacesKey {
	out := make([]*SpacesKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AccessKey < out[j].AccessKey })
	return out
}

// spacesKeyChangedLocked queues OnSpacesKeyChange. Caller holds mu.
func (s *Server) spacesKeyChangedLocked(k *SpacesKey, deleted bool) {
	if h := s.opts.OnSpacesKeyChange; h != nil {
		snap := *k
		snap.Grants = slices.Clone(k.Grants)
		s.queueHook(func() { h(snap, deleted) })
	}
}

func keyJSON(k *SpacesKey, withSecret bool) map[string]any {
	grants := k.Grants
	if grants == nil {
		grants = []SpacesGrant{}
	}
	m := map[string]any{"name": k.Name, "access_key": k.AccessKey, "grants": grants, "created_at": k.CreatedAt.Format(time.RFC3339)}
	if withSecret {
		m["secret_key"] = k.Secret
	}
	return m
}

func validGrants(gs []SpacesGrant) string {
	for _, g := range gs {
		switch g.Permission {
		case "read", "readwrite":
			if g.Bucket == "" {
				return "a bucket is required for read and readwrite grants."
			}
		case "fullaccess":
		default:
			return "permission must be read, readwrite or fullaccess."
		}
	}
	return ""
}

func randomKey(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *Server) listSpacesKeys(q *request) {
	q.do(func() (int, any) {
		var out []map[string]any
		for _, k := range s.sortedKeysList() {
			out = append(out, keyJSON(k, false))
		}
		return paged(q, "keys", out)
	})
}

func (s *Server) createSpacesKey(q *request) {
	var req struct {
		Name   string        `json:"name"`
		Grants []SpacesGrant `json:"grants"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		if req.Name == "" {
			return fail(http.StatusBadRequest, "name is required.")
		}
		if msg := validGrants(req.Grants); msg != "" {
			return fail(http.StatusBadRequest, "%s", msg)
		}
		k := &SpacesKey{Name: req.Name, AccessKey: "DO" + strings.ToUpper(strings.NewReplacer("-", "X", "_", "Y").Replace(randomKey(12))),
			Secret: randomKey(32), Grants: req.Grants, CreatedAt: s.opts.Now().UTC()}
		s.keys[k.AccessKey] = k
		s.spacesKeyChangedLocked(k, false)
		return http.StatusCreated, map[string]any{"key": keyJSON(k, true)}
	})
}

func (s *Server) getSpacesKey(q *request) {
	q.do(func() (int, any) {
		k := s.keys[q.param("key")]
		if k == nil {
			return notFound()
		}
		return http.StatusOK, map[string]any{"key": keyJSON(k, false)}
	})
}

func (s *Server) updateSpacesKey(q *request) {
	var req struct {
		Name   *string       `json:"name"`
		Grants []SpacesGrant `json:"grants"`
	}
	if !q.decode(&req) {
		return
	}
	q.do(func() (int, any) {
		k := s.keys[q.param("key")]
		if k == nil {
			return notFound()
		}
		if req.Name != nil && *req.Name != "" {
			k.Name = *req.Name
		}
		if req.Grants != nil {
			if msg := validGrants(req.Grants); msg != "" {
				return fail(http.StatusBadRequest, "%s", msg)
			}
			k.Grants = req.Grants
		}
		s.spacesKeyChangedLocked(k, false)
		return http.StatusOK, map[string]any{"key": keyJSON(k, false)}
	})
}

func (s *Server) deleteSpacesKey(q *request) {
	q.do(func() (int, any) {
		k := s.keys[q.param("key")]
		if k == nil {
			return notFound()
		}
		delete(s.keys, q.param("key"))
		s.spacesKeyChangedLocked(k, true)
		return http.StatusNoContent, nil
	})
}
