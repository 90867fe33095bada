// Package extcmd runs an external program (ip, nft, iptables, haproxy -c,
// keepalived -t, go build, …) and makes its failure one error that names
// the command and ends with what it printed: "external command failed, with
// its output" in one place.
package extcmd

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// The tail of a command's output an error message shows: a tool prints its
// verdict last (haproxy -c, keepalived -t, nft), and a message stays one
// line.
const (
	tailLines = 8
	tailBytes = 500
)

// Error is an external command that failed. Output is all it printed on the
// streams the caller captured (stderr for Run, both for Combined), for
// errors.As and a match on a known message; Error() shows only its tail.
type Error struct {
	Args   []string // argv, the program first
	Err    error    // *exec.ExitError, a start failure (exec.ErrNotFound) or the context's error
	Output string
}

// Error is "ARGV: ERR" followed by ": OUTPUT" when the command printed
// anything: OUTPUT is its last 8 lines joined by " | ", at most 500 bytes
// (an ellipsis where it was cut).
func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	if tail := Tail(e.Output); tail != "" {
		msg += ": " + tail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Tail is the end of a command's output as one line: the last 8 non-empty
// trimmed lines joined by " | ", at most 500 bytes ("…" first where cut).
func Tail(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	s := strings.Join(lines, " | ")
	if len(s) > tailBytes {
		cut := len(s) - tailBytes
		for cut < len(s) && s[cut]&0xC0 == 0x80 { // not inside a UTF-8 sequence
			cut++
		}
		s = "…" + s[cut:]
	}
	return s
}

// private are the variables that address this process alone and that a
// child must not inherit: NOTIFY_SOCKET is where systemd takes
// dynia-pull's sd_notify messages (sd_notify(3)); a child that inherits it
// (haproxy, keepalived, an app) could speak for the unit, or send a
// READY=1 of its own. The unit's NotifyAccess=main makes systemd ignore
// them, but only because nothing else should send.
var private = []string{"NOTIFY_SOCKET"}

// Environ is what a child process should get: this process's environment
// without the private variables (NOTIFY_SOCKET), then extra (KEY=value
// each, in order; a later one wins as with exec.Cmd.Env). Every process
// dynia-pull and the sandbox start takes its environment from here, or
// runs through Run or Combined, which strip the same.
func Environ(extra ...string) []string {
	return append(withoutPrivate(os.Environ()), extra...)
}

// withoutPrivate is env without the private variables.
func withoutPrivate(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if key, _, _ := strings.Cut(kv, "="); !slices.Contains(private, key) {
			out = append(out, kv)
		}
	}
	return out
}

// Run runs cmd (made by exec.Command or exec.CommandContext, its Stdout and
// Stderr unset; its environment cmd.Env, or this process's, without the
// private variables) and returns its standard output; a failure is an *Error
// whose Output is the standard error. The output so far is returned with
// the error.
func Run(cmd *exec.Cmd) (string, error) {
	cmd.Env = withoutPrivate(cmd.Environ())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &Error{Args: cmd.Args, Err: err, Output: stderr.String()}
	}
	return stdout.String(), nil
}

// Combined runs cmd (its Stdout and Stderr unset; environment as for Run)
// and returns its standard
// output and standard error interleaved; a failure is an *Error whose Output
// is the same text, which is also returned.
func Combined(cmd *exec.Cmd) (string, error) {
	cmd.Env = withoutPrivate(cmd.Environ())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), &Error{Args: cmd.Args, Err: err, Output: out.String()}
	}
	return out.String(), nil
}
