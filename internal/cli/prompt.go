package cli

import (
	"bufio"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Destructive commands ask before they destroy: on a terminal they prompt,
// unless --yes; without one (a script, CI) --yes is required, and its
// absence is bad input before any read or write. The destructive commands
// are `node remove`, `cluster destroy`, `dns delete` and `state resign`
// (it signs what the bucket holds, unverified) (README.md,
// "Destructive commands"). --force never skips a prompt: where a command
// has one, it overrides the safety check its help names.

// addYesFlag puts --yes (-y) on cmd, and --confirm, its old name, hidden:
// scripts written for --confirm keep working.
func addYesFlag(cmd *cobra.Command, yes *bool) {
	cmd.Flags().BoolVarP(yes, "yes", "y", false, "do not ask for confirmation (required without a terminal)")
	cmd.Flags().BoolVar(yes, "confirm", false, "old name of --yes")
	_ = cmd.Flags().MarkHidden("confirm")
}

// confirmDestructive asks question ("Destroy …?") unless yes. Without a
// terminal it refuses, naming --yes and what (e.g. `destroy cluster
// "myapp"`); any answer but y/yes is bad input too: nothing was written.
func confirmDestructive(io *IOStreams, yes bool, what, question string) error {
	if yes {
		return nil
	}
	if !io.canPrompt() {
		return usagef("--yes: required to %s when not on a terminal (nothing changed)", what)
	}
	if !ask(io, question) {
		return usagef("--yes: not confirmed, so nothing changed (answer y to %s)", what)
	}
	return nil
}

// ask writes question [y/N] to stderr and reads one line of stdin: true
// for y or yes (any case).
func ask(io *IOStreams, question string) bool {
	fmt.Fprintf(io.ErrOut, "%s [y/N] ", question)
	line, _ := bufio.NewReader(io.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}
