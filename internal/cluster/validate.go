package cluster

import (
	"fmt"
	"net/netip"
	"regexp"
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

// Validate checks the whole state and returns the first problem, naming the
// field (nodes[i].private_ip, …) and the value.
func (s *State) Validate() error {
	if s.SchemaVersion != SchemaVersion {
		return fieldErr("schema_version", fmt.Sprint(s.SchemaVersion), "unsupported (this build reads %d)", SchemaVersion)
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
	if s.VPC.CIDR != "" {
		if _, err := netip.ParsePrefix(s.VPC.CIDR); err != nil {
			return fieldErr("vpc.cidr", s.VPC.CIDR, "not a CIDR")
		}
	}
	for i, c := range s.AdminCIDRs {
		if err := ValidateAdminCIDR(c); err != nil {
			return fieldErr(fmt.Sprintf("admin_cidrs[%d]", i), c, "%v", err)
		}
	}
	if s.ReservedIP != "" {
		if err := checkIPv4(s.ReservedIP); err != nil {
			return fieldErr("reserved_ip", s.ReservedIP, "%v", err)
		}
	}
	if s.App.Port < 1 || s.App.Port > 65535 {
		return fieldErr("app.port", fmt.Sprint(s.App.Port), "must be 1-65535")
	}
	if err := ValidateHealthPath(s.App.HealthPath); err != nil {
		return fieldErr("app.health_path", s.App.HealthPath, "%v", err)
	}
	if err := s.validateApp(); err != nil {
		return err
	}
	if err := s.validateTLS(); err != nil {
		return err
	}
	if s.SecretsRecipient != "" && !recipientRE.MatchString(s.SecretsRecipient) {
		return fieldErr("secrets_recipient", s.SecretsRecipient, "not an age X25519 recipient (age1…)")
	}
	if err := s.validateNodeSpacesKey(); err != nil {
		return err
	}
	if s.HA.AdvertInterval < 0.01 || s.HA.AdvertInterval > 255 {
		return fieldErr("ha.advert_interval", fmt.Sprint(s.HA.AdvertInterval), "must be between 0.01 and 255 seconds")
	}
	if s.DNS != nil {
		if s.DNS.Domain == "" {
			return fieldErr("dns.domain", "", "must not be empty when dns is set")
		}
	}

	ids := map[string]int{}
	prios := map[int]string{}
	privs := map[string]string{}
	active := ""
	for i, n := range s.Nodes {
		f := func(name string) string { return fmt.Sprintf("nodes[%d].%s", i, name) }
		if err := ValidateNodeID(n.ID); err != nil {
			return fieldErr(f("id"), n.ID, "must be a two-word id like misty-owl")
		}
		if j, dup := ids[n.ID]; dup {
			return fieldErr(f("id"), n.ID, "duplicate of nodes[%d]", j)
		}
		ids[n.ID] = i
		if n.Priority < MinPriority || n.Priority > MaxPriority {
			return fieldErr(f("priority"), fmt.Sprint(n.Priority), "must be %d-%d", MinPriority, MaxPriority)
		}
		if other, dup := prios[n.Priority]; dup {
			return fieldErr(f("priority"), fmt.Sprint(n.Priority), "same as node %s", other)
		}
		prios[n.Priority] = n.ID
		switch n.Role {
		case RoleActive:
			if active != "" {
				return fieldErr(f("role"), string(n.Role), "two active nodes (%s and %s)", active, n.ID)
			}
			active = n.ID
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
			if err := checkIPv4(n.PublicIP); err != nil {
				return fieldErr(f("public_ip"), n.PublicIP, "%v", err)
			}
		}
		if n.PrivateIP != "" {
			if err := checkIPv4(n.PrivateIP); err != nil {
				return fieldErr(f("private_ip"), n.PrivateIP, "%v", err)
			}
			if other, dup := privs[n.PrivateIP]; dup {
				return fieldErr(f("private_ip"), n.PrivateIP, "same as node %s", other)
			}
			privs[n.PrivateIP] = n.ID
		} else if n.Lifecycle == Ready || n.Lifecycle == Draining {
			return fieldErr(f("private_ip"), "", "a %s node needs a private IP", n.Lifecycle)
		}
		if n.AppPort < 0 || n.AppPort > 65535 {
			return fieldErr(f("app_port"), fmt.Sprint(n.AppPort), "must be 0 (cluster default) or 1-65535")
		}
	}
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

func checkIPv4(s string) error {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return fmt.Errorf("not an IPv4 address")
	}
	return nil
}
