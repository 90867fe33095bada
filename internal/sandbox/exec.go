package sandbox

import (
	"context"
	"os/exec"

	"github.com/dynia/dynia/internal/extcmd"
)

// run executes a command and returns its stdout; a failure is an
// *extcmd.Error whose Output is the command's stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return extcmd.Run(exec.CommandContext(ctx, name, args...))
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
