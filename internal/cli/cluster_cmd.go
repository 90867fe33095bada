package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// updateOptions are `cluster update`'s inputs.
type updateOptions struct {
	Name        string
	AdminCIDRs  []string
	NoAdminCIDR bool
	SetAdmin    bool // --admin-cidr or --no-admin-cidr given
	// MinPullVersion is --min-pull-version, when SetMinPull.
	MinPullVersion string
	SetMinPull     bool
	Force          bool
	Timeout        time.Duration
}

// updateCluster records the new settings in the state, then makes the
// firewall match the state (re-runnable: both steps are idempotent). With
// --force the store does not check the nodes' dynia-pull versions before
// raising min_pull_version.
func updateCluster(ctx context.Context, f *Factory, o *updateOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	store, st, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	if o.Force {
		store.CheckRaise = nil
	}
	st, err = ops.UpdateSettings(ctx, deps(store, cl, p, nil), st, ops.Settings{
		MinPullVersion: o.MinPullVersion, SetMinPull: o.SetMinPull, AdminCIDRs: o.AdminCIDRs, SetAdmin: o.SetAdmin,
	})
	if err != nil {
		return err
	}
	return printCluster(f, st)
}

// NewCmdCluster is `dynia cluster list|get|update|destroy|upgrade`.
func NewCmdCluster(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "List, inspect, update, upgrade and destroy clusters",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdClusterList(f, nil))
	cmd.AddCommand(NewCmdClusterGet(f, nil))
	cmd.AddCommand(NewCmdClusterUpdate(f, nil))
	cmd.AddCommand(NewCmdClusterDestroy(f, nil))
	cmd.AddCommand(NewCmdClusterUpgrade(f, nil))
	return cmd
}

// NewCmdClusterList is `dynia cluster list`.
func NewCmdClusterList(f *Factory, runF func(*TableOptions) error) *cobra.Command {
	o := &TableOptions{}
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the clusters in the state bucket: region, nodes, Reserved IP, active node, health",
		Example: "  dynia cluster list\n  dynia cluster list --format Name,Health --no-header\n  dynia cluster list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := o.columns(clusterColumns); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return listClusters(cmd.Context(), f, *o)
		},
	}
	addTableFlags(cmd, o, clusterColumns)
	return cmd
}

// NewCmdClusterGet is `dynia cluster get`.
func NewCmdClusterGet(f *Factory, runF func(name string) error) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "get --name N",
		Short: "Show a cluster: region, Reserved IP, active node, generation, nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(name); err != nil {
				return err
			}
			if runF != nil {
				return runF(name)
			}
			return getCluster(cmd.Context(), f, name)
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name")
	return cmd
}

// getCluster prints one cluster, its nodes' health observed.
func getCluster(ctx context.Context, f *Factory, name string) error {
	store, st, err := f.loadState(ctx, name)
	if err != nil {
		return err
	}
	e, err := observe(ctx, f, store, st)
	if err != nil {
		return err
	}
	v := viewOf(st, rows(st, e))
	if h := e.HolderNode(); h != nil {
		v.Holder = h.ID
	}
	v.Masters = vrrpMasters(st, e)
	v.RoleNote = roleNote(st, e)
	v.VersionNote = versionsNote(v.Nodes)
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, v)
	}
	fmt.Fprintf(f.IO.Out, "name:         %s\nregion:       %s\nsize:         %s\nreserved ip:  %s\nactive node:  %s\nheld by:      %s\nvrrp master:  %s\ngeneration:   %d\nnodes:        %d\n",
		v.Name, v.Region, v.Size, dash(v.ReservedIP), v.ActiveNode, dash(v.Holder), dash(strings.Join(v.Masters, ", ")), v.Generation, len(v.Nodes))
	if v.MinPullVersion != "" {
		fmt.Fprintf(f.IO.Out, "min pull:     %s\n", v.MinPullVersion)
	}
	if v.RoleNote != "" {
		fmt.Fprintln(f.IO.ErrOut, "note: "+v.RoleNote)
	}
	if v.VersionNote != "" {
		fmt.Fprintln(f.IO.ErrOut, "note: "+v.VersionNote)
	}
	return nil
}

// NewCmdClusterUpdate is `dynia cluster update`.
func NewCmdClusterUpdate(f *Factory, runF func(*updateOptions) error) *cobra.Command {
	u := &updateOptions{}
	cmd := &cobra.Command{
		Use:   "update --name N [--admin-cidr C ...] [--no-admin-cidr] [--min-pull-version V [--force]]",
		Short: "Change cluster settings kept in the state, and apply them (the firewall's SSH sources, the oldest dynia-pull nodes may run)",
		Example: "  dynia cluster update --name myapp --admin-cidr 192.0.2.7/32 --admin-cidr 198.51.100.0/28\n" +
			"  dynia cluster update --name myapp --no-admin-cidr   # nobody may reach SSH\n" +
			"  dynia cluster update --name myapp --min-pull-version v1.4.0   # older nodes report upgrade required",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u.SetAdmin = u.NoAdminCIDR || cmd.Flags().Changed("admin-cidr")
			u.SetMinPull = cmd.Flags().Changed("min-pull-version")
			if err := u.check(); err != nil {
				return err
			}
			if runF != nil {
				return runF(u)
			}
			return updateCluster(cmd.Context(), f, u)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&u.Name, "name", "", "cluster name")
	fl.StringSliceVar(&u.AdminCIDRs, "admin-cidr", nil, "CIDR allowed to reach SSH (repeatable; replaces the current list)")
	fl.BoolVar(&u.NoAdminCIDR, "no-admin-cidr", false, "remove every SSH source")
	fl.StringVar(&u.MinPullVersion, "min-pull-version", "", `oldest dynia-pull release (vMAJOR.MINOR.PATCH) that may apply the state; "" clears it`)
	fl.BoolVar(&u.Force, "force", false, "with --min-pull-version: skip the check that no ready node reports an older dynia-pull (such nodes stop applying states)")
	fl.DurationVar(&u.Timeout, "timeout", 2*time.Minute, "overall timeout")
	return cmd
}

// check validates update's flags (SetAdmin and SetMinPull set) before any I/O.
func (u *updateOptions) check() error {
	if err := checkName(u.Name); err != nil {
		return err
	}
	if err := checkAdminCIDRs(u.AdminCIDRs); err != nil {
		return err
	}
	if u.NoAdminCIDR && len(u.AdminCIDRs) > 0 {
		return usagef("--no-admin-cidr: cannot be combined with --admin-cidr %q", u.AdminCIDRs[0])
	}
	if u.Force && !u.SetMinPull {
		return usagef("--force: only with --min-pull-version")
	}
	if !u.SetAdmin && !u.SetMinPull {
		return usagef("--admin-cidr: nothing to update (give --admin-cidr, --no-admin-cidr or --min-pull-version)")
	}
	if err := cluster.ValidateMinPullVersion(u.MinPullVersion); err != nil {
		return flagErr("min-pull-version", err)
	}
	return checkTimeout(u.Timeout)
}

// NewCmdClusterDestroy is `dynia cluster destroy`.
func NewCmdClusterDestroy(f *Factory, runF func(*destroyOptions) error) *cobra.Command {
	d := &destroyOptions{}
	cmd := &cobra.Command{
		Use:   "destroy --name N [--yes]",
		Short: "Destroy everything the cluster created: droplets, Reserved IP, the nodes' Spaces key, firewall, VPC, state",
		Long: "Destroy everything the cluster created: droplets, Reserved IP, the nodes' Spaces key, firewall, VPC,\n" +
			"the DNS record dynia created, and last the state (an interrupted destroy can be re-run).\n\n" +
			"Destructive: asks for confirmation on a terminal; --yes skips the question and is required without a terminal.",
		Example: "  dynia cluster destroy --name myapp\n  dynia cluster destroy --name myapp --yes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(d.Name); err != nil {
				return err
			}
			if err := checkTimeout(d.Timeout); err != nil {
				return err
			}
			if err := confirmDestructive(f.IO, d.Confirm, fmt.Sprintf("destroy cluster %q", d.Name),
				fmt.Sprintf("Destroy cluster %s: its droplets, Reserved IP, firewall, VPC and state?", d.Name)); err != nil {
				return err
			}
			d.Confirm = true
			if runF != nil {
				return runF(d)
			}
			return destroyCluster(cmd.Context(), f, d)
		},
	}
	cmd.Flags().StringVar(&d.Name, "name", "", "cluster name")
	addYesFlag(cmd, &d.Confirm)
	cmd.Flags().DurationVar(&d.Timeout, "timeout", 5*time.Minute, "overall timeout")
	return cmd
}

type destroyOptions struct {
	Name string
	// Confirm is --yes (old name --confirm).
	Confirm bool
	Timeout time.Duration
}

// destroyCluster removes what the cluster made (ops.Destroy), the state
// last, so an interrupted destroy can re-run.
func destroyCluster(ctx context.Context, f *Factory, o *destroyOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	store, st, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	stateURL, err := f.StateURL()
	if err != nil {
		return err
	}
	err = ops.Destroy(ctx, deps(store, cl, p, nil), st, ops.DestroyOptions{
		StateURL: stateURL,
		// Only a record dynia created: one it merely repointed was the user's.
		DeleteDNS: func(ctx context.Context, st *cluster.State) error { return deleteDNS(ctx, f, p, cl, st, false) },
	})
	if err != nil {
		return err
	}
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, map[string]any{"destroyed": o.Name})
	}
	fmt.Fprintf(f.IO.Out, "cluster %s destroyed\n", o.Name)
	return nil
}
