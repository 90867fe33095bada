package dosim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/poll"
)

// route is one API operation: method, path pattern with {wildcards}, the
// token scopes of which any one suffices (from the spec's bearer_auth
// security), and the handler.
type route struct {
	method  string
	pattern []string
	scopes  []string
	h       func(*request)
}

// request is what a handler gets: the parsed path values, the writer and the
// server.
type request struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	params map[string]string
}

func (q *request) param(name string) string { return q.params[name] }

func op(method, path string, h func(*request), scopes ...string) route {
	return route{method: method, pattern: strings.Split(strings.Trim(path, "/"), "/"), scopes: scopes, h: h}
}

// routes returns the route table. s may be nil (FullScopes only reads scopes).
func routes(s *Server) []route {
	sv := s
	if sv == nil {
		sv = &Server{}
	}
	return []route{
		op("GET", "/v2/account", sv.getAccount, "account:read"),
		op("GET", "/v2/actions", sv.listActions, "actions:read"),
		op("GET", "/v2/actions/{id}", sv.getAction, "actions:read"),

		op("GET", "/v2/droplets", sv.listDroplets, "droplet:read"),
		op("POST", "/v2/droplets", sv.createDroplets, "droplet:create"),
		op("DELETE", "/v2/droplets", sv.deleteDropletsByTag, "droplet:delete"),
		op("POST", "/v2/droplets/actions", sv.postDropletActionByTag, "droplet:update"),
		op("GET", "/v2/droplets/{id}", sv.getDroplet, "droplet:read"),
		op("DELETE", "/v2/droplets/{id}", sv.deleteDroplet, "droplet:delete"),
		op("GET", "/v2/droplets/{id}/actions", sv.listDropletActions, "droplet:read"),
		op("POST", "/v2/droplets/{id}/actions", sv.postDropletAction, "droplet:update"),
		op("GET", "/v2/droplets/{id}/actions/{action_id}", sv.getDropletAction, "droplet:read"),
		op("GET", "/v2/droplets/{id}/firewalls", sv.listDropletFirewalls, "firewall:read"),
		op("GET", "/v2/droplets/{id}/snapshots", sv.listDropletSnapshots, "droplet:read"),

		op("GET", "/v2/reserved_ips", sv.listReservedIPs, "reserved_ip:read"),
		op("POST", "/v2/reserved_ips", sv.createReservedIP, "reserved_ip:create"),
		op("GET", "/v2/reserved_ips/{ip}", sv.getReservedIP, "reserved_ip:read"),
		op("DELETE", "/v2/reserved_ips/{ip}", sv.deleteReservedIP, "reserved_ip:delete"),
		op("GET", "/v2/reserved_ips/{ip}/actions", sv.listReservedIPActions, "reserved_ip:read"),
		op("POST", "/v2/reserved_ips/{ip}/actions", sv.postReservedIPAction, "reserved_ip:update"),
		op("GET", "/v2/reserved_ips/{ip}/actions/{action_id}", sv.getReservedIPAction, "reserved_ip:read"),
		// Legacy names, same semantics, root keys floating_ip(s).
		op("GET", "/v2/floating_ips", sv.listReservedIPs, "reserved_ip:read"),
		op("POST", "/v2/floating_ips", sv.createReservedIP, "reserved_ip:create"),
		op("GET", "/v2/floating_ips/{ip}", sv.getReservedIP, "reserved_ip:read"),
		op("DELETE", "/v2/floating_ips/{ip}", sv.deleteReservedIP, "reserved_ip:delete"),
		op("GET", "/v2/floating_ips/{ip}/actions", sv.listReservedIPActions, "reserved_ip:read"),
		op("POST", "/v2/floating_ips/{ip}/actions", sv.postReservedIPAction, "reserved_ip:update"),
		op("GET", "/v2/floating_ips/{ip}/actions/{action_id}", sv.getReservedIPAction, "reserved_ip:read"),

		op("GET", "/v2/vpcs", sv.listVPCs, "vpc:read"),
		op("POST", "/v2/vpcs", sv.createVPC, "vpc:create"),
		op("GET", "/v2/vpcs/{id}", sv.getVPC, "vpc:read"),
		op("PUT", "/v2/vpcs/{id}", sv.updateVPC, "vpc:update"),
		op("PATCH", "/v2/vpcs/{id}", sv.updateVPC, "vpc:update"),
		op("DELETE", "/v2/vpcs/{id}", sv.deleteVPC, "vpc:delete"),
		op("GET", "/v2/vpcs/{id}/members", sv.listVPCMembers, "vpc:read"),

		op("GET", "/v2/firewalls", sv.listFirewalls, "firewall:read"),
		op("POST", "/v2/firewalls", sv.createFirewall, "firewall:create"),
		op("GET", "/v2/firewalls/{id}", sv.getFirewall, "firewall:read"),
		op("PUT", "/v2/firewalls/{id}", sv.updateFirewall, "firewall:update"),
		op("DELETE", "/v2/firewalls/{id}", sv.deleteFirewall, "firewall:delete"),
		op("POST", "/v2/firewalls/{id}/droplets", sv.firewallDroplets(true), "firewall:update"),
		op("DELETE", "/v2/firewalls/{id}/droplets", sv.firewallDroplets(false), "firewall:update"),
		op("POST", "/v2/firewalls/{id}/tags", sv.firewallTags(true), "firewall:update"),
		op("DELETE", "/v2/firewalls/{id}/tags", sv.firewallTags(false), "firewall:update"),
		op("POST", "/v2/firewalls/{id}/rules", sv.firewallRules(true), "firewall:update"),
		op("DELETE", "/v2/firewalls/{id}/rules", sv.firewallRules(false), "firewall:update"),

		op("GET", "/v2/images", sv.listImages, "image:read"),
		op("GET", "/v2/images/{id}", sv.getImage, "image:read"),
		op("PUT", "/v2/images/{id}", sv.updateImage, "image:update"),
		op("DELETE", "/v2/images/{id}", sv.deleteImage, "image:delete"),
		op("GET", "/v2/snapshots", sv.listSnapshots, "snapshot:read"),
		op("GET", "/v2/snapshots/{id}", sv.getSnapshot, "snapshot:read", "block_storage_snapshot:read"),
		op("DELETE", "/v2/snapshots/{id}", sv.deleteSnapshot, "image:delete", "snapshot:delete"),

		op("GET", "/v2/tags", sv.listTags, "tag:read"),
		op("POST", "/v2/tags", sv.createTag, "tag:create"),
		op("GET", "/v2/tags/{tag}", sv.getTag, "tag:read"),
		op("DELETE", "/v2/tags/{tag}", sv.deleteTag, "tag:delete"),
		op("POST", "/v2/tags/{tag}/resources", sv.tagResources(true), "tag:create"),
		op("DELETE", "/v2/tags/{tag}/resources", sv.tagResources(false), "tag:delete"),

		op("GET", "/v2/domains", sv.listDomains, "domain:read"),
		op("POST", "/v2/domains", sv.createDomain, "domain:create"),
		op("GET", "/v2/domains/{domain}", sv.getDomain, "domain:read"),
		op("DELETE", "/v2/domains/{domain}", sv.deleteDomain, "domain:delete"),
		op("GET", "/v2/domains/{domain}/records", sv.listRecords, "domain:read"),
		op("POST", "/v2/domains/{domain}/records", sv.createRecord, "domain:create", "domain:update"),
		op("GET", "/v2/domains/{domain}/records/{id}", sv.getRecord, "domain:read"),
		op("PUT", "/v2/domains/{domain}/records/{id}", sv.updateRecord, "domain:update"),
		op("PATCH", "/v2/domains/{domain}/records/{id}", sv.updateRecord, "domain:update"),
		op("DELETE", "/v2/domains/{domain}/records/{id}", sv.deleteRecord, "domain:delete", "domain:update"),

		op("GET", "/v2/regions", sv.listRegions, "regions:read"),
		op("GET", "/v2/sizes", sv.listSizes, "sizes:read", "regions:read"),

		op("GET", "/v2/spaces/keys", sv.listSpacesKeys, "spaces_key:read"),
		op("POST", "/v2/spaces/keys", sv.createSpacesKey, "spaces_key:create_credentials"),
		op("GET", "/v2/spaces/keys/{key}", sv.getSpacesKey, "spaces_key:read"),
		op("PUT", "/v2/spaces/keys/{key}", sv.updateSpacesKey, "spaces_key:update"),
		op("PATCH", "/v2/spaces/keys/{key}", sv.updateSpacesKey, "spaces_key:update"),
		op("DELETE", "/v2/spaces/keys/{key}", sv.deleteSpacesKey, "spaces_key:delete"),
	}
}

// match finds the route for method and path. It reports whether the path
// exists under another method (→ 405).
func match(rts []route, method, path string) (*route, map[string]string, bool) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	pathKnown := false
	for i := range rts {
		rt := &rts[i]
		if len(rt.pattern) != len(segs) {
			continue
		}
		params := map[string]string{}
		ok := true
		for j, p := range rt.pattern {
			if strings.HasPrefix(p, "{") {
				v, err := url.PathUnescape(segs[j])
				if err != nil || v == "" {
					ok = false
					break
				}
				params[strings.Trim(p, "{}")] = v
				continue
			}
			if p != segs[j] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		pathKnown = true
		if rt.method == method {
			return rt, params, true
		}
	}
	return nil, nil, pathKnown
}

// discardWriter swallows an answer a fault replaces.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// statusWriter remembers the status for the call log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) serveAPI(w http.ResponseWriter, hr *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	reqID := newRequestID()
	sw.Header().Set("x-request-id", reqID)
	start := time.Now()
	wire := sw // what the client gets, also when a fault replaces sw
	defer s.recordCall(hr, wire, reqID, start)

	token := bearer(hr)
	s.rateHeaders(sw, token, false)
	if f := s.takeFault(hr); f != nil {
		var answered bool
		if sw, answered = injectFault(sw, hr, reqID, f); answered {
			return
		}
		if f.AnswerLost {
			defer answerLost(wire, reqID, f)
		}
	}
	s.dispatch(sw, hr, reqID, token)
}

// recordCall logs a finished request (Calls, OnCall, the debug log) with
// the status the client got.
func (s *Server) recordCall(hr *http.Request, wire *statusWriter, reqID string, start time.Time) {
	c := Call{Method: hr.Method, Path: hr.URL.Path, Query: hr.URL.RawQuery, Status: wire.status}
	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()
	if s.opts.OnCall != nil {
		s.opts.OnCall(c, hostOnly(hr.RemoteAddr), start)
	}
	s.opts.Logger.Debug("dosim api", "method", hr.Method, "path", hr.URL.Path, "status", wire.status, "request_id", reqID, "duration", time.Since(start))
}

// injectFault applies f before the request is handled: its latency, then
// either its answer (answered: the request is not handled) or, for an
// AnswerLost fault, a writer nobody reads to handle it into.
func injectFault(sw *statusWriter, hr *http.Request, reqID string, f *Fault) (_ *statusWriter, answered bool) {
	if f.Latency > 0 {
		// Read the body first: net/http notices a client that gave
		// up (and cancels the request's context) only once the
		// handler has read the body to its end. Without this a
		// create (POST with a body) that the client timed out on was
		// applied after the latency, though the client never learns
		// of it: not a timeout, a lost answer (AnswerLost tests those).
		body, err := io.ReadAll(io.LimitReader(hr.Body, 1<<20)) // DO bodies are small
		if err != nil {
			return sw, true
		}
		hr.Body = io.NopCloser(bytes.NewReader(body))
		if poll.Sleep(hr.Context(), f.Latency) != nil {
			return sw, true
		}
	}
	if f.AnswerLost {
		// Handled as usual, into a writer nobody reads; the client gets
		// the fault's answer (answerLost), or a dropped connection.
		return &statusWriter{ResponseWriter: &discardWriter{h: http.Header{}}}, false
	}
	if f.Status != 0 {
		if f.Status == http.StatusTooManyRequests {
			sw.Header().Set("retry-after", "1")
		}
		msg := f.Message
		if msg == "" {
			msg = "injected fault"
		}
		writeError(sw, reqID, f.Status, errorID(f.Status), msg)
		return sw, true
	}
	return sw, false
}

// answerLost ends a request an AnswerLost fault let through: the client
// gets the fault's status, or (none) a dropped connection.
func answerLost(wire *statusWriter, reqID string, f *Fault) {
	if f.Status == 0 {
		panic(http.ErrAbortHandler)
	}
	writeError(wire, reqID, f.Status, errorID(f.Status), "injected fault (the request was applied)")
}

// dispatch authenticates the request, counts it against the token's rate
// limit, and hands it to its route if the token's scopes allow.
func (s *Server) dispatch(sw *statusWriter, hr *http.Request, reqID, token string) {
	if token == "" {
		writeError(sw, reqID, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
		return
	}
	scopes, ok := s.tokenScopes(token)
	if !ok {
		writeError(sw, reqID, http.StatusUnauthorized, "unauthorized", "Unable to authenticate you")
		return
	}
	if retry, limited := s.rateHeaders(sw, token, true); limited {
		sw.Header().Set("retry-after", strconv.Itoa(retry))
		writeError(sw, reqID, http.StatusTooManyRequests, "too_many_requests", "API Rate limit exceeded.")
		return
	}

	rts := routes(s)
	rt, params, known := match(rts, hr.Method, hr.URL.Path)
	if rt == nil {
		if known {
			writeError(sw, reqID, http.StatusMethodNotAllowed, "method_not_allowed", "Method Not Allowed")
			return
		}
		writeError(sw, reqID, http.StatusNotFound, "not_found", "The resource you were accessing could not be found.")
		return
	}
	if scopes != nil {
		allowed := false
		for _, sc := range rt.scopes {
			if scopes[sc] {
				allowed = true
			}
		}
		if !allowed {
			writeError(sw, reqID, http.StatusForbidden, "forbidden", "You are not authorized to perform this operation")
			return
		}
	}
	rt.h(&request{s: s, w: sw, r: hr, params: params})
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// tokenScopes returns the token's scopes; nil means all scopes.
func (s *Server) tokenScopes(token string) (map[string]bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tokens) == 0 {
		return nil, true
	}
	sc, ok := s.tokens[token]
	return sc, ok
}

type rateWindow struct {
	start time.Time
	count int
}

// rateHeaders sets ratelimit-* headers. With count, it charges one request
// to token and reports whether the budget is exhausted (and the retry-after
// seconds).
func (s *Server) rateHeaders(w http.ResponseWriter, token string, count bool) (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	limit := s.opts.RateLimitPerMinute
	window := time.Minute
	if limit == 0 {
		limit, window = 5000, time.Hour
	}
	rw := s.rate[token]
	if rw == nil || now.Sub(rw.start) >= window {
		rw = &rateWindow{start: now}
		if token != "" {
			s.rate[token] = rw
		}
	}
	limited := false
	if count {
		if s.opts.RateLimitPerMinute > 0 && rw.count >= limit {
			limited = true
		} else {
			rw.count++
		}
	}
	remaining := limit - rw.count
	if remaining < 0 {
		remaining = 0
	}
	reset := rw.start.Add(window)
	h := w.Header()
	h.Set("ratelimit-limit", strconv.Itoa(limit))
	h.Set("ratelimit-remaining", strconv.Itoa(remaining))
	h.Set("ratelimit-reset", strconv.FormatInt(reset.Unix(), 10))
	retry := int(math.Ceil(reset.Sub(now).Seconds()))
	if retry < 1 {
		retry = 1
	}
	return retry, limited
}

// Fault is an injected failure for requests whose method (empty = any) and
// path prefix match. Latency delays the request (honouring client
// cancellation, so a long latency simulates a timeout); a non-zero Status
// answers it with that status and a DO error body (429 adds retry-after: 1)
// whose message is Message, or "injected fault" (e.g. Status 422 with
// Message "Droplet already has a pending event." is DO's answer to an
// action on a droplet or reserved IP that another action still holds).
// Count limits how many requests it affects (0 = forever); Rate in (0,1]
// makes it probabilistic (0 = always); Every N > 1 makes it hit only every
// Nth matching request, a deterministic pattern tests can rely on (a random
// rate sometimes fails a request on every one of a client's retries).
// After N lets the first N matching requests through untouched: a storm
// that starts at a chosen point of a command.
//
// AnswerLost makes the request go through as if there were no fault (the
// change is made, hooks run) and then replaces its answer with Status, or
// drops the connection when Status is 0: what a client sees when DO's
// edge answers 5xx or times out after the API applied the request.
type Fault struct {
	Method     string
	PathPrefix string
	Status     int
	Message    string
	Latency    time.Duration
	Count      int
	Rate       float64
	Every      int
	After      int
	AnswerLost bool
}

type faultState struct {
	Fault
	used int
	seen int // matching requests, for Every
}

// InjectFault adds a fault. Faults are checked in order; the first match wins.
func (s *Server) InjectFault(f Fault) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &faultState{Fault: f})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

func (s *Server) takeFault(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.faults {
		if f.Method != "" && !strings.EqualFold(f.Method, r.Method) {
			continue
		}
		if !strings.HasPrefix(r.URL.Path, f.PathPrefix) {
			continue
		}
		if f.Count > 0 && f.used >= f.Count {
			continue
		}
		f.seen++
		if f.seen <= f.After {
			continue
		}
		if f.Every > 1 && f.seen%f.Every != 0 {
			continue
		}
		if f.Rate > 0 && f.Rate < 1 && rand.Float64() >= f.Rate {
			continue
		}
		f.used++
		ff := f.Fault
		return &ff
	}
	return nil
}

func errorID(status int) string {
	switch status {
	case 400:
		return "bad_request"
	case 401:
		return "unauthorized"
	case 403:
		return "forbidden"
	case 404:
		return "not_found"
	case 409:
		return "conflict"
	case 422:
		return "unprocessable_entity"
	case 429:
		return "too_many_requests"
	case 503:
		return "service_unavailable"
	}
	return "server_error"
}

type apiError struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

func writeError(w http.ResponseWriter, reqID string, status int, id, msg string) {
	writeJSON(w, status, apiError{ID: id, Message: msg, RequestID: reqID})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

func (q *request) json(status int, v any) { writeJSON(q.w, status, v) }

func (q *request) fail(status int, format string, args ...any) {
	writeError(q.w, q.w.Header().Get("x-request-id"), status, errorID(status), fmt.Sprintf(format, args...))
}

// decode reads a JSON body into v; on error it answers 400 and returns false.
func (q *request) decode(v any) bool {
	dec := json.NewDecoder(q.r.Body)
	if err := dec.Decode(v); err != nil {
		q.fail(http.StatusBadRequest, "unable to parse request body: %v", err)
		return false
	}
	return true
}

// page is the window of a collection a list request asks for.
type page struct {
	start, end int
	links      map[string]any
	meta       map[string]any
}

// paginate applies ?page= and ?per_page= (default 20, max 200) to a
// collection of total items, building DO's links.pages (only the entries
// that apply) and meta.total.
func (q *request) paginate(total int) page {
	vals := q.r.URL.Query()
	per, _ := strconv.Atoi(vals.Get("per_page"))
	if per <= 0 {
		per = 20
	}
	if per > 200 {
		per = 200
	}
	pg, _ := strconv.Atoi(vals.Get("page"))
	if pg <= 0 {
		pg = 1
	}
	last := (total + per - 1) / per
	if last == 0 {
		last = 1
	}
	start := (pg - 1) * per
	if start > total {
		start = total
	}
	end := start + per
	if end > total {
		end = total
	}
	link := func(n int) string {
		u := url.URL{Scheme: "http", Host: q.r.Host, Path: q.r.URL.Path}
		if q.r.TLS != nil {
			u.Scheme = "https"
		}
		v := url.Values{}
		for k, vs := range vals {
			if k != "page" && k != "per_page" {
				v[k] = vs
			}
		}
		v.Set("page", strconv.Itoa(n))
		v.Set("per_page", strconv.Itoa(per))
		u.RawQuery = v.Encode()
		return u.String()
	}
	pages := map[string]any{}
	if pg > 1 {
		pages["first"] = link(1)
		prev := pg - 1
		if prev > last {
			prev = last
		}
		pages["prev"] = link(prev)
	}
	if pg < last {
		pages["next"] = link(pg + 1)
		pages["last"] = link(last)
	}
	links := map[string]any{}
	if len(pages) > 0 {
		links["pages"] = pages
	}
	return page{start: start, end: end, links: links, meta: map[string]any{"total": total}}
}

// paged answers a paginated collection under key.
func paged[T any](q *request, key string, items []T) (int, any) {
	p := q.paginate(len(items))
	out := items[p.start:p.end]
	if out == nil {
		out = []T{}
	}
	return http.StatusOK, map[string]any{key: out, "links": p.links, "meta": p.meta}
}

// failure is a handler's error answer, written as a DO error body.
type failure struct {
	status int
	msg    string
}

func fail(status int, format string, args ...any) (int, any) {
	return status, failure{status: status, msg: fmt.Sprintf(format, args...)}
}

func notFound() (int, any) {
	return fail(http.StatusNotFound, "The resource you were accessing could not be found.")
}

// do runs fn under the server lock (after advancing time-driven state),
// fires queued hooks, then writes fn's answer: a failure as an error body,
// nil as an empty body (204), anything else as JSON.
func (q *request) do(fn func() (int, any)) {
	var status int
	var body any
	q.s.update(func() { status, body = fn() })
	switch b := body.(type) {
	case failure:
		q.fail(b.status, "%s", b.msg)
	case nil:
		q.w.WriteHeader(status)
	default:
		q.json(status, b)
	}
}
