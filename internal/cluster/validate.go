package cluster

import (
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FieldError names the field and value that made a state or an input invalid.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s", e.Field, e.Value, e.Reason)
}

func fieldErr(field, value, reason string, args ...any) error {
	return &FieldError{Field: field, Value: value, Reason: fmt.Sprintf(reason, args...)}
}

// A cluster name becomes part of droplet hostnames (<cluster>-<adj>-<animal>)
// and tags, so it must be a short DNS label.
var clusterNameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,28}[a-z0-9])?$`)

// nodeIDRE matches two-word ids: <adjective>-<animal>.
var nodeIDRE = regexp.MustCompile(`^[a-z]+-[a-z]+$`)

// opIDRE matches an operation id: opIDBytes random bytes in lowercase hex.
var opIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// regionRE matches DO region slugs (nyc3, sgp1, ams3).
var regionRE = regexp.MustCompile(`^[a-z]{3}[0-9]$`)

// sizeRE matches DO size slugs (s-1vcpu-1gb, c-2, g-2vcpu-8gb).
var sizeRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,40}$`)

// dropletImageRE matches what the state's image holds: a snapshot id or a
// distribution slug (debian-12-x64).
var dropletImageRE = regexp.MustCompile(`^([0-9]{1,19}|[a-z0-9][a-z0-9._-]{0,62})$`)

// doIDRE matches DO resource ids kept in the state (VPC and firewall ids are
// UUIDs). They end up in API paths, so no '/', '.', '%' or '?'.
var doIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

// dnsRecordIDRE matches a DNS provider's record id (DO: a number;
// Cloudflare: 32 hex digits); it goes into API paths.
var dnsRecordIDRE = regexp.MustCompile(`^[A-Za-z0-9]{0,64}$`)

// MaxHealthPathLen bounds a health path: a health check needs no more.
const MaxHealthPathLen = 256

// MaxAdminCIDRs bounds admin_cidrs: each becomes a firewall source.
const MaxAdminCIDRs = 64

// Advert interval bounds keepalived 2.2.7 accepts (keepalived.conf(5),
// advert_int; vrrp_parser.c reads 0.01-255 s, then vrrp.c wants whole
// seconds for VRRPv2 and multiples of 10 ms up to 40.95 s for VRRPv3,
// whose advertisement field is 12 bits of centiseconds, RFC 5798 5.2.7).
// render.Render writes `version 3` for a fractional interval.
const (
	MinAdvertInterval   = 0.01  // seconds, VRRPv3
	MaxAdvertIntervalV3 = 40.95 // seconds, the most a fraction may be
	MaxAdvertInterval   = 255   // seconds, whole (VRRPv2)
)

// ReservedPorts are the TCP ports a node uses itself, by what uses them:
// app.port and nodes[].app_port (where HAProxy's node-local app frontend
// listens on the private IP) may not be one. docs/state.md lists them.
var ReservedPorts = map[int]string{
	22:    "sshd on the node",
	80:    "HAProxy's HTTP frontend",
	443:   "HAProxy's HTTPS frontend",
	9321:  "dynia-pull's metrics",
	51820: "the WireGuard mesh",
}

// Address ranges that are no host's unicast address (IANA IPv4 Special-
// Purpose Address Registry, RFC 6890): 0/8 "this network" (with the
// unspecified 0.0.0.0), 127/8 loopback, 169.254/16 link-local (where the
// metadata service lives), 224/4 multicast, 240/4 reserved (with the
// limited broadcast 255.255.255.255).
var nonHostRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// sharedRange is RFC 6598's shared address space (carrier-grade NAT): never
// a droplet's public or Reserved IP.
var sharedRange = netip.MustParsePrefix("100.64.0.0/10")

// ValidateName checks a cluster name; the error names the value.
func ValidateName(name string) error {
	if !clusterNameRE.MatchString(name) || strings.Contains(name, "--") {
		return fieldErr("name", name, "must be 1-30 lowercase letters, digits or single hyphens, starting with a letter")
	}
	return nil
}

// ValidateNodeID checks a two-word node id.
func ValidateNodeID(id string) error {
	if !nodeIDRE.MatchString(id) || len(id) > 32 {
		return fieldErr("node", id, "must be a two-word id like misty-owl")
	}
	return nil
}

// ValidateRegion checks the shape of a region slug (the CLI also checks it
// against the API's /v2/regions).
func ValidateRegion(region string) error {
	if !regionRE.MatchString(region) {
		return fieldErr("region", region, "must be a region slug like sgp1 or nyc3")
	}
	return nil
}

// ValidateSize checks the shape of a droplet size slug (the CLI also checks
// it against the API's /v2/sizes).
func ValidateSize(size string) error {
	if !sizeRE.MatchString(size) {
		return fieldErr("size", size, "must be a size slug like s-1vcpu-1gb")
	}
	return nil
}

// ValidateHealthPath checks an HTTP health check path (app.health_path,
// a release's health_path): HAProxy sends it verbatim in the request line
// of its checks, and it is written unquoted into haproxy.cfg. Allowed: '/'
// first, then RFC 3986 path and query characters (ALPHA DIGIT - . _ ~ ! &
// ( ) * + , ; = : @ / ?) and %XX escapes that do not decode to a control
// character; at most MaxHealthPathLen bytes. Left out of RFC 3986's set:
// ' (HAProxy's config parser takes it for a quote) and $ (HAProxy expands
// ${NAME} inside double quotes); '#' starts a fragment in a URI and a
// comment in haproxy.cfg. The error is the reason only; callers name the
// field or flag.
func ValidateHealthPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("must be an absolute path starting with /")
	}
	if len(p) > MaxHealthPathLen {
		return fmt.Errorf("longer than %d bytes", MaxHealthPathLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._~!&()*+,;=:@/?", c) >= 0:
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return fmt.Errorf("%% must start an escape of two hex digits")
			}
			v, _ := strconv.ParseUint(p[i+1:i+3], 16, 8)
			if v < 0x20 || v == 0x7f {
				return fmt.Errorf("escape %s decodes to a control character", p[i:i+3])
			}
			i += 2
		default:
			return fmt.Errorf("character %q not allowed (letters, digits, -._~!&()*+,;=:@/? and %%XX escapes)", rune(c))
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// ValidateAdvertInterval checks a VRRP advert interval in seconds against
// what keepalived 2.2.7 accepts: a whole number of seconds from 1 to 255
// (VRRPv2), or a fraction in steps of 10 ms from 0.01 to 40.95 (VRRPv3,
// which render.Render selects for fractions).
func ValidateAdvertInterval(v float64) error {
	if err := checkAdvertInterval(v); err != nil {
		return fieldErr("advert_interval", FormatAdvertInterval(v), "%v", err)
	}
	return nil
}

// FormatAdvertInterval is v as keepalived.conf gets it (shortest decimal,
// never an exponent: keepalived rejects 1e-2).
func FormatAdvertInterval(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

func checkAdvertInterval(v float64) error {
	const rule = "must be 1-255 whole seconds, or 0.01-40.95 in steps of 0.01 (VRRPv3)"
	if math.IsNaN(v) || math.IsInf(v, 0) || v < MinAdvertInterval || v > MaxAdvertInterval {
		return fmt.Errorf("%s", rule)
	}
	if v == math.Trunc(v) {
		return nil
	}
	_, frac, _ := strings.Cut(FormatAdvertInterval(v), ".")
	if v > MaxAdvertIntervalV3 || len(frac) > 2 {
		return fmt.Errorf("%s", rule)
	}
	return nil
}

// ValidateAppPort checks the app's TCP port: 1-65535 and not one of
// ReservedPorts.
func ValidateAppPort(port int) error {
	if err := checkAppPort(port); err != nil {
		return fieldErr("port", strconv.Itoa(port), "%v", err)
	}
	return nil
}

func checkAppPort(port int) error {
	if port < 1 || port > 65535 {
		return fmt.Errorf("must be 1-65535")
	}
	if what, ok := ReservedPorts[port]; ok {
		return fmt.Errorf("reserved for %s (reserved: %s)", what, reservedPortList())
	}
	return nil
}

func reservedPortList() string {
	ports := make([]int, 0, len(ReservedPorts))
	for p := range ReservedPorts {
		ports = append(ports, p)
	}
	slices.Sort(ports)
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}

// ValidateVPCCIDR checks a VPC range as DO allows it: an RFC 1918 IPv4
// network from /16 to /28, no host bits (DO API, Create a New VPC:
// ip_range; "VPC networks ... must be /16 to /28" in DO's VPC docs).
func ValidateVPCCIDR(c string) error {
	if _, err := checkVPCCIDR(c); err != nil {
		return fieldErr("vpc.cidr", c, "%v", err)
	}
	return nil
}

func checkVPCCIDR(c string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(c)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("not an IPv4 CIDR")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("host bits set (did you mean %s?)", p.Masked())
	}
	if !p.Addr().IsPrivate() || p.Bits() < 16 || p.Bits() > 28 {
		return netip.Prefix{}, fmt.Errorf("must be a private (RFC 1918) network from /16 to /28")
	}
	return p, nil
}

// Validate checks the whole state and returns the first problem, naming the
// field (nodes[i].private_ip, …) and the value. docs/state.md lists the
// rules and where each limit comes from. The sections are checked in the
// order of the state's fields; the first failing one answers.
func (s *State) Validate() error {
	if err := s.validateHeader(); err != nil {
		return err
	}
	vpc, err := s.validateNetwork()
	if err != nil {
		return err
	}
	if err := s.validateDNS(); err != nil {
		return err
	}
	if err := s.validateAppSection(); err != nil {
		return err
	}
	if err := s.validateSecrets(); err != nil {
		return err
	}
	if err := checkAdvertInterval(s.HA.AdvertInterval); err != nil {
		return fieldErr("ha.advert_interval", FormatAdvertInterval(s.HA.AdvertInterval), "%v", err)
	}
	if err := s.validateNodes(vpc); err != nil {
		return err
	}
	return s.validateRecentOps()
}

// validateHeader checks the schema, generation and the cluster's identity:
// name, region, size and image.
func (s *State) validateHeader() error {
	if s.SchemaVersion != SchemaVersion {
		return fieldErr("schema_version", fmt.Sprint(s.SchemaVersion), "unsupported (this build reads %d)", SchemaVersion)
	}
	if err := ValidateMinPullVersion(s.MinPullVersion); err != nil {
		return err
	}
	if s.Generation < 0 {
		return fieldErr("generation", fmt.Sprint(s.Generation), "must not be negative")
	}
	if err := ValidateName(s.Name); err != nil {
		return err
	}
	if err := ValidateRegion(s.Region); err != nil {
		return err
	}
	if s.Size != "" {
		if err := ValidateSize(s.Size); err != nil {
			return err
		}
	}
	if s.Image != "" && !dropletImageRE.MatchString(s.Image) {
		return fieldErr("image", s.Image, "must be a snapshot id or an image slug like debian-12-x64")
	}
	return nil
}

// validateNetwork checks the VPC, the firewall, the admin ranges and the
// Reserved IP, and returns the VPC's range (zero when unset) for the nodes'
// private IPs.
func (s *State) validateNetwork() (netip.Prefix, error) {
	if s.VPC.ID != "" && !doIDRE.MatchString(s.VPC.ID) {
		return netip.Prefix{}, fieldErr("vpc.id", s.VPC.ID, "not a DigitalOcean id")
	}
	var vpc netip.Prefix
	if s.VPC.CIDR != "" {
		p, err := checkVPCCIDR(s.VPC.CIDR)
		if err != nil {
			return netip.Prefix{}, fieldErr("vpc.cidr", s.VPC.CIDR, "%v", err)
		}
		vpc = p
	}
	if s.FirewallID != "" && !doIDRE.MatchString(s.FirewallID) {
		return netip.Prefix{}, fieldErr("firewall_id", s.FirewallID, "not a DigitalOcean id")
	}
	if len(s.AdminCIDRs) > MaxAdminCIDRs {
		return netip.Prefix{}, fieldErr("admin_cidrs", fmt.Sprint(len(s.AdminCIDRs)), "more than %d entries", MaxAdminCIDRs)
	}
	for i, c := range s.AdminCIDRs {
		if err := ValidateAdminCIDR(c); err != nil {
			return netip.Prefix{}, fieldErr(fmt.Sprintf("admin_cidrs[%d]", i), c, "%v", err)
		}
	}
	if s.ReservedIP != "" {
		if err := checkPublicIPv4(s.ReservedIP); err != nil {
			return netip.Prefix{}, fieldErr("reserved_ip", s.ReservedIP, "%v", err)
		}
	}
	return vpc, nil
}

// validateDNS checks the DNS record dynia manages, if any.
func (s *State) validateDNS() error {
	d := s.DNS
	if d == nil {
		return nil
	}
	switch d.Provider {
	case "", DNSDigitalOcean, DNSCloudflare:
	default:
		return fieldErr("dns.provider", d.Provider, "must be %s or %s", DNSDigitalOcean, DNSCloudflare)
	}
	if d.Domain == "" {
		return fieldErr("dns.domain", "", "must not be empty when dns is set")
	}
	if err := ValidateDomain(d.Domain); err != nil {
		return fieldErr("dns.domain", d.Domain, "%v", err)
	}
	if d.Name == "" || (d.Name != "@" && ValidateDomain(d.FQDN()) != nil) {
		return fieldErr("dns.name", d.Name, "must be @ (the apex) or a lowercase name within dns.domain like app")
	}
	if !dnsRecordIDRE.MatchString(d.RecordID) {
		return fieldErr("dns.record_id", d.RecordID, "not a DNS provider's record id (letters and digits)")
	}
	return nil
}

// validateAppSection checks the app's port and health path, the app
// (validateApp) and TLS (validateTLS).
func (s *State) validateAppSection() error {
	if err := checkAppPort(s.App.Port); err != nil {
		return fieldErr("app.port", fmt.Sprint(s.App.Port), "%v", err)
	}
	if err := ValidateHealthPath(s.App.HealthPath); err != nil {
		return fieldErr("app.health_path", s.App.HealthPath, "%v", err)
	}
	if err := s.validateApp(); err != nil {
		return err
	}
	return s.validateTLS()
}

// validateSecrets checks the secrets recipient, the keys and the nodes'
// Spaces key.
func (s *State) validateSecrets() error {
	if s.SecretsRecipient != "" && !recipientRE.MatchString(s.SecretsRecipient) {
		return fieldErr("secrets_recipient", s.SecretsRecipient, "not an age X25519 recipient (age1…)")
	}
	if err := s.validateKeys(); err != nil {
		return err
	}
	return s.validateNodeSpacesKey()
}

// nodeSeen is what validateNode remembers across nodes: ids, priorities
// and private IPs must be unique, and one node at most is active.
type nodeSeen struct {
	ids    map[string]int
	prios  map[int]string
	privs  map[string]string
	active string
}

// validateNodes checks every node, in order; vpc is the VPC's range (zero:
// unknown).
func (s *State) validateNodes(vpc netip.Prefix) error {
	seen := &nodeSeen{ids: map[string]int{}, prios: map[int]string{}, privs: map[string]string{}}
	for i, n := range s.Nodes {
		if err := validateNode(i, n, vpc, seen); err != nil {
			return err
		}
	}
	return nil
}

// validateNode checks nodes[i] on its own and against the nodes before it
// (seen, which it updates).
func validateNode(i int, n Node, vpc netip.Prefix, seen *nodeSeen) error {
	f := func(name string) string { return fmt.Sprintf("nodes[%d].%s", i, name) }
	if err := ValidateNodeID(n.ID); err != nil {
		return fieldErr(f("id"), n.ID, "must be a two-word id like misty-owl")
	}
	if j, dup := seen.ids[n.ID]; dup {
		return fieldErr(f("id"), n.ID, "duplicate of nodes[%d]", j)
	}
	seen.ids[n.ID] = i
	if n.Priority < MinPriority || n.Priority > MaxPriority {
		return fieldErr(f("priority"), fmt.Sprint(n.Priority), "must be %d-%d", MinPriority, MaxPriority)
	}
	if other, dup := seen.prios[n.Priority]; dup {
		return fieldErr(f("priority"), fmt.Sprint(n.Priority), "same as node %s", other)
	}
	seen.prios[n.Priority] = n.ID
	switch n.Role {
	case RoleActive:
		if seen.active != "" {
			return fieldErr(f("role"), string(n.Role), "two active nodes (%s and %s)", seen.active, n.ID)
		}
		seen.active = n.ID
	case RoleStandby:
	default:
		return fieldErr(f("role"), string(n.Role), "must be active or standby")
	}
	switch n.Lifecycle {
	case Provisioning, Ready, Draining, Removing:
	default:
		return fieldErr(f("lifecycle"), string(n.Lifecycle), "must be provisioning, ready, draining or removing")
	}
	if n.DropletID < 0 {
		return fieldErr(f("droplet_id"), fmt.Sprint(n.DropletID), "must not be negative")
	}
	if n.PublicIP != "" {
		if err := checkPublicIPv4(n.PublicIP); err != nil {
			return fieldErr(f("public_ip"), n.PublicIP, "%v", err)
		}
	}
	if n.PrivateIP != "" {
		if err := checkPrivateIPv4(n.PrivateIP, vpc); err != nil {
			return fieldErr(f("private_ip"), n.PrivateIP, "%v", err)
		}
		if other, dup := seen.privs[n.PrivateIP]; dup {
			return fieldErr(f("private_ip"), n.PrivateIP, "same as node %s", other)
		}
		seen.privs[n.PrivateIP] = n.ID
	} else if n.Lifecycle == Ready || n.Lifecycle == Draining {
		return fieldErr(f("private_ip"), "", "a %s node needs a private IP", n.Lifecycle)
	}
	if n.AppPort != 0 {
		if err := checkAppPort(n.AppPort); err != nil {
			return fieldErr(f("app_port"), fmt.Sprint(n.AppPort), "%v (0: app.port)", err)
		}
	}
	if n.Image != "" && !dropletImageRE.MatchString(n.Image) {
		return fieldErr(f("image"), n.Image, "must be a snapshot id or an image slug like debian-12-x64")
	}
	if n.Replaces != "" {
		if err := ValidateNodeID(n.Replaces); err != nil || n.Replaces == n.ID {
			return fieldErr(f("replaces"), n.Replaces, "must be another node's two-word id")
		}
	}
	return nil
}

// validateRecentOps checks the ids of the last operations applied: at most
// MaxRecentOps, each well-formed and unique.
func (s *State) validateRecentOps() error {
	if len(s.RecentOps) > MaxRecentOps {
		return fieldErr("recent_ops", fmt.Sprint(len(s.RecentOps)), "more than %d operation ids", MaxRecentOps)
	}
	seen := map[string]int{}
	for i, op := range s.RecentOps {
		if !opIDRE.MatchString(op) {
			return fieldErr(fmt.Sprintf("recent_ops[%d]", i), op, "must be %d lowercase hex digits", 2*opIDBytes)
		}
		if j, dup := seen[op]; dup {
			return fieldErr(fmt.Sprintf("recent_ops[%d]", i), op, "duplicate of recent_ops[%d]", j)
		}
		seen[op] = i
	}
	return nil
}

// recipientRE is an age X25519 recipient: "age1" and 58 bech32 characters.
var recipientRE = regexp.MustCompile(`^age1[02-9ac-hj-np-z]{58}$`)

// ValidateAdminCIDR checks one SSH source range: an IPv4 or IPv6 prefix
// without host bits (DO's firewall API takes addresses and CIDRs).
func ValidateAdminCIDR(c string) error {
	p, err := netip.ParsePrefix(c)
	if err != nil {
		return fmt.Errorf("not a CIDR (e.g. 192.0.2.7/32)")
	}
	if p.Masked() != p {
		return fmt.Errorf("host bits set (did you mean %s?)", p.Masked())
	}
	return nil
}

// checkHostIPv4 accepts a dotted-quad IPv4 address that can be a host's
// unicast address (not in nonHostRanges).
func checkHostIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("not an IPv4 address")
	}
	for _, p := range nonHostRanges {
		if p.Contains(a) {
			return netip.Addr{}, fmt.Errorf("in %s, not a host's unicast address", p)
		}
	}
	return a, nil
}

// checkPrivateIPv4 accepts a droplet's VPC address: a host IPv4 in RFC 1918
// space, inside vpc when the VPC's range is known.
func checkPrivateIPv4(s string, vpc netip.Prefix) error {
	a, err := checkHostIPv4(s)
	if err != nil {
		return err
	}
	if !a.IsPrivate() {
		return fmt.Errorf("not a private (RFC 1918) address")
	}
	if vpc.IsValid() && !vpc.Contains(a) {
		return fmt.Errorf("outside the VPC's range %s", vpc)
	}
	return nil
}

// checkPublicIPv4 accepts a droplet's public or Reserved IP: a host IPv4
// outside RFC 1918 and RFC 6598 space.
func checkPublicIPv4(s string) error {
	a, err := checkHostIPv4(s)
	if err != nil {
		return err
	}
	if a.IsPrivate() || sharedRange.Contains(a) {
		return fmt.Errorf("not a public address")
	}
	return nil
}
