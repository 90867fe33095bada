package dosim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reply is what tests inspect of a raw answer; call has already read and
// closed the body, so it hands back no *http.Response.
type reply struct {
	StatusCode int
	Header     http.Header
}

// call sends a raw API request and decodes a JSON answer into a map.
func call(t *testing.T, hs *httptest.Server, method, path, token string, body any) (reply, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, hs.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	if resp.StatusCode == http.StatusNoContent && len(raw) != 0 {
		t.Fatalf("%s %s: 204 with body %q", method, path, raw)
	}
	return reply{StatusCode: resp.StatusCode, Header: resp.Header}, m
}

func createDroplet(t *testing.T, c *godo.Client, name, region string, tags ...string) *godo.Droplet {
	t.Helper()
	d, _, err := c.Droplets.Create(context.Background(), &godo.DropletCreateRequest{Name: name, Region: region,
		Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, Tags: tags})
	if err != nil {
		t.Fatalf("create droplet %s: %v", name, err)
	}
	return d
}

// apiErr extracts godo's error response.
func apiErr(t *testing.T, err error) *godo.ErrorResponse {
	t.Helper()
	var er *godo.ErrorResponse
	if !errors.As(err, &er) {
		t.Fatalf("error %v is not an API error", err)
	}
	return er
}

func TestDropletCreateNewThenActive(t *testing.T) {
	t.Parallel()
	clk := newClock()
	s, hs, _ := newSim(t, Options{Now: clk.Now, DropletActiveDelay: 30 * time.Second})
	resp, m := call(t, hs, "POST", "/v2/droplets", "tok", map[string]any{"name": "n1", "region": "fra1", "size": "s-1vcpu-1gb",
		"image": "ubuntu-24-04-x64", "ssh_keys": nil, "tags": nil})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create status %d", resp.StatusCode)
	}
	d := m["droplet"].(map[string]any)
	if d["status"] != "new" || len(d["networks"].(map[string]any)["v4"].([]any)) != 0 {
		t.Fatalf("create answered %v", d)
	}
	if l := m["links"].(map[string]any)["actions"].([]any); len(l) != 1 || l[0].(map[string]any)["rel"] != "create" {
		t.Fatalf("links %v", m["links"])
	}
	for _, h := range []string{"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-request-id"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
	id := int(d["id"].(float64))
	c := godoClient(t, hs, "tok")
	got, _, err := c.Droplets.Get(context.Background(), id)
	if err != nil || got.Status != "new" {
		t.Fatalf("before the delay: %v %v", got, err)
	}
	clk.Advance(31 * time.Second)
	got, _, err = c.Droplets.Get(context.Background(), id)
	if err != nil || got.Status != "active" {
		t.Fatalf("after the delay: %v %v", got, err)
	}
	pub, _ := got.PublicIPv4()
	priv, _ := got.PrivateIPv4()
	snap := s.Droplets()[0]
	if pub != snap.PublicIPv4 || priv != snap.PrivateIPv4 || snap.AnchorIPv4 == "" || !strings.HasPrefix(snap.AnchorIPv4, "10.17.") {
		t.Fatalf("networks %s %s vs %+v", pub, priv, snap)
	}
	a, _, err := c.Actions.Get(context.Background(), int(m["links"].(map[string]any)["actions"].([]any)[0].(map[string]any)["id"].(float64)))
	if err != nil || a.Status != "completed" {
		t.Fatalf("create action %v %v", a, err)
	}
}

func TestNeverActive(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	s.SetNeverActive("stuck")
	c := godoClient(t, hs, "tok")
	d := createDroplet(t, c, "stuck", "nyc3")
	for i := 0; i < 3; i++ {
		got, _, err := c.Droplets.Get(context.Background(), d.ID)
		if err != nil || got.Status != "new" || len(got.Networks.V4) != 0 {
			t.Fatalf("get: %+v %v", got, err)
		}
	}
	// A droplet being created has a pending event.
	_, _, err := c.DropletActions.PowerOff(context.Background(), d.ID)
	if er := apiErr(t, err); er.Response.StatusCode != 422 {
		t.Fatalf("power off during create: %v", err)
	}
}

func TestMultiCreateAtMostTen(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	names := make([]string, 11)
	for i := range names {
		names[i] = "n" + strconv.Itoa(i)
	}
	resp, m := call(t, hs, "POST", "/v2/droplets", "tok", map[string]any{"names": names, "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"})
	if resp.StatusCode != 422 || m["id"] != "unprocessable_entity" || m["request_id"] != resp.Header.Get("x-request-id") {
		t.Fatalf("11 names: %d %v", resp.StatusCode, m)
	}
	if n := len(s.Droplets()); n != 0 {
		t.Fatalf("%d droplets created", n)
	}
}

func TestDeleteReturns204AndUnassignsReservedIP(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	opts := Options{
		OnReservedIPAssign: func(ip string, id int) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, "rip "+ip+" "+strconv.Itoa(id))
		},
		OnDropletDelete: func(d Droplet) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, "delete "+d.Name)
		},
	}
	s, hs, _ := newSim(t, opts)
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	d := createDroplet(t, c, "n1", "nyc3")
	rip, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	if rip.Droplet != nil || !rip.Locked {
		t.Fatalf("create with droplet answered %+v", rip)
	}
	waitRIP(t, c, rip.IP, d.ID)
	resp, _ := call(t, hs, "DELETE", "/v2/droplets/"+strconv.Itoa(d.ID), "tok", nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	got, _, err := c.ReservedIPs.Get(ctx, rip.IP)
	if err != nil || got.Droplet != nil {
		t.Fatalf("after delete: %+v %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"rip " + rip.IP + " " + strconv.Itoa(d.ID), "rip " + rip.IP + " 0", "delete n1"}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Fatalf("hooks (-want +got):\n%s", diff)
	}
	if s.ReservedIPs()[0].DropletID != 0 {
		t.Fatal("snapshot still assigned")
	}
}

// waitRIP polls the reserved IP until it is on droplet id (tests use
// ActionDelay 0, so this takes a request or two).
func waitRIP(t *testing.T, c *godo.Client, ip string, id int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r, _, err := c.ReservedIPs.Get(context.Background(), ip)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Locked && ((id == 0 && r.Droplet == nil) || (r.Droplet != nil && r.Droplet.ID == id)) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("reserved IP %s never reached droplet %d", ip, id)
}

func TestReservedIPPendingEventAndMove(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	a := createDroplet(t, c, "a", "nyc3")
	b := createDroplet(t, c, "b", "nyc3")
	rip, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	s.PauseActions()
	act, resp, err := c.ReservedIPActions.Assign(ctx, rip.IP, a.ID)
	if err != nil || resp.StatusCode != http.StatusCreated || act.Status != "in-progress" || act.Type != "assign_ip" {
		t.Fatalf("assign: %+v %v", act, err)
	}
	if act.ResourceID != ipToUint32(rip.IP) || act.ResourceType != "reserved_ip" {
		t.Fatalf("action resource %d %s", act.ResourceID, act.ResourceType)
	}
	got, _, _ := c.ReservedIPs.Get(ctx, rip.IP)
	if !got.Locked {
		t.Fatal("not locked while pending")
	}
	_, _, err = c.ReservedIPActions.Assign(ctx, rip.IP, b.ID)
	er := apiErr(t, err)
	if er.Response.StatusCode != 422 || er.Message != "The floating IP already has a pending event." {
		t.Fatalf("second action: %v", err)
	}
	s.ResumeActions()
	done, _, err := c.Actions.Get(ctx, act.ID)
	if err != nil || done.Status != "completed" || done.CompletedAt == nil {
		t.Fatalf("action after resume: %+v %v", done, err)
	}
	waitRIP(t, c, rip.IP, a.ID)
	// An assigned IP moves straight to another droplet.
	if _, _, err := c.ReservedIPActions.Assign(ctx, rip.IP, b.ID); err != nil {
		t.Fatal(err)
	}
	waitRIP(t, c, rip.IP, b.ID)
	if _, _, err := c.ReservedIPActions.Unassign(ctx, rip.IP); err != nil {
		t.Fatal(err)
	}
	waitRIP(t, c, rip.IP, 0)
}

func TestReservedIPBothDropletAndRegion(t *testing.T) {
	t.Parallel()
	// The body matches both oneOf branches, so the spec rejects it too.
	_, hs := newRawSim(t, Options{})
	c := godoClient(t, hs, "tok")
	a := createDroplet(t, c, "a", "nyc3")
	resp, m := call(t, hs, "POST", "/v2/reserved_ips", "tok", map[string]any{"droplet_id": a.ID, "region": "nyc3"})
	if resp.StatusCode != 422 || m["message"] != "Cannot specify Droplet and region, they are mutually exclusive." {
		t.Fatalf("both: %d %v", resp.StatusCode, m)
	}
}

func TestReservedIPRules(t *testing.T) {
	t.Parallel()
	_, hs, _ := newSim(t, Options{ReservedIPLimit: 3})
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	a := createDroplet(t, c, "a", "nyc3")
	far := createDroplet(t, c, "far", "sgp1")
	r1, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	r2, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	waitRIP(t, c, r1.IP, a.ID)
	// One reserved IP per droplet.
	if _, _, err := c.ReservedIPActions.Assign(ctx, r2.IP, a.ID); apiErr(t, err).Response.StatusCode != 422 {
		t.Fatalf("second RIP on a droplet: %v", err)
	}
	// Same region only.
	if _, _, err := c.ReservedIPActions.Assign(ctx, r2.IP, far.ID); apiErr(t, err).Response.StatusCode != 422 {
		t.Fatalf("cross-region assign: %v", err)
	}
	// The account limit.
	if _, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"}); apiErr(t, err).Response.StatusCode != 422 {
		t.Fatalf("fourth RIP: %v", err)
	}
	resp, _ := call(t, hs, "DELETE", "/v2/reserved_ips/"+r2.IP, "tok", nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if _, _, err := c.ReservedIPs.Get(ctx, r2.IP); apiErr(t, err).Response.StatusCode != 404 {
		t.Fatalf("get deleted: %v", err)
	}
}

func TestScopes(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	s.AddToken("admin", FullScopes()...)
	s.AddToken("node", NodeScopes()...)
	admin, node := godoClient(t, hs, "admin"), godoClient(t, hs, "node")
	ctx := context.Background()
	d := createDroplet(t, admin, "a", "nyc3")
	rip, _, err := admin.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := node.Droplets.List(ctx, nil); err != nil {
		t.Fatalf("node lists droplets: %v", err)
	}
	if _, _, err := node.ReservedIPActions.Assign(ctx, rip.IP, d.ID); err != nil {
		t.Fatalf("node assigns: %v", err)
	}
	_, _, err = node.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "x", Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
	if er := apiErr(t, err); er.Response.StatusCode != 403 || er.Response.Header.Get("x-request-id") == "" {
		t.Fatalf("node creates droplet: %v", err)
	}
	resp, m := call(t, hs, "GET", "/v2/droplets", "", nil)
	if resp.StatusCode != 401 || m["id"] != "unauthorized" {
		t.Fatalf("no token: %d %v", resp.StatusCode, m)
	}
	resp, _ = call(t, hs, "GET", "/v2/droplets", "stranger", nil)
	if resp.StatusCode != 401 {
		t.Fatalf("unknown token: %d", resp.StatusCode)
	}
	resp, m = call(t, hs, "DELETE", "/v2/reserved_ips/"+rip.IP, "node", nil)
	if resp.StatusCode != 403 || m["id"] != "forbidden" {
		t.Fatalf("node deletes RIP: %d %v", resp.StatusCode, m)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	clk := newClock()
	_, hs, _ := newSim(t, Options{Now: clk.Now, RateLimitPerMinute: 3})
	for i := 0; i < 3; i++ {
		resp, _ := call(t, hs, "GET", "/v2/account", "tok", nil)
		if resp.StatusCode != 200 || resp.Header.Get("ratelimit-remaining") != strconv.Itoa(2-i) || resp.Header.Get("ratelimit-limit") != "3" {
			t.Fatalf("request %d: %d remaining=%s", i, resp.StatusCode, resp.Header.Get("ratelimit-remaining"))
		}
	}
	resp, m := call(t, hs, "GET", "/v2/account", "tok", nil)
	if resp.StatusCode != 429 || m["id"] != "too_many_requests" || resp.Header.Get("retry-after") != "60" {
		t.Fatalf("past the budget: %d %v retry-after=%q", resp.StatusCode, m, resp.Header.Get("retry-after"))
	}
	// Another token has its own budget.
	if resp, _ := call(t, hs, "GET", "/v2/account", "other", nil); resp.StatusCode != 200 {
		t.Fatalf("other token: %d", resp.StatusCode)
	}
	clk.Advance(time.Minute)
	if resp, _ := call(t, hs, "GET", "/v2/account", "tok", nil); resp.StatusCode != 200 {
		t.Fatalf("next window: %d", resp.StatusCode)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	_, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		names := make([]string, 9)
		for j := range names {
			names[j] = "n" + strconv.Itoa(i*9+j)
		}
		if _, _, err := c.Droplets.CreateMultiple(ctx, &godo.DropletMultiCreateRequest{Names: names, Region: "nyc3", Size: "s-1vcpu-1gb",
			Image: godo.DropletCreateImage{Slug: "debian-12-x64"}}); err != nil {
			t.Fatal(err)
		}
	}
	_, m := call(t, hs, "GET", "/v2/droplets", "tok", nil)
	if len(m["droplets"].([]any)) != 20 || m["meta"].(map[string]any)["total"] != 27.0 {
		t.Fatalf("default page: %d items, meta %v", len(m["droplets"].([]any)), m["meta"])
	}
	pages := m["links"].(map[string]any)["pages"].(map[string]any)
	if _, ok := pages["prev"]; ok || pages["next"] == nil || pages["last"] == nil {
		t.Fatalf("first page links %v", pages)
	}
	_, m = call(t, hs, "GET", "/v2/droplets?page=2&per_page=10", "tok", nil)
	pages = m["links"].(map[string]any)["pages"].(map[string]any)
	if len(pages) != 4 {
		t.Fatalf("middle page links %v", pages)
	}
	_, m = call(t, hs, "GET", "/v2/droplets?per_page=200", "tok", nil)
	if len(m["droplets"].([]any)) != 27 || len(m["links"].(map[string]any)) != 0 {
		t.Fatalf("one page: %d items, links %v", len(m["droplets"].([]any)), m["links"])
	}
	// godo's own paging loop.
	var all []godo.Droplet
	opt := &godo.ListOptions{PerPage: 10}
	for {
		ds, resp, err := c.Droplets.List(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ds...)
		if resp.Links == nil || resp.Links.IsLastPage() {
			break
		}
		p, err := resp.Links.CurrentPage()
		if err != nil {
			t.Fatal(err)
		}
		opt.Page = p + 1
	}
	if len(all) != 27 {
		t.Fatalf("godo paging saw %d droplets", len(all))
	}
}

func TestPerPageCapped(t *testing.T) {
	t.Parallel()
	// per_page over 200 violates the spec; DO caps it.
	_, hs := newRawSim(t, Options{})
	for i := 0; i < 3; i++ {
		names := make([]string, 10)
		for j := range names {
			names[j] = "n" + strconv.Itoa(i*10+j)
		}
		for k := 0; k < 7; k++ {
			names2 := make([]string, 10)
			for j := range names2 {
				names2[j] = names[j] + "-" + strconv.Itoa(k)
			}
			if resp, _ := call(t, hs, "POST", "/v2/droplets", "tok", map[string]any{"names": names2, "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}); resp.StatusCode != 202 {
				t.Fatalf("create: %d", resp.StatusCode)
			}
		}
	}
	_, m := call(t, hs, "GET", "/v2/droplets?per_page=500", "tok", nil)
	if len(m["droplets"].([]any)) != 200 || m["meta"].(map[string]any)["total"] != 210.0 {
		t.Fatalf("per_page=500: %d items, meta %v", len(m["droplets"].([]any)), m["meta"])
	}
}

func TestTagFilterRawAndEncoded(t *testing.T) {
	t.Parallel()
	_, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "tok")
	createDroplet(t, c, "a", "nyc3", "dynia", "dynia:cluster:prod")
	createDroplet(t, c, "b", "nyc3", "dynia", "dynia:cluster:dev")
	for _, q := range []string{"dynia:cluster:prod", "dynia%3Acluster%3Aprod"} {
		_, m := call(t, hs, "GET", "/v2/droplets?tag_name="+q, "tok", nil)
		ds := m["droplets"].([]any)
		if len(ds) != 1 || ds[0].(map[string]any)["name"] != "a" {
			t.Fatalf("tag_name=%s: %v", q, ds)
		}
	}
	ds, _, err := c.Droplets.ListByTag(context.Background(), "dynia:cluster:dev", nil)
	if err != nil || len(ds) != 1 || ds[0].Name != "b" {
		t.Fatalf("godo ListByTag: %v %v", ds, err)
	}
	resp, _ := call(t, hs, "DELETE", "/v2/droplets?tag_name=dynia%3Acluster%3Adev", "tok", nil)
	if resp.StatusCode != 204 {
		t.Fatalf("delete by tag: %d", resp.StatusCode)
	}
	_, m := call(t, hs, "GET", "/v2/droplets?tag_name=dynia", "tok", nil)
	if len(m["droplets"].([]any)) != 1 {
		t.Fatalf("after delete by tag: %v", m["droplets"])
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	d, _, err := c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "web-1", Region: "ams3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, UserData: "#cloud-config\nhostname: web-1\n", Tags: []string{"dynia"}})
	if err != nil {
		t.Fatal(err)
	}
	snap := s.Droplets()[0]
	md := s.MetadataHandler()
	get := func(path string, byHeader bool) (int, string, http.Header) {
		req := httptest.NewRequest("GET", path, nil)
		if byHeader {
			req.Header.Set(DropletIDHeader, strconv.Itoa(d.ID))
		} else {
			req.RemoteAddr = snap.PrivateIPv4 + ":40000"
		}
		rec := httptest.NewRecorder()
		md.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String(), rec.Header()
	}
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/metadata/v1/id", 200, strconv.Itoa(d.ID)},
		{"/metadata/v1/hostname", 200, "web-1"},
		{"/metadata/v1/region", 200, "ams3"},
		{"/metadata/v1/user-data", 200, "#cloud-config\nhostname: web-1\n"},
		{"/metadata/v1/interfaces/public/0/ipv4/address", 200, snap.PublicIPv4},
		{"/metadata/v1/interfaces/public/0/anchor_ipv4/address", 200, snap.AnchorIPv4},
		{"/metadata/v1/interfaces/private/0/ipv4/address", 200, snap.PrivateIPv4},
		{"/metadata/v1/reserved_ip/ipv4/active", 200, "false"},
		{"/metadata/v1/tags/", 200, "dynia"},
		{"/metadata/v1/reserved_ip/ipv4/", 200, "active"},
		{"/metadata/v1/interfaces/public/0/anchor_ipv4", 301, ""},
		{"/metadata/v1", 301, ""},
		{"/metadata/v1/nope", 404, ""},
		{"/metadata/v1/id/", 404, ""},
	} {
		for _, byHeader := range []bool{true, false} {
			code, body, hdr := get(tc.path, byHeader)
			if code != tc.status || (tc.body != "" && body != tc.body) {
				t.Errorf("GET %s (header %v) = %d %q, want %d %q", tc.path, byHeader, code, body, tc.status, tc.body)
			}
			if code == 301 && hdr.Get("Location") != tc.path+"/" {
				t.Errorf("GET %s redirects to %q", tc.path, hdr.Get("Location"))
			}
		}
	}
	if code, body, _ := get("/metadata/v1/", false); code != 200 || !strings.Contains(body, "reserved_ip/") || !strings.Contains(body, "user-data") {
		t.Errorf("index: %d %q", code, body)
	}
	// A caller that is no droplet gets 404.
	rec := httptest.NewRecorder()
	md.ServeHTTP(rec, httptest.NewRequest("GET", "/metadata/v1/id", nil))
	if rec.Code != 404 {
		t.Errorf("stranger: %d", rec.Code)
	}

	// reserved_ip follows assignment, in text and JSON.
	rip, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	waitRIP(t, c, rip.IP, d.ID)
	if _, body, _ := get("/metadata/v1/reserved_ip/ipv4/active", true); body != "true" {
		t.Errorf("active after assign = %q", body)
	}
	if _, body, _ := get("/metadata/v1/reserved_ip/ipv4/ip_address", false); body != rip.IP {
		t.Errorf("ip_address = %q", body)
	}
	_, body, _ := get("/metadata/v1.json", false)
	var js struct {
		DropletID  int `json:"droplet_id"`
		ReservedIP struct {
			IPv4 struct {
				Active    bool   `json:"active"`
				IPAddress string `json:"ip_address"`
			} `json:"ipv4"`
		} `json:"reserved_ip"`
		Interfaces struct {
			Public []struct {
				AnchorIPv4 struct {
					IPAddress string `json:"ip_address"`
				} `json:"anchor_ipv4"`
			} `json:"public"`
		} `json:"interfaces"`
	}
	if err := json.Unmarshal([]byte(body), &js); err != nil {
		t.Fatal(err)
	}
	if js.DropletID != d.ID || !js.ReservedIP.IPv4.Active || js.ReservedIP.IPv4.IPAddress != rip.IP || js.Interfaces.Public[0].AnchorIPv4.IPAddress != snap.AnchorIPv4 {
		t.Errorf("v1.json = %s", body)
	}
	s.UnassignReservedIP(rip.IP)
	if _, body, _ := get("/metadata/v1/reserved_ip/ipv4/active", true); body != "false" {
		t.Errorf("active after drift unassign = %q", body)
	}
}

func TestHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	add := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	var created Droplet
	opts := Options{
		OnDropletCreate: func(d Droplet) { created = d; add("create " + d.Name) },
		OnDropletActive: func(d Droplet) { add("active " + d.Name) },
		OnDropletPower:  func(d Droplet, on bool) { add("power " + d.Name + " " + strconv.FormatBool(on)) },
		OnDropletDelete: func(d Droplet) { add("delete " + d.Name) },
	}
	s, hs, _ := newSim(t, opts)
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	d, _, err := c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "h1", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, UserData: "#!/bin/sh\n", Tags: []string{"t1"}})
	if err != nil {
		t.Fatal(err)
	}
	if created.UserData != "#!/bin/sh\n" || created.PublicIPv4 == "" || created.AnchorIPv4 == "" || created.PrivateIPv4 == "" || created.Tags[0] != "t1" {
		t.Fatalf("create hook got %+v", created)
	}
	waitAction := func(id int) {
		t.Helper()
		for i := 0; i < 1000; i++ {
			a, _, err := c.Actions.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if a.Status == "completed" {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("action %d never completed", id)
	}
	a, _, err := c.DropletActions.PowerOff(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitAction(a.ID)
	if got, _, _ := c.Droplets.Get(ctx, d.ID); got.Status != "off" {
		t.Fatalf("status after power off %q", got.Status)
	}
	a, _, err = c.DropletActions.PowerOn(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitAction(a.ID)
	if !s.DeleteDropletBehindBack(d.ID) {
		t.Fatal("behind-back delete found nothing")
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"create h1", "active h1", "power h1 false", "power h1 true", "delete h1"}
	if diff := cmp.Diff(want, events); diff != "" {
		t.Fatalf("hooks (-want +got):\n%s", diff)
	}
}

func TestFaultsAndCalls(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	if s.CallCount() != 0 {
		t.Fatal("calls before any request")
	}
	s.InjectFault(Fault{Method: "GET", PathPrefix: "/v2/account", Status: 500, Count: 1})
	if resp, m := call(t, hs, "GET", "/v2/account", "tok", nil); resp.StatusCode != 500 || m["id"] != "server_error" {
		t.Fatalf("fault: %d %v", resp.StatusCode, m)
	}
	if resp, _ := call(t, hs, "GET", "/v2/account", "tok", nil); resp.StatusCode != 200 {
		t.Fatalf("after the fault's count: %d", resp.StatusCode)
	}
	// A chosen message: DO's 422 for an action a pending event blocks.
	s.InjectFault(Fault{Method: "GET", PathPrefix: "/v2/account", Status: 422, Message: "Droplet already has a pending event.", Count: 1})
	if resp, m := call(t, hs, "GET", "/v2/account", "tok", nil); resp.StatusCode != 422 || m["id"] != "unprocessable_entity" || m["message"] != "Droplet already has a pending event." {
		t.Fatalf("fault with a message: %d %v", resp.StatusCode, m)
	}
	// Every 3rd matching request, deterministically.
	s.InjectFault(Fault{PathPrefix: "/v2/sizes", Status: 503, Every: 3})
	var got []int
	for range 6 {
		resp, _ := call(t, hs, "GET", "/v2/sizes", "tok", nil)
		got = append(got, resp.StatusCode)
	}
	if diff := cmp.Diff([]int{200, 200, 503, 200, 200, 503}, got); diff != "" {
		t.Fatalf("Every: 3 (-want +got):\n%s", diff)
	}
	s.ClearFaults()
	// godo with retries rides out 429s (retry-after: 1 s).
	s.InjectFault(Fault{PathPrefix: "/v2/regions", Status: 429, Count: 1})
	oc := godoClient(t, hs, "tok").HTTPClient
	wait := 0.01
	c, err := godo.New(oc, godo.SetBaseURL(hs.URL+"/"), godo.WithRetryAndBackoffs(godo.RetryConfig{RetryMax: 2, RetryWaitMin: &wait, RetryWaitMax: &wait}))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Regions.List(context.Background(), nil); err != nil {
		t.Fatalf("retried list: %v", err)
	}
	// Latency honours client cancellation (a timeout).
	s.InjectFault(Fault{PathPrefix: "/v2/sizes", Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := c.Sizes.List(ctx, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow sizes: %v", err)
	}
	s.ClearFaults()
	calls := slices.DeleteFunc(s.Calls(), func(c Call) bool { return c.Path == "/v2/sizes" })
	want := []Call{{"GET", "/v2/account", "", 500}, {"GET", "/v2/account", "", 200}, {"GET", "/v2/account", "", 422},
		{"GET", "/v2/regions", "", 429}, {"GET", "/v2/regions", "", 200}}
	if diff := cmp.Diff(want, calls[:5]); diff != "" {
		t.Fatalf("calls (-want +got):\n%s", diff)
	}
}

func TestZeroValueServer(t *testing.T) {
	t.Parallel()
	var s Server
	hs := httptest.NewServer(&s)
	defer hs.Close()
	defer s.Close()
	c := godoClient(t, hs, "anything")
	d := createDroplet(t, c, "z", "nyc3")
	if got, _, err := c.Droplets.Get(context.Background(), d.ID); err != nil || got.Status != "active" {
		t.Fatalf("zero server: %+v %v", got, err)
	}
}

func TestFirewallValidation(t *testing.T) {
	t.Parallel()
	_, hs := newRawSim(t, Options{})
	for _, body := range []map[string]any{
		{"name": "fw"},
		{"inbound_rules": []any{map[string]any{"protocol": "tcp", "ports": "22", "sources": map[string]any{"addresses": []string{"0.0.0.0/0"}}}}},
		{"name": "fw", "inbound_rules": []any{map[string]any{"protocol": "tcp", "ports": "99999", "sources": map[string]any{"addresses": []string{"0.0.0.0/0"}}}}},
		{"name": "fw", "inbound_rules": []any{map[string]any{"protocol": "tcp", "ports": "22", "sources": map[string]any{"tags": []string{"missing"}}}}},
	} {
		if resp, m := call(t, hs, "POST", "/v2/firewalls", "tok", body); resp.StatusCode != 400 || m["id"] != "bad_request" {
			t.Errorf("%v: %d %v", body, resp.StatusCode, m)
		}
	}
}

func TestVPCPrivateAddresses(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	vpc, _, err := c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "v1", RegionSlug: "fra1", IPRange: "10.30.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "v2", RegionSlug: "fra1", IPRange: "10.30.0.0/20"}); apiErr(t, err).Response.StatusCode != 422 {
		t.Fatalf("overlapping range: %v", err)
	}
	_, _, err = c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "p1", Region: "fra1", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, VPCUUID: vpc.ID})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.Droplets()[0]; d.PrivateIPv4 != "10.30.0.2" || d.VPCUUID != vpc.ID {
		t.Fatalf("private address %s in %s", d.PrivateIPv4, d.VPCUUID)
	}
	_, _, err = c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "p2", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, VPCUUID: vpc.ID})
	if apiErr(t, err).Response.StatusCode != 422 {
		t.Fatalf("VPC in another region: %v", err)
	}
	if _, err := c.VPCs.Delete(ctx, vpc.ID); apiErr(t, err).Response.StatusCode != 403 {
		t.Fatalf("delete VPC with members: %v", err)
	}
}

func TestImagesPrivateSnapshots(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	old := s.RegisterImage(Image{Name: "dynia-1", Regions: []string{"nyc3"}, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	onlySgp := s.RegisterImage(Image{Name: "dynia-2", Regions: []string{"sgp1"}, CreatedAt: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)})
	c := godoClient(t, hs, "tok")
	imgs, _, err := c.Images.ListUser(context.Background(), nil)
	if err != nil || len(imgs) != 2 || imgs[0].ID != old || imgs[0].Type != "snapshot" || imgs[1].Regions[0] != "sgp1" {
		t.Fatalf("private images %+v %v", imgs, err)
	}
	_, _, err = c.Droplets.Create(context.Background(), &godo.DropletCreateRequest{Name: "x", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{ID: onlySgp}})
	if apiErr(t, err).Response.StatusCode != 422 {
		t.Fatalf("image outside its regions: %v", err)
	}
}

func TestHookMayCallBack(t *testing.T) {
	t.Parallel()
	var s *Server
	var mu sync.Mutex
	var seen []int
	s = New(Options{OnReservedIPAssign: func(ip string, id int) {
		mu.Lock()
		seen = append(seen, id)
		mu.Unlock()
		if id != 0 {
			// A hook reading state and causing drift must not deadlock.
			_ = s.Droplets()
			s.UnassignReservedIP(ip)
		}
	}})
	hs := httptest.NewServer(s)
	defer hs.Close()
	defer s.Close()
	c := godoClient(t, hs, "tok")
	d := createDroplet(t, c, "a", "nyc3")
	rip, _, err := c.ReservedIPs.Create(context.Background(), &godo.ReservedIPCreateRequest{DropletID: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for i := 0; i < 1000; i++ {
		mu.Lock()
		got = append([]int(nil), seen...)
		mu.Unlock()
		if len(got) == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(got) != 2 || got[0] != d.ID || got[1] != 0 {
		t.Fatalf("hook saw %v", got)
	}
	if r := s.ReservedIPs()[0]; r.IP != rip.IP || r.DropletID != 0 {
		t.Fatalf("reserved IP %+v", r)
	}
}

// TestFaultAfterAndAnswerLost: After lets the first matching requests
// through; AnswerLost applies the request and then answers with the fault
// (or drops the connection): the droplet exists although its create
// failed.
func TestFaultAfterAndAnswerLost(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	s.InjectFault(Fault{PathPrefix: "/v2/sizes", Status: 503, After: 2, Count: 2})
	var got []int
	for range 5 {
		resp, _ := call(t, hs, "GET", "/v2/sizes", "tok", nil)
		got = append(got, resp.StatusCode)
	}
	if diff := cmp.Diff([]int{200, 200, 503, 503, 200}, got); diff != "" {
		t.Fatalf("After: 2, Count: 2 (-want +got):\n%s", diff)
	}
	body := map[string]any{"name": "lost-1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}
	s.InjectFault(Fault{Method: "POST", PathPrefix: "/v2/droplets", Status: 500, AnswerLost: true, Count: 1})
	if resp, m := call(t, hs, "POST", "/v2/droplets", "tok", body); resp.StatusCode != 500 || m["id"] != "server_error" {
		t.Fatalf("lost answer: %d %v", resp.StatusCode, m)
	}
	s.InjectFault(Fault{Method: "POST", PathPrefix: "/v2/droplets", AnswerLost: true, Count: 1})
	body["name"] = "lost-2"
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", hs.URL+"/v2/droplets", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("Content-Type", "application/json")
	if resp, err := hs.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("lost answer without a status: got %d, want a dropped connection", resp.StatusCode)
	}
	var names []string
	for _, d := range s.Droplets() {
		names = append(names, d.Name)
	}
	if diff := cmp.Diff([]string{"lost-1", "lost-2"}, names); diff != "" {
		t.Errorf("droplets whose answers were lost (-want +got):\n%s", diff)
	}
	var statuses []int
	for _, c := range s.Calls() {
		if c.Method == "POST" {
			statuses = append(statuses, c.Status)
		}
	}
	if diff := cmp.Diff([]int{500, 0}, statuses); diff != "" {
		t.Errorf("call log statuses of the lost answers (-want +got):\n%s", diff)
	}
}
