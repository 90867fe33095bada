package cluster

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// TestValidateRefuses: every value that would reach a daemon's config
// unchecked is refused, with the field path and the value in one line.
// The first cases are the reproductions of issue 14.
func TestValidateRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*State)
		want   string // field path and quoted value
		reason string
	}{
		// Issue 14's reproductions.
		{"private ip unspecified", func(s *State) { s.Nodes[1].PrivateIP = "0.0.0.0" }, `nodes[1].private_ip "0.0.0.0"`, "not a host's unicast address"},
		{"private ip loopback", func(s *State) { s.Nodes[1].PrivateIP = "127.0.0.1" }, `nodes[1].private_ip "127.0.0.1"`, "not a host's unicast address"},
		{"private ip metadata service", func(s *State) { s.Nodes[1].PrivateIP = "169.254.169.254" }, `nodes[1].private_ip "169.254.169.254"`, "not a host's unicast address"},
		{"health path header injection", func(s *State) { s.App.HealthPath = "/healthz\r\nX-Evil: 1" }, `app.health_path "/healthz\r\nX-Evil: 1"`, `character '\r' not allowed`},
		{"advert interval between centiseconds", func(s *State) { s.HA.AdvertInterval = 0.015 }, `ha.advert_interval "0.015"`, "steps of 0.01"},

		// Addresses.
		{"private ip multicast", func(s *State) { s.Nodes[0].PrivateIP = "224.0.0.18" }, `nodes[0].private_ip "224.0.0.18"`, "in 224.0.0.0/4"},
		{"private ip broadcast", func(s *State) { s.Nodes[0].PrivateIP = "255.255.255.255" }, `nodes[0].private_ip "255.255.255.255"`, "in 240.0.0.0/4"},
		{"private ip this network", func(s *State) { s.Nodes[0].PrivateIP = "0.1.2.3" }, `nodes[0].private_ip "0.1.2.3"`, "in 0.0.0.0/8"},
		{"private ip public", func(s *State) { s.Nodes[0].PrivateIP = "8.8.8.8" }, `nodes[0].private_ip "8.8.8.8"`, "not a private (RFC 1918) address"},
		{"private ip outside the vpc", func(s *State) { s.Nodes[0].PrivateIP = "10.10.1.5" }, `nodes[0].private_ip "10.10.1.5"`, "outside the VPC's range 10.10.0.0/24"},
		{"private ip v6", func(s *State) { s.Nodes[0].PrivateIP = "fd00::1" }, `nodes[0].private_ip "fd00::1"`, "not an IPv4 address"},
		{"private ip v4-mapped", func(s *State) { s.Nodes[0].PrivateIP = "::ffff:10.10.0.11" }, `nodes[0].private_ip "::ffff:10.10.0.11"`, "not an IPv4 address"},
		{"private ip leading zeros", func(s *State) { s.Nodes[0].PrivateIP = "10.10.0.011" }, `nodes[0].private_ip "10.10.0.011"`, "not an IPv4 address"},
		{"public ip private", func(s *State) { s.Nodes[2].PublicIP = "10.0.0.5" }, `nodes[2].public_ip "10.0.0.5"`, "not a public address"},
		{"public ip shared", func(s *State) { s.Nodes[2].PublicIP = "100.64.0.1" }, `nodes[2].public_ip "100.64.0.1"`, "not a public address"},
		{"public ip metadata service", func(s *State) { s.Nodes[2].PublicIP = "169.254.169.254" }, `nodes[2].public_ip "169.254.169.254"`, "not a host's unicast address"},
		{"reserved ip private", func(s *State) { s.ReservedIP = "192.168.1.1" }, `reserved_ip "192.168.1.1"`, "not a public address"},
		{"reserved ip loopback", func(s *State) { s.ReservedIP = "127.0.0.1" }, `reserved_ip "127.0.0.1"`, "not a host's unicast address"},
		{"reserved ip metadata service", func(s *State) { s.ReservedIP = "169.254.169.254" }, `reserved_ip "169.254.169.254"`, "not a host's unicast address"},
		{"reserved ip unspecified", func(s *State) { s.ReservedIP = "0.0.0.0" }, `reserved_ip "0.0.0.0"`, "not a host's unicast address"},
		{"vpc too large", func(s *State) { s.VPC.CIDR = "10.0.0.0/8" }, `vpc.cidr "10.0.0.0/8"`, "from /16 to /28"},
		{"vpc too small", func(s *State) { s.VPC.CIDR = "10.10.0.0/29" }, `vpc.cidr "10.10.0.0/29"`, "from /16 to /28"},
		{"vpc public", func(s *State) { s.VPC.CIDR = "198.51.100.0/24" }, `vpc.cidr "198.51.100.0/24"`, "private (RFC 1918)"},
		{"vpc host bits", func(s *State) { s.VPC.CIDR = "10.10.0.1/24" }, `vpc.cidr "10.10.0.1/24"`, "host bits set (did you mean 10.10.0.0/24?)"},
		{"vpc v6", func(s *State) { s.VPC.CIDR = "fd00::/64" }, `vpc.cidr "fd00::/64"`, "not an IPv4 CIDR"},
		{"vpc id path", func(s *State) { s.VPC.ID = "../droplets" }, `vpc.id "../droplets"`, "not a DigitalOcean id"},
		{"firewall id path", func(s *State) { s.FirewallID = "a/b" }, `firewall_id "a/b"`, "not a DigitalOcean id"},
		{"admin cidr host bits", func(s *State) { s.AdminCIDRs = []string{"192.0.2.7/24"} }, `admin_cidrs[0] "192.0.2.7/24"`, "host bits set"},

		// Health paths.
		{"health path relative", func(s *State) { s.App.HealthPath = "healthz" }, `app.health_path "healthz"`, "must be an absolute path"},
		{"health path space", func(s *State) { s.App.HealthPath = "/a b" }, `app.health_path "/a b"`, `character ' ' not allowed`},
		{"health path single quote", func(s *State) { s.App.HealthPath = "/a'b" }, `app.health_path "/a'b"`, `character '\'' not allowed`},
		{"health path double quote", func(s *State) { s.App.HealthPath = `/a"b` }, `app.health_path "/a\"b"`, `character '"' not allowed`},
		{"health path backslash", func(s *State) { s.App.HealthPath = `/a\r\n` }, `app.health_path "/a\\r\\n"`, `character '\\' not allowed`},
		{"health path dollar", func(s *State) { s.App.HealthPath = "/a${HOME}" }, `app.health_path "/a${HOME}"`, `character '$' not allowed`},
		{"health path comment", func(s *State) { s.App.HealthPath = "/a#b" }, `app.health_path "/a#b"`, `character '#' not allowed`},
		{"health path escaped CRLF", func(s *State) { s.App.HealthPath = "/a%0d%0aX-Evil:%201" }, `app.health_path "/a%0d%0aX-Evil:%201"`, "escape %0d decodes to a control character"},
		{"health path escaped DEL", func(s *State) { s.App.HealthPath = "/a%7F" }, `app.health_path "/a%7F"`, "escape %7F decodes to a control character"},
		{"health path bad escape", func(s *State) { s.App.HealthPath = "/a%zz" }, `app.health_path "/a%zz"`, "% must start an escape of two hex digits"},
		{"health path cut escape", func(s *State) { s.App.HealthPath = "/a%4" }, `app.health_path "/a%4"`, "% must start an escape"},
		{"health path non-ascii", func(s *State) { s.App.HealthPath = "/é" }, `app.health_path "/é"`, "not allowed"},
		{"health path too long", func(s *State) { s.App.HealthPath = "/" + strings.Repeat("a", MaxHealthPathLen) }, `app.health_path "/aaaa`, "longer than 256 bytes"},

		// Advert intervals (keepalived 2.2.7's rules; TestAdvertIntervalAgainstKeepalived checks them).
		{"advert zero", func(s *State) { s.HA.AdvertInterval = 0 }, `ha.advert_interval "0"`, "must be 1-255 whole seconds"},
		{"advert negative", func(s *State) { s.HA.AdvertInterval = -1 }, `ha.advert_interval "-1"`, "must be 1-255"},
		{"advert below 10 ms", func(s *State) { s.HA.AdvertInterval = 0.005 }, `ha.advert_interval "0.005"`, "must be 1-255"},
		{"advert fraction over 40.95", func(s *State) { s.HA.AdvertInterval = 40.96 }, `ha.advert_interval "40.96"`, "0.01-40.95"},
		{"advert fraction far over", func(s *State) { s.HA.AdvertInterval = 41.5 }, `ha.advert_interval "41.5"`, "0.01-40.95"},
		{"advert over 255", func(s *State) { s.HA.AdvertInterval = 256 }, `ha.advert_interval "256"`, "must be 1-255"},
		{"advert NaN", func(s *State) { s.HA.AdvertInterval = math.NaN() }, `ha.advert_interval "NaN"`, "must be 1-255"},
		{"advert float noise", func(s *State) { a, b := 0.1, 0.2; s.HA.AdvertInterval = a + b }, `ha.advert_interval "0.30000000000000004"`, "steps of 0.01"},

		// Ports.
		{"app port zero", func(s *State) { s.App.Port = 0 }, `app.port "0"`, "must be 1-65535"},
		{"app port too big", func(s *State) { s.App.Port = 65536 }, `app.port "65536"`, "must be 1-65535"},
		{"app port haproxy", func(s *State) { s.App.Port = 80 }, `app.port "80"`, "reserved for HAProxy's HTTP frontend (reserved: 22, 80, 443, 9321, 51820)"},
		{"app port tls", func(s *State) { s.App.Port = 443 }, `app.port "443"`, "reserved for HAProxy's HTTPS frontend"},
		{"app port ssh", func(s *State) { s.App.Port = 22 }, `app.port "22"`, "reserved for sshd"},
		{"app port metrics", func(s *State) { s.App.Port = 9321 }, `app.port "9321"`, "reserved for dynia-pull's metrics"},
		{"app port mesh", func(s *State) { s.App.Port = 51820 }, `app.port "51820"`, "reserved for the WireGuard mesh"},
		{"node port haproxy", func(s *State) { s.Nodes[1].AppPort = 80 }, `nodes[1].app_port "80"`, "reserved for HAProxy's HTTP frontend"},
		{"node port negative", func(s *State) { s.Nodes[1].AppPort = -1 }, `nodes[1].app_port "-1"`, "must be 1-65535"},

		// Releases: environment, images, health paths.
		{"env name digit", func(s *State) { s.App.Releases[0].Env = map[string]string{"1BAD": "x"} }, `app.releases[0].env "1BAD"`, "not an environment variable name"},
		{"env name dash", func(s *State) { s.App.Releases[0].Env = map[string]string{"A-B": "x"} }, `app.releases[0].env "A-B"`, "not an environment variable name"},
		{"env name equals", func(s *State) { s.App.Releases[0].Env = map[string]string{"A=B": "x"} }, `app.releases[0].env "A=B"`, "not an environment variable name"},
		{"env name empty", func(s *State) { s.App.Releases[0].Env = map[string]string{"": "x"} }, `app.releases[0].env ""`, "not an environment variable name"},
		{"env value NUL", func(s *State) { s.App.Releases[0].Env = map[string]string{"SECRET": "pass\x00word"} }, `app.releases[0].env.SECRET ""`, "NUL byte"},
		{"release image by tag", func(s *State) { s.App.Releases[0].Image = "acme/app:1.2" }, `app.releases[0].image "acme/app:1.2"`, "not an image reference by digest"},
		{"release image with spaces", func(s *State) { s.App.Releases[0].Image = "acme/app@sha256:1 2" }, `app.releases[0].image "acme/app@sha256:1 2"`, "not an image reference by digest"},
		{"release health path header injection", func(s *State) { s.App.Releases[0].HealthPath = "/h\r\nX-Evil: 1" }, `app.releases[0].health_path "/h\r\nX-Evil: 1"`, `character '\r' not allowed`},
		{"release health path dollar", func(s *State) { s.App.Releases[0].HealthPath = "/${X}" }, `app.releases[0].health_path "/${X}"`, `character '$' not allowed`},
		{"droplet image path", func(s *State) { s.Image = "../../x" }, `image "../../x"`, "snapshot id or an image slug"},
		{"size upper case", func(s *State) { s.Size = "S-1VCPU" }, `size "S-1VCPU"`, "size slug"},
		{"dns domain upper case", func(s *State) { s.DNS.Domain = "Example.com" }, `dns.domain "Example.com"`, "not a lowercase DNS name"},
		{"dns record space", func(s *State) { s.DNS.Name = "a b" }, `dns.name "a b"`, "must be @"},
		{"dns record id path", func(s *State) { s.DNS.RecordID = "../1" }, `dns.record_id "../1"`, "not a DNS provider's record id"},
		{"dns provider", func(s *State) { s.DNS.Provider = "route53" }, `dns.provider "route53"`, "must be digitalocean or cloudflare"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := sample(t)
			tc.mutate(s)
			err := s.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate = %v, want a *FieldError", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, tc.reason) {
				t.Fatalf("Validate = %s\nwant it to contain %s and %q", msg, tc.want, tc.reason)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			// Decode refuses the same document, and Encode will not write it.
			raw, err := json.Marshal(s)
			if err != nil {
				if math.IsNaN(s.HA.AdvertInterval) {
					return // JSON cannot carry NaN: no document to decode
				}
				t.Fatal(err)
			}
			if _, err := Decode(raw); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error containing %s", err, tc.want)
			}
			if _, err := s.Encode(); err == nil {
				t.Fatal("Encode wrote an invalid state")
			}
		})
	}
}

// TestValidateAccepts: the boundary values each rule lets through.
func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		mutate func(*State)
	}{
		{"advert 10 ms", func(s *State) { s.HA.AdvertInterval = 0.01 }},
		{"advert 40.95", func(s *State) { s.HA.AdvertInterval = 40.95 }},
		{"advert 0.07", func(s *State) { s.HA.AdvertInterval = 0.07 }},
		{"advert whole 41 (VRRPv2)", func(s *State) { s.HA.AdvertInterval = 41 }},
		{"advert 255", func(s *State) { s.HA.AdvertInterval = 255 }},
		{"port 1", func(s *State) { s.App.Port = 1 }},
		{"port 65535", func(s *State) { s.App.Port = 65535 }},
		{"port 81", func(s *State) { s.App.Port = 81 }},
		{"node port 0 is the default", func(s *State) { s.Nodes[0].AppPort = 0 }},
		{"node port 9000", func(s *State) { s.Nodes[0].AppPort = 9000 }},
		{"health path root", func(s *State) { s.App.HealthPath = "/" }},
		{"health path every allowed character", func(s *State) {
			s.App.HealthPath = "/AZaz09-._~!&()*+,;=:@/x?q=1&r=%41%20%7e"
		}},
		{"health path at the limit", func(s *State) { s.App.HealthPath = "/" + strings.Repeat("a", MaxHealthPathLen-1) }},
		{"private ip anywhere in the vpc", func(s *State) {
			s.VPC.CIDR = "172.16.0.0/16"
			for i := range s.Nodes {
				s.Nodes[i].PrivateIP = "172.16.200." + itoa(2+i)
			}
		}},
		{"private ip without a vpc range", func(s *State) { s.VPC.CIDR = ""; s.Nodes[0].PrivateIP = "192.168.5.5" }},
		{"vpc /28", func(s *State) {
			s.VPC.CIDR = "10.10.0.0/28"
			for i := range s.Nodes {
				s.Nodes[i].PrivateIP = "10.10.0." + itoa(2+i)
			}
		}},
		{"reserved ip in the sandbox's benchmarking range", func(s *State) { s.ReservedIP = "198.18.0.5" }},
		{"env names", func(s *State) { s.App.Releases[0].Env = map[string]string{"_A": "", "a_1": "x=y\nz", "Z": "ü"} }},
		{"release image without registry", func(s *State) { s.App.Releases[0].Image = "nginx@sha256:" + strings.Repeat("0f", 32) }},
		{"release health path escapes", func(s *State) { s.App.Releases[0].HealthPath = "/ready?x=%41" }},
		{"dns apex", func(s *State) { s.DNS.Name = "@" }},
		{"distribution image", func(s *State) { s.Image = "debian-12-x64" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := sample(t)
			tc.mutate(s)
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			b, err := s.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Decode(b); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDecodeStrictKeys: the state decoder refuses duplicate and case-variant
// keys (encoding/json would keep the last, or match case-insensitively),
// trailing data and documents over MaxStateBytes.
func TestDecodeStrictKeys(t *testing.T) {
	t.Parallel()
	good, err := sample(t).Encode()
	if err != nil {
		t.Fatal(err)
	}
	doc := string(good)
	for _, tc := range []struct{ name, from, to, want string }{
		{"duplicate top-level key", `"region": "sgp1",`, `"region": "sgp1", "region": "nyc3",`, `state: duplicate key "region"`},
		{"duplicate private ip", `"private_ip": "10.10.0.12",`, `"private_ip": "10.10.0.12", "private_ip": "169.254.169.254",`, `state: nodes[1]: duplicate key "private_ip"`},
		{"duplicate env name", `"LOG_LEVEL": "info"`, `"LOG_LEVEL": "info", "LOG_LEVEL": "debug"`, `state: app.releases[0].env: duplicate key "LOG_LEVEL"`},
		{"case-variant key", `"health_path": "/healthz"`, `"Health_Path": "/healthz"`, `state: app: key "Health_Path" must be spelled "health_path"`},
		{"case-variant duplicate", `"health_path": "/healthz"`, `"health_path": "/healthz", "HEALTH_PATH": "/x y"`, `state: app: keys "health_path" and "HEALTH_PATH" differ only in case`},
		{"trailing brace", "}\n", "}}\n", "state: trailing data"},
		{"trailing document", "}\n", "}\n{}", "state: trailing data"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			i := strings.LastIndex(doc, tc.from)
			if i < 0 {
				t.Fatalf("test setup: %q not in document", tc.from)
			}
			bad := doc[:i] + tc.to + doc[i+len(tc.from):]
			if tc.name != "trailing brace" && tc.name != "trailing document" {
				bad = strings.Replace(doc, tc.from, tc.to, 1)
			}
			_, err := Decode([]byte(bad))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// Size: padding (valid JSON whitespace) past the limit is refused.
	big := doc + strings.Repeat(" ", MaxStateBytes-len(doc)+1)
	if _, err := Decode([]byte(big)); err == nil || !strings.Contains(err.Error(), "over the limit of 1048576") {
		t.Fatalf("Decode of %d bytes = %v", len(big), err)
	}
	if _, err := Decode([]byte(doc + strings.Repeat(" ", MaxStateBytes-len(doc)))); err != nil {
		t.Fatalf("Decode of exactly %d bytes: %v", MaxStateBytes, err)
	}
}

// TestEncodeSizeLimit: the CLI never writes a state its nodes would refuse.
func TestEncodeSizeLimit(t *testing.T) {
	t.Parallel()
	s := sample(t)
	s.App.Releases[0].Env = map[string]string{}
	for i := range 40 {
		s.App.Releases[0].Env["V"+itoa(i)] = strings.Repeat("x", maxEnvValue)
	}
	if _, err := s.Encode(); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("Encode of a >1 MiB state = %v", err)
	}
}

// TestSetNodeNetworkRefusesBadAddresses: addresses the DO API hands the
// CLI go through the same rules, so a bad answer is refused before the
// state is written (Store.Update gets the error from the mutation).
func TestSetNodeNetworkRefusesBadAddresses(t *testing.T) {
	t.Parallel()
	s := sample(t)
	id := s.Nodes[0].ID
	for _, tc := range []struct{ public, private, want string }{
		{"198.51.100.20", "169.254.169.254", `nodes[0].private_ip "169.254.169.254"`},
		{"198.51.100.20", "0.0.0.0", `nodes[0].private_ip "0.0.0.0"`},
		{"127.0.0.1", "10.10.0.11", `nodes[0].public_ip "127.0.0.1"`},
	} {
		if _, err := SetNodeNetwork(s, id, 1000, tc.public, tc.private); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetNodeNetwork(%s, %s) = %v, want an error containing %s", tc.public, tc.private, err, tc.want)
		}
	}
}
