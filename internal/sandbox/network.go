package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// setupRouter creates the router namespace and its veth to the root
// namespace, with the guard route that sends the whole public range there.
// Run from the root namespace (Up).
func setupRouter(ctx context.Context, p plan) error {
	rt, host, up := p.RouterNS(), p.HostVeth(), p.RouterUplink()
	hostIP, rtrIP := p.HostIP().String(), p.RouterIP().String()
	steps := [][]string{
		{"netns", "add", rt},
		{"-n", rt, "link", "set", "lo", "up"},
		{"link", "add", host, "type", "veth", "peer", "name", up, "netns", rt},
		{"addr", "add", hostIP + "/32", "dev", host},
		{"link", "set", host, "up"},
		{"-n", rt, "addr", "add", rtrIP + "/32", "dev", up},
		{"-n", rt, "addr", "add", metadataIP + "/32", "dev", "lo"},
		{"-n", rt, "link", "set", up, "up"},
		{"-n", rt, "route", "add", hostIP + "/32", "dev", up, "src", rtrIP},
		{"route", "add", rtrIP + "/32", "dev", host, "src", hostIP},
		// The guard: every address of the range stays on this machine.
		{"route", "add", p.Public.String(), "via", rtrIP, "dev", host, "src", hostIP},
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("set up router namespace: %w", err)
		}
	}
	for _, kv := range []string{
		"net.ipv4.ip_forward=1",
		// Reserved IPs are answered from droplets whose route back differs
		// from the way in; strict reverse-path filtering would drop them.
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf.default.rp_filter=0",
	} {
		if err := sysctlNS(ctx, rt, kv); err != nil {
			return fmt.Errorf("set up router namespace: %w", err)
		}
	}
	return nil
}

// netnsExists reports whether /run/netns/NAME exists.
func netnsExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// linkExists reports whether a link exists in the root namespace.
func linkExists(ctx context.Context, name string) bool {
	return ip(ctx, "link", "show", "dev", name) == nil
}

// deleteNetns kills every process left in a namespace we created (found by
// namespace, not by name: everything in it is ours) and deletes it.
func deleteNetns(ctx context.Context, name string) error {
	if !netnsExists(name) {
		return nil
	}
	killNetnsPids(ctx, name)
	if err := ip(ctx, "netns", "del", name); err != nil {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

func killNetnsPids(ctx context.Context, name string) {
	out, err := run(ctx, "ip", "netns", "pids", name)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		var pid int
		if _, err := fmt.Sscanf(f, "%d", &pid); err == nil && pid > 1 && pid != os.Getpid() {
			stopPid(pid, 0)
		}
	}
}

// dropletNet is one droplet's place in the network.
type dropletNet struct {
	ID      int        `json:"id"`
	NS      string     `json:"namespace"`
	Veth    string     `json:"veth"`   // router side, in the router namespace
	Bridge  string     `json:"bridge"` // its VPC's bridge
	MAC     string     `json:"mac"`    // the droplet's eth0
	Private netip.Addr `json:"private_ip"`
	PrivLen int        `json:"private_prefix_len"`
	Public  netip.Addr `json:"public_ip,omitzero"`
	Gateway netip.Addr `json:"gateway"`
	// RouterIP is the source of connections the router itself opens to the
	// droplet (Pebble validating an ACME challenge): the router's public
	// address, as from the internet, not the VPC gateway the kernel would
	// pick. Unset in records older than it.
	RouterIP netip.Addr `json:"router_ip,omitzero"`
}

// routeSrc is the `src` of routes to the droplet (see RouterIP).
func (d dropletNet) routeSrc() []string {
	if !d.RouterIP.IsValid() {
		return nil
	}
	return []string{"src", d.RouterIP.String()}
}

// ensureBridge creates a VPC bridge in the router namespace with the VPC's
// gateway (.1) address, if missing.
func ensureBridge(ctx context.Context, rt, bridge string, gw netip.Prefix) error {
	if ipNS(ctx, rt, "link", "show", "dev", bridge) == nil {
		return nil
	}
	for _, s := range [][]string{
		{"link", "add", bridge, "type", "bridge"},
		{"addr", "add", gw.String(), "dev", bridge},
		{"link", "set", bridge, "up"},
	} {
		if err := ipNS(ctx, rt, s...); err != nil {
			return fmt.Errorf("create VPC bridge %s: %w", bridge, err)
		}
	}
	return nil
}

// addDroplet creates the droplet's namespace, plugs it into its VPC bridge and
// routes its public IP to it. rips are the Reserved IPs every droplet carries
// on lo (the router decides which one receives traffic).
func addDroplet(ctx context.Context, rt string, d dropletNet, rips []string) error {
	if err := ip(ctx, "netns", "add", d.NS); err != nil {
		return fmt.Errorf("create droplet %d: %w", d.ID, err)
	}
	steps := [][]string{
		{"-n", d.NS, "link", "set", "lo", "up"},
		{"-n", rt, "link", "add", d.Veth, "type", "veth", "peer", "name", "eth0", "address", d.MAC, "netns", d.NS},
		{"-n", rt, "link", "set", d.Veth, "master", d.Bridge},
		{"-n", rt, "link", "set", d.Veth, "up"},
		{"-n", d.NS, "addr", "add", fmt.Sprintf("%s/%d", d.Private, d.PrivLen), "dev", "eth0"},
	}
	if d.Public.IsValid() {
		steps = append(steps, []string{"-n", d.NS, "addr", "add", d.Public.String() + "/32", "dev", "eth0"})
	}
	steps = append(steps, []string{"-n", d.NS, "link", "set", "eth0", "up"})
	def := []string{"-n", d.NS, "route", "add", "default", "via", d.Gateway.String(), "dev", "eth0"}
	if d.Public.IsValid() {
		// Leave by the public address: the root namespace has no route to
		// the VPC ranges, just as the internet has none.
		def = append(def, "src", d.Public.String())
		steps = append(steps, append([]string{"-n", rt, "route", "replace", d.Public.String() + "/32", "via", d.Private.String(), "dev", d.Bridge}, d.routeSrc()...))
	}
	steps = append(steps, def,
		// A permanent neighbour entry: the router never ARPs for a droplet, so
		// a powered-off one is silent (no ICMP host-unreachable after a
		// failed ARP), like a real one.
		[]string{"-n", rt, "neigh", "replace", d.Private.String(), "lladdr", d.MAC, "dev", d.Bridge, "nud", "permanent"})
	for _, r := range rips {
		steps = append(steps, []string{"-n", d.NS, "addr", "replace", r + "/32", "dev", "lo"})
	}
	for _, s := range steps {
		if err := ip(ctx, s...); err != nil {
			return fmt.Errorf("create droplet %d: %w", d.ID, err)
		}
	}
	return nil
}

// setDropletLink plugs the droplet's cable in or out (the router side of its
// veth): unplugged, nothing reaches it and it answers nothing.
func setDropletLink(ctx context.Context, rt string, d dropletNet, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := ipNS(ctx, rt, "link", "set", d.Veth, state); err != nil {
		return fmt.Errorf("droplet %d link %s: %w", d.ID, state, err)
	}
	return nil
}

// removeDroplet deletes the droplet's routes, veth and namespace.
func removeDroplet(ctx context.Context, rt string, d dropletNet) error {
	var errs []error
	if d.Public.IsValid() {
		_ = ipNS(ctx, rt, "route", "del", d.Public.String()+"/32")
	}
	_ = ipNS(ctx, rt, "neigh", "del", d.Private.String(), "dev", d.Bridge)
	if ipNS(ctx, rt, "link", "show", "dev", d.Veth) == nil {
		if err := ipNS(ctx, rt, "link", "del", d.Veth); err != nil {
			errs = append(errs, fmt.Errorf("delete droplet %d veth: %w", d.ID, err))
		}
	}
	if err := deleteNetns(ctx, d.NS); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// routeReservedIP points ip at its holder's private address, or blackholes
// it when unassigned (a real unassigned Reserved IP drops traffic).
func routeReservedIP(ctx context.Context, rt, rip string, holder *dropletNet) error {
	var err error
	if holder == nil {
		err = ipNS(ctx, rt, "route", "replace", "blackhole", rip+"/32")
	} else {
		err = ipNS(ctx, rt, append([]string{"route", "replace", rip + "/32", "via", holder.Private.String(), "dev", holder.Bridge}, holder.routeSrc()...)...)
	}
	if err != nil {
		return fmt.Errorf("route reserved IP %s: %w", rip, err)
	}
	return nil
}

// addReservedIPOnLo puts a Reserved IP on a droplet's lo (idempotent).
func addReservedIPOnLo(ctx context.Context, ns, rip string) error {
	if err := ipNS(ctx, ns, "addr", "replace", rip+"/32", "dev", "lo"); err != nil {
		return fmt.Errorf("reserved IP %s on %s: %w", rip, ns, err)
	}
	return nil
}
