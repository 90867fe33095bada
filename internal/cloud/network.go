package cloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/digitalocean/godo"
)

// VPC is a DO VPC.
type VPC struct {
	ID, Name, Region, IPRange string
	// Dynia: the VPC carries dynia's description, so dynia made it (this
	// run or an earlier one that crashed before recording it) and a
	// cluster destroy may delete it.
	Dynia bool
}

// vpcDescription marks the VPCs dynia creates. VPCs take no tags, and the
// name alone could be a user's own VPC that happens to match.
const vpcDescription = "dynia cluster network"

// EnsureVPC returns the VPC called name in region, creating it when missing.
// DO's list has no region filter, so all pages are read. VPC names are unique
// per account: the name in another region is an error (name VPCs per region,
// e.g. "dynia-<cluster>-<region>"). ipRange may be empty (DO picks one).
func (c *Client) EnsureVPC(ctx context.Context, name, region, ipRange string) (VPC, bool, error) {
	op := fmt.Sprintf("ensure VPC %s in %s", name, region)
	vs, err := listAll(ctx, func(opt *godo.ListOptions) ([]*godo.VPC, *godo.Response, error) {
		return c.godo.VPCs.List(ctx, opt)
	})
	if err != nil {
		return VPC{}, false, wrap(op+": list", err)
	}
	for _, v := range vs {
		if v == nil || v.Name != name {
			continue
		}
		if v.RegionSlug != region {
			// VPC names are unique per account: a create would get 409.
			return VPC{}, false, fmt.Errorf("cloud: %s: the name is taken by VPC %s in %s (VPC names are unique per account; put the region in the name)",
				op, v.ID, v.RegionSlug)
		}
		return fromGodoVPC(v), false, nil
	}
	var v *godo.VPC
	err = c.createOnce(ctx, op+": create", busyOn{what: "VPC " + name}, func(ctx context.Context) error {
		var err error
		v, _, err = c.godo.VPCs.Create(ctx, &godo.VPCCreateRequest{
			Name:        name,
			RegionSlug:  region,
			IPRange:     ipRange,
			Description: vpcDescription,
		})
		return wrap(op+": create", err)
	}, func(ctx context.Context) (bool, error) {
		vs, err := listAll(ctx, func(opt *godo.ListOptions) ([]*godo.VPC, *godo.Response, error) {
			return c.godo.VPCs.List(ctx, opt)
		})
		if err != nil {
			return false, wrap(op+": look for it", err)
		}
		for _, got := range vs {
			if got != nil && got.Name == name && got.RegionSlug == region {
				v = got
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return VPC{}, false, err
	}
	c.log.Info("cloud: VPC created", "name", name, "region", region, "id", v.ID, "ip_range", v.IPRange)
	return fromGodoVPC(v), true, nil
}

func fromGodoVPC(v *godo.VPC) VPC {
	return VPC{ID: v.ID, Name: v.Name, Region: v.RegionSlug, IPRange: v.IPRange, Dynia: v.Description == vpcDescription}
}

// DeleteVPC deletes a VPC; one already gone is not an error. DO refuses while
// droplets are still members, and refuses a region's default VPC (the first
// created there) with a 403 — which errors.Is ErrAuth although the token is
// fine: read the APIError's message.
func (c *Client) DeleteVPC(ctx context.Context, id string) error {
	_, err := c.godo.VPCs.Delete(ctx, id)
	if err = wrap("delete VPC "+id, err); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// FirewallSpec describes a cluster's firewall. docs/architecture.md,
// Network security, lists the rules it makes.
type FirewallSpec struct {
	Name string
	// Tag is the cluster tag: the firewall applies to droplets carrying it,
	// and only droplets carrying it reach the app and mesh ports.
	Tag string
	// AdminCIDRs may reach SSH (22/tcp). Empty means nobody.
	AdminCIDRs []string
	// AppPort is the app's TCP port (the state's app.port, 1-65535): every
	// node's HAProxy reaches every node's app there over the VPC.
	AppPort int
	// MeshPort is WireGuard's UDP port (pull.json mesh_port, 1-65535;
	// nodeconfig.DefaultMeshPort): keepalived's VRRP between the nodes.
	MeshPort int
}

// Firewall is a DO cloud firewall.
type Firewall struct {
	ID, Name string
	Tags     []string
}

var anywhere = []string{"0.0.0.0/0", "::/0"}

// firewallRequest builds the rules. A DO Cloud Firewall passes only TCP,
// UDP and ICMP, on public and VPC traffic alike (DO docs, Firewalls →
// Details → Limits), so keepalived's VRRP (IP protocol 112) travels inside
// the WireGuard mesh, which needs only UDP MeshPort between the nodes.
// Inbound: 80 and 443 and ICMP from anywhere, the app port and the mesh
// port from the cluster tag only (a droplet in the same VPC but outside
// the cluster reaches neither), 22 from the admin CIDRs. Outbound is open:
// a DO firewall with no outbound rules drops all egress. Ports "0" means
// all ports (DO's OpenAPI firewall_rule_base).
func firewallRequest(s FirewallSpec) *godo.FirewallRequest {
	cluster := &godo.Sources{Tags: []string{s.Tag}}
	in := []godo.InboundRule{
		{Protocol: "tcp", PortRange: "80", Sources: &godo.Sources{Addresses: anywhere}},
		{Protocol: "tcp", PortRange: "443", Sources: &godo.Sources{Addresses: anywhere}},
		{Protocol: "tcp", PortRange: strconv.Itoa(s.AppPort), Sources: cluster},
		{Protocol: "udp", PortRange: strconv.Itoa(s.MeshPort), Sources: cluster},
		{Protocol: "icmp", PortRange: "0", Sources: &godo.Sources{Addresses: anywhere}},
	}
	if len(s.AdminCIDRs) > 0 {
		in = append(in, godo.InboundRule{Protocol: "tcp", PortRange: "22", Sources: &godo.Sources{Addresses: slices.Clone(s.AdminCIDRs)}})
	}
	out := []godo.OutboundRule{
		{Protocol: "tcp", PortRange: "0", Destinations: &godo.Destinations{Addresses: anywhere}},
		{Protocol: "udp", PortRange: "0", Destinations: &godo.Destinations{Addresses: anywhere}},
		{Protocol: "icmp", PortRange: "0", Destinations: &godo.Destinations{Addresses: anywhere}},
	}
	return &godo.FirewallRequest{Name: s.Name, InboundRules: in, OutboundRules: out, Tags: []string{s.Tag}}
}

// EnsureFirewall finds the firewall by name and makes its rules and targets
// match spec: created when missing (true), updated when different, left
// alone otherwise. The cluster tag is created first when missing, since DO
// rejects a firewall naming an unknown tag.
func (c *Client) EnsureFirewall(ctx context.Context, spec FirewallSpec) (Firewall, bool, error) {
	op := "ensure firewall " + spec.Name
	if spec.Name == "" || spec.Tag == "" {
		return Firewall{}, false, fmt.Errorf("cloud: %s: name and tag are required", op)
	}
	if spec.AppPort < 1 || spec.AppPort > 65535 || spec.MeshPort < 1 || spec.MeshPort > 65535 {
		return Firewall{}, false, fmt.Errorf("cloud: %s: app port %d and mesh port %d must be 1-65535", op, spec.AppPort, spec.MeshPort)
	}
	want := firewallRequest(spec)
	fws, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Firewall, *godo.Response, error) {
		return c.godo.Firewalls.List(ctx, opt)
	})
	if err != nil {
		return Firewall{}, false, wrap(op+": list", err)
	}
	for _, fw := range fws {
		if fw.Name != spec.Name {
			continue
		}
		if firewallMatches(&fw, want) {
			return fromGodoFirewall(&fw), false, nil
		}
		var up *godo.Firewall
		err := c.whileBusy(ctx, op+": update", busyOn{what: "firewall " + fw.ID}, true, func(ctx context.Context) error {
			var err error
			up, _, err = c.godo.Firewalls.Update(ctx, fw.ID, want)
			return wrap(op+": update", err)
		})
		if err != nil {
			return Firewall{}, false, err
		}
		c.log.Info("cloud: firewall updated", "name", spec.Name, "id", fw.ID)
		return fromGodoFirewall(up), false, nil
	}
	if err := c.EnsureTag(ctx, spec.Tag); err != nil {
		return Firewall{}, false, fmt.Errorf("cloud: %s: %w", op, err)
	}
	var fw *godo.Firewall
	err = c.createOnce(ctx, op+": create", busyOn{what: "firewall " + spec.Name}, func(ctx context.Context) error {
		var err error
		fw, _, err = c.godo.Firewalls.Create(ctx, want)
		return wrap(op+": create", err)
	}, func(ctx context.Context) (bool, error) {
		fws, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Firewall, *godo.Response, error) {
			return c.godo.Firewalls.List(ctx, opt)
		})
		if err != nil {
			return false, wrap(op+": look for it", err)
		}
		for i := range fws {
			if fws[i].Name == spec.Name {
				fw = &fws[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return Firewall{}, false, err
	}
	c.log.Info("cloud: firewall created", "name", spec.Name, "id", fw.ID)
	return fromGodoFirewall(fw), true, nil
}

func fromGodoFirewall(fw *godo.Firewall) Firewall {
	return Firewall{ID: fw.ID, Name: fw.Name, Tags: slices.Clone(fw.Tags)}
}

// firewallMatches compares rules and tag targets as sets, ignoring order and
// the empty-vs-missing differences of DO's JSON.
func firewallMatches(fw *godo.Firewall, want *godo.FirewallRequest) bool {
	var haveIn, wantIn, haveOut, wantOut []string
	for _, r := range fw.InboundRules {
		haveIn = append(haveIn, ruleKey(r.Protocol, r.PortRange, r.Sources))
	}
	for _, r := range want.InboundRules {
		wantIn = append(wantIn, ruleKey(r.Protocol, r.PortRange, r.Sources))
	}
	for _, r := range fw.OutboundRules {
		haveOut = append(haveOut, ruleKey(r.Protocol, r.PortRange, (*godo.Sources)(r.Destinations)))
	}
	for _, r := range want.OutboundRules {
		wantOut = append(wantOut, ruleKey(r.Protocol, r.PortRange, (*godo.Sources)(r.Destinations)))
	}
	return sameSet(haveIn, wantIn) && sameSet(haveOut, wantOut) &&
		sameSet(fw.Tags, want.Tags) && len(fw.DropletIDs) == len(want.DropletIDs)
}

func ruleKey(proto, ports string, s *godo.Sources) string {
	// DO reports all ports as "0"; some clients send "all" or "1-65535",
	// and icmp carries no ports at all.
	switch ports {
	case "", "all", "1-65535":
		ports = "0"
	}
	if proto == "icmp" {
		ports = "0"
	}
	var parts []string
	parts = append(parts, proto, ports)
	if s != nil {
		parts = append(parts, "a="+sortedJoin(s.Addresses), "t="+sortedJoin(s.Tags),
			fmt.Sprintf("d=%v", sortedInts(s.DropletIDs)), "l="+sortedJoin(s.LoadBalancerUIDs), "k="+sortedJoin(s.KubernetesIDs))
	}
	return strings.Join(parts, "|")
}

func sortedJoin(s []string) string {
	s = slices.Clone(s)
	slices.Sort(s)
	return strings.Join(s, ",")
}

func sortedInts(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// DeleteFirewall deletes a firewall; one already gone is not an error.
func (c *Client) DeleteFirewall(ctx context.Context, id string) error {
	op := "delete firewall " + id
	err := c.whileBusy(ctx, op, busyOn{what: "firewall " + id}, true, func(ctx context.Context) error {
		_, err := c.godo.Firewalls.Delete(ctx, id)
		return wrap(op, err)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// EnsureTag creates tag when it does not exist.
func (c *Client) EnsureTag(ctx context.Context, tag string) error {
	_, _, err := c.godo.Tags.Get(ctx, tag)
	if err == nil {
		return nil
	}
	if err = wrap("get tag "+tag, err); !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, _, err := c.godo.Tags.Create(ctx, &godo.TagCreateRequest{Name: tag}); err != nil {
		return wrap("create tag "+tag, err)
	}
	return nil
}
