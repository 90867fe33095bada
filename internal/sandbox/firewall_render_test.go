package sandbox

import (
	"context"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fwWorld is a simulator the renderer's cases are built in through the real
// API clients, so the firewalls are exactly what DO (the simulator) stores.
type fwWorld struct {
	t   *testing.T
	sim *dosim.Server
	c   *godo.Client
	cl  *cloud.Client
	// noPublic are droplets the case wants without a public address.
	noPublic map[int]bool
}

func newFWWorld(t *testing.T) *fwWorld {
	t.Helper()
	sim := dosim.New(dosim.Options{})
	hs := httptest.NewServer(sim)
	t.Cleanup(func() { hs.Close(); sim.Close() })
	oc := oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "t"}))
	c, err := godo.New(oc, godo.SetBaseURL(hs.URL+"/"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cloud.New("t", cloud.Options{BaseURL: hs.URL})
	if err != nil {
		t.Fatal(err)
	}
	return &fwWorld{t: t, sim: sim, c: c, cl: cl, noPublic: map[int]bool{}}
}

func (w *fwWorld) droplet(name string, public bool, tags ...string) int {
	w.t.Helper()
	d, _, err := w.c.Droplets.Create(context.Background(), &godo.DropletCreateRequest{Name: name, Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "debian-12-x64"}, Tags: tags})
	if err != nil {
		w.t.Fatal(err)
	}
	if !public {
		// godo cannot send public_networking: the snapshot drops the address.
		w.noPublic[d.ID] = true
	}
	return d.ID
}

func (w *fwWorld) firewall(req *godo.FirewallRequest) {
	w.t.Helper()
	if _, _, err := w.c.Firewalls.Create(context.Background(), req); err != nil {
		w.t.Fatalf("create firewall %s: %v", req.Name, err)
	}
}

// snapshot is the simulator's state with the firewalls' random ids made
// stable for the golden files.
func (w *fwWorld) snapshot() fwSnapshot {
	s := fwSnapshot{Firewalls: w.sim.Firewalls(), Droplets: w.sim.Droplets()}
	for i := range s.Firewalls {
		s.Firewalls[i].ID = fmt.Sprintf("firewall-%d", i+1)
	}
	for i, d := range s.Droplets {
		if w.noPublic[d.ID] {
			s.Droplets[i].PublicIPv4 = ""
		}
	}
	return s
}

var anywhere = []string{"0.0.0.0/0", "::/0"}

// TestRenderFirewalls renders whole simulator states into each droplet's
// nftables ruleset and compares them with testdata/firewall-*.golden
// (`go test -run TestRenderFirewalls -update` rewrites them). As root, each
// ruleset is also checked by nft itself (`nft -c`) in a throwaway namespace.
func TestRenderFirewalls(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(w *fwWorld)
		// unfiltered are the droplets no firewall may target.
		unfiltered []string
	}{
		{
			// The firewall `dynia node create-ha` makes (internal/cloud
			// EnsureFirewall): two nodes tagged with the cluster, one
			// bystander in the same VPC.
			name: "dynia",
			build: func(w *fwWorld) {
				w.droplet("demo-misty-owl", true, cloud.ClusterTag("demo"), cloud.NodeTag("misty-owl"))
				w.droplet("demo-brave-panda", true, cloud.ClusterTag("demo"), cloud.NodeTag("brave-panda"))
				w.droplet("bystander", true)
				if _, _, err := w.cl.EnsureFirewall(context.Background(), cloud.FirewallSpec{Name: "dynia-demo", Tag: cloud.ClusterTag("demo"),
					AdminCIDRs: []string{"192.0.2.0/24"}, AppPort: 8080, MeshPort: 51820}); err != nil {
					w.t.Fatal(err)
				}
			},
			unfiltered: []string{"bystander"},
		},
		{
			// Two firewalls on one droplet (by id and by tag) add up; every
			// kind of source; a firewall without outbound rules.
			name: "combined",
			build: func(w *fwWorld) {
				web := w.droplet("web", true, "web")
				db := w.droplet("db", false, "db")
				w.droplet("idle", true, "idle")
				ctx := context.Background()
				if _, _, err := w.c.Tags.Create(ctx, &godo.TagCreateRequest{Name: "empty"}); err != nil {
					w.t.Fatal(err)
				}
				w.firewall(&godo.FirewallRequest{Name: "web", Tags: []string{"web"},
					InboundRules: []godo.InboundRule{
						{Protocol: "tcp", PortRange: "443", Sources: &godo.Sources{Addresses: anywhere}},
						{Protocol: "tcp", PortRange: "8000-8999", Sources: &godo.Sources{Addresses: []string{"192.0.2.7", "192.0.2.0/24", "198.18.0.0/15"}, DropletIDs: []int{db}}},
						{Protocol: "udp", PortRange: "0", Sources: &godo.Sources{Addresses: []string{"2001:db8::/32"}}},
						{Protocol: "tcp", PortRange: "22", Sources: &godo.Sources{Tags: []string{"empty"}, LoadBalancerUIDs: []string{"4de7ac8b-495b-4884-9a69-1050c6793cd6"}}},
						{Protocol: "icmp", Sources: &godo.Sources{Tags: []string{"db"}}},
					},
					OutboundRules: []godo.OutboundRule{
						{Protocol: "tcp", PortRange: "5432", Destinations: &godo.Destinations{Tags: []string{"db"}}},
						{Protocol: "udp", PortRange: "53", Destinations: &godo.Destinations{Addresses: []string{"10.0.0.0/8", "10.1.2.3"}}},
					}})
				w.firewall(&godo.FirewallRequest{Name: "db-only", DropletIDs: []int{db, web},
					InboundRules: []godo.InboundRule{{Protocol: "tcp", PortRange: "5432", Sources: &godo.Sources{Tags: []string{"web"}, DropletIDs: []int{web}}}}})
			},
			unfiltered: []string{"idle"},
		},
		{
			name:       "none",
			build:      func(w *fwWorld) { w.droplet("alone", true, "web") },
			unfiltered: []string{"alone"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newFWWorld(t)
			tc.build(w)
			snap := w.snapshot()
			got := renderFirewalls(snap)
			var b strings.Builder
			for _, d := range snap.Droplets {
				text, ok := got[d.ID]
				if !ok {
					t.Errorf("droplet %d (%s) not rendered", d.ID, d.Name)
				}
				if (text == "") != slices.Contains(tc.unfiltered, d.Name) {
					t.Errorf("droplet %s: unfiltered=%v, want %v", d.Name, text == "", slices.Contains(tc.unfiltered, d.Name))
				}
				if text == "" {
					fmt.Fprintf(&b, "# droplet %d (%s): no firewall targets it: unfiltered, no table\n\n", d.ID, d.Name)
					continue
				}
				b.WriteString(text + "\n")
				checkNft(t, text)
			}
			golden := filepath.Join("testdata", "firewall-"+tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("%s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

// checkNft has nft parse and check a ruleset against the kernel without
// loading it (-c), in a namespace that exists only for that command.
func checkNft(t *testing.T, text string) {
	t.Helper()
	if os.Geteuid() != 0 && !testutil.Required() {
		return // the golden comparison is the unit test; this needs root
	}
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "nft")
	testutil.NeedBinary(t, "unshare")
	// The egress chain binds to eth0: the namespace gets one (a veth: the
	// kernel may lack the dummy driver).
	cmd := exec.Command("unshare", "--net", "sh", "-ec", "ip link add eth0 type veth peer name eth1; nft -c -f -")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nft -c rejects the ruleset: %v\n%s\n%s", err, out, text)
	}
}

func TestResolveAddresses(t *testing.T) {
	t.Parallel()
	ds := []dosim.Droplet{
		{ID: 1, Tags: []string{"a"}, PublicIPv4: "198.51.100.2", PrivateIPv4: "10.10.0.2"},
		{ID: 2, Tags: []string{"a", "b"}, PrivateIPv4: "10.10.0.3"},
	}
	byID := map[int]dosim.Droplet{1: ds[0], 2: ds[1]}
	for _, tc := range []struct {
		name string
		t    *dosim.FirewallTarget
		want string
	}{
		{"nil", nil, ""},
		{"anywhere swallows the rest", &dosim.FirewallTarget{Addresses: []string{"10.0.0.1", "0.0.0.0/0", "::/0"}, Tags: []string{"a"}}, "0.0.0.0/0"},
		{"IPv6 ignored", &dosim.FirewallTarget{Addresses: []string{"::/0", "2001:db8::1"}}, ""},
		{"host bits masked, duplicates and covered dropped", &dosim.FirewallTarget{Addresses: []string{"10.10.0.77/24", "10.10.0.9", "10.10.0.0/24"}, DropletIDs: []int{1}}, "10.10.0.0/24 198.51.100.2/32"},
		{"tag: public and private of each", &dosim.FirewallTarget{Tags: []string{"a"}}, "10.10.0.2/32 10.10.0.3/32 198.51.100.2/32"},
		{"unknown droplet, empty tag, LB, Kubernetes: nothing", &dosim.FirewallTarget{DropletIDs: []int{9}, Tags: []string{"c"}, LoadBalancerUIDs: []string{"x"}, KubernetesIDs: []string{"y"}}, ""},
		{"garbage ignored", &dosim.FirewallTarget{Addresses: []string{"nope", "10.0.0.0/33"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range resolveTarget(tc.t, ds, byID) {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, strings.Join(got, " ")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestProtoMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		proto, ports, want string
		ok                 bool
	}{
		{"tcp", "80", "tcp dport 80", true},
		{"udp", "8000-9000", "udp dport 8000-9000", true},
		{"tcp", "22-22", "tcp dport 22", true},
		{"tcp", "0", "ip protocol tcp", true},
		{"udp", "all", "ip protocol udp", true},
		{"tcp", "1-65535", "ip protocol tcp", true},
		{"icmp", "0", "ip protocol icmp", true},
		{"tcp", "9-1", "", false},
		{"tcp", "70000", "", false},
		{"vrrp", "0", "", false},
	} {
		got, ok := protoMatch(dosim.FirewallRule{Protocol: tc.proto, Ports: tc.ports})
		if got != tc.want || ok != tc.ok {
			t.Errorf("protoMatch(%s %s) = %q %v, want %q %v", tc.proto, tc.ports, got, ok, tc.want, tc.ok)
		}
	}
}

func TestLineDiff(t *testing.T) {
	t.Parallel()
	a := "# x\ntable inet t {\n\tchain c {\n\t\tct state established accept\n\t\tip daddr 169.254.169.254 accept\n\t\tip saddr 1.2.3.4 tcp dport 80 accept\n\t}\n}\n"
	b := "# y\ntable inet t {\n\tchain c {\n\t\tip saddr 1.2.3.4 tcp dport 443 accept\n\t}\n}\n"
	added, removed := lineDiff(a, b)
	if diff := cmp.Diff([]string{"ip saddr 1.2.3.4 tcp dport 443 accept"}, added); diff != "" {
		t.Errorf("added (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ip saddr 1.2.3.4 tcp dport 80 accept"}, removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
}

func TestParseFirewalls(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": DefaultFirewalls, "off": "off", "enforce": "enforce", "on": "", "Enforce": ""} {
		got, err := ParseFirewalls(in)
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ParseFirewalls(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
