package cli

import (
	"io"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestTypoSuggestions: a mistyped command or flag is bad usage (exit 2,
// one line) that names it and suggests the nearest, at every level of the
// tree, even when flags follow the mistyped command.
func TestTypoSuggestions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string // the whole stderr line
	}{
		{[]string{"lst"}, `error: unknown command "lst" for "dynia"; did you mean tls?`},
		{[]string{"nod", "list"}, `error: unknown command "nod" for "dynia"; did you mean node?`},
		{[]string{"node", "lst"}, `error: unknown command "lst" for "dynia node"; did you mean list?`},
		{[]string{"node", "lst", "--name", "myapp"}, `error: unknown command "lst" for "dynia node"; did you mean list?`},
		{[]string{"-o", "json", "app", "stat", "--name", "myapp"}, `{"error":"unknown command \"stat\" for \"dynia app\"; did you mean status?","exit_code":2,"retryable":false}`},
		{[]string{"node", "zzzzzz"}, `error: unknown command "zzzzzz" for "dynia node"`},
		{[]string{"context", "lst"}, `error: unknown command "lst" for "dynia context"; did you mean list?`},
		{[]string{"completion", "bsh"}, `error: unknown command "bsh" for "dynia completion"; did you mean bash or zsh?`},
		{[]string{"node", "list", "--nme", "myapp"}, `error: unknown flag: --nme; did you mean --name?`},
		{[]string{"node", "create-ha", "--dry-rn"}, `error: unknown flag: --dry-rn; did you mean --dry-run?`},
		{[]string{"node", "list", "--zzzzzz"}, `error: unknown flag: --zzzzzz`},
		{[]string{"node", "list", "extra"}, `error: unknown command "extra" for "dynia node list"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runLocal(t, tc.args...)
			if r.code != ExitUsage {
				t.Errorf("exit %d, want %d", r.code, ExitUsage)
			}
			if got := strings.TrimSuffix(r.stderr, "\n"); got != tc.want {
				t.Errorf("stderr\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestVersionFlag: `dynia --version` prints what `dynia version` prints.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	want := "dynia " + Version + " (" + Commit + ")\n"
	for _, args := range [][]string{{"--version"}, {"version"}} {
		r := runLocal(t, args...)
		if r.code != ExitOK || r.stdout != want || r.stderr != "" {
			t.Errorf("dynia %q: exit %d, stdout %q, stderr %q; want 0, %q, nothing", args, r.code, r.stdout, r.stderr, want)
		}
	}
}

// TestHelpBoolFlags: help shows a boolean flag as `--dry-run`, the way it
// is used, not pflag 1.1's `--dry-run[=true|false]`.
func TestHelpBoolFlags(t *testing.T) {
	t.Parallel()
	r := runLocal(t, "node", "create-ha", "--help")
	if r.code != ExitOK {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "[=") {
		t.Errorf("help shows a flag's optional value:\n%s", r.stdout)
	}
	for _, want := range []string{
		"      --dry-run                ",
		"  -h, --help                   ",
		"      --no-wait                ",
	} {
		found := false
		for _, line := range strings.Split(r.stdout, "\n") {
			if strings.HasPrefix(line, strings.TrimRight(want, " ")+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("help has no line starting %q:\n%s", strings.TrimRight(want, " "), r.stdout)
		}
	}
}

// TestHelpFlagValueNames: pflag takes a `backquoted` word in a flag's usage
// as the name of its value, so help prints `--force dynia cluster destroy`
// for a boolean. No boolean flag of any command has a value name, and a
// value name is one word.
func TestHelpFlagValueNames(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(fl *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(fl)
			if fl.Value.Type() == "bool" && name != "" {
				t.Errorf("%s --%s: help shows a value %q for a boolean flag", c.CommandPath(), fl.Name, name)
			}
			if strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s: value name %q is more than one word", c.CommandPath(), fl.Name, name)
			}
		}
		// Unparsed, Flags() holds the command's own; the persistent ones
		// (root's, sandbox's --dir) are visited where they are defined.
		c.Flags().VisitAll(check)
		c.PersistentFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewCmdRoot(NewFactory(&IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard})))
}
