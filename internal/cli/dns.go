package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dns"
)

// DNSOptions name the cluster's A record: `dns set` and create-ha's
// --dns-* flags.
type DNSOptions struct {
	Provider string // digitalocean | cloudflare
	Record   string // FQDN (or a name within Zone)
	Zone     string // the provider's zone; found from Record when empty
	// ZoneFlag is the flag Zone came from when not --zone (error lines
	// name what the user typed).
	ZoneFlag string
}

// addDNSFlags puts the DNS flags on cmd (create-ha keeps --dns-domain as
// the zone's old name).
func addDNSFlags(cmd *cobra.Command, o *DNSOptions, prefix string) {
	fl := cmd.Flags()
	fl.StringVar(&o.Provider, prefix+"provider", cluster.DNSDigitalOcean, "where the A record lives: digitalocean or cloudflare (token in CLOUDFLARE_API_TOKEN)")
	fl.StringVar(&o.Record, prefix+"record", "", "the A record pointing at the Reserved IP, e.g. app.example.com")
	fl.StringVar(&o.Zone, prefix+"zone", "", "the zone (DO domain, Cloudflare zone) holding it (default: found from the record's name)")
}

// check validates the flags' shapes (no I/O). flag names the record flag.
func (o *DNSOptions) check(flag string) error {
	switch o.Provider {
	case cluster.DNSDigitalOcean, cluster.DNSCloudflare:
	default:
		return usagef("--%sprovider %q: must be digitalocean or cloudflare", flag, o.Provider)
	}
	if o.Zone != "" {
		if err := cluster.ValidateDomain(o.Zone); err != nil {
			return usagef("--%s %q: %v", o.zoneFlag(flag), o.Zone, err)
		}
		full := o.Record
		switch {
		case o.Record == "@" || o.Record == "":
			full = o.Zone
		case o.Record != o.Zone && !strings.HasSuffix(o.Record, "."+o.Zone):
			full = o.Record + "." + o.Zone // a name within the zone ("app")
		}
		if err := cluster.ValidateDomain(full); err != nil {
			return usagef("--%srecord %q: %v", flag, o.Record, err)
		}
		o.Record = full
		return nil
	}
	if err := cluster.ValidateDomain(o.Record); err != nil {
		return usagef("--%srecord %q: %v", flag, o.Record, err)
	}
	return nil
}

// zoneFlag names the flag the zone came from (create-ha's old
// --dns-domain, or --zone/--dns-zone).
func (o *DNSOptions) zoneFlag(prefix string) string {
	if o.ZoneFlag != "" {
		return o.ZoneFlag
	}
	return prefix + "zone"
}

// dnsProvider builds the provider: DigitalOcean on the DO client,
// Cloudflare with CLOUDFLARE_API_TOKEN (else the context's token file) at
// the context's API URL (the sandbox's simulator), else Cloudflare's.
func (f *Factory) dnsProvider(name string, cl *cloud.Client) (dns.Provider, error) {
	if name != cluster.DNSCloudflare {
		return dns.NewDigitalOcean(cl), nil
	}
	_, c, err := f.Config()
	if err != nil {
		return nil, err
	}
	tok := f.Getenv("CLOUDFLARE_API_TOKEN")
	if tok == "" && c.CloudflareTokenFile != "" {
		if err := checkPrivateFile(f.contextKey("cloudflare_token_file"), c.CloudflareTokenFile); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(c.CloudflareTokenFile)
		if err != nil {
			return nil, fmt.Errorf("cloudflare token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, usagef("--dns-provider %q: no CLOUDFLARE_API_TOKEN (a token with Zone:DNS:Edit on the zone)", name)
	}
	return dns.NewCloudflare(dns.CloudflareOptions{Token: tok, BaseURL: c.CloudflareAPIURL, Logger: f.Logger})
}

// checkDNSCredentials reads the Cloudflare token (a token file must be
// 0600) before any API call or write, so a missing or exposed token is bad
// input reported first. DigitalOcean DNS uses the DO token.
func (f *Factory) checkDNSCredentials(provider string) error {
	if provider != cluster.DNSCloudflare {
		return nil
	}
	_, err := f.dnsProvider(provider, nil)
	return err
}

// findZone is the longest suffix of record that is a zone of p.
func findZone(ctx context.Context, p dns.Provider, record string) (string, error) {
	labels := strings.Split(record, ".")
	for i := 0; i+2 <= len(labels); i++ {
		zone := strings.Join(labels[i:], ".")
		_, err := p.Get(ctx, zone, record)
		switch {
		case err == nil:
			return zone, nil
		case errors.Is(err, dns.ErrZoneNotFound), errors.Is(err, cloud.ErrNotFound):
			continue
		default:
			return "", err
		}
	}
	return "", fmt.Errorf("no %s zone holds %s (create the zone there first, or give --dns-zone)", p, record)
}

// setDNS points the record at the Reserved IP and records it in the state
// (re-runnable: an identical record is not written again).
func setDNS(ctx context.Context, f *Factory, p *Progress, store *cluster.Store, cl *cloud.Client, st *cluster.State, o DNSOptions) (*cluster.State, error) {
	if st.ReservedIP == "" {
		return nil, fmt.Errorf("cluster %s has no Reserved IP yet (finish `dynia node create-ha` first)", st.Name)
	}
	prov, err := f.dnsProvider(o.Provider, cl)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(st.ReservedIP)
	if err != nil {
		return nil, err
	}
	zone := o.Zone
	if zone == "" {
		if zone, err = findZone(ctx, prov, o.Record); err != nil {
			return nil, err
		}
	}
	err = p.Step(fmt.Sprintf("DNS %s → %s (%s)", o.Record, ip, prov), func() (string, error) {
		// Adopt what an interrupted run made: a record recorded as
		// created stays created after a re-run finds it identical.
		prev := st.DNS
		rec, created, err := prov.Upsert(ctx, zone, dns.ARecord{Name: o.Record, IP: ip, TTL: dns.DefaultTTL, Comment: cloud.ClusterTag(st.Name)})
		if err != nil {
			return "", err
		}
		created = created || (prev != nil && prev.Created && prev.FQDN() == o.Record && prev.Provider == o.Provider)
		name := strings.TrimSuffix(strings.TrimSuffix(o.Record, zone), ".")
		if name == "" {
			name = "@"
		}
		want := &cluster.DNS{Provider: o.Provider, Domain: zone, Name: name, RecordID: rec.ID, Created: created}
		st, err = store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
			if s.DNS != nil && *s.DNS == *want {
				return nil, cluster.ErrNoChange
			}
			s.DNS = want
			return s, nil
		})
		what := "updated"
		if created {
			what = "created"
		}
		return fmt.Sprintf("record %s %s", rec.ID, what), err
	})
	return st, err
}

// deleteDNS removes the cluster's record if it still points at the
// Reserved IP (force: even one dynia did not create).
func deleteDNS(ctx context.Context, f *Factory, p *Progress, cl *cloud.Client, st *cluster.State, force bool) error {
	d := st.DNS
	if d == nil || (!d.Created && !force) {
		return nil
	}
	prov, err := f.dnsProvider(providerOf(d), cl)
	if err != nil {
		return err
	}
	ip, _ := netip.ParseAddr(st.ReservedIP)
	return p.Step(fmt.Sprintf("DNS record %s (%s)", d.FQDN(), providerOf(d)), func() (string, error) {
		err := prov.Delete(ctx, d.Domain, dns.ARecord{ID: d.RecordID, Name: d.FQDN(), IP: ip})
		if errors.Is(err, dns.ErrChanged) {
			p.Info("warning: DNS record %s no longer points at %s; left as it is", d.FQDN(), st.ReservedIP)
			return "left (changed by someone else)", nil
		}
		return "deleted", err
	})
}

func providerOf(d *cluster.DNS) string {
	if d.Provider == "" {
		return cluster.DNSDigitalOcean
	}
	return d.Provider
}

// NewCmdDNS is `dynia dns set|show|delete`.
func NewCmdDNS(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dns",
		Short: "The A record pointing a name at the cluster's Reserved IP (DigitalOcean or Cloudflare DNS)",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdDNSSet(f, nil), NewCmdDNSShow(f, nil), NewCmdDNSDelete(f, nil))
	return cmd
}

// DNSSetOptions are `dns set`'s inputs.
type DNSSetOptions struct {
	Name    string
	DNS     DNSOptions
	Timeout time.Duration
}

// NewCmdDNSSet is `dynia dns set`.
func NewCmdDNSSet(f *Factory, runF func(*DNSSetOptions) error) *cobra.Command {
	o := &DNSSetOptions{}
	cmd := &cobra.Command{
		Use:     "set --name N --record host.example.com [--provider digitalocean|cloudflare]",
		Short:   "Create or update the A record (idempotent)",
		Example: "  dynia dns set --name myapp --record app.example.com --provider cloudflare",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if err := o.DNS.check(""); err != nil {
				return err
			}
			if err := f.checkDNSCredentials(o.DNS.Provider); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return runDNSSet(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	addDNSFlags(cmd, &o.DNS, "")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "overall timeout")
	return cmd
}

func runDNSSet(ctx context.Context, f *Factory, o *DNSSetOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	store, st, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	p := NewProgress(f.IO, f.Global.Output == "json")
	if st, err = setDNS(ctx, f, p, store, cl, st, o.DNS); err != nil {
		return err
	}
	return printDNS(f, st)
}

// NewCmdDNSShow is `dynia dns show`.
func NewCmdDNSShow(f *Factory, runF func(name string) error) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "show --name N",
		Short: "The cluster's A record, as the state records it and as the provider has it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			if runF != nil {
				return runF(name)
			}
			return showDNS(cmd.Context(), f, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name")
	return cmd
}

func showDNS(ctx context.Context, f *Factory, name string) error {
	_, st, err := f.loadState(ctx, name)
	if err != nil {
		return err
	}
	if st.DNS == nil {
		if f.Global.Output == "json" {
			return writeJSON(f.IO.Out, map[string]any{"cluster": name, "dns": nil})
		}
		fmt.Fprintf(f.IO.Out, "cluster %s: no DNS record (`dynia dns set --name %s --record …`)\n", name, name)
		return nil
	}
	var live []string
	if cl, err := f.Cloud(); err == nil {
		if prov, err := f.dnsProvider(providerOf(st.DNS), cl); err == nil {
			recs, err := prov.Get(ctx, st.DNS.Domain, st.DNS.FQDN())
			var ae *cloud.AuthError
			if errors.As(err, &ae) {
				return err // a token DO refuses is exit 4, not "no record"
			}
			for _, r := range recs {
				live = append(live, r.IP.String())
			}
		}
	}
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, map[string]any{"cluster": name, "dns": st.DNS, "fqdn": st.DNS.FQDN(), "points_at": live, "reserved_ip": st.ReservedIP})
	}
	fmt.Fprintf(f.IO.Out, "%s A %s (%s, zone %s, record %s, created by dynia: %t)\n", st.DNS.FQDN(), dash(strings.Join(live, ",")),
		providerOf(st.DNS), st.DNS.Domain, st.DNS.RecordID, st.DNS.Created)
	if len(live) > 0 && (len(live) != 1 || live[0] != st.ReservedIP) {
		fmt.Fprintf(f.IO.ErrOut, "warning: the record does not point at the Reserved IP %s only; `dynia dns set` fixes it\n", st.ReservedIP)
	}
	return nil
}

// DNSDeleteOptions are `dns delete`'s inputs.
type DNSDeleteOptions struct {
	Name string
	// Yes is --yes (old name --confirm): do not ask.
	Yes     bool
	Timeout time.Duration
}

// NewCmdDNSDelete is `dynia dns delete`.
func NewCmdDNSDelete(f *Factory, runF func(*DNSDeleteOptions) error) *cobra.Command {
	o := &DNSDeleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete --name N [--yes]",
		Short: "Delete the A record (only while it still points at the Reserved IP) and forget it",
		Long: "Delete the cluster's A record, also one dynia did not create, while it still points at the\n" +
			"Reserved IP, and forget it.\n\n" +
			"Destructive: asks for confirmation on a terminal; --yes skips the question and is required without a terminal.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if err := checkTimeout(o.Timeout); err != nil {
				return err
			}
			if err := confirmDestructive(f.IO, o.Yes, fmt.Sprintf("delete cluster %q's DNS record", o.Name),
				fmt.Sprintf("Delete cluster %s's DNS A record at its provider?", o.Name)); err != nil {
				return err
			}
			o.Yes = true
			if runF != nil {
				return runF(o)
			}
			return runDNSDelete(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	addYesFlag(cmd, &o.Yes)
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "overall timeout")
	return cmd
}

func runDNSDelete(ctx context.Context, f *Factory, o *DNSDeleteOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	store, st, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	p := NewProgress(f.IO, f.Global.Output == "json")
	if err := deleteDNS(ctx, f, p, cl, st, true); err != nil {
		return err
	}
	st, err = store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
		if s.DNS == nil {
			return nil, cluster.ErrNoChange
		}
		s.DNS = nil
		return s, nil
	})
	if err != nil {
		return err
	}
	return printDNS(f, st)
}

func printDNS(f *Factory, st *cluster.State) error {
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, map[string]any{"cluster": st.Name, "dns": st.DNS})
	}
	if st.DNS == nil {
		fmt.Fprintf(f.IO.Out, "cluster %s: no DNS record\n", st.Name)
		return nil
	}
	fmt.Fprintf(f.IO.Out, "cluster %s: %s A %s (%s)\n", st.Name, st.DNS.FQDN(), st.ReservedIP, providerOf(st.DNS))
	return nil
}
