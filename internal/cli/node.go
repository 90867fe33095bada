package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cluster"
)

// NewCmdNode is `dynia node …`: the seed's commands.
func NewCmdNode(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Create a cluster and add, remove, replace, list and promote its nodes",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdNodeCreateHA(f, nil))
	cmd.AddCommand(NewCmdNodeAdd(f, nil))
	cmd.AddCommand(NewCmdNodeRemove(f, nil))
	cmd.AddCommand(NewCmdNodeReplace(f, nil))
	cmd.AddCommand(NewCmdNodeList(f, nil))
	cmd.AddCommand(NewCmdNodeMakeActive(f, nil))
	cmd.AddCommand(NewCmdNodeRepairHA(f, nil))
	cmd.AddCommand(NewCmdNodeLogs(f, nil))
	return cmd
}

// nodeTokenScopesHelp is the node token's scopes, for flag help.
var nodeTokenScopesHelp = "a custom-scoped token with " + strings.Join(NodeTokenScopes, ", ")

func checkName(name string) error {
	if name == "" {
		return usagef("--name: required")
	}
	if err := cluster.ValidateName(name); err != nil {
		return flagErr("name", err)
	}
	return nil
}

func checkNodeID(id string) error {
	if id == "" {
		return usagef("--node: required")
	}
	if err := cluster.ValidateNodeID(id); err != nil {
		return flagErr("node", err)
	}
	return nil
}

// checkNameNode checks the flags every per-node command takes.
func checkNameNode(name, node string, timeout time.Duration) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkNodeID(node); err != nil {
		return err
	}
	return checkTimeout(timeout)
}

func checkTimeout(d time.Duration) error {
	if d <= 0 {
		return usagef("--timeout %q: must be positive", d)
	}
	return nil
}

// CreateOptions are create-ha's inputs.
type CreateOptions struct {
	Name          string
	Region        string
	Size          string
	Image         string
	Bootstrap     bool
	AdminCIDRs    []string
	NodeTokenFile string
	// AllowOperatorToken gives droplets the CLI's own token when no node
	// token is configured.
	AllowOperatorToken bool
	DNS                DNSOptions
	DNSDomain          string // --dns-domain, the old name of --dns-zone
	// TLS (--domain …) is enabled once the cluster serves.
	TLS     TLSOptions
	DryRun  bool
	Timeout time.Duration
	NoWait  bool
	// App, with an image, is deployed once the cluster serves.
	App AppOptions
}

// Validate checks every flag's shape before any I/O.
func (o *CreateOptions) Validate() error {
	if err := checkName(o.Name); err != nil {
		return err
	}
	if o.Region == "" {
		return usagef("--region: required")
	}
	if err := cluster.ValidateRegion(o.Region); err != nil {
		return flagErr("region", err)
	}
	if o.Size == "" {
		return usagef("--size: required")
	}
	if err := cluster.ValidateSize(o.Size); err != nil {
		return flagErr("size", err)
	}
	if err := checkAdminCIDRs(o.AdminCIDRs); err != nil {
		return err
	}
	if o.DNSDomain != "" {
		o.DNS.Zone, o.DNS.ZoneFlag = o.DNSDomain, "dns-domain"
	}
	if o.DNS.Record != "" || o.DNS.Zone != "" {
		if err := o.DNS.check("dns-"); err != nil {
			return err
		}
	}
	if len(o.TLS.Domains) > 0 {
		if err := o.TLS.check(); err != nil {
			return err
		}
	}
	if o.Image != "" && o.Bootstrap {
		return usagef("--snapshot %q: cannot be combined with --bootstrap (which uses a stock Debian image)", o.Image)
	}
	return checkTimeout(o.Timeout)
}

// NewCmdNodeCreateHA is `dynia node create-ha`.
func NewCmdNodeCreateHA(f *Factory, runF func(*CreateOptions) error) *cobra.Command {
	o := &CreateOptions{}
	cmd := &cobra.Command{
		Use:   "create-ha --name N --region R --size S",
		Short: "Create a cluster: one node with a Reserved IP attached (re-run to resume)",
		Example: "  dynia node create-ha --name myapp --region sgp1 --size s-1vcpu-1gb\n" +
			"  dynia node create-ha --name myapp --region sgp1 --size s-1vcpu-1gb --dry-run",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return createHA(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Name, "name", "", "cluster name (lowercase letters, digits, hyphens)")
	fl.StringVar(&o.Region, "region", "", "DigitalOcean region slug, e.g. sgp1")
	fl.StringVar(&o.Size, "size", "", "droplet size slug, e.g. s-1vcpu-1gb")
	fl.StringVar(&o.Image, "snapshot", "", "node image: a snapshot id or name (default: the newest dynia-node-* snapshot in the region)")
	fl.BoolVar(&o.Bootstrap, "bootstrap", false, "no snapshot: install everything at first boot on debian-12-x64")
	fl.StringSliceVar(&o.AdminCIDRs, "admin-cidr", nil, "CIDR allowed to reach SSH (repeatable; kept in the state: a re-run without it keeps them)")
	fl.StringVar(&o.NodeTokenFile, "node-token-file", "", "file (0600) with the node token handed to droplets: "+nodeTokenScopesHelp+" (default: the context's node_token_file)")
	fl.BoolVar(&o.AllowOperatorToken, "allow-operator-token", false, "without a node token, give droplets your own DO token (unsafe: anything on a droplet can read it)")
	addDNSFlags(cmd, &o.DNS, "dns-")
	fl.StringVar(&o.DNSDomain, "dns-domain", "", "the zone holding --dns-record (old name of --dns-zone)")
	_ = fl.MarkHidden("dns-domain")
	addTLSFlags(cmd, &o.TLS)
	fl.BoolVar(&o.DryRun, "dry-run", false, "print the plan and the user-data (secrets masked); change nothing")
	fl.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long to wait for the droplet and the Reserved IP")
	fl.BoolVar(&o.NoWait, "no-wait", false, "do not wait for the node to report its config applied")
	addAppFlags(cmd, &o.App)
	return cmd
}

// AddOptions are `node add`'s inputs.
type AddOptions struct {
	Name               string
	Count              int
	NodeTokenFile      string
	AllowOperatorToken bool
	Timeout            time.Duration
	NoWait             bool
}

// Validate checks the flags.
func (o *AddOptions) Validate() error {
	if err := checkName(o.Name); err != nil {
		return err
	}
	if o.Count < 1 || o.Count > 10 {
		return usagef("--count %d: must be 1-10", o.Count)
	}
	return checkTimeout(o.Timeout)
}

// NewCmdNodeAdd is `dynia node add`.
func NewCmdNodeAdd(f *Factory, runF func(*AddOptions) error) *cobra.Command {
	o := &AddOptions{}
	cmd := &cobra.Command{
		Use:     "add --name N [--count K]",
		Short:   "Add nodes to a cluster (droplets join the VPC and every HAProxy)",
		Example: "  dynia node add --name myapp\n  dynia node add --name myapp --count 2",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return addNodes(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	cmd.Flags().IntVar(&o.Count, "count", 1, "how many nodes to add (1-10)")
	cmd.Flags().StringVar(&o.NodeTokenFile, "node-token-file", "", "file (0600) with the node token handed to droplets: "+nodeTokenScopesHelp+" (default: the context's node_token_file)")
	cmd.Flags().BoolVar(&o.AllowOperatorToken, "allow-operator-token", false, "without a node token, give droplets your own DO token (unsafe: anything on a droplet can read it)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long to wait for the nodes")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "return once the droplets exist; do not wait for every node to apply the change")
	return cmd
}

// RemoveOptions are `node remove`'s inputs.
type RemoveOptions struct {
	Name string
	Node string
	// Confirm is --yes (old name --confirm): do not ask.
	Confirm bool
	// Force is --force: remove the last node too (the safety check it
	// overrides; `cluster destroy` is the usual way).
	Force   bool
	Timeout time.Duration
}

// NewCmdNodeRemove is `dynia node remove`.
func NewCmdNodeRemove(f *Factory, runF func(*RemoveOptions) error) *cobra.Command {
	o := &RemoveOptions{}
	cmd := &cobra.Command{
		Use:   "remove --name N --node ID [--yes] [--force]",
		Short: "Drain a node, move the Reserved IP off it if needed, and destroy it",
		Long: "Drain a node, move the Reserved IP off it if needed, and destroy its droplet.\n\n" +
			"Destructive: asks for confirmation on a terminal; --yes skips the question and is required without a terminal.\n" +
			"--force is only for the last node of a cluster, which is refused without it.",
		Example: "  dynia node remove --name myapp --node brave-panda\n  dynia node remove --name myapp --node brave-panda --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkNameNode(o.Name, o.Node, o.Timeout); err != nil {
				return err
			}
			if err := confirmDestructive(f.IO, o.Confirm, fmt.Sprintf("remove node %q", o.Node),
				fmt.Sprintf("Remove node %s from cluster %s and destroy its droplet?", o.Node, o.Name)); err != nil {
				return err
			}
			o.Confirm = true
			if runF != nil {
				return runF(o)
			}
			return removeNode(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	cmd.Flags().StringVar(&o.Node, "node", "", "two-word node id")
	addYesFlag(cmd, &o.Confirm)
	cmd.Flags().BoolVar(&o.Force, "force", false, "allow removing the cluster's last node (refused otherwise; dynia cluster destroy removes everything)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for draining and the Reserved IP")
	return cmd
}

// MakeActiveOptions are `node make-active`'s inputs.
type MakeActiveOptions struct {
	Name    string
	Node    string
	Timeout time.Duration
}

// NewCmdNodeMakeActive is `dynia node make-active`.
func NewCmdNodeMakeActive(f *Factory, runF func(*MakeActiveOptions) error) *cobra.Command {
	o := &MakeActiveOptions{}
	cmd := &cobra.Command{
		Use:     "make-active --name N --node ID",
		Short:   "Promote a standby: it gets the top priority and the Reserved IP",
		Example: "  dynia node make-active --name myapp --node brave-panda",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkNameNode(o.Name, o.Node, o.Timeout); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return makeActive(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	cmd.Flags().StringVar(&o.Node, "node", "", "two-word node id")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for the Reserved IP")
	return cmd
}

// RepairOptions are `node repair-ha`'s inputs.
type RepairOptions struct {
	Name      string
	CheckOnly bool
	Force     bool
	// NodeTokenFile and AllowOperatorToken are for the droplets --force
	// creates for nodes left provisioning.
	NodeTokenFile      string
	AllowOperatorToken bool
	Timeout            time.Duration
}

// NewCmdNodeRepairHA is `dynia node repair-ha`.
func NewCmdNodeRepairHA(f *Factory, runF func(*RepairOptions) error) *cobra.Command {
	o := &RepairOptions{}
	cmd := &cobra.Command{
		Use:     "repair-ha --name N (--check-only | --force)",
		Short:   "Compare state, DigitalOcean and node reports; print (and with --force fix) each drift",
		Example: "  dynia node repair-ha --name myapp --check-only\n  dynia node repair-ha --name myapp --force",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if o.CheckOnly == o.Force {
				return usagef("--check-only or --force: give exactly one")
			}
			if runF != nil {
				return runF(o)
			}
			return repairHA(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	cmd.Flags().BoolVar(&o.CheckOnly, "check-only", false, "report drift; exit 1 when there is some")
	cmd.Flags().BoolVar(&o.Force, "force", false, "apply the fixes it prints (writes the state and DigitalOcean; its only meaning here)")
	cmd.Flags().StringVar(&o.NodeTokenFile, "node-token-file", "", "file (0600) with the node token for droplets --force creates: "+nodeTokenScopesHelp+" (default: the context's node_token_file)")
	cmd.Flags().BoolVar(&o.AllowOperatorToken, "allow-operator-token", false, "without a node token, give droplets --force creates your own DO token (unsafe)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for fixes")
	return cmd
}

// ListOptions are `node list`'s inputs.
type ListOptions struct {
	Name  string
	Table TableOptions
}

// NewCmdNodeList is `dynia node list`.
func NewCmdNodeList(f *Factory, runF func(*ListOptions) error) *cobra.Command {
	o := &ListOptions{}
	cmd := &cobra.Command{
		Use:     "list --name N",
		Short:   "List a cluster's nodes with role, priority, addresses and status",
		Example: "  dynia node list --name myapp\n  dynia node list --name myapp --format ID,Status,ReservedIP --no-header\n  dynia node list --name myapp -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(o.Name); err != nil {
				return err
			}
			if _, err := o.Table.columns(nodeColumns); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return listNodes(cmd.Context(), f, o)
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "cluster name")
	addTableFlags(cmd, &o.Table, nodeColumns)
	return cmd
}

func checkAdminCIDRs(cidrs []string) error {
	if len(cidrs) > cluster.MaxAdminCIDRs {
		return usagef("--admin-cidr: %d given, at most %d", len(cidrs), cluster.MaxAdminCIDRs)
	}
	for _, c := range cidrs {
		if err := cluster.ValidateAdminCIDR(c); err != nil {
			return usagef("--admin-cidr %q: %v", c, err)
		}
	}
	return nil
}
