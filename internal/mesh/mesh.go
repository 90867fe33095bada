// Package mesh is the WireGuard mesh between a cluster's nodes that
// carries keepalived's VRRP adverts. DigitalOcean Cloud Firewalls pass only
// TCP, UDP and ICMP, on public and VPC traffic alike (DO docs, Firewalls →
// Details → Limits), so VRRP (IP protocol 112) sent between droplets is
// dropped and every node elects itself MASTER. Inside WireGuard it travels
// as UDP, which the firewall admits from the cluster's tag only, and it is
// authenticated: a droplet outside the cluster, even in the same VPC,
// cannot inject adverts.
//
// Each node has one WireGuard interface. Its mesh address is derived from
// its VPC private IP (Address), so no coordination is needed; its private
// key is made on the node (LoadOrCreateKey) and its public key reaches the
// peers through the node's status report in the bucket (internal/pull).
// Device configures the interface through wgctrl: netlink for kernel
// WireGuard, the UAPI socket for wireguard-go. docs/pull.md, Mesh.
package mesh

import (
	"fmt"
	"net/netip"
)

// Prefix holds every mesh address. It is part of 100.64.0.0/10, the
// shared address space of RFC 6598, which no DigitalOcean VPC can use (VPC
// ranges must be RFC 1918 private ranges: DO API, VPCs, ip_range), so a
// mesh address never collides with a private IP.
var Prefix = netip.MustParsePrefix("100.64.0.0/16")

// Address is the mesh address of the node whose VPC private IP is
// privateIP: Prefix plus the private IP's low 16 bits (10.116.3.7 →
// 100.64.3.7). A DO VPC is a /16 to /28 (DO API, VPCs: "may not be larger
// than /16"), so within one VPC the low 16 bits — and the mesh addresses —
// are unique. It fails for anything but an IPv4 address, and for the two
// addresses that would be Prefix's network and broadcast addresses (x.y.0.0
// and x.y.255.255 are the network or broadcast address of any VPC holding
// them, never a droplet's).
func Address(privateIP string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(privateIP)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, fmt.Errorf("mesh address of %q: not an IPv4 address", privateIP)
	}
	b := ip.As4()
	if (b[2] == 0 && b[3] == 0) || (b[2] == 255 && b[3] == 255) {
		return netip.Addr{}, fmt.Errorf("mesh address of %s: its low 16 bits are a network or broadcast address", privateIP)
	}
	p := Prefix.Addr().As4()
	return netip.AddrFrom4([4]byte{p[0], p[1], b[2], b[3]}), nil
}
