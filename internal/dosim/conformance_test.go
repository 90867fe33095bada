package dosim

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/godo"
)

// TestConformance drives every simulated endpoint with the real godo client
// while the spec validator checks each request godo sends and each response
// the simulator returns; newSim fails the test on any violation. At the end
// it checks that every route was exercised with a success status.
func TestConformance(t *testing.T) {
	t.Parallel()
	s, hs, v := newSim(t, Options{})
	c := godoClient(t, hs, "full")
	ctx := context.Background()
	must := func(err error, what string) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// Catalogue.
	_, _, err := c.Account.Get(ctx)
	must(err, "account")
	_, _, err = c.Regions.List(ctx, nil)
	must(err, "regions")
	_, _, err = c.Sizes.List(ctx, nil)
	must(err, "sizes")
	_, _, err = c.Images.ListDistribution(ctx, nil)
	must(err, "images distribution")
	deb, _, err := c.Images.GetBySlug(ctx, "debian-12-x64")
	must(err, "image by slug")

	// Private images and snapshots.
	snapID := s.RegisterImage(Image{Name: "dynia-node-20250101", Regions: []string{"nyc3"}, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	imgs, _, err := c.Images.ListUser(ctx, &godo.ListOptions{PerPage: 200})
	must(err, "images private")
	if len(imgs) != 1 || imgs[0].ID != snapID || imgs[0].Slug != "" {
		t.Fatalf("private images = %+v", imgs)
	}
	_, _, err = c.Images.GetByID(ctx, snapID)
	must(err, "image by id")
	_, _, err = c.Images.Update(ctx, snapID, &godo.ImageUpdateRequest{Name: "dynia-node-renamed"})
	must(err, "image update")
	_, _, err = c.Snapshots.ListDroplet(ctx, nil)
	must(err, "snapshots droplet")
	_, _, err = c.Snapshots.List(ctx, nil)
	must(err, "snapshots")
	_, _, err = c.Snapshots.Get(ctx, itoa(snapID))
	must(err, "snapshot get")

	// A droplet without vpc_uuid lands in the region's default VPC (created
	// on first use), so the VPC created below is not the default.
	d0, _, err := c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "plain", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{Slug: "ubuntu-24-04-x64"}})
	must(err, "droplet create without vpc")

	// Tags, VPC.
	for _, tg := range []string{"dynia", "dynia:cluster:prod"} {
		_, _, err = c.Tags.Create(ctx, &godo.TagCreateRequest{Name: tg})
		must(err, "tag create")
	}
	vpc, _, err := c.VPCs.Create(ctx, &godo.VPCCreateRequest{Name: "dynia-prod-nyc3", RegionSlug: "nyc3", IPRange: "10.20.0.0/24"})
	must(err, "vpc create")
	_, _, err = c.VPCs.Get(ctx, vpc.ID)
	must(err, "vpc get")
	_, _, err = c.VPCs.List(ctx, nil)
	must(err, "vpc list")
	_, _, err = c.VPCs.Update(ctx, vpc.ID, &godo.VPCUpdateRequest{Name: "dynia-prod-nyc3", Description: "dynia"})
	must(err, "vpc update")
	_, _, err = c.VPCs.Set(ctx, vpc.ID, godo.VPCSetDescription("dynia cluster"))
	must(err, "vpc set")

	// Droplets: single with a private image, multi with a slug.
	d1, _, err := c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "prod-1", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: godo.DropletCreateImage{ID: snapID}, VPCUUID: vpc.ID, UserData: "#cloud-config\n",
		Tags: []string{"dynia", "dynia:cluster:prod"}})
	must(err, "droplet create")
	ds, _, err := c.Droplets.CreateMultiple(ctx, &godo.DropletMultiCreateRequest{Names: []string{"prod-2", "prod-3"}, Region: "nyc3",
		Size: "s-1vcpu-512mb-10gb", Image: godo.DropletCreateImage{Slug: deb.Slug}, VPCUUID: vpc.ID, Tags: []string{"dynia"}})
	must(err, "droplet create multiple")
	_, _, err = c.Droplets.Get(ctx, d1.ID)
	must(err, "droplet get")
	_, _, err = c.Droplets.List(ctx, nil)
	must(err, "droplet list")
	_, _, err = c.Droplets.ListByTag(ctx, "dynia:cluster:prod", nil)
	must(err, "droplet list by tag")
	_, _, err = c.Droplets.ListByName(ctx, "prod-1", nil)
	must(err, "droplet list by name")
	_, _, err = c.Droplets.Snapshots(ctx, d1.ID, nil)
	must(err, "droplet snapshots")
	_, _, err = c.VPCs.ListMembers(ctx, vpc.ID, nil, nil)
	must(err, "vpc members")

	// Droplet actions.
	a, _, err := c.DropletActions.PowerOff(ctx, ds[0].ID)
	must(err, "power off")
	_, _, err = c.DropletActions.Get(ctx, ds[0].ID, a.ID)
	must(err, "droplet action get")
	_, _, err = c.DropletActions.PowerOn(ctx, ds[0].ID)
	must(err, "power on")
	_, _, err = c.DropletActions.Reboot(ctx, ds[0].ID)
	must(err, "reboot")
	_, _, err = c.DropletActions.Shutdown(ctx, ds[1].ID)
	must(err, "shutdown")
	_, _, err = c.DropletActions.PowerOnByTag(ctx, "dynia:cluster:prod")
	must(err, "power on by tag")
	_, _, err = c.Droplets.Actions(ctx, ds[0].ID, nil)
	must(err, "droplet actions list")
	_, _, err = c.Actions.List(ctx, nil)
	must(err, "actions list")
	_, _, err = c.Actions.Get(ctx, a.ID)
	must(err, "action get")

	// Reserved IPs and their actions.
	rip, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: d1.ID})
	must(err, "rip create with droplet")
	spare, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: "nyc3"})
	must(err, "rip create in region")
	_, _, err = c.ReservedIPs.Get(ctx, rip.IP)
	must(err, "rip get")
	_, _, err = c.ReservedIPs.List(ctx, nil)
	must(err, "rip list")
	ra, _, err := c.ReservedIPActions.Assign(ctx, rip.IP, ds[0].ID)
	must(err, "rip assign")
	_, _, err = c.ReservedIPActions.Get(ctx, rip.IP, ra.ID)
	must(err, "rip action get")
	_, _, err = c.ReservedIPActions.List(ctx, rip.IP, nil)
	must(err, "rip actions list")
	_, _, err = c.ReservedIPActions.Unassign(ctx, rip.IP)
	must(err, "rip unassign")
	// Legacy floating_ips aliases.
	_, _, err = c.FloatingIPs.List(ctx, nil)
	must(err, "fip list")
	_, _, err = c.FloatingIPs.Get(ctx, spare.IP)
	must(err, "fip get")
	fa, _, err := c.FloatingIPActions.Assign(ctx, spare.IP, ds[1].ID)
	must(err, "fip assign")
	_, _, err = c.FloatingIPActions.Get(ctx, spare.IP, fa.ID)
	must(err, "fip action get")
	_, _, err = c.FloatingIPActions.List(ctx, spare.IP, nil)
	must(err, "fip actions list")
	_, _, err = c.FloatingIPActions.Unassign(ctx, spare.IP)
	must(err, "fip unassign")
	_, err = c.FloatingIPs.Delete(ctx, spare.IP)
	must(err, "fip delete")
	fip, _, err := c.FloatingIPs.Create(ctx, &godo.FloatingIPCreateRequest{Region: "nyc3"})
	must(err, "fip create")
	_, err = c.ReservedIPs.Delete(ctx, fip.IP)
	must(err, "rip delete")

	// Firewalls.
	fwReq := &godo.FirewallRequest{Name: "dynia-prod",
		InboundRules: []godo.InboundRule{
			{Protocol: "tcp", PortRange: "22", Sources: &godo.Sources{Addresses: []string{"192.0.2.0/24"}}},
			{Protocol: "tcp", PortRange: "80", Sources: &godo.Sources{Addresses: []string{"0.0.0.0/0", "::/0"}}},
			{Protocol: "tcp", PortRange: "0", Sources: &godo.Sources{Tags: []string{"dynia:cluster:prod"}}},
			{Protocol: "icmp", Sources: &godo.Sources{Tags: []string{"dynia:cluster:prod"}}},
		},
		OutboundRules: []godo.OutboundRule{
			{Protocol: "tcp", PortRange: "0", Destinations: &godo.Destinations{Addresses: []string{"0.0.0.0/0"}}},
		},
		Tags: []string{"dynia:cluster:prod"}}
	fw, _, err := c.Firewalls.Create(ctx, fwReq)
	must(err, "firewall create")
	_, _, err = c.Firewalls.Get(ctx, fw.ID)
	must(err, "firewall get")
	_, _, err = c.Firewalls.List(ctx, nil)
	must(err, "firewall list")
	_, _, err = c.Firewalls.ListByDroplet(ctx, d1.ID, nil)
	must(err, "firewall list by droplet")
	fwReq.Name = "dynia-prod-2"
	_, _, err = c.Firewalls.Update(ctx, fw.ID, fwReq)
	must(err, "firewall update")
	_, err = c.Firewalls.AddDroplets(ctx, fw.ID, ds[0].ID)
	must(err, "firewall add droplets")
	_, err = c.Firewalls.RemoveDroplets(ctx, fw.ID, ds[0].ID)
	must(err, "firewall remove droplets")
	_, err = c.Firewalls.AddTags(ctx, fw.ID, "dynia")
	must(err, "firewall add tags")
	_, err = c.Firewalls.RemoveTags(ctx, fw.ID, "dynia")
	must(err, "firewall remove tags")
	rules := &godo.FirewallRulesRequest{InboundRules: []godo.InboundRule{{Protocol: "udp", PortRange: "8000-9000", Sources: &godo.Sources{Addresses: []string{"10.0.0.0/8"}}}}}
	_, err = c.Firewalls.AddRules(ctx, fw.ID, rules)
	must(err, "firewall add rules")
	_, err = c.Firewalls.RemoveRules(ctx, fw.ID, rules)
	must(err, "firewall remove rules")

	// Tags and resources.
	_, _, err = c.Tags.List(ctx, nil)
	must(err, "tag list")
	_, _, err = c.Tags.Get(ctx, "dynia")
	must(err, "tag get")
	_, _, err = c.Tags.Create(ctx, &godo.TagCreateRequest{Name: "scratch"})
	must(err, "tag create")
	res := []godo.Resource{{ID: itoa(ds[1].ID), Type: godo.DropletResourceType}}
	_, err = c.Tags.TagResources(ctx, "scratch", &godo.TagResourcesRequest{Resources: res})
	must(err, "tag resources")
	_, err = c.Tags.UntagResources(ctx, "scratch", &godo.UntagResourcesRequest{Resources: res})
	must(err, "untag resources")
	_, err = c.Tags.Delete(ctx, "scratch")
	must(err, "tag delete")

	// Domains and records.
	_, _, err = c.Domains.Create(ctx, &godo.DomainCreateRequest{Name: "example.com"})
	must(err, "domain create")
	_, _, err = c.Domains.List(ctx, nil)
	must(err, "domain list")
	_, _, err = c.Domains.Get(ctx, "example.com")
	must(err, "domain get")
	rec, _, err := c.Domains.CreateRecord(ctx, "example.com", &godo.DomainRecordEditRequest{Type: "A", Name: "www", Data: rip.IP, TTL: 60})
	must(err, "record create")
	got, _, err := c.Domains.RecordsByTypeAndName(ctx, "example.com", "A", "www.example.com", nil)
	must(err, "records by type and name")
	if len(got) != 1 || got[0].ID != rec.ID {
		t.Fatalf("records by type and name = %+v", got)
	}
	_, _, err = c.Domains.Records(ctx, "example.com", nil)
	must(err, "records")
	_, _, err = c.Domains.Record(ctx, "example.com", rec.ID)
	must(err, "record get")
	_, _, err = c.Domains.EditRecord(ctx, "example.com", rec.ID, &godo.DomainRecordEditRequest{Type: "A", Name: "www", Data: "198.51.100.200", TTL: 60})
	must(err, "record edit")
	// godo has no PATCH for records; send one through its request builder.
	preq, err := c.NewRequest(ctx, "PATCH", "v2/domains/example.com/records/"+itoa(rec.ID), map[string]any{"type": "A", "ttl": 120})
	must(err, "record patch request")
	_, err = c.Do(ctx, preq, nil)
	must(err, "record patch")
	_, err = c.Domains.DeleteRecord(ctx, "example.com", rec.ID)
	must(err, "record delete")
	_, err = c.Domains.Delete(ctx, "example.com")
	must(err, "domain delete")

	// Spaces keys.
	key, _, err := c.SpacesKeys.Create(ctx, &godo.SpacesKeyCreateRequest{Name: "dynia-state", Grants: []*godo.Grant{{Bucket: "dynia-state", Permission: godo.SpacesKeyReadWrite}}})
	must(err, "spaces key create")
	if key.SecretKey == "" {
		t.Fatal("create returned no secret")
	}
	k2, _, err := c.SpacesKeys.Get(ctx, key.AccessKey)
	must(err, "spaces key get")
	if k2.SecretKey != "" {
		t.Fatal("get returned the secret")
	}
	_, _, err = c.SpacesKeys.List(ctx, nil)
	must(err, "spaces key list")
	_, _, err = c.SpacesKeys.Update(ctx, key.AccessKey, &godo.SpacesKeyUpdateRequest{Name: "dynia-state-2", Grants: []*godo.Grant{{Bucket: "dynia-state", Permission: godo.SpacesKeyRead}}})
	must(err, "spaces key update")
	preq, err = c.NewRequest(ctx, "PATCH", "v2/spaces/keys/"+key.AccessKey, map[string]any{"name": "dynia-state-3"})
	must(err, "spaces key patch request")
	_, err = c.Do(ctx, preq, nil)
	must(err, "spaces key patch")
	_, err = c.SpacesKeys.Delete(ctx, key.AccessKey)
	must(err, "spaces key delete")

	// Deletes.
	_, err = c.Firewalls.Delete(ctx, fw.ID)
	must(err, "firewall delete")
	_, err = c.ReservedIPs.Delete(ctx, rip.IP)
	must(err, "rip delete")
	_, err = c.Droplets.Delete(ctx, d1.ID)
	must(err, "droplet delete")
	_, err = c.Droplets.Delete(ctx, d0.ID)
	must(err, "droplet delete")
	_, err = c.Droplets.DeleteByTag(ctx, "dynia")
	must(err, "droplet delete by tag")
	_, err = c.VPCs.Delete(ctx, vpc.ID)
	must(err, "vpc delete")
	_, err = c.Snapshots.Delete(ctx, itoa(snapID))
	must(err, "snapshot delete")
	id2 := s.RegisterImage(Image{Name: "x"})
	_, err = c.Images.Delete(ctx, id2)
	must(err, "image delete")

	// Coverage: every route answered a success at least once.
	ok := map[string]bool{}
	for k := range v.Checked() {
		f := strings.Fields(k)
		if f[2] < "300" {
			ok[f[0]+" "+norm(f[1])] = true
		}
	}
	for _, rt := range routes(nil) {
		key := rt.method + " " + norm("/"+strings.Join(rt.pattern, "/"))
		if !ok[key] {
			t.Errorf("route %s never exercised with success", key)
		}
	}
	t.Logf("validated %d exchanges over %d routes", sum(v.Checked()), len(routes(nil)))
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

func norm(p string) string { return wildcard.ReplaceAllString(p, "{}") }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func itoa(n int) string { return strconv.Itoa(n) }
