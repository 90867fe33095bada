package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// flagBase is a valid state create-ha could have written, for FuzzFlags to
// put an accepted flag value into.
func flagBase(t *testing.T) *cluster.State {
	t.Helper()
	s := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "123456", time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	s, _, err := cluster.AddNodes(s, 1, cluster.NewNamer(1), s.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzFlags: the CLI's checks of --name, --node, --region, --size,
// --admin-cidr, --dns-domain (the zone) and --dns-record never panic, refuse with a
// one-line UsageError that names the flag (exit 2), and never accept a
// value that cluster.Validate would then refuse in the state the command
// writes. Seeds: testdata/fuzz/FuzzFlags.
func FuzzFlags(f *testing.F) {
	f.Add("shop", "misty-owl", "sgp1", "s-1vcpu-1gb", "192.0.2.7/32", "example.com", "@")
	f.Fuzz(func(t *testing.T, name, node, region, size, cidr, domain, record string) {
		usage := func(flag string, err error) bool {
			t.Helper()
			if err == nil {
				return false
			}
			var ue *UsageError
			if !errors.As(err, &ue) || exitCode(err) != ExitUsage {
				t.Fatalf("--%s: %v is not a usage error (exit %d)", flag, err, exitCode(err))
			}
			if !strings.HasPrefix(err.Error(), "--") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("--%s: error %q does not start with the flag on one line", flag, err)
			}
			return true
		}
		valid := func(what string, mutate func(*cluster.State)) {
			t.Helper()
			s := flagBase(t)
			mutate(s)
			if err := s.Validate(); err != nil {
				t.Fatalf("the CLI accepted %s, the state refuses it: %v", what, err)
			}
			if _, err := s.Encode(); err != nil {
				t.Fatalf("the CLI accepted %s, Encode refuses it: %v", what, err)
			}
		}

		if !usage("name", checkName(name)) {
			valid("--name "+name, func(s *cluster.State) { s.Name = name })
		}
		if !usage("node", checkNodeID(node)) {
			valid("--node "+node, func(s *cluster.State) { s.Nodes[0].ID = node }) // the only node: no duplicate
		}
		o := &CreateOptions{Name: "shop", Region: region, Size: size, AdminCIDRs: []string{cidr},
			DNSDomain: domain, DNS: DNSOptions{Provider: cluster.DNSDigitalOcean, Record: record}, Timeout: time.Minute}
		if !usage("create-ha", o.Validate()) {
			valid("create-ha's flags", func(s *cluster.State) {
				s.Region, s.Size, s.AdminCIDRs = o.Region, o.Size, o.AdminCIDRs
				// As `dns set` records it (dns.go): the zone, and the
				// name within it; without a zone the provider finds one
				// (a suffix of the record), here the record itself.
				switch {
				case o.DNS.Zone != "":
					name := strings.TrimSuffix(strings.TrimSuffix(o.DNS.Record, o.DNS.Zone), ".")
					if name == "" {
						name = "@"
					}
					s.DNS = &cluster.DNS{Provider: o.DNS.Provider, Domain: o.DNS.Zone, Name: name, RecordID: "1"}
				case o.DNS.Record != "":
					s.DNS = &cluster.DNS{Provider: o.DNS.Provider, Domain: o.DNS.Record, Name: "@", RecordID: "1"}
				}
			})
		}
		if !usage("admin-cidr", checkAdminCIDRs([]string{cidr})) {
			valid("--admin-cidr "+cidr, func(s *cluster.State) { s.AdminCIDRs = []string{cidr} })
		}
	})
}
