package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// doFirewall is a firewall as DO's API answers GET /v2/firewalls (the
// fields this test checks; DO API reference, Firewalls).
type doFirewall struct {
	Name         string   `json:"name"`
	Tags         []string `json:"tags"`
	InboundRules []struct {
		Protocol string    `json:"protocol"`
		Ports    string    `json:"ports"`
		Sources  doTargets `json:"sources"`
	} `json:"inbound_rules"`
	OutboundRules []struct {
		Protocol     string    `json:"protocol"`
		Ports        string    `json:"ports"`
		Destinations doTargets `json:"destinations"`
	} `json:"outbound_rules"`
}

type doTargets struct {
	Addresses []string `json:"addresses,omitempty"`
	Tags      []string `json:"tags,omitempty"`
}

// apiGet reads path from the simulated DO API with the operator's token,
// as a user's doctl would, into out.
func (e *sandboxEnv) apiGet(path string, out any) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", strings.TrimSuffix(e.info.APIURL, "/")+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.info.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, out) != nil {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
}

// firewalls reads every firewall from the simulated DO API.
func (e *sandboxEnv) firewalls() []doFirewall {
	e.t.Helper()
	var out struct {
		Firewalls []doFirewall `json:"firewalls"`
	}
	e.apiGet("/v2/firewalls?per_page=200", &out)
	return out.Firewalls
}

// rules renders a firewall's rules one per line, sorted, so the comparison
// does not depend on the order DO keeps them in.
func rules(fw doFirewall) []string {
	var out []string
	for _, r := range fw.InboundRules {
		out = append(out, fmt.Sprintf("in %s %s from addresses=%v tags=%v", r.Protocol, r.Ports, r.Sources.Addresses, r.Sources.Tags))
	}
	for _, r := range fw.OutboundRules {
		out = append(out, fmt.Sprintf("out %s %s to addresses=%v tags=%v", r.Protocol, r.Ports, r.Destinations.Addresses, r.Destinations.Tags))
	}
	slices.Sort(out)
	return out
}

// checkFirewall reads the cluster's firewall back from the simulator and
// compares it with what the seed design asks for, written out here rather
// than derived from dynia's own code: 80 and 443 (and ICMP) from anywhere,
// the app port (8080 by default) and WireGuard's UDP 51820 only from the
// cluster's tag, 22 only from the admin CIDRs (no rule at all without
// them), egress open; applied to the cluster's tag, which every node
// droplet carries.
func checkFirewall(t *testing.T, e *sandboxEnv, name string, admin []string) {
	t.Helper()
	tag := "dynia:cluster:" + name
	var mine []doFirewall
	for _, fw := range e.firewalls() {
		if slices.Contains(fw.Tags, tag) {
			mine = append(mine, fw)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("%d firewalls apply to tag %s, want 1: %+v", len(mine), tag, mine)
	}
	anywhere := "[0.0.0.0/0 ::/0]"
	want := []string{
		"in tcp 80 from addresses=" + anywhere + " tags=[]",
		"in tcp 443 from addresses=" + anywhere + " tags=[]",
		"in tcp 8080 from addresses=[] tags=[" + tag + "]",
		"in udp 51820 from addresses=[] tags=[" + tag + "]",
		"in icmp 0 from addresses=" + anywhere + " tags=[]",
		"out tcp 0 to addresses=" + anywhere + " tags=[]",
		"out udp 0 to addresses=" + anywhere + " tags=[]",
		"out icmp 0 to addresses=" + anywhere + " tags=[]",
	}
	if len(admin) > 0 {
		want = append(want, fmt.Sprintf("in tcp 22 from addresses=%v tags=[]", admin))
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, rules(mine[0])); diff != "" {
		t.Errorf("firewall %s rules (-want +got):\n%s", mine[0].Name, diff)
	}
	// A firewall applies to droplets by tag: every node's droplet must
	// carry it (DO lists tagged droplets under the tag, not droplet_ids).
	var tagged struct {
		Droplets []struct {
			ID int `json:"id"`
		} `json:"droplets"`
	}
	e.apiGet("/v2/droplets?per_page=200&tag_name="+url.QueryEscape(tag), &tagged)
	for _, r := range e.nodes(name) {
		if !slices.ContainsFunc(tagged.Droplets, func(d struct {
			ID int `json:"id"`
		}) bool {
			return d.ID == r.DropletID
		}) {
			t.Errorf("node %s's droplet %d does not carry tag %s: firewall %s does not apply to it", r.ID, r.DropletID, tag, mine[0].Name)
		}
	}
}
