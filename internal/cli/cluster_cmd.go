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
		return cliError(err)
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
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List the clusters in the state bucket",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := f.Store(cmd.Context())
			if err != nil {
				return err
			}
			names, err := store.List(cmd.Context())
			if err != nil {
				return err
			}
			if f.Global.Output == "json" {
				var views []ClusterView
				for _, n := range names {
					st, _, err := store.Load(cmd.Context(), n)
					if err != nil {
						return err
					}
					views = append(views, viewOf(st, nil))
				}
				if views == nil {
					views = []ClusterView{}
				}
				return writeJSON(f.IO.Out, views)
			}
			for _, n := range names {
				fmt.Fprintln(f.IO.Out, n)
			}
			return nil
		},
	})
	var getName string
	get := &cobra.Command{
		Use:   "get --name N",
		Short: "Show a cluster: region, Reserved IP, active node, generation, nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(getName); err != nil {
				return err
			}
			store, err := f.Store(cmd.Context())
			if err != nil {
				return err
			}
			st, _, err := store.Load(cmd.Context(), getName)
			if err != nil {
				return err
			}
			e, err := observe(cmd.Context(), f, store, st)
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
		},
	}
	get.Flags().StringVar(&getName, "name", "", "cluster name")
	cmd.AddCommand(get)

	var u updateOptions
	update := &cobra.Command{
		Use:   "update --name N [--admin-cidr C ...] [--no-admin-cidr] [--min-pull-version V [--force]]",
		Short: "Change cluster settings kept in the state, and apply them (the firewall's SSH sources, the oldest dynia-pull nodes may run)",
		Example: "  dynia cluster update --name myapp --admin-cidr 192.0.2.7/32 --admin-cidr 198.51.100.0/28\n" +
			"  dynia cluster update --name myapp --no-admin-cidr   # nobody may reach SSH\n" +
			"  dynia cluster update --name myapp --min-pull-version v1.4.0   # older nodes report upgrade required",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(u.Name); err != nil {
				return err
			}
			if err := checkAdminCIDRs(u.AdminCIDRs); err != nil {
				return err
			}
			if u.NoAdminCIDR && len(u.AdminCIDRs) > 0 {
				return usagef("--no-admin-cidr: cannot be combined with --admin-cidr %q", u.AdminCIDRs[0])
			}
			u.SetAdmin = u.NoAdminCIDR || cmd.Flags().Changed("admin-cidr")
			u.SetMinPull = cmd.Flags().Changed("min-pull-version")
			if u.Force && !u.SetMinPull {
				return usagef("--force: only with --min-pull-version")
			}
			if !u.SetAdmin && !u.SetMinPull {
				return usagef("--admin-cidr: nothing to update (give --admin-cidr, --no-admin-cidr or --min-pull-version)")
			}
			if err := cluster.ValidateMinPullVersion(u.MinPullVersion); err != nil {
				return flagErr("min-pull-version", err)
			}
			if err := checkTimeout(u.Timeout); err != nil {
				return err
			}
			return updateCluster(cmd.Context(), f, &u)
		},
	}
	update.Flags().StringVar(&u.Name, "name", "", "cluster name")
	update.Flags().StringSliceVar(&u.AdminCIDRs, "admin-cidr", nil, "CIDR allowed to reach SSH (repeatable; replaces the current list)")
	update.Flags().BoolVar(&u.NoAdminCIDR, "no-admin-cidr", false, "remove every SSH source")
	update.Flags().StringVar(&u.MinPullVersion, "min-pull-version", "", `oldest dynia-pull release (vMAJOR.MINOR.PATCH) that may apply the state; "" clears it`)
	update.Flags().BoolVar(&u.Force, "force", false, "with --min-pull-version: write it even when ready nodes report an older dynia-pull (they stop applying states)")
	update.Flags().DurationVar(&u.Timeout, "timeout", 2*time.Minute, "overall timeout")
	cmd.AddCommand(update)

	var d destroyOptions
	destroy := &cobra.Command{
		Use:   "destroy --name N --confirm",
		Short: "Destroy everything the cluster created: droplets, Reserved IP, the nodes' Spaces key, firewall, VPC, state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkName(d.Name); err != nil {
				return err
			}
			if !d.Confirm {
				return usagef("--confirm: required to destroy cluster %q", d.Name)
			}
			return destroyCluster(cmd.Context(), f, &d)
		},
	}
	destroy.Flags().StringVar(&d.Name, "name", "", "cluster name")
	destroy.Flags().BoolVar(&d.Confirm, "confirm", false, "really destroy")
	destroy.Flags().DurationVar(&d.Timeout, "timeout", 5*time.Minute, "overall timeout")
	cmd.AddCommand(destroy)
	cmd.AddCommand(NewCmdClusterUpgrade(f, nil))
	return cmd
}

type destroyOptions struct {
	Name    string
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
		return cliError(err)
	}
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, map[string]any{"destroyed": o.Name})
	}
	fmt.Fprintf(f.IO.Out, "cluster %s destroyed\n", o.Name)
	return nil
}
