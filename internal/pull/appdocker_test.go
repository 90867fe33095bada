package pull

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/container"
)

// TestHealthFailure: only a container that crashed (its own exit, or its
// memory limit) or never got healthy fails its release for good; one
// SIGKILLed from outside, and dockerd not answering during the wait (it was
// restarted), are retried, their reasons kept.
func TestHealthFailure(t *testing.T) {
	t.Parallel()
	daemonGone := errors.New("Cannot connect to the Docker daemon at unix:///run/docker.sock. Is the docker daemon running?")
	for _, tc := range []struct {
		name string
		err  error
		want *appFailure
	}{
		{"crashed", &container.UnhealthyError{Container: "c", Reason: "exited with status 1", Exited: true, ExitCode: 1, Logs: []string{"boom"}},
			&appFailure{Reason: "exited with status 1", Logs: []string{"boom"}}},
		{"killed from outside", &container.UnhealthyError{Container: "c", Reason: "exited with status 137 and was restarted 1 times", Exited: true, ExitCode: 137},
			&appFailure{Reason: "exited with status 137 and was restarted 1 times", Retry: true}},
		{"killed by its memory limit", &container.UnhealthyError{Container: "c", Reason: "exited with status 137 and was restarted 1 times (killed by the memory limit)", Exited: true, ExitCode: 137, OOMKilled: true},
			&appFailure{Reason: "exited with status 137 and was restarted 1 times (killed by the memory limit)"}},
		{"never healthy", fmt.Errorf("start: %w", &container.UnhealthyError{Container: "c", Reason: "no 200 after 1m0s (last: 503 Service Unavailable)"}),
			&appFailure{Reason: "no 200 after 1m0s (last: 503 Service Unavailable)"}},
		{"dockerd gone", fmt.Errorf("wait for c to be healthy: inspect container 4514: %w", daemonGone),
			&appFailure{Reason: "wait for c to be healthy: inspect container 4514: " + daemonGone.Error(), Retry: true}},
		{"bad health path", fmt.Errorf("%w: health path \"healthz\": want an absolute path", container.ErrInvalidSpec),
			&appFailure{Reason: "invalid container spec: health path \"healthz\": want an absolute path"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, healthFailure(tc.err)); diff != "" {
				t.Errorf("healthFailure (-want +got):\n%s", diff)
			}
		})
	}
}
