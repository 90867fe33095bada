package sandbox

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
)

// DefaultPublicRange is where droplet public IPs and Reserved IPs come from:
// TEST-NET-2, never routed on the internet.
const DefaultPublicRange = "198.51.100.0/24"

// DefaultPrefix names the sandbox's namespaces and root-namespace links.
const DefaultPrefix = "dynia"

// metadataIP is the link-local metadata address, on the router's lo.
const metadataIP = "169.254.169.254"

// Ports the cloud serves on the router's public address.
const (
	apiPort = 80
	s3Port  = 9000
)

// forbiddenRanges may never be (part of) the public range: 203.0.113.0/24
// holds this lab's package-mirror address, the rest are special. The
// private and shared ranges are out because the state accepts only public
// addresses as droplets' public and Reserved IPs (docs/state.md), and the
// simulated VPCs live in 10/8.
var forbiddenRanges = []netip.Prefix{
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/3"),
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// plan is the sandbox's addressing and naming, derived from the options and
// nothing else, so Up, Serve and Down agree without talking to each other.
//
//	root ns  <prefix>-h  P.last-1/32 ──veth── uplink P.1/32  router ns <prefix>-rt
//	root routes: P.1/32 dev <prefix>-h; P/len via P.1 (the guard route)
//	router: lo 169.254.169.254/32; vpcN bridges (VPC .1); routes to droplets
type plan struct {
	Prefix string
	Public netip.Prefix
}

// ParsePublicRange checks a public range's shape without touching the
// machine (the CLI calls it to reject bad --public-range before anything
// privileged): an IPv4 prefix, /16 to /26, no host bits, clear of the
// ranges the sandbox must never route. Whether the range is free on this
// machine is checked later, by Up.
func ParsePublicRange(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("not a CIDR like %s", DefaultPublicRange)
	}
	if !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 26 {
		return netip.Prefix{}, fmt.Errorf("want an IPv4 prefix between /16 and /26")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits set (did you mean %s?)", p.Masked())
	}
	for _, f := range forbiddenRanges {
		if f.Overlaps(p) {
			return netip.Prefix{}, fmt.Errorf("overlaps %s, which the sandbox must never route", f)
		}
	}
	return p, nil
}

func newPlan(prefix, publicRange string) (plan, error) {
	if !prefixRE.MatchString(prefix) {
		return plan{}, fmt.Errorf("sandbox prefix %q: want 1-12 lowercase letters/digits starting with a letter", prefix)
	}
	p, err := ParsePublicRange(publicRange)
	if err != nil {
		return plan{}, fmt.Errorf("public range %q: %w", publicRange, err)
	}
	return plan{Prefix: prefix, Public: p}, nil
}

func (p plan) RouterNS() string             { return p.Prefix + "-rt" }
func (p plan) HostVeth() string             { return p.Prefix + "-h" }
func (p plan) DropletNS(id int) string      { return p.Prefix + "-d" + strconv.Itoa(id) }
func (p plan) RouterIP() netip.Addr         { return p.Public.Addr().Next() }
func (p plan) APIURL() string               { return fmt.Sprintf("http://%s", p.RouterIP()) }
func (p plan) APIAddr() string              { return fmt.Sprintf("%s:%d", p.RouterIP(), apiPort) }
func (p plan) S3Addr() string               { return fmt.Sprintf("%s:%d", p.RouterIP(), s3Port) }
func (p plan) S3URL() string                { return "http://" + p.S3Addr() }
func (p plan) MetadataAddr() string         { return metadataIP + ":80" }
func (p plan) MetadataURL() string          { return "http://" + metadataIP }
func (plan) RouterUplink() string           { return "uplink" }
func (plan) BridgeName(vpcIndex int) string { return "vpc" + strconv.Itoa(vpcIndex) }
func (plan) RouterVeth(index int) string    { return "veth" + strconv.Itoa(index) }

// HostIP is the root namespace's address: the range's last usable address,
// outside the half the simulator allocates from.
func (p plan) HostIP() netip.Addr {
	a := p.Public.Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= (1 << (32 - p.Public.Bits())) - 1 // broadcast
	n--
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// AllocRange is the part of the range the simulator hands out droplet
// public IPs and Reserved IPs from: the lower half (its .1 is the router).
// The upper half keeps the root namespace's address out of its way.
func (p plan) AllocRange() netip.Prefix {
	return netip.PrefixFrom(p.Public.Addr(), p.Public.Bits()+1)
}

// ipRoute is the part of `ip -j route` output the overlap check reads.
type ipRoute struct {
	Dst   string `json:"dst"`
	Dev   string `json:"dev"`
	Table string `json:"table"`
	Type  string `json:"type"`
}

type ipAddrInfo struct {
	IfName   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// checkRangeFree refuses a public range that overlaps a route or address of
// the machine (JSON from `ip -j -4 route show table all` and `ip -j -4 addr`):
// routing it to the sandbox would hijack real traffic.
func checkRangeFree(public netip.Prefix, routesJSON, addrsJSON []byte) error {
	var routes []ipRoute
	if err := json.Unmarshal(routesJSON, &routes); err != nil {
		return fmt.Errorf("parse ip route output: %w", err)
	}
	for _, r := range routes {
		if r.Dst == "" || r.Dst == "default" {
			continue
		}
		dst, err := parseDst(r.Dst)
		if err != nil {
			continue // not IPv4 or not a prefix: cannot overlap
		}
		if dst.Bits() == 0 {
			continue
		}
		if dst.Overlaps(public) {
			return fmt.Errorf("public range %s is in use on this machine (route %s dev %s); pick another with --public-range", public, r.Dst, r.Dev)
		}
	}
	var links []ipAddrInfo
	if err := json.Unmarshal(addrsJSON, &links); err != nil {
		return fmt.Errorf("parse ip addr output: %w", err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			addr, err := netip.ParseAddr(a.Local)
			if err != nil || !addr.Is4() {
				continue
			}
			if public.Contains(addr) {
				return fmt.Errorf("public range %s is in use on this machine (address %s on %s); pick another with --public-range", public, addr, l.IfName)
			}
		}
	}
	return nil
}

func parseDst(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
