package dosim

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/digitalocean/godo"
)

// TestDeviationsDocumented provokes the real-DO answers the spec only covers
// through its "default" response (422s, 403s) and checks that each one is
// listed in docs/simulator.md's deviations table.
func TestDeviationsDocumented(t *testing.T) {
	t.Parallel()
	s, hs, v := newSim(t, Options{ReservedIPLimit: 2})
	s.AddToken("admin", FullScopes()...)
	s.AddToken("node", NodeScopes()...)
	c, node := godoClient(t, hs, "admin"), godoClient(t, hs, "node")
	ctx := context.Background()
	expectErr := func(err error, status int) {
		t.Helper()
		if er := apiErr(t, err); er.Response.StatusCode != status {
			t.Fatalf("got %v, want %d", err, status)
		}
	}
	a := createDroplet(t, c, "a", "nyc3")
	b := createDroplet(t, c, "b", "nyc3")
	rip, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	if err != nil {
		t.Fatal(err)
	}
	s.PauseActions()
	if _, _, err := c.ReservedIPActions.Assign(ctx, rip.IP, a.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.ReservedIPActions.Assign(ctx, rip.IP, b.ID)
	expectErr(err, 422) // pending event
	_, err = c.ReservedIPs.Delete(ctx, rip.IP)
	expectErr(err, 422) // pending event
	s.ResumeActions()
	_, _, err = c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: a.ID})
	expectErr(err, 422) // one per droplet
	if _, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"}); err != nil {
		t.Fatal(err)
	}
	_, _, err = c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	expectErr(err, 422) // limit
	_, _, err = c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "x", Region: "nyc3", Size: "s-9vcpu-9gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
	expectErr(err, 422) // bad size
	_, _, err = node.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "x", Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
	expectErr(err, 403) // scope
	_, _, err = c.DropletActions.PowerOff(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	s.PauseActions()
	_, _, err = c.DropletActions.PowerOff(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.DropletActions.PowerOn(ctx, b.ID)
	expectErr(err, 422) // droplet pending event
	s.ResumeActions()
	_, _, err = c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "v", RegionSlug: "nyc3", IPRange: "10.10.0.0/16"})
	expectErr(err, 422) // overlap with the default VPC
	vpcs, _, _ := c.VPCs.List(ctx, nil)
	_, err = c.VPCs.Delete(ctx, vpcs[0].ID)
	expectErr(err, 403) // default VPC
	_, _, err = c.Domains.CreateRecord(ctx, "missing.example", &godo.DomainRecordEditRequest{Type: "A", Name: "x", Data: "192.0.2.1"})
	expectErr(err, 404)
	// Firewall limits: 50 rules, 10 droplets, 5 tags.
	var rules []godo.InboundRule
	for i := 0; i < 51; i++ {
		rules = append(rules, godo.InboundRule{Protocol: "tcp", PortRange: strconv.Itoa(1000 + i), Sources: &godo.Sources{Addresses: []string{"0.0.0.0/0"}}})
	}
	_, _, err = c.Firewalls.Create(ctx, &godo.FirewallRequest{Name: "big", InboundRules: rules})
	expectErr(err, 422)
	fw, _, err := c.Firewalls.Create(ctx, &godo.FirewallRequest{Name: "fw", InboundRules: rules[:1]})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Firewalls.Update(ctx, fw.ID, &godo.FirewallRequest{Name: "fw", InboundRules: rules})
	expectErr(err, 422)
	_, err = c.Firewalls.AddRules(ctx, fw.ID, &godo.FirewallRulesRequest{InboundRules: rules[1:]})
	expectErr(err, 422)
	var ids []int
	var tags []string
	for i := 0; i < 11; i++ {
		ids = append(ids, createDroplet(t, c, "f"+strconv.Itoa(i), "nyc3", "t"+strconv.Itoa(i%6)).ID)
		tags = append(tags, "t"+strconv.Itoa(i%6))
	}
	_, err = c.Firewalls.AddDroplets(ctx, fw.ID, ids...)
	expectErr(err, 422)
	_, err = c.Firewalls.AddTags(ctx, fw.ID, tags[:6]...)
	expectErr(err, 422)

	doc, err := os.ReadFile("../../docs/simulator.md")
	if err != nil {
		t.Fatalf("read docs: %v", err)
	}
	und := v.Undocumented()
	if len(und) == 0 {
		t.Fatal("the validator saw no undocumented answers; the scenario lost its teeth")
	}
	t.Logf("undocumented answers: %q", und)
	for _, u := range und {
		f := strings.Fields(u) // METHOD /path STATUS
		row := "`" + f[0] + " " + f[1] + "` | " + f[2]
		if !strings.Contains(string(doc), row) {
			t.Errorf("undocumented answer %q has no row %q in docs/simulator.md", u, row)
		}
	}
}
