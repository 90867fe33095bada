package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// TestRetryableErrors: a failure because a service did not answer is
// printed with a note that re-running is the remedy (and "retryable":
// true under -o json); bad input, refusals and conflicts are not.
func TestRetryableErrors(t *testing.T) {
	t.Parallel()
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name string
		err  error
		want string // "" = not retryable
	}{
		{"bucket unreachable", fmt.Errorf("read state of x: %w", &bucket.Error{Op: "get", Store: "s3://b/p", Key: "k", Kind: bucket.ErrUnavailable, Err: timeout}), "state store did not answer"},
		{"bucket throttled", &bucket.Error{Op: "put", Store: "s3://b/p", Key: "k", Kind: bucket.ErrThrottled}, "state store did not answer"},
		{"DO 503", &cloud.APIError{Op: "create droplet x", StatusCode: 503}, "retryable"},
		{"DO 429", &cloud.APIError{Op: "list droplets", StatusCode: 429}, "retryable"},
		{"DO unreachable", fmt.Errorf("cloud: list droplets: %w", timeout), "retryable"},
		{"DO 422", &cloud.APIError{Op: "assign", StatusCode: 422, Message: "limit"}, ""},
		{"DO 401", &cloud.APIError{Op: "assign", StatusCode: 401}, ""},
		{"bucket access denied", &bucket.Error{Op: "get", Store: "s3://b/p", Key: "k", Kind: bucket.ErrAccessDenied}, ""},
		{"usage", usagef("--name %q: bad", "X"), ""},
		{"conflict", cluster.ErrConflict, ""},
		{"cancelled", fmt.Errorf("cloud: list droplets: %w", context.Canceled), ""},
		{"plain", errors.New("node x is active and no other node is ready"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := retryable(tc.err)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Errorf("retryable(%v) = %q, want %q", tc.err, got, tc.want)
			}
			var out bytes.Buffer
			f := NewFactory(&IOStreams{ErrOut: &out})
			f.Global.Output = "json"
			printError(f, tc.err)
			if json := strings.Contains(out.String(), `"retryable":true`); json != (tc.want != "") {
				t.Errorf("-o json error %s: retryable %v, want %v", out.String(), json, tc.want != "")
			}
		})
	}
}

// TestExitCodeNotByText: the exit code follows the error's type, never its
// text. A runtime error wrapping EINVAL (whose text is "invalid argument",
// like pflag's) is a failure (1); a flag or argument cobra refuses is bad
// usage (2).
func TestExitCodeNotByText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"runtime EINVAL", []string{"einval"}, ExitFailure},
		{"runtime required flag text", []string{"einval", "--text", `required flag(s) "x" not set`}, ExitFailure},
		{"bad flag value", []string{"einval", "--count", "x"}, ExitUsage},
		{"unknown flag", []string{"einval", "--nope"}, ExitUsage},
		{"flag needs an argument", []string{"einval", "--count"}, ExitUsage},
		{"unexpected argument", []string{"einval", "extra"}, ExitUsage},
		{"unknown command", []string{"nope"}, ExitUsage},
		{"missing required flag", []string{"needs"}, ExitUsage},
		{"flags exclusive", []string{"needs", "--a", "--b", "--c"}, ExitUsage},
		{"required flag given", []string{"needs", "--a"}, ExitOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
			f.Getenv = func(string) string { return "" }
			root := NewCmdRoot(f)
			var count int
			text := ""
			einval := &cobra.Command{Use: "einval", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error {
				if text != "" {
					return errors.New(text)
				}
				return fmt.Errorf("write /tmp/x: %w", syscall.EINVAL)
			}}
			einval.Flags().IntVar(&count, "count", 0, "a number")
			einval.Flags().StringVar(&text, "text", "", "the error's text")
			needs := &cobra.Command{Use: "needs", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return nil }}
			needs.Flags().Bool("a", false, "")
			needs.Flags().Bool("b", false, "")
			needs.Flags().Bool("c", false, "")
			_ = needs.MarkFlagRequired("a")
			needs.MarkFlagsMutuallyExclusive("b", "c")
			root.AddCommand(einval, needs)
			typeUsageErrors(root) // the test commands were added after NewCmdRoot typed the tree
			got := execute(context.Background(), f, root, tc.args)
			if got != tc.want {
				t.Errorf("dynia %q: exit %d, want %d (stderr %q)", tc.args, got, tc.want, errOut.String())
			}
			if tc.want != ExitOK && strings.Count(errOut.String(), "\n") != 1 {
				t.Errorf("dynia %q: stderr %q, want one line", tc.args, errOut.String())
			}
		})
	}
}

// TestExitCodeOfOperationInput: bad input an operation in internal/ops
// finds is exit 2 however it comes back (wrapped or not), like the CLI's
// own usage errors; it is not retryable.
func TestExitCodeOfOperationInput(t *testing.T) {
	t.Parallel()
	in := ops.Inputf("--region %q: not a region", "xx1")
	for _, err := range []error{in, fmt.Errorf("replace node: %w", in), &ops.StepError{Step: "region", Err: in}} {
		if got := exitCode(err); got != ExitUsage {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitUsage)
		}
		if r := retryable(err); r != "" {
			t.Errorf("retryable(%v) = %q, want none", err, r)
		}
	}
}
