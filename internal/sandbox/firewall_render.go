package sandbox

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/dynia/dynia/internal/dosim"
)

// The cloud firewall model. DigitalOcean's Cloud Firewall documentation
// (docs.digitalocean.com, Networking → Firewalls → Details → Limits): a
// firewall affects both public and VPC network traffic of the droplets it
// targets (by id or by tag), supports only ICMP, TCP and UDP, blocks
// everything not expressly allowed, and is stateful (replies to an allowed
// flow pass). A droplet no firewall targets is not filtered. Rules of every
// firewall targeting a droplet add up.
//
// The sandbox renders that, per droplet, into two nftables tables named
// cloud_firewall in the droplet's namespace, loaded together in one
// transaction (firewall_apply.go):
//
//   - inet: the decisions. Inbound: a base chain on prerouting at priority
//     mangle (-150), after conntrack (-200), so `ct state` works, and before
//     any DNAT (-100), so a rule matches the port the client used even when
//     Docker forwards it to a container; packets arriving on eth0 only,
//     dropped by policy. Outbound: a base chain on postrouting at priority
//     filter (0), before source NAT (100); packets leaving by eth0 only.
//   - netdev, on eth0's egress hook: the outbound drops. A packet dropped
//     in postrouting makes the sender's own send fail (EPERM for UDP, ICMP
//     and raw sockets such as keepalived's VRRP), where on DO it leaves and
//     vanishes. So the outbound chain only marks what it denies (fwDenyMark
//     on the packet, and on its conntrack entry), and the egress chain,
//     which runs after the kernel has accepted the send, drops marked
//     packets: the sender's send succeeds, nothing arrives.
//
// The order inside each inet chain: anything not on eth0 passes (loopback,
// a container bridge); the metadata service (169.254.169.254, link-local on
// DO's hypervisor) is always reachable; IPv6 is denied (not modelled: the
// sandbox is IPv4-only, IPv6 rule addresses are ignored); every protocol but
// TCP, UDP and ICMP is denied, replies included; then replies (ct state
// established,related) pass; then the rules. A drop is silent: no RST, no
// ICMP. The conntrack entry of a denied outbound flow exists (the packet was
// confirmed before egress dropped it) but carries the deny mark, so a
// "reply" to it is judged by the inbound rules, not let in as established;
// a later packet of that flow the rules allow clears the mark.
const (
	nftFamily = "inet"
	nftTable  = "cloud_firewall"
	// nftIface is the droplet's only interface to the cloud.
	nftIface = "eth0"
	// fwDenyMark marks a packet (meta mark) and its flow (ct mark) the
	// outbound chain denied. One bit no other user of marks here sets
	// (keepalived none, WireGuard its configured fwmark, Docker none
	// outside swarm); the outbound chain clears it first anyway.
	fwDenyMark = 0x10000000
)

// fwSnapshot is the simulator's state a droplet's firewall depends on.
type fwSnapshot struct {
	Firewalls []dosim.Firewall
	Droplets  []dosim.Droplet
}

// renderFirewalls renders, for every droplet in the snapshot, the nftables
// ruleset its namespace gets: "" when no firewall targets it (unfiltered,
// DO's default). The text is deterministic (firewalls in creation order,
// rules in their order, addresses sorted), so equal text means an equal
// ruleset.
func renderFirewalls(s fwSnapshot) map[int]string {
	byID := map[int]dosim.Droplet{}
	for _, d := range s.Droplets {
		byID[d.ID] = d
	}
	out := map[int]string{}
	for _, d := range s.Droplets {
		var fws []dosim.Firewall
		for _, fw := range s.Firewalls {
			if targets(fw, d) {
				fws = append(fws, fw)
			}
		}
		out[d.ID] = renderDroplet(d, fws, s.Droplets, byID)
	}
	return out
}

// targets reports whether fw applies to d: by droplet id or by a tag d carries.
func targets(fw dosim.Firewall, d dosim.Droplet) bool {
	if slices.Contains(fw.DropletIDs, d.ID) {
		return true
	}
	for _, t := range fw.Tags {
		if slices.Contains(d.Tags, t) {
			return true
		}
	}
	return false
}

func renderDroplet(d dosim.Droplet, fws []dosim.Firewall, all []dosim.Droplet, byID map[int]dosim.Droplet) string {
	if len(fws) == 0 {
		return ""
	}
	var b strings.Builder
	names := make([]string, len(fws))
	for i, fw := range fws {
		names[i] = fw.Name + " (" + fw.ID + ")"
	}
	fmt.Fprintf(&b, "# DigitalOcean Cloud Firewall of droplet %d (%s), rendered by the dynia sandbox\n", d.ID, d.Name)
	fmt.Fprintf(&b, "# from: %s\n", strings.Join(names, ", "))
	fmt.Fprintf(&b, "table %s %s {\n", nftFamily, nftTable)
	mark, keep := fmt.Sprintf("%#08x", fwDenyMark), fmt.Sprintf("%#08x", ^uint32(fwDenyMark))
	b.WriteString("\tchain inbound {\n")
	b.WriteString("\t\ttype filter hook prerouting priority mangle; policy drop;\n")
	fmt.Fprintf(&b, "\t\tiifname != %q accept comment \"only %s is behind the cloud firewall\"\n", nftIface, nftIface)
	b.WriteString("\t\tmeta nfproto ipv6 drop comment \"IPv6 is not modelled\"\n")
	b.WriteString("\t\tmeta l4proto != { tcp, udp, icmp } drop comment \"only TCP, UDP and ICMP, replies included\"\n")
	fmt.Fprintf(&b, "\t\tct state established,related ct mark & %s == 0 accept comment \"stateful: replies to allowed flows\"\n", mark)
	for _, fw := range fws {
		for _, r := range fw.InboundRules {
			writeRule(&b, fw.Name, "inbound", "saddr", r, r.Sources, all, byID)
		}
	}
	b.WriteString("\t}\n")
	b.WriteString("\tchain outbound {\n")
	b.WriteString("\t\ttype filter hook postrouting priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\toifname != %q accept comment \"only %s is behind the cloud firewall\"\n", nftIface, nftIface)
	fmt.Fprintf(&b, "\t\tmeta mark set meta mark & %s comment \"the deny mark is ours\"\n", keep)
	fmt.Fprintf(&b, "\t\tct state new ct mark set ct mark & %s comment \"judged again below\"\n", keep)
	fmt.Fprintf(&b, "\t\tip daddr %s accept comment \"metadata service, not subject to the firewall\"\n", metadataIP)
	b.WriteString("\t\tmeta nfproto ipv6 goto deny comment \"IPv6 is not modelled\"\n")
	b.WriteString("\t\tmeta l4proto != { tcp, udp, icmp } goto deny comment \"only TCP, UDP and ICMP, replies included\"\n")
	b.WriteString("\t\tct state established,related accept comment \"stateful: replies to allowed flows\"\n")
	for _, fw := range fws {
		for _, r := range fw.OutboundRules {
			writeRule(&b, fw.Name, "outbound", "daddr", r, r.Destinations, all, byID)
		}
	}
	b.WriteString("\t\tgoto deny comment \"no rule allows it\"\n")
	b.WriteString("\t}\n")
	b.WriteString("\tchain deny {\n")
	fmt.Fprintf(&b, "\t\tmeta mark set meta mark | %[1]s ct mark set ct mark | %[1]s comment \"dropped on eth0's egress\"\n", mark)
	b.WriteString("\t}\n")
	b.WriteString("}\n")
	fmt.Fprintf(&b, "table netdev %s {\n", nftTable)
	b.WriteString("\tchain egress {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook egress device %q priority filter; policy accept;\n", nftIface)
	fmt.Fprintf(&b, "\t\tmeta mark & %[1]s == %[1]s drop comment \"denied outbound: the send succeeded, the packet vanishes\"\n", mark)
	b.WriteString("\t}\n")
	b.WriteString("}\n")
	return b.String()
}

// writeRule writes one DO rule as one nftables rule, or a comment when none
// of its sources is an IPv4 address the sandbox knows (it allows nothing).
func writeRule(b *strings.Builder, fwName, dir, field string, r dosim.FirewallRule, t *dosim.FirewallTarget, all []dosim.Droplet, byID map[int]dosim.Droplet) {
	desc := ruleDesc(dir, r)
	comment := fwName + ": " + desc
	if len(comment) > 120 { // nftables comments hold 128 bytes
		comment = comment[:120]
	}
	addrs := resolveTarget(t, all, byID)
	if len(addrs) == 0 {
		fmt.Fprintf(b, "\t\t# %s: no IPv4 address among its %s: allows nothing\n", comment, map[string]string{"saddr": "sources", "daddr": "destinations"}[field])
		return
	}
	match, ok := protoMatch(r)
	if !ok {
		fmt.Fprintf(b, "\t\t# %s: not a TCP, UDP or ICMP rule: allows nothing\n", comment)
		return
	}
	fmt.Fprintf(b, "\t\tip %s %s %s accept comment %q\n", field, nftSet(addrs), match, comment)
}

func ruleDesc(dir string, r dosim.FirewallRule) string {
	ports := r.Ports
	if r.Protocol == "icmp" {
		return dir + " icmp"
	}
	if allPorts(ports) {
		ports = "all"
	}
	return dir + " " + r.Protocol + " " + ports
}

// allPorts: DO's "0" (and the spellings some clients send) means every port.
func allPorts(p string) bool {
	switch p {
	case "", "0", "all", "1-65535":
		return true
	}
	return false
}

// protoMatch is the nftables match of a rule's protocol and ports.
func protoMatch(r dosim.FirewallRule) (string, bool) {
	switch r.Protocol {
	case "icmp":
		return "ip protocol icmp", true
	case "tcp", "udp":
		if allPorts(r.Ports) {
			return "ip protocol " + r.Protocol, true
		}
		lo, hi, isRange := strings.Cut(r.Ports, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if isRange {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || a < 1 || z > 65535 || a > z {
			return "", false // the simulator validates ports; never rendered
		}
		if a == z {
			return fmt.Sprintf("%s dport %d", r.Protocol, a), true
		}
		return fmt.Sprintf("%s dport %d-%d", r.Protocol, a, z), true
	}
	return "", false
}

// resolveTarget turns a rule's sources (or destinations) into IPv4
// prefixes: addresses and CIDRs as given (IPv6 ignored: the sandbox is
// IPv4-only), a droplet id into that droplet's public and private IPv4, a
// tag into those of every droplet carrying it. Load balancers and
// Kubernetes clusters are not simulated and add nothing. The result is
// minimal (no prefix inside another) and sorted.
func resolveTarget(t *dosim.FirewallTarget, all []dosim.Droplet, byID map[int]dosim.Droplet) []netip.Prefix {
	if t == nil {
		return nil
	}
	var ps []netip.Prefix
	for _, a := range t.Addresses {
		if p, ok := parseIPv4Prefix(a); ok {
			ps = append(ps, p)
		}
	}
	dropletAddrs := func(d dosim.Droplet) {
		for _, a := range []string{d.PublicIPv4, d.PrivateIPv4} {
			if p, ok := parseIPv4Prefix(a); ok {
				ps = append(ps, p)
			}
		}
	}
	for _, id := range t.DropletIDs {
		if d, ok := byID[id]; ok {
			dropletAddrs(d)
		}
	}
	for _, tag := range t.Tags {
		for _, d := range all {
			if slices.Contains(d.Tags, tag) {
				dropletAddrs(d)
			}
		}
	}
	return minimalPrefixes(ps)
}

// parseIPv4Prefix accepts "a.b.c.d" and "a.b.c.d/n" (host bits masked off);
// IPv6 and garbage are not IPv4 prefixes.
func parseIPv4Prefix(s string) (netip.Prefix, bool) {
	if s == "" {
		return netip.Prefix{}, false
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), p.Addr().Is4()
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, 32), true
}

// minimalPrefixes drops duplicates and prefixes inside another (nftables
// refuses overlapping intervals in a set), sorted by address.
func minimalPrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		return cmp.Or(cmp.Compare(a.Bits(), b.Bits()), a.Addr().Compare(b.Addr()))
	})
	var out []netip.Prefix
	for _, p := range ps {
		covered := false
		for _, q := range out {
			if q.Contains(p.Addr()) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return out
}

// nftSet writes prefixes as one element or an anonymous set; a /32 as a
// plain address.
func nftSet(ps []netip.Prefix) string {
	el := make([]string, len(ps))
	for i, p := range ps {
		if p.Bits() == 32 {
			el[i] = p.Addr().String()
		} else {
			el[i] = p.String()
		}
	}
	if len(el) == 1 {
		return el[0]
	}
	return "{ " + strings.Join(el, ", ") + " }"
}
