package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"
)

func TestRouteTemplate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/v2/droplets":                                "/v2/droplets",
		"/v2/droplets/3164444":                        "/v2/droplets/{id}",
		"/v2/droplets/3164444/actions":                "/v2/droplets/{id}/actions",
		"/v2/droplets/3164444/actions/99":             "/v2/droplets/{id}/actions/{id}",
		"/v2/droplets/actions":                        "/v2/droplets/actions",
		"/v2/reserved_ips/198.51.100.7":               "/v2/reserved_ips/{ip}",
		"/v2/reserved_ips/198.51.100.7/actions/12":    "/v2/reserved_ips/{ip}/actions/{id}",
		"/v2/actions/12":                              "/v2/actions/{id}",
		"/v2/domains/example.com/records":             "/v2/domains/{domain}/records",
		"/v2/domains/example.com/records/5":           "/v2/domains/{domain}/records/{id}",
		"/v2/tags/dynia:cluster:x":                    "/v2/tags/{tag}",
		"/v2/firewalls/0b6e1c0a-1111-2222-3333-44445": "/v2/firewalls/{id}",
		"/v2/spaces/keys":                             "/v2/spaces/keys",
		"/v2/spaces/keys/DO00ABC":                     "/v2/spaces/keys/{id}",
		"/prefix/v2/vpcs/abc":                         "/v2/vpcs/{id}",
		"/metadata/v1/id":                             "/metadata/v1/id",
	} {
		if got := routeTemplate(in); got != want {
			t.Errorf("routeTemplate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFirewallMatchesIgnoresOrderAndSpelling(t *testing.T) {
	t.Parallel()
	spec := FirewallSpec{Name: "dynia-x", Tag: ClusterTag("x"), AdminCIDRs: []string{"192.0.2.0/24", "198.18.0.1/32"}, AppPort: 8080, MeshPort: 51820}
	want := firewallRequest(spec)

	// What DO returns: same rules, another order, CIDRs reordered, icmp
	// without ports, "0" spelled differently.
	have := &godo.Firewall{Name: spec.Name, Tags: []string{spec.Tag}}
	for i := len(want.InboundRules) - 1; i >= 0; i-- {
		r := want.InboundRules[i]
		src := *r.Sources
		src.Addresses = append([]string(nil), src.Addresses...)
		for a, b := 0, len(src.Addresses)-1; a < b; a, b = a+1, b-1 {
			src.Addresses[a], src.Addresses[b] = src.Addresses[b], src.Addresses[a]
		}
		r.Sources = &src
		if r.Protocol == "icmp" {
			r.PortRange = ""
		} else if r.PortRange == "0" {
			r.PortRange = "all"
		}
		have.InboundRules = append(have.InboundRules, r)
	}
	have.OutboundRules = append(have.OutboundRules, want.OutboundRules...)
	if !firewallMatches(have, want) {
		t.Fatal("equivalent firewall reported as different")
	}

	other := firewallRequest(FirewallSpec{Name: spec.Name, Tag: spec.Tag, AdminCIDRs: []string{"203.0.113.9/32"}, AppPort: 8080, MeshPort: 51820})
	if firewallMatches(have, other) {
		t.Fatal("firewall with other admin CIDRs reported as equal")
	}
	// A changed app port is a changed firewall (the old rule would let
	// nobody reach the new port).
	if firewallMatches(have, firewallRequest(FirewallSpec{Name: spec.Name, Tag: spec.Tag, AdminCIDRs: spec.AdminCIDRs, AppPort: 3000, MeshPort: 51820})) {
		t.Fatal("firewall with another app port reported as equal")
	}
	noOut := *have
	noOut.OutboundRules = nil
	if firewallMatches(&noOut, want) {
		t.Fatal("firewall without outbound rules reported as equal")
	}
}

// TestFirewallRequestRules: VRRP cannot cross a DO firewall, so nodes talk
// over the WireGuard mesh (UDP 51820) and HAProxy reaches apps on the app
// port, both from the cluster tag only; no rule admits the VPC range or
// all ports, so a droplet in the same VPC outside the cluster reaches
// neither.
func TestFirewallRequestRules(t *testing.T) {
	t.Parallel()
	r := firewallRequest(FirewallSpec{Name: "f", Tag: "dynia:cluster:c", AdminCIDRs: []string{"192.0.2.1/32"}, AppPort: 3000, MeshPort: 51820})
	var got []string
	for _, in := range r.InboundRules {
		got = append(got, fmt.Sprintf("%s/%s a=%v t=%v", in.Protocol, in.PortRange, in.Sources.Addresses, in.Sources.Tags))
	}
	want := []string{
		"tcp/80 a=[0.0.0.0/0 ::/0] t=[]",
		"tcp/443 a=[0.0.0.0/0 ::/0] t=[]",
		"tcp/3000 a=[] t=[dynia:cluster:c]",
		"udp/51820 a=[] t=[dynia:cluster:c]",
		"icmp/0 a=[0.0.0.0/0 ::/0] t=[]",
		"tcp/22 a=[192.0.2.1/32] t=[]",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("inbound rules (-want +got):\n%s", diff)
	}
	var out []string
	for _, o := range r.OutboundRules {
		out = append(out, fmt.Sprintf("%s/%s a=%v", o.Protocol, o.PortRange, o.Destinations.Addresses))
	}
	if diff := cmp.Diff([]string{"tcp/0 a=[0.0.0.0/0 ::/0]", "udp/0 a=[0.0.0.0/0 ::/0]", "icmp/0 a=[0.0.0.0/0 ::/0]"}, out); diff != "" {
		t.Fatalf("outbound rules (-want +got):\n%s", diff)
	}
	if len(r.Tags) != 1 || r.Tags[0] != "dynia:cluster:c" {
		t.Fatalf("tags %v", r.Tags)
	}
	// Without admin CIDRs nobody gets SSH.
	for _, in := range firewallRequest(FirewallSpec{Name: "f", Tag: "t", AppPort: 8080, MeshPort: 51820}).InboundRules {
		if in.PortRange == "22" {
			t.Errorf("SSH rule without admin CIDRs: %+v", in)
		}
	}
}

func TestEnsureFirewallNeedsPorts(t *testing.T) {
	t.Parallel()
	c := &Client{}
	for _, spec := range []FirewallSpec{
		{Name: "f", Tag: "t", MeshPort: 51820},
		{Name: "f", Tag: "t", AppPort: 8080},
		{Name: "f", Tag: "t", AppPort: 70000, MeshPort: 51820},
	} {
		if _, _, err := c.EnsureFirewall(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "must be 1-65535") {
			t.Errorf("EnsureFirewall(%+v) = %v, want a port error before any API call", spec, err)
		}
	}
}

func TestAPIErrorIs(t *testing.T) {
	t.Parallel()
	mk := func(code int, msg string) error {
		return wrap("op", &godo.ErrorResponse{Response: &http.Response{StatusCode: code}, Message: msg, RequestID: "r1"})
	}
	cases := []struct {
		code    int
		target  error
		matches bool
	}{
		{401, ErrAuth, true}, {403, ErrAuth, true}, {404, ErrNotFound, true},
		{422, ErrUnprocessable, true}, {500, ErrAuth, false}, {404, ErrAuth, false},
	}
	for _, c := range cases {
		if got := errors.Is(mk(c.code, "m"), c.target); got != c.matches {
			t.Errorf("errors.Is(%d, %v) = %v", c.code, c.target, got)
		}
	}
	if !isPendingEvent(mk(422, "The floating IP already has a pending event.")) {
		t.Error("pending event 422 not recognised")
	}
	if isPendingEvent(mk(422, "Droplet already has a reserved IP")) {
		t.Error("other 422 taken for a pending event")
	}
	e := mk(403, "You are not authorized to perform this operation")
	if s := e.Error(); !strings.Contains(s, "op: DigitalOcean refused the request with this token (403 Forbidden: You are not authorized") || !strings.Contains(s, "r1") {
		t.Errorf("message %q", s)
	}
}

// TestAuthErrorTyped: DO's 401 and 403 are *AuthError at the source (the
// CLI's exit 4 rests on the type, not the text), still *APIError and
// ErrAuth underneath; other statuses are not.
func TestAuthErrorTyped(t *testing.T) {
	t.Parallel()
	mk := func(code int) error {
		return wrap("list droplets", &godo.ErrorResponse{Response: &http.Response{StatusCode: code}, Message: "Unable to authenticate you"})
	}
	for _, c := range []struct {
		code           int
		auth, rejected bool
		text           string
	}{
		{401, true, true, "cloud: list droplets: DigitalOcean rejected the token (401 Unauthorized: Unable to authenticate you)"},
		{403, true, false, "cloud: list droplets: DigitalOcean refused the request with this token (403 Forbidden: Unable to authenticate you)"},
		{404, false, false, "cloud: list droplets: 404 Not Found: Unable to authenticate you"},
		{500, false, false, "cloud: list droplets: 500 Internal Server Error: Unable to authenticate you"},
	} {
		err := fmt.Errorf("step: %w", mk(c.code))
		var ae *AuthError
		if got := errors.As(err, &ae); got != c.auth {
			t.Errorf("%d: errors.As(*AuthError) = %v, want %v", c.code, got, c.auth)
		}
		if c.auth && ae.Rejected() != c.rejected {
			t.Errorf("%d: Rejected() = %v, want %v", c.code, ae.Rejected(), c.rejected)
		}
		var api *APIError
		if !errors.As(err, &api) || api.StatusCode != c.code {
			t.Errorf("%d: errors.As(*APIError) = %+v", c.code, api)
		}
		if got := errors.Is(err, ErrAuth); got != c.auth {
			t.Errorf("%d: errors.Is(ErrAuth) = %v", c.code, got)
		}
		if got := mk(c.code).Error(); got != c.text {
			t.Errorf("%d: text %q, want %q", c.code, got, c.text)
		}
	}
}

func TestSnapshotErrorHints(t *testing.T) {
	t.Parallel()
	var e error = &SnapshotError{Prefix: "dynia-node-", Region: "fra1", Elsewhere: []string{"ams3"}}
	if !errors.Is(e, ErrNoSnapshot) || !strings.Contains(e.Error(), "transfer it to fra1") {
		t.Errorf("%v", e)
	}
	e = &SnapshotError{Prefix: "dynia-node-", Region: "fra1"}
	if !strings.Contains(e.Error(), "--bootstrap") {
		t.Errorf("%v", e)
	}
}

func TestNewRejectsEmptyTokenAndHidesIt(t *testing.T) {
	t.Parallel()
	if _, err := New("  ", Options{}); err == nil {
		t.Fatal("empty token accepted")
	}
	c, err := New("'dop_v1_secret'", Options{BaseURL: "http://127.0.0.1:1", RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	if c.godo.BaseURL.String() != "http://127.0.0.1:1/" {
		t.Errorf("base URL %q: the trailing slash must be added", c.godo.BaseURL)
	}
}

func TestJitterBounds(t *testing.T) {
	t.Parallel()
	for range 1000 {
		d := jitter(time.Second)
		if d < 900*time.Millisecond || d > 1100*time.Millisecond {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
}

func TestCappedBackoff(t *testing.T) {
	t.Parallel()
	resp := &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": []string{"3600"}}}
	if d := cappedBackoff(10*time.Millisecond, 50*time.Millisecond, 1, resp); d != 50*time.Millisecond {
		t.Errorf("Retry-After 3600 with max 50ms waited %v", d)
	}
	resp.Header.Set("Retry-After", "1")
	if d := cappedBackoff(10*time.Millisecond, 5*time.Second, 1, resp); d != time.Second {
		t.Errorf("Retry-After 1 with max 5s waited %v", d)
	}
}
