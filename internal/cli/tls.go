package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/acme"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/secrets"
)

// TLSOptions are `tls enable`'s (and create-ha's --domain) inputs.
type TLSOptions struct {
	Domains     []string
	Email       string
	ACMEURL     string
	Staging     bool
	RootCA      string // PEM file: what issued certificates chain to
	DirectoryCA string // PEM file: what the ACME directory's TLS chains to
	NoRedirect  bool
	HSTS        bool
	RenewBefore time.Duration
}

func addTLSFlags(cmd *cobra.Command, o *TLSOptions) {
	fl := cmd.Flags()
	fl.StringArrayVar(&o.Domains, "domain", nil, "a name of the certificate (repeatable; the first is its subject)")
	fl.StringVar(&o.Email, "email", "", "ACME account contact (the CA's expiry warnings)")
	fl.StringVar(&o.ACMEURL, "acme-url", "", "ACME directory (default Let's Encrypt; the sandbox's Pebble in the sandbox context)")
	fl.BoolVar(&o.Staging, "staging", false, "use Let's Encrypt's staging directory (untrusted certificates, generous rate limits)")
	fl.StringVar(&o.RootCA, "acme-root-ca", "", "PEM file: the root issued certificates chain to (default: the system's)")
	fl.StringVar(&o.DirectoryCA, "acme-directory-ca", "", "PEM file: the root the ACME directory's TLS certificate chains to (default: the system's)")
	fl.BoolVar(&o.NoRedirect, "no-redirect", false, "serve plain HTTP too, instead of redirecting it to HTTPS")
	fl.BoolVar(&o.HSTS, "hsts", false, "send Strict-Transport-Security (one year) on HTTPS")
	fl.DurationVar(&o.RenewBefore, "renew-before", cluster.DefaultRenewBefore, "renew this long before the certificate expires")
}

// check validates the flags' shapes (no I/O).
func (o *TLSOptions) check() error {
	if len(o.Domains) == 0 {
		return usagef("--domain: required (e.g. --domain app.example.com)")
	}
	for _, d := range o.Domains {
		if err := cluster.ValidateDomain(d); err != nil {
			return usagef("--domain %q: %v", d, err)
		}
	}
	if o.Email != "" {
		if err := cluster.ValidateEmail(o.Email); err != nil {
			return usagef("--email %q: %v", o.Email, err)
		}
	}
	if o.ACMEURL != "" {
		if err := cluster.ValidateDirectory(o.ACMEURL); err != nil {
			return usagef("--acme-url %q: %v", o.ACMEURL, err)
		}
		if o.Staging {
			return usagef("--staging: cannot be combined with --acme-url %q", o.ACMEURL)
		}
	}
	if o.RenewBefore <= 0 || o.RenewBefore > 365*24*time.Hour {
		return usagef("--renew-before %q: must be positive and at most a year", o.RenewBefore)
	}
	return nil
}

// settings turns the flags (and the context's defaults: the sandbox names
// its Pebble) into the state's TLS settings, reading the PEM files.
func (o *TLSOptions) settings(f *Factory) (*cluster.TLS, error) {
	_, c, err := f.Config()
	if err != nil {
		return nil, err
	}
	t := &cluster.TLS{Domains: slices.Clone(o.Domains), Email: o.Email, Directory: o.ACMEURL, RedirectHTTP: !o.NoRedirect,
		HSTS: o.HSTS, RenewBeforeSeconds: int64(o.RenewBefore / time.Second)}
	rootCA, dirCA := o.RootCA, o.DirectoryCA
	switch {
	case o.Staging:
		t.Directory = cluster.LetsEncryptStagingDirectory
	case t.Directory == "" && c.ACMEDirectory != "":
		t.Directory = c.ACMEDirectory
		if rootCA == "" {
			rootCA = c.ACMETrustRoots
		}
		if dirCA == "" {
			dirCA = c.ACMEDirectoryRoots
		}
	case t.Directory == "":
		t.Directory = cluster.LetsEncryptDirectory
	}
	if t.RenewBeforeSeconds == int64(cluster.DefaultRenewBefore/time.Second) {
		t.RenewBeforeSeconds = 0
	}
	for _, pf := range []struct {
		flag, path string
		dst        *string
	}{{"--acme-root-ca", rootCA, &t.TrustRoots}, {"--acme-directory-ca", dirCA, &t.DirectoryRoots}} {
		if pf.path == "" {
			continue
		}
		b, err := os.ReadFile(pf.path)
		if err != nil {
			return nil, usagef("%s %q: %v", pf.flag, pf.path, errors.Unwrap(err))
		}
		if err := cluster.ValidatePEMCerts(string(b)); err != nil {
			return nil, usagef("%s %q: %v", pf.flag, pf.path, err)
		}
		*pf.dst = string(b)
	}
	return t, nil
}

// certPool parses PEM roots ("": nil, the system's).
func certPool(pemCerts string) *x509.CertPool {
	if pemCerts == "" {
		return nil
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM([]byte(pemCerts))
	return p
}

// clusterStore is the acme view of the cluster's part of the bucket.
func clusterStore(store *cluster.Store, name string) acme.Store {
	return acme.WithPrefix(store.B, "clusters/"+name+"/")
}

// enableTLS records the TLS settings, waits for the nodes to route the
// ACME challenge path, orders the certificate from here (the CA validates
// through the Reserved IP, whichever node holds it answers from the bucket)
// and, with wait, waits until every node serves it. The nodes renew it on
// their own afterwards. A certificate still valid for these names is not
// ordered again.
func enableTLS(ctx context.Context, f *Factory, p *Progress, store *cluster.Store, st *cluster.State, t *cluster.TLS, wait bool) (*cluster.State, error) {
	id, rcpt, err := f.clusterKey(st, false)
	if err != nil {
		return nil, err
	}
	if id == "" {
		return nil, fmt.Errorf("cluster %s has no cluster key to seal the certificate's key with (it predates them)", st.Name)
	}
	if err := p.Step("TLS settings in the state", func() (string, error) {
		st, err = store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
			if s.TLS != nil && tlsEqual(s.TLS, t) {
				return nil, cluster.ErrNoChange
			}
			s.TLS = t
			return s, nil
		})
		return strings.Join(t.Domains, ", ") + " from " + t.Directory, err
	}); err != nil {
		return nil, err
	}
	if err := ops.WaitApplied(ctx, store, st, p); err != nil {
		return nil, err
	}
	iss, err := acme.NewIssuer(acme.Config{
		Store: clusterStore(store, st.Name), Sealer: secrets.Sealer{Recipient: rcpt, Identity: id},
		DirectoryURL: t.Directory, CARoots: certPool(t.DirectoryRoots), TrustRoots: certPool(t.TrustRoots),
		Domains: t.Domains, Email: t.Email, Holder: "cli", RenewBefore: t.RenewBefore(),
		FailureBackoff: -1, // the operator asked: try now
		Logger:         f.Logger,
	})
	if err != nil {
		return nil, err
	}
	var res acme.Result
	if err := p.Step("certificate for "+strings.Join(t.Domains, ", "), func() (string, error) {
		for lastHolder := ""; ; {
			res, err = iss.Ensure(ctx)
			var held *acme.LeaseHeldError
			if !errors.As(err, &held) {
				break
			}
			// A node is ordering right now: once its lease is gone, the next
			// Ensure finds its certificate, or orders here if it failed.
			if held.Holder != lastHolder {
				p.Info("  %s holds the ACME lease (until %s): waiting for its order", held.Holder, held.Expires.Local().Format(time.TimeOnly))
				lastHolder = held.Holder
			}
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("%w (the ACME lease is held by %s)", ctx.Err(), held.Holder)
			case <-time.After(time.Second):
			}
		}
		if err != nil {
			return "", err
		}
		if res.Issued {
			return fmt.Sprintf("issued, serial %s, expires %s", res.Cert.Serial, res.Cert.NotAfter.Format(time.DateOnly)), nil
		}
		return fmt.Sprintf("kept, serial %s, expires %s", res.Cert.Serial, res.Cert.NotAfter.Format(time.DateOnly)), nil
	}); err != nil {
		var ve *acme.ValidationError
		if errors.As(err, &ve) {
			return nil, fmt.Errorf("the ACME server refused %s: %s (does its A record point at the Reserved IP %s?)", ve.Domain, ve.Detail, st.ReservedIP)
		}
		return nil, err
	}
	if !wait {
		return st, nil
	}
	return st, p.Step("every node serves the certificate", func() (string, error) {
		return "", ops.PollUntil(ctx, func() (bool, string, error) {
			info, _, err := acme.ReadInfo(ctx, clusterStore(store, st.Name), "")
			if errors.Is(err, bucket.ErrNotFound) {
				return false, "no certificate stored yet", nil
			}
			if err != nil {
				return false, "", err
			}
			var waiting []string
			for _, n := range st.Nodes {
				if n.Lifecycle != cluster.Ready {
					continue
				}
				r, _, err := ops.ReadReport(ctx, store, st, n.ID)
				if err != nil {
					return false, "", err
				}
				if r == nil || r.TLS == nil || r.TLS.Serial != info.Serial {
					waiting = append(waiting, n.ID)
				}
			}
			return len(waiting) == 0, fmt.Sprintf("serial %s not served yet by %v", info.Serial, waiting), nil
		})
	})
}

func tlsEqual(a, b *cluster.TLS) bool {
	return slices.Equal(a.Domains, b.Domains) && a.Email == b.Email && a.Directory == b.Directory &&
		a.DirectoryRoots == b.DirectoryRoots && a.TrustRoots == b.TrustRoots && a.RedirectHTTP == b.RedirectHTTP &&
		a.HSTS == b.HSTS && a.RenewBeforeSeconds == b.RenewBeforeSeconds
}

// NewCmdTLS is `dynia tls enable|status|disable`.
func NewCmdTLS(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "HTTPS on every node with a Let's Encrypt certificate shared through the bucket",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	var name string
	var o TLSOptions
	var noWait bool
	var timeout time.Duration
	enable := &cobra.Command{
		Use:   "enable --name N --domain D [--domain D2 …] [--email E] [--acme-url URL | --staging]",
		Short: "Get a certificate for the domains and serve HTTPS on every node (renewed by the nodes)",
		Example: "  dynia tls enable --name myapp --domain app.example.com --email ops@example.com\n" +
			"  dynia tls enable --name myapp --domain app.example.com --staging",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			if err := o.check(); err != nil {
				return err
			}
			t, err := o.settings(f)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			store, st, _, err := f.openCluster(ctx, name, true)
			if err != nil {
				return err
			}
			p := NewProgress(f.IO, f.Global.Output == "json")
			if st, err = enableTLS(ctx, f, p, store, st, t, !noWait); err != nil {
				return err
			}
			return printCluster(f, st)
		},
	}
	enable.Flags().StringVar(&name, "name", "", "cluster name")
	addTLSFlags(enable, &o)
	enable.Flags().BoolVar(&noWait, "no-wait", false, "return once the certificate is stored, before every node serves it")
	enable.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "overall timeout")

	disable := &cobra.Command{
		Use:   "disable --name N",
		Short: "Serve plain HTTP only (the certificate stays in the bucket for a later enable)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			store, _, _, err := f.openCluster(ctx, name, true)
			if err != nil {
				return err
			}
			st, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
				if s.TLS == nil {
					return nil, cluster.ErrNoChange
				}
				s.TLS = nil
				return s, nil
			})
			if err != nil {
				return err
			}
			return printCluster(f, st)
		},
	}
	disable.Flags().StringVar(&name, "name", "", "cluster name")
	disable.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "overall timeout")
	cmd.AddCommand(enable, NewCmdTLSStatus(f), disable)
	return cmd
}

// NewCmdTLSStatus is `dynia tls status`.
func NewCmdTLSStatus(f *Factory) *cobra.Command {
	var name string
	var to TableOptions
	cmd := &cobra.Command{
		Use:   "status --name N",
		Short: "The stored certificate, and per node: the serial it serves, its names, expiry, since when",
		Long: "The stored certificate, and per node: the serial it serves, its names, expiry, since when.\n\n" +
			"A summary line comes before the table (not with --no-header).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			if _, err := to.columns(tlsColumns); err != nil {
				return err
			}
			return tlsStatus(cmd.Context(), f, name, to)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name")
	addTableFlags(cmd, &to, tlsColumns)
	return cmd
}

// TLSNodeView is one node's certificate, as `tls status` shows it.
type TLSNodeView struct {
	Node string `json:"node"`
	// The node's report says, as it says it (JSON: its fields inline).
	report.TLSStatus
}

// tlsColumns are `tls status`'s table.
var tlsColumns = []column{
	{"Node", "NODE"}, {"Serial", "SERIAL"}, {"Names", "NAMES"}, {"Expires", "EXPIRES"}, {"Since", "SINCE"}, {"Note", "NOTE"},
}

func tlsStatus(ctx context.Context, f *Factory, name string, to TableOptions) error {
	store, st, err := f.loadState(ctx, name)
	if err != nil {
		return err
	}
	info, _, err := acme.ReadInfo(ctx, clusterStore(store, name), "")
	stored := err == nil
	if err != nil && !errors.Is(err, bucket.ErrNotFound) {
		return err
	}
	var views []TLSNodeView
	for _, n := range cluster.SortedByPriority(st.Nodes) {
		v := TLSNodeView{Node: n.ID}
		r, refused, err := ops.ReadReport(ctx, store, st, n.ID)
		if refused != "" {
			v.Error = "report not believed: " + refused
		}
		if err == nil && r != nil && r.TLS != nil {
			v = TLSNodeView{Node: n.ID, TLSStatus: *r.TLS}
		}
		views = append(views, v)
	}
	if f.Global.Output == "json" {
		out := map[string]any{"cluster": name, "tls": st.TLS, "nodes": views}
		if stored {
			out["certificate"] = info
		}
		return writeJSON(f.IO.Out, out)
	}
	switch {
	case to.NoHeader:
	case st.TLS == nil:
		fmt.Fprintf(f.IO.Out, "cluster %s: TLS disabled\n", name)
	case !stored:
		fmt.Fprintf(f.IO.Out, "cluster %s: TLS for %s, no certificate stored yet\n", name, strings.Join(st.TLS.Domains, ", "))
	default:
		fmt.Fprintf(f.IO.Out, "cluster %s: certificate %s for %s, expires %s (issued %s by %s)\n", name, info.Serial,
			strings.Join(info.Names, ", "), info.NotAfter.Local().Format(time.DateTime), info.IssuedAt.Local().Format(time.DateTime), info.IssuedBy)
	}
	t, err := newTable(tlsColumns, to)
	if err != nil {
		return err
	}
	for _, v := range views {
		exp, since := "-", "-"
		if v.NotAfter != nil {
			exp = v.NotAfter.Local().Format(time.DateOnly)
		}
		if v.InstalledAt != nil {
			since = time.Since(*v.InstalledAt).Round(time.Second).String()
		}
		note := v.Error
		if v.Placeholder {
			note = "placeholder (no certificate yet)"
		}
		t.row(v.Node, dash(v.Serial), dash(strings.Join(v.Names, ",")), exp, since, dash(note))
	}
	return t.write(f.IO.Out, f.IO.OutTTY)
}
