// Package cli is the dynia command tree (cobra on pflag). Each noun has its
// own file; every command is built by NewCmdX(f) and does its work in a
// function that tests call directly. Run is what main and tests call.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Version and Commit are stamped by the build (-ldflags -X).
var (
	Version = "dev"
	Commit  = "none"
)

// GlobalOptions are the persistent flags every command sees.
type GlobalOptions struct {
	Output            string // text | json
	State             string // --state, env DYNIA_STATE
	Context           string // --context
	ConfigPath        string // --config
	AllowUnsafeWrites bool
	// SpacesEndpoint and SpacesRegion override the context's (and
	// SPACES_ENDPOINT/SPACES_REGION); new droplets get the same.
	SpacesEndpoint string
	SpacesRegion   string
}

// Main runs dynia and returns the process exit code.
func Main(ctx context.Context, args []string, io *IOStreams) int {
	return Run(ctx, NewFactory(io), args)
}

// Run runs dynia with a prepared Factory (tests inject environment and
// backends through it) and returns the exit code.
func Run(ctx context.Context, f *Factory, args []string) int {
	return execute(ctx, f, NewCmdRoot(f), args)
}

// execute runs the command tree root (built by NewCmdRoot) on args.
func execute(ctx context.Context, f *Factory, root *cobra.Command, args []string) int {
	io := f.IO
	root.SetArgs(args)
	root.SetIn(io.In)
	root.SetOut(io.Out)
	root.SetErr(io.ErrOut)
	// cobra adds its completion command in Execute, after NewCmdRoot typed
	// the tree: add it here, once the output is set (its scripts go
	// there), and type it too.
	root.InitDefaultCompletionCmd(args...)
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			typeUsageErrors(c)
		}
	}
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	printError(f, err)
	return exitCode(err)
}

// printError writes one line (or a JSON object under -o json) to stderr.
func printError(f *Factory, err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	retry := retryable(err)
	if retry != "" {
		msg += " (" + retry + ")"
	}
	if hint := tokenHint(err); hint != "" {
		msg += " (" + hint + ")"
	}
	if f.Global.Output == "json" {
		b, _ := json.Marshal(map[string]any{"error": msg, "exit_code": exitCode(err), "retryable": retry != ""})
		fmt.Fprintln(f.IO.ErrOut, string(b))
		return
	}
	fmt.Fprintln(f.IO.ErrOut, "error: "+msg)
}

// typeUsageErrors makes cobra's and pflag's own errors (a flag that does
// not parse, an unknown flag, a positional argument a command does not
// take) UsageErrors where they arise, so that the exit code never depends
// on an error's text: a runtime error that happens to read "invalid
// argument" (EINVAL) is a failure, not bad usage. Required flags and flag
// groups are checked by the root's PersistentPreRunE. A command with
// subcommands refuses any argument as an unknown command, with
// suggestions, even when flags follow it. Call it on the whole tree, after
// every command is added.
func typeUsageErrors(c *cobra.Command) {
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		// pflag parses the arguments before the bad flag first: on a
		// command with subcommands the first of them is a mistyped
		// subcommand, the real mistake (`dynia node lst --name x`).
		if a := cmd.Flags().Args(); cmd.HasSubCommands() && len(a) > 0 {
			return unknownCommand(cmd, a[0])
		}
		var ne *pflag.NotExistError
		if errors.As(err, &ne) {
			if s := suggestFlag(cmd, ne.GetSpecifiedName()); s != "" {
				return usagef("%v; did you mean --%s?", err, s)
			}
		}
		return &UsageError{Msg: err.Error()}
	})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		switch args := c.Args; {
		case c.HasSubCommands():
			c.SuggestionsMinimumDistance = 2 // cobra's default, set only on its own path
			if !c.Runnable() {
				// cobra shows a command that cannot run its help, exit 0,
				// before looking at its arguments.
				c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
			}
			c.Args = func(cmd *cobra.Command, a []string) error {
				if len(a) > 0 {
					return unknownCommand(cmd, a[0])
				}
				return nil
			}
		case args != nil:
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					var ue *UsageError
					if errors.As(err, &ue) {
						return err
					}
					return &UsageError{Msg: err.Error()}
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(c)
}

// unknownCommand is arg given to cmd, which only has subcommands, with
// the nearest of cobra's suggestions (a prefix, or at most 2 edits away).
func unknownCommand(cmd *cobra.Command, arg string) error {
	msg := fmt.Sprintf("unknown command %q for %q", arg, cmd.CommandPath())
	// Of cobra's suggestions, the nearest: "bsh" is bash, not also fish.
	var best []string
	bestD := 0
	for _, c := range cmd.SuggestionsFor(arg) {
		switch d := levenshtein.ComputeDistance(arg, c); {
		case len(best) == 0 || d < bestD:
			best, bestD = []string{c}, d
		case d == bestD:
			best = append(best, c)
		}
	}
	if len(best) > 0 {
		msg += "; did you mean " + strings.Join(best, " or ") + "?"
	}
	return &UsageError{Msg: msg}
}

// suggestFlag is the flag of cmd (its own or inherited) closest to name,
// at most 2 edits away (cobra's distance for commands), or "".
func suggestFlag(cmd *cobra.Command, name string) string {
	best, bestD := "", 3
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden {
			return
		}
		if d := levenshtein.ComputeDistance(name, fl.Name); d < bestD {
			best, bestD = fl.Name, d
		}
	})
	return best
}

// checkFlagRules runs cobra's required-flag and flag-group checks ahead of
// cobra (which would return them as plain errors) and types what they find
// as bad usage.
func checkFlagRules(cmd *cobra.Command) error {
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return &UsageError{Msg: err.Error()}
	}
	if err := cmd.ValidateFlagGroups(); err != nil {
		return &UsageError{Msg: err.Error()}
	}
	return nil
}

// spacesRegionRE: a Spaces region slug, or an S3 gateway's (us-east-1).
var spacesRegionRE = regexp.MustCompile(`^[a-z][a-z0-9-]{1,30}[a-z0-9]$`)

// NewCmdRoot builds the whole command tree.
func NewCmdRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:           "dynia",
		Short:         "Run a stateless app on DigitalOcean: one droplet today, HA tomorrow",
		Long:          "dynia runs a stateless Docker app on DigitalOcean behind one Reserved IP that never changes,\nwith HAProxy, keepalived and health checks, growing from one droplet to many without SSH.",
		SilenceUsage:  true,
		SilenceErrors: true,
		// With RunE the root's arguments reach its Args (set by
		// typeUsageErrors) instead of cobra's untyped "unknown command".
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		// --version prints what `dynia version` prints.
		Version: Version + " (" + Commit + ")",
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFlagRules(cmd); err != nil {
				return err
			}
			switch f.Global.Output {
			case "text", "json":
			default:
				return usagef("--output %q: must be text or json", f.Global.Output)
			}
			if v := f.Global.SpacesEndpoint; v != "" {
				if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" && u.Path != "/" {
					return usagef("--spaces-endpoint %q: want a URL like https://sgp1.digitaloceanspaces.com", v)
				}
			}
			if v := f.Global.SpacesRegion; v != "" && !spacesRegionRE.MatchString(v) {
				return usagef("--spaces-region %q: want a region like sgp1", v)
			}
			// Every --name is a cluster's, and every command on a cluster
			// reads its state with the state key: a key file others may
			// read is bad input, refused before the bucket or the API.
			if fl := cmd.Flags().Lookup("name"); fl != nil && fl.Changed {
				return f.checkStateKeyFile(fl.Value.String())
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&f.Global.Output, "output", "o", "text", "output format: text or json")
	pf.StringVar(&f.Global.State, "state", "", "state location: s3://bucket/prefix or file://DIR (env DYNIA_STATE)")
	pf.StringVar(&f.Global.Context, "context", "", "config context to use (default: the current one)")
	pf.StringVar(&f.Global.ConfigPath, "config", "", "config file (default ~/.config/dynia/config.yaml)")
	pf.StringVar(&f.Global.SpacesEndpoint, "spaces-endpoint", "", "S3 endpoint of the state bucket, e.g. https://sgp1.digitaloceanspaces.com (env SPACES_ENDPOINT)")
	pf.StringVar(&f.Global.SpacesRegion, "spaces-region", "", "region of the state bucket, e.g. sgp1 (env SPACES_REGION; with no endpoint, https://<region>.digitaloceanspaces.com)")
	pf.BoolVar(&f.Global.AllowUnsafeWrites, "allow-unsafe-writes", false, "write even when the store ignores conditional writes (unsafe with concurrent writers)")

	root.SetVersionTemplate("dynia {{.Version}}\n")
	root.AddCommand(NewCmdVersion(f))
	root.AddCommand(NewCmdNode(f))
	root.AddCommand(NewCmdCluster(f))
	root.AddCommand(NewCmdApp(f))
	root.AddCommand(NewCmdTLS(f))
	root.AddCommand(NewCmdDNS(f))
	root.AddCommand(NewCmdSandbox(f))
	root.AddCommand(NewCmdState(f))
	root.AddCommand(NewCmdAuth(f))
	root.AddCommand(NewCmdContext(f))
	registerCompletions(root, f)
	typeUsageErrors(root)
	return root
}

// NewCmdVersion prints the version.
func NewCmdVersion(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the dynia version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.Global.Output == "json" {
				return writeJSON(f.IO.Out, map[string]string{"version": Version, "commit": Commit})
			}
			fmt.Fprintf(f.IO.Out, "dynia %s (%s)\n", Version, Commit)
			return nil
		},
	}
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
