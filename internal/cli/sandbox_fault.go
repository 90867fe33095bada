package cli

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/sandbox"
)

// newCmdSandboxFault is `dynia sandbox fault cut|heal|bucket|kill|list`:
// break the sandbox's cloud on purpose (docs/sandbox.md, Breaking things).
func newCmdSandboxFault(f *Factory, dir *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fault",
		Short: "Break the sandbox on purpose: partitions, a bucket outage, killed processes",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	needRoot := func() error {
		if runtime.GOOS != "linux" || os.Geteuid() != 0 {
			return usagef("sandbox fault: needs root on Linux (network namespaces)")
		}
		return nil
	}
	droplet := func(ref string) (int, error) {
		id, err := sandbox.ResolveDroplet(*dir, ref)
		if err != nil {
			return 0, usagef("DROPLET %q: %v", ref, err)
		}
		return id, nil
	}
	target := func(s string) (string, error) {
		t, err := sandbox.ParseCutTarget(s)
		if err != nil {
			return "", usagef("TARGET %q: %v", s, err)
		}
		return t, nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "cut DROPLET " + strings.Join(sandbox.CutTargets, "|"),
		Short: "Cut a droplet from the bucket, the DO API, the metadata service or its peers' VRRP adverts (packets dropped silently)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := target(args[1])
			if err != nil {
				return err
			}
			if err := needRoot(); err != nil {
				return err
			}
			id, err := droplet(args[0])
			if err != nil {
				return err
			}
			if err := sandbox.Cut(cmd.Context(), *dir, id, t); err != nil {
				return err
			}
			fmt.Fprintf(f.IO.Out, "droplet %d cut from %s\n", id, t)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "heal DROPLET [" + strings.Join(sandbox.CutTargets, "|") + "]",
		Short: "End a droplet's cut (every cut of it without a target)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t := ""
			if len(args) == 2 {
				var err error
				if t, err = target(args[1]); err != nil {
					return err
				}
			}
			if err := needRoot(); err != nil {
				return err
			}
			id, err := droplet(args[0])
			if err != nil {
				return err
			}
			if err := sandbox.Heal(cmd.Context(), *dir, id, t); err != nil {
				return err
			}
			what := t
			if what == "" {
				what = "every cut"
			}
			fmt.Fprintf(f.IO.Out, "droplet %d healed (%s)\n", id, what)
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "bucket down|up",
		Short: "Start or end an outage of the sandbox's S3 endpoint (every client times out)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "down" && args[0] != "up" {
				return usagef("bucket %q: want down or up", args[0])
			}
			if err := needRoot(); err != nil {
				return err
			}
			if err := sandbox.BucketOutage(cmd.Context(), *dir, args[0] == "down"); err != nil {
				return err
			}
			fmt.Fprintf(f.IO.Out, "bucket %s\n", args[0])
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "kill DROPLET " + strings.Join(sandbox.ProcComponents, "|"),
		Short: "SIGKILL one of a droplet's processes (found by its pid file or the droplet's container cgroup)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			comp, err := sandbox.ParseProcComponent(args[1])
			if err != nil {
				return usagef("COMPONENT %q: %v", args[1], err)
			}
			if err := needRoot(); err != nil {
				return err
			}
			id, err := droplet(args[0])
			if err != nil {
				return err
			}
			killed, err := sandbox.Kill(*dir, id, comp)
			if err != nil {
				return err
			}
			var pids []string
			for _, p := range killed {
				pids = append(pids, fmt.Sprint(p.PID))
			}
			fmt.Fprintf(f.IO.Out, "killed %s on droplet %d (pid %s)\n", comp, id, strings.Join(pids, ", "))
			return nil
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Show the faults in place",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := needRoot(); err != nil {
				return err
			}
			fl, err := sandbox.Faults(cmd.Context(), *dir)
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
		},
	})
	return cmd
}
