package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
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
