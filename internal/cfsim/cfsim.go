// Package cfsim simulates the part of Cloudflare's API v4 dynia uses: zones
// (listed by name) and their DNS records (list, get, create, overwrite,
// edit, delete), statefully, in memory, for tests and the sandbox. Answers
// use Cloudflare's v4 envelope {success, errors, messages, result,
// result_info} and its pagination (page, per_page); requests authenticate
// with "Authorization: Bearer <token>" against the simulator's own tokens.
// What it follows and where it deviates is in docs/cfsim.md; its answers
// are checked against a subset of Cloudflare's published OpenAPI schema
// (testdata/openapi) in the tests.
//
// Records() is the simulator's state for the sandbox's DNS server: the A
// records a client created decide where names resolve.
package cfsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Record is one DNS record as the simulator holds it.
type Record struct {
	ID         string
	ZoneID     string
	ZoneName   string
	Name       string // fully qualified, lower case, no trailing dot
	Type       string // "A", "AAAA", "CNAME", "TXT", ...
	Content    string
	TTL        int // 1 = automatic
	Proxied    bool
	Comment    string
	CreatedOn  time.Time
	ModifiedOn time.Time
}

type zone struct {
	ID, Name  string
	CreatedOn time.Time
	records   map[string]*Record
}

// Options configure a Server.
type Options struct {
	// Now is the clock for created_on/modified_on (default time.Now).
	Now func() time.Time
}

// Server is the simulator. Its methods are safe for concurrent use.
type Server struct {
	now func() time.Time

	mu     sync.Mutex
	tokens map[string]bool // token -> may edit (false: read only)
	zones  map[string]*zone
	calls  int
}

// New returns an empty simulator: no zones, no tokens.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{now: opts.Now, tokens: map[string]bool{}, zones: map[string]*zone{}}
}

// AddToken accepts token; edit false makes it read-only (writes are 403).
func (s *Server) AddToken(token string, edit bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = edit
}

// NewToken makes and registers a random 40-character edit token (the
// length of Cloudflare's API tokens).
func (s *Server) NewToken() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	t := hex.EncodeToString(b)
	s.AddToken(t, true)
	return t
}

// AddZone creates the zone name (lower case, no trailing dot) and returns
// its 32-hex-character id; an existing zone's id is returned as is.
func (s *Server) AddZone(name string) string {
	name = normName(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, z := range s.zones {
		if z.Name == name {
			return z.ID
		}
	}
	z := &zone{ID: newID(), Name: name, CreatedOn: s.now().UTC(), records: map[string]*Record{}}
	s.zones[z.ID] = z
	return z.ID
}

// Records returns a copy of every record of every zone, sorted by name,
// type and content.
func (s *Server) Records() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Record
	for _, z := range s.zones {
		for _, r := range z.records {
			out = append(out, *r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Type != b.Type {
			return a.Type < b.Type
		}
		return a.Content < b.Content
	})
	return out
}

// CallCount is how many API requests the simulator answered.
func (s *Server) CallCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func normName(n string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".") }

// apiError is one entry of the envelope's errors array.
type apiError struct {
	Code       int        `json:"code"`
	Message    string     `json:"message"`
	ErrorChain []apiError `json:"error_chain,omitempty"`
}

type resultInfo struct {
	Page       int `json:"page"`
	PerPage    int `json:"per_page"`
	Count      int `json:"count"`
	TotalCount int `json:"total_count"`
	TotalPages int `json:"total_pages"`
}

type envelope struct {
	Success    bool        `json:"success"`
	Errors     []apiError  `json:"errors"`
	Messages   []apiError  `json:"messages"`
	Result     any         `json:"result"`
	ResultInfo *resultInfo `json:"result_info,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, env envelope) {
	if env.Errors == nil {
		env.Errors = []apiError{}
	}
	if env.Messages == nil {
		env.Messages = []apiError{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(env) // the client went away: nothing to do
}

func fail(w http.ResponseWriter, status int, errs ...apiError) {
	writeJSON(w, status, envelope{Success: false, Errors: errs, Result: nil})
}

// APIPrefix is where the API lives, as on api.cloudflare.com.
const APIPrefix = "/client/v4"

// ServeHTTP serves the API under APIPrefix.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	path, ok := strings.CutPrefix(r.URL.Path, APIPrefix)
	if !ok {
		fail(w, http.StatusNotFound, apiError{Code: 7000, Message: "No route for that URI"})
		return
	}
	edit, ok := s.auth(w, r)
	if !ok {
		return
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	write := r.Method != http.MethodGet
	if write && !edit {
		fail(w, http.StatusForbidden, apiError{Code: 10000, Message: "Authentication error"})
		return
	}
	switch {
	case len(parts) == 1 && parts[0] == "zones" && r.Method == http.MethodGet:
		s.listZones(w, r)
	case len(parts) == 3 && parts[0] == "zones" && parts[2] == "dns_records":
		switch r.Method {
		case http.MethodGet:
			s.listRecords(w, r, parts[1])
		case http.MethodPost:
			s.createRecord(w, r, parts[1])
		default:
			s.methodNotAllowed(w)
		}
	case len(parts) == 4 && parts[0] == "zones" && parts[2] == "dns_records":
		switch r.Method {
		case http.MethodGet:
			s.getRecord(w, parts[1], parts[3])
		case http.MethodPut, http.MethodPatch:
			s.updateRecord(w, r, parts[1], parts[3], r.Method == http.MethodPatch)
		case http.MethodDelete:
			s.deleteRecord(w, parts[1], parts[3])
		default:
			s.methodNotAllowed(w)
		}
	default:
		fail(w, http.StatusNotFound, apiError{Code: 7003, Message: "Could not route to " + path + ", perhaps your object identifier is invalid?"})
	}
}

func (s *Server) methodNotAllowed(w http.ResponseWriter) {
	fail(w, http.StatusMethodNotAllowed, apiError{Code: 10405, Message: "Method not allowed"})
}

// auth checks the bearer token; it writes the failure itself.
func (s *Server) auth(w http.ResponseWriter, r *http.Request) (edit, ok bool) {
	h := r.Header.Get("Authorization")
	if h == "" && r.Header.Get("X-Auth-Key") == "" {
		fail(w, http.StatusBadRequest, apiError{Code: 9106, Message: "Missing X-Auth-Key, X-Auth-Email or Authorization headers"})
		return false, false
	}
	token, found := strings.CutPrefix(h, "Bearer ")
	if !found || token == "" || strings.ContainsAny(token, " \t") {
		fail(w, http.StatusBadRequest, apiError{Code: 6003, Message: "Invalid request headers",
			ErrorChain: []apiError{{Code: 6111, Message: "Invalid format for Authorization header"}}})
		return false, false
	}
	s.mu.Lock()
	edit, known := s.tokens[token]
	s.mu.Unlock()
	if !known {
		fail(w, http.StatusUnauthorized, apiError{Code: 9109, Message: "Invalid access token"})
		return false, false
	}
	return edit, true
}

// page reads page/per_page (defaults 1 and def, per_page capped at max).
func page(w http.ResponseWriter, r *http.Request, def, max int) (pg, per int, ok bool) {
	pg, per = 1, def
	q := r.URL.Query()
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fail(w, http.StatusBadRequest, apiError{Code: 1001, Message: "Invalid page: " + v})
			return 0, 0, false
		}
		pg = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			fail(w, http.StatusBadRequest, apiError{Code: 1001, Message: "Invalid per_page: " + v})
			return 0, 0, false
		}
		per = min(n, max)
	}
	return pg, per, true
}

func paginate[T any](items []T, pg, per int) ([]T, *resultInfo) {
	total := len(items)
	start := min((pg-1)*per, total)
	end := min(start+per, total)
	out := items[start:end]
	if out == nil {
		out = []T{}
	}
	return out, &resultInfo{Page: pg, PerPage: per, Count: len(out), TotalCount: total, TotalPages: (total + per - 1) / per}
}

func (s *Server) zoneJSON(z *zone) map[string]any {
	return map[string]any{
		"id": z.ID, "name": z.Name, "status": "active", "paused": false, "type": "full",
		"development_mode": 0, "name_servers": []string{"ns1.cfsim.test", "ns2.cfsim.test"},
		"original_name_servers": nil, "original_registrar": nil, "original_dnshost": nil,
		"created_on": z.CreatedOn.Format(time.RFC3339Nano), "modified_on": z.CreatedOn.Format(time.RFC3339Nano),
		"activated_on": z.CreatedOn.Format(time.RFC3339Nano),
		"account":      map[string]any{"id": "00000000000000000000000000000001", "name": "cfsim"},
		"meta":         map[string]any{"phishing_detected": false},
		"owner":        map[string]any{"id": nil, "name": nil, "type": "user"},
		"permissions":  []string{"#dns_records:edit", "#dns_records:read", "#zone:read"},
		"plan":         map[string]any{"id": "0feeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "name": "Free Website", "price": 0, "currency": "USD", "frequency": "", "is_subscribed": false, "can_subscribe": false, "legacy_id": "free", "legacy_discount": false, "externally_managed": false},
	}
}

func (s *Server) listZones(w http.ResponseWriter, r *http.Request) {
	pg, per, ok := page(w, r, 20, 50)
	if !ok {
		return
	}
	name := normName(r.URL.Query().Get("name"))
	s.mu.Lock()
	var zs []*zone
	for _, z := range s.zones {
		if name == "" || z.Name == name {
			zs = append(zs, z)
		}
	}
	sort.Slice(zs, func(i, j int) bool { return zs[i].Name < zs[j].Name })
	var all []map[string]any
	for _, z := range zs {
		all = append(all, s.zoneJSON(z))
	}
	s.mu.Unlock()
	items, info := paginate(all, pg, per)
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: items, ResultInfo: info})
}

func recordJSON(rec *Record) map[string]any {
	comment := any(nil)
	if rec.Comment != "" {
		comment = rec.Comment
	}
	return map[string]any{
		"id": rec.ID, "name": rec.Name, "type": rec.Type, "content": rec.Content,
		"proxiable": rec.Type == "A" || rec.Type == "AAAA" || rec.Type == "CNAME",
		"proxied":   rec.Proxied, "ttl": rec.TTL, "comment": comment, "tags": []string{},
		"settings": map[string]any{}, "meta": map[string]any{},
		"created_on": rec.CreatedOn.Format(time.RFC3339Nano), "modified_on": rec.ModifiedOn.Format(time.RFC3339Nano),
	}
}

// zoneLocked finds a zone; the caller holds s.mu. It writes the 404.
func (s *Server) zoneLocked(w http.ResponseWriter, id string) *zone {
	z := s.zones[id]
	if z == nil {
		fail(w, http.StatusNotFound, apiError{Code: 7003, Message: "Could not route to /zones/" + id + "/dns_records, perhaps your object identifier is invalid?"})
	}
	return z
}

func (s *Server) listRecords(w http.ResponseWriter, r *http.Request, zoneID string) {
	pg, per, ok := page(w, r, 100, 5000)
	if !ok {
		return
	}
	q := r.URL.Query()
	name := normName(q.Get("name"))
	if v := q.Get("name.exact"); v != "" {
		name = normName(v)
	}
	typ, content := strings.ToUpper(q.Get("type")), q.Get("content")
	if v := q.Get("content.exact"); v != "" {
		content = v
	}
	s.mu.Lock()
	z := s.zoneLocked(w, zoneID)
	if z == nil {
		s.mu.Unlock()
		return
	}
	var recs []*Record
	for _, rec := range z.records {
		if (name == "" || rec.Name == name) && (typ == "" || rec.Type == typ) && (content == "" || rec.Content == content) {
			recs = append(recs, rec)
		}
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Name != recs[j].Name {
			return recs[i].Name < recs[j].Name
		}
		return recs[i].ID < recs[j].ID
	})
	all := []map[string]any{}
	for _, rec := range recs {
		all = append(all, recordJSON(rec))
	}
	s.mu.Unlock()
	items, info := paginate(all, pg, per)
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: items, ResultInfo: info})
}

func (s *Server) getRecord(w http.ResponseWriter, zoneID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneLocked(w, zoneID)
	if z == nil {
		return
	}
	rec := z.records[id]
	if rec == nil {
		fail(w, http.StatusNotFound, apiError{Code: 81044, Message: "Record does not exist."})
		return
	}
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: recordJSON(rec)})
}

// recordBody is what create, overwrite and edit accept.
type recordBody struct {
	Name    *string `json:"name"`
	Type    *string `json:"type"`
	Content *string `json:"content"`
	TTL     *int    `json:"ttl"`
	Proxied *bool   `json:"proxied"`
	Comment *string `json:"comment"`
}

// supportedTypes are the record types the simulator stores.
var supportedTypes = []string{"A", "AAAA", "CNAME", "TXT"}

// apply validates b onto rec (full: every required field must be present).
func (z *zone) apply(rec *Record, b recordBody, full bool) *apiError {
	if full && (b.Name == nil || b.Type == nil || b.Content == nil) {
		return &apiError{Code: 9000, Message: "DNS name, type and content are required"}
	}
	if b.Type != nil {
		t := strings.ToUpper(*b.Type)
		if !slices.Contains(supportedTypes, t) {
			return &apiError{Code: 9004, Message: "This record type is not supported by the simulator: " + *b.Type}
		}
		rec.Type = t
	}
	if b.Name != nil {
		n := normName(*b.Name)
		switch {
		case n == "@" || n == "":
			n = z.Name
		case n != z.Name && !strings.HasSuffix(n, "."+z.Name):
			n = n + "." + z.Name // a relative name, as Cloudflare accepts
		}
		if len(n) > 255 {
			return &apiError{Code: 9005, Message: "DNS name is invalid."}
		}
		rec.Name = n
	}
	if b.Content != nil {
		rec.Content = *b.Content
	}
	if b.TTL != nil {
		if *b.TTL != 1 && (*b.TTL < 60 || *b.TTL > 86400) {
			return &apiError{Code: 9021, Message: "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic."}
		}
		rec.TTL = *b.TTL
	}
	if rec.TTL == 0 {
		rec.TTL = 1
	}
	if b.Proxied != nil {
		rec.Proxied = *b.Proxied
	}
	if b.Comment != nil {
		rec.Comment = *b.Comment
	}
	switch rec.Type {
	case "A":
		if a, err := netip.ParseAddr(rec.Content); err != nil || !a.Is4() {
			return &apiError{Code: 9005, Message: "Content for A record is invalid. Must be a valid IPv4 address"}
		}
	case "AAAA":
		if a, err := netip.ParseAddr(rec.Content); err != nil || !a.Is6() {
			return &apiError{Code: 9005, Message: "Content for AAAA record is invalid. Must be a valid IPv6 address"}
		}
	}
	if rec.Proxied && !(rec.Type == "A" || rec.Type == "AAAA" || rec.Type == "CNAME") {
		return &apiError{Code: 9004, Message: "This record type cannot be proxied."}
	}
	return nil
}

// conflictLocked reports an identical record (name, type, content) other
// than rec.
func (z *zone) conflictLocked(rec *Record) bool {
	for _, o := range z.records {
		if o.ID != rec.ID && o.Name == rec.Name && o.Type == rec.Type && o.Content == rec.Content {
			return true
		}
	}
	return false
}

func decodeBody(w http.ResponseWriter, r *http.Request) (recordBody, bool) {
	var b recordBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(&b); err != nil {
		fail(w, http.StatusBadRequest, apiError{Code: 9207, Message: "Request body is invalid."})
		return b, false
	}
	return b, true
}

func (s *Server) createRecord(w http.ResponseWriter, r *http.Request, zoneID string) {
	b, ok := decodeBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneLocked(w, zoneID)
	if z == nil {
		return
	}
	now := s.now().UTC()
	rec := &Record{ID: newID(), ZoneID: z.ID, ZoneName: z.Name, CreatedOn: now, ModifiedOn: now}
	if e := z.apply(rec, b, true); e != nil {
		fail(w, http.StatusBadRequest, *e)
		return
	}
	if z.conflictLocked(rec) {
		fail(w, http.StatusBadRequest, apiError{Code: 81058, Message: "An identical record already exists."})
		return
	}
	z.records[rec.ID] = rec
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: recordJSON(rec)})
}

func (s *Server) updateRecord(w http.ResponseWriter, r *http.Request, zoneID, id string, patch bool) {
	b, ok := decodeBody(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneLocked(w, zoneID)
	if z == nil {
		return
	}
	cur := z.records[id]
	if cur == nil {
		fail(w, http.StatusNotFound, apiError{Code: 81044, Message: "Record does not exist."})
		return
	}
	next := *cur
	if !patch {
		// PUT overwrites: unset optional fields return to their defaults.
		next.TTL, next.Proxied, next.Comment = 1, false, ""
	}
	if e := z.apply(&next, b, !patch); e != nil {
		fail(w, http.StatusBadRequest, *e)
		return
	}
	if z.conflictLocked(&next) {
		fail(w, http.StatusBadRequest, apiError{Code: 81058, Message: "An identical record already exists."})
		return
	}
	next.ModifiedOn = s.now().UTC()
	z.records[id] = &next
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: recordJSON(&next)})
}

func (s *Server) deleteRecord(w http.ResponseWriter, zoneID, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	z := s.zoneLocked(w, zoneID)
	if z == nil {
		return
	}
	if z.records[id] == nil {
		fail(w, http.StatusNotFound, apiError{Code: 81044, Message: "Record does not exist."})
		return
	}
	delete(z.records, id)
	writeJSON(w, http.StatusOK, envelope{Success: true, Result: map[string]any{"id": id}})
}

// String names the simulator for messages.
func (s *Server) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("cfsim (%d zones)", len(s.zones))
}
