package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// RunError is a failed external command with what it printed, so an error
// from `ip` says which command failed and why.
type RunError struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *RunError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		return fmt.Sprintf("%s: %v", strings.Join(e.Args, " "), e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", strings.Join(e.Args, " "), e.Err, msg)
}

func (e *RunError) Unwrap() error { return e.Err }

// run executes a command and returns its stdout; a failure is a *RunError.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &RunError{Args: append([]string{name}, args...), Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// ip runs `ip ARGS...`.
func ip(ctx context.Context, args ...string) error {
	_, err := run(ctx, "ip", args...)
	return err
}

// ipNS runs `ip -n NS ARGS...`: every namespaced command names its namespace,
// so the code works the same from the root namespace and from the router's.
func ipNS(ctx context.Context, ns string, args ...string) error {
	return ip(ctx, append([]string{"-n", ns}, args...)...)
}

// sysctlNS sets a sysctl inside a namespace.
func sysctlNS(ctx context.Context, ns, kv string) error {
	_, err := run(ctx, "ip", "netns", "exec", ns, "sysctl", "-qw", kv)
	return err
}
