package cli

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/sandbox"
)

// NewCmdSandboxFault is `dynia sandbox fault cut|heal|bucket|kill|list`:
// break the sandbox's cloud on purpose (docs/sandbox.md, Breaking things).
func NewCmdSandboxFault(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Break the sandbox on purpose: partitions, a bucket outage, killed processes",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdSandboxFaultCut(f, nil))
	cmd.AddCommand(NewCmdSandboxFaultHeal(f, nil))
	cmd.AddCommand(NewCmdSandboxFaultBucket(f, nil))
	cmd.AddCommand(NewCmdSandboxFaultKill(f, nil))
	cmd.AddCommand(NewCmdSandboxFaultList(f, nil))
	return cmd
}

// SandboxCutOptions are `sandbox fault cut` and `heal`'s: the droplet (id
// or name, resolved once root is checked) and the target ("" for heal:
// every cut).
type SandboxCutOptions struct {
	Dir     string
	Droplet string
	Target  string
}

// SandboxBucketOptions are `sandbox fault bucket down|up`'s.
type SandboxBucketOptions struct {
	Dir  string
	Down bool
}

// SandboxKillOptions are `sandbox fault kill`'s.
type SandboxKillOptions struct {
	Dir       string
	Droplet   string
	Component string
}

// SandboxFaultListOptions are `sandbox fault list`'s.
type SandboxFaultListOptions struct {
	Dir string
}

// sandboxDir is `dynia sandbox --dir` (a persistent flag), or the default
// when the command runs without its parent (tests).
func sandboxDir(cmd *cobra.Command) string {
	if fl := cmd.Flag("dir"); fl != nil {
		return fl.Value.String()
	}
	return sandbox.DefaultDir
}

// sandboxNeedRoot is the faults' check: they change the sandbox's
// namespaces.
func sandboxNeedRoot() error {
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		return usagef("sandbox fault: needs root on Linux (network namespaces)")
	}
	return nil
}

// sandboxDroplet resolves a droplet argument (id or name) in the sandbox.
func sandboxDroplet(dir, ref string) (int, error) {
	id, err := sandbox.ResolveDroplet(dir, ref)
	if err != nil {
		return 0, usagef("DROPLET %q: %v", ref, err)
	}
	return id, nil
}

func sandboxCutTarget(s string) (string, error) {
	t, err := sandbox.ParseCutTarget(s)
	if err != nil {
		return "", usagef("TARGET %q: %v", s, err)
	}
	return t, nil
}

// NewCmdSandboxFaultCut is `dynia sandbox fault cut DROPLET TARGET`.
func NewCmdSandboxFaultCut(f *Factory, runF func(*SandboxCutOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "cut DROPLET " + strings.Join(sandbox.CutTargets, "|"),
		Short: "Cut a droplet from the bucket, the DO API, the metadata service or its peers' VRRP adverts (packets dropped silently)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := &SandboxCutOptions{Dir: sandboxDir(cmd), Droplet: args[0]}
			var err error
			if o.Target, err = sandboxCutTarget(args[1]); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return sandboxCut(cmd.Context(), f, o)
		},
	}
}

func sandboxCut(ctx context.Context, f *Factory, o *SandboxCutOptions) error {
	if err := sandboxNeedRoot(); err != nil {
		return err
	}
	id, err := sandboxDroplet(o.Dir, o.Droplet)
	if err != nil {
		return err
	}
	if err := sandbox.Cut(ctx, o.Dir, id, o.Target); err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Out, "droplet %d cut from %s\n", id, o.Target)
	return nil
}

// NewCmdSandboxFaultHeal is `dynia sandbox fault heal DROPLET [TARGET]`.
func NewCmdSandboxFaultHeal(f *Factory, runF func(*SandboxCutOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "heal DROPLET [" + strings.Join(sandbox.CutTargets, "|") + "]",
		Short: "End a droplet's cut (every cut of it without a target)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := &SandboxCutOptions{Dir: sandboxDir(cmd), Droplet: args[0]}
			if len(args) == 2 {
				var err error
				if o.Target, err = sandboxCutTarget(args[1]); err != nil {
					return err
				}
			}
			if runF != nil {
				return runF(o)
			}
			return sandboxHeal(cmd.Context(), f, o)
		},
	}
}

func sandboxHeal(ctx context.Context, f *Factory, o *SandboxCutOptions) error {
	if err := sandboxNeedRoot(); err != nil {
		return err
	}
	id, err := sandboxDroplet(o.Dir, o.Droplet)
	if err != nil {
		return err
	}
	if err := sandbox.Heal(ctx, o.Dir, id, o.Target); err != nil {
		return err
	}
	what := o.Target
	if what == "" {
		what = "every cut"
	}
	fmt.Fprintf(f.IO.Out, "droplet %d healed (%s)\n", id, what)
	return nil
}

// NewCmdSandboxFaultBucket is `dynia sandbox fault bucket down|up`.
func NewCmdSandboxFaultBucket(f *Factory, runF func(*SandboxBucketOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "bucket down|up",
		Short: "Start or end an outage of the sandbox's S3 endpoint (every client times out)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "down" && args[0] != "up" {
				return usagef("bucket %q: want down or up", args[0])
			}
			o := &SandboxBucketOptions{Dir: sandboxDir(cmd), Down: args[0] == "down"}
			if runF != nil {
				return runF(o)
			}
			return sandboxBucket(cmd.Context(), f, o)
		},
	}
}

func sandboxBucket(ctx context.Context, f *Factory, o *SandboxBucketOptions) error {
	if err := sandboxNeedRoot(); err != nil {
		return err
	}
	if err := sandbox.BucketOutage(ctx, o.Dir, o.Down); err != nil {
		return err
	}
	state := "up"
	if o.Down {
		state = "down"
	}
	fmt.Fprintf(f.IO.Out, "bucket %s\n", state)
	return nil
}

// NewCmdSandboxFaultKill is `dynia sandbox fault kill DROPLET COMPONENT`.
func NewCmdSandboxFaultKill(f *Factory, runF func(*SandboxKillOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "kill DROPLET " + strings.Join(sandbox.ProcComponents, "|"),
		Short: "SIGKILL one of a droplet's processes (found by its pid file or the droplet's container cgroup)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			comp, err := sandbox.ParseProcComponent(args[1])
			if err != nil {
				return usagef("COMPONENT %q: %v", args[1], err)
			}
			o := &SandboxKillOptions{Dir: sandboxDir(cmd), Droplet: args[0], Component: comp}
			if runF != nil {
				return runF(o)
			}
			return sandboxKill(f, o)
		},
	}
}

func sandboxKill(f *Factory, o *SandboxKillOptions) error {
	if err := sandboxNeedRoot(); err != nil {
		return err
	}
	id, err := sandboxDroplet(o.Dir, o.Droplet)
	if err != nil {
		return err
	}
	killed, err := sandbox.Kill(o.Dir, id, o.Component)
	if err != nil {
		return err
	}
	var pids []string
	for _, p := range killed {
		pids = append(pids, fmt.Sprint(p.PID))
	}
	fmt.Fprintf(f.IO.Out, "killed %s on droplet %d (pid %s)\n", o.Component, id, strings.Join(pids, ", "))
	return nil
}

// NewCmdSandboxFaultList is `dynia sandbox fault list`.
func NewCmdSandboxFaultList(f *Factory, runF func(*SandboxFaultListOptions) error) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Show the faults in place",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := &SandboxFaultListOptions{Dir: sandboxDir(cmd)}
			if runF != nil {
				return runF(o)
			}
			return sandboxFaultList(cmd.Context(), f, o)
		},
	}
}

func sandboxFaultList(ctx context.Context, f *Factory, o *SandboxFaultListOptions) error {
	if err := sandboxNeedRoot(); err != nil {
		return err
	}
	fl, err := sandbox.Faults(ctx, o.Dir)
	if err != nil {
		return err
	}
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, fl)
	}
	w := f.IO.Out
	if fl.BucketDown {
		fmt.Fprintln(w, "bucket: down")
	}
	var ids []int
	for id := range fl.Cuts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		fmt.Fprintf(w, "droplet %d cut from %s\n", id, strings.Join(fl.Cuts[id], ", "))
	}
	if !fl.BucketDown && len(ids) == 0 {
		fmt.Fprintln(w, "no faults")
	}
	return nil
}
