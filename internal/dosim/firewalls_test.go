package dosim

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fwRules returns n inbound tcp rules on distinct ports.
func fwRules(n int) []map[string]any { return fwRulesTo("sources", n) }

// fwRulesOut returns n outbound tcp rules on distinct ports.
func fwRulesOut(n int) []map[string]any { return fwRulesTo("destinations", n) }

func fwRulesTo(key string, n int) []map[string]any {
	var out []map[string]any
	for i := 0; i < n; i++ {
		out = append(out, map[string]any{"protocol": "tcp", "ports": strconv.Itoa(1000 + i),
			key: map[string]any{"addresses": []string{"0.0.0.0/0"}}})
	}
	return out
}

// fwAddrs returns n distinct IPv4 /32s.
func fwAddrs(n int) []string {
	var out []string
	for i := 0; i < n; i++ {
		out = append(out, fmt.Sprintf("10.%d.%d.%d/32", i>>16&0xff, i>>8&0xff, i&0xff))
	}
	return out
}

// TestFirewallLimits: DO's documented limits (50 rules, 1,000 sources per
// rule, 10 droplets, 5 tags per firewall) answer 422 unprocessable_entity,
// on create, update and the add endpoints, and change nothing; the limit
// itself is accepted.
func TestFirewallLimits(t *testing.T) {
	t.Parallel()
	s, hs, _ := newSim(t, Options{})
	var dropletIDs []int
	for i := 0; i < 11; i++ {
		_, m := call(t, hs, "POST", "/v2/droplets", "tok", map[string]any{"name": fmt.Sprintf("d%d", i), "region": "nyc3",
			"size": "s-1vcpu-1gb", "image": "debian-12-x64"})
		dropletIDs = append(dropletIDs, int(m["droplet"].(map[string]any)["id"].(float64)))
	}
	var tags []string
	for i := 0; i < 6; i++ {
		tags = append(tags, fmt.Sprintf("t%d", i))
		call(t, hs, "POST", "/v2/tags", "tok", map[string]any{"name": tags[i]})
	}
	one := fwRules(1)
	body := func(in []map[string]any, out []map[string]any, ids []int, tags []string) map[string]any {
		b := map[string]any{"name": "fw", "inbound_rules": in}
		if out != nil {
			b["outbound_rules"] = out
		}
		if ids != nil {
			b["droplet_ids"] = ids
		}
		if tags != nil {
			b["tags"] = tags
		}
		return b
	}
	manySources := func(n int) []map[string]any {
		return []map[string]any{{"protocol": "udp", "ports": "53", "sources": map[string]any{"addresses": fwAddrs(n - 2), "tags": []string{"t0"}, "droplet_ids": dropletIDs[:1]}}}
	}
	manyDests := func(n int) []map[string]any {
		return []map[string]any{{"protocol": "tcp", "ports": "0", "destinations": map[string]any{"addresses": fwAddrs(n)}}}
	}
	for _, tc := range []struct {
		name       string
		body       map[string]any
		wantStatus int
		wantMsg    string
	}{
		{"50 rules", body(fwRules(40), fwRulesOut(10), nil, nil), 202, ""},
		{"51 rules", body(fwRules(40), fwRulesOut(11), nil, nil), 422, "at most 50 rules"},
		{"1000 sources", body(manySources(1000), nil, nil, nil), 202, ""},
		{"1001 sources of three kinds", body(manySources(1001), nil, nil, nil), 422, "at most 1000 sources"},
		{"1001 destinations", body(one, manyDests(1001), nil, nil), 422, "at most 1000 destinations"},
		{"10 droplets", body(one, nil, dropletIDs[:10], nil), 202, ""},
		{"11 droplets", body(one, nil, dropletIDs, nil), 422, "no more than 10 droplets"},
		{"5 tags", body(one, nil, nil, tags[:5]), 202, ""},
		{"6 tags", body(one, nil, nil, tags), 422, "no more than 5 tags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, m := call(t, hs, "POST", "/v2/firewalls", "tok", tc.body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("create: %d %v, want %d", resp.StatusCode, m, tc.wantStatus)
			}
			if tc.wantStatus == 422 && (m["id"] != "unprocessable_entity" || !strings.Contains(m["message"].(string), tc.wantMsg) || m["request_id"] == "") {
				t.Errorf("error body %v, want id unprocessable_entity and a message with %q", m, tc.wantMsg)
			}
			// Over a limit through the update and add endpoints too.
			if tc.wantStatus != 202 {
				return
			}
			id := m["firewall"].(map[string]any)["id"].(string)
			before := s.Firewalls()
			path := "/v2/firewalls/" + id
			for _, op := range []struct {
				method, path string
				body         map[string]any
			}{
				{"PUT", path, body(fwRules(51), nil, nil, nil)},
				{"POST", path + "/rules", map[string]any{"inbound_rules": fwRules(50)}},
				{"POST", path + "/droplets", map[string]any{"droplet_ids": dropletIDs}},
				{"POST", path + "/tags", map[string]any{"tags": tags}},
			} {
				if resp, m := call(t, hs, op.method, op.path, "tok", op.body); resp.StatusCode != 422 || m["id"] != "unprocessable_entity" {
					t.Errorf("%s %s over a limit: %d %v, want 422", op.method, op.path, resp.StatusCode, m)
				}
			}
			if diff := cmp.Diff(before, s.Firewalls()); diff != "" {
				t.Errorf("a refused change changed the firewall (-before +after):\n%s", diff)
			}
			call(t, hs, "DELETE", path, "tok", nil)
		})
	}
}

// TestFirewallHooks: every change to a firewall's rules or targets fires
// OnFirewallChange, and every change of a droplet's tags OnDropletTags, in
// order, before the API answers.
func TestFirewallHooks(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var events []string
	add := func(e string) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	s, hs, _ := newSim(t, Options{
		OnFirewallChange: func(fw Firewall, deleted bool) {
			add(fmt.Sprintf("firewall %s rules=%d+%d droplets=%d tags=%v deleted=%v", fw.Name, len(fw.InboundRules), len(fw.OutboundRules), len(fw.DropletIDs), fw.Tags, deleted))
		},
		OnDropletTags: func(d Droplet) { add(fmt.Sprintf("droplet %s tags=%v", d.Name, d.Tags)) },
	})
	call(t, hs, "POST", "/v2/tags", "tok", map[string]any{"name": "web"})
	newDroplet := func(name string) string {
		_, m := call(t, hs, "POST", "/v2/droplets", "tok", map[string]any{"name": name, "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"})
		return strconv.Itoa(int(m["droplet"].(map[string]any)["id"].(float64)))
	}
	d1, d2 := newDroplet("d1"), newDroplet("d2")
	id1, _ := strconv.Atoi(d1)
	_, m := call(t, hs, "POST", "/v2/firewalls", "tok", map[string]any{"name": "fw", "inbound_rules": fwRules(1), "tags": []string{"web"}})
	fw := "/v2/firewalls/" + m["firewall"].(map[string]any)["id"].(string)
	rule := map[string]any{"inbound_rules": []any{map[string]any{"protocol": "udp", "ports": "53", "sources": map[string]any{"tags": []string{"web"}}}}}
	tagged := map[string]any{"resources": []any{map[string]any{"resource_id": d2, "resource_type": "droplet"}}}
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"POST", fw + "/rules", rule, 204},
		{"DELETE", fw + "/rules", rule, 204},
		{"POST", fw + "/droplets", map[string]any{"droplet_ids": []int{id1}}, 204},
		{"DELETE", fw + "/droplets", map[string]any{"droplet_ids": []int{id1}}, 204},
		{"POST", fw + "/droplets", map[string]any{"droplet_ids": []int{id1}}, 204},
		{"PUT", fw, map[string]any{"name": "fw", "inbound_rules": fwRules(2), "droplet_ids": []int{id1}, "tags": []string{"web"}}, 200},
		{"POST", "/v2/tags/web/resources", tagged, 204},
		{"POST", "/v2/tags/web/resources", tagged, 204}, // already tagged: no change, no hook
		{"DELETE", "/v2/droplets/" + d1, nil, 204},      // leaves the firewall's droplet_ids
		{"DELETE", "/v2/tags/web", nil, 204},            // leaves d2 and the firewall
		{"DELETE", fw, nil, 204},
	} {
		if resp, m := call(t, hs, c.method, c.path, "tok", c.body); resp.StatusCode != c.want {
			t.Fatalf("%s %s: %d %v", c.method, c.path, resp.StatusCode, m)
		}
	}
	want := []string{
		"firewall fw rules=1+0 droplets=0 tags=[web] deleted=false",
		"firewall fw rules=2+0 droplets=0 tags=[web] deleted=false",
		"firewall fw rules=1+0 droplets=0 tags=[web] deleted=false",
		"firewall fw rules=1+0 droplets=1 tags=[web] deleted=false",
		"firewall fw rules=1+0 droplets=0 tags=[web] deleted=false",
		"firewall fw rules=1+0 droplets=1 tags=[web] deleted=false",
		"firewall fw rules=2+0 droplets=1 tags=[web] deleted=false",
		"droplet d2 tags=[web]",
		"firewall fw rules=2+0 droplets=0 tags=[web] deleted=false",
		"droplet d2 tags=[]",
		"firewall fw rules=2+0 droplets=0 tags=[] deleted=false",
		"firewall fw rules=2+0 droplets=0 tags=[] deleted=true",
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(want, events); diff != "" {
		t.Errorf("hooks (-want +got):\n%s", diff)
	}
	if got := s.Firewalls(); len(got) != 0 {
		t.Errorf("firewalls left: %+v", got)
	}
}
