// Package testutil holds helpers shared by the integration tests: how a test
// asks for a real program or privilege, and how it waits without sleeping.
//
// Integration tests skip when a prerequisite is missing, except when
// DYNIA_REQUIRE_INTEGRATION=1 (set by .ci/run): then a missing prerequisite
// fails the test, so CI can never pass by skipping.
package testutil

import (
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/poll"
)

// Required reports whether integration prerequisites are mandatory.
func Required() bool { return os.Getenv("DYNIA_REQUIRE_INTEGRATION") == "1" }

// missing skips or fails the test depending on Required.
func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("integration prerequisite missing (DYNIA_REQUIRE_INTEGRATION=1): "+format, args...)
	}
	t.Skipf("integration prerequisite missing: "+format, args...)
}

// Missing is a prerequisite the test found missing on its own (a device,
// a built binary): skipped outside CI, a failure with
// DYNIA_REQUIRE_INTEGRATION=1.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	missing(t, format, args...)
}

// Integration marks a test as an integration test: skipped under -short.
// With DYNIA_REQUIRE_INTEGRATION=1, -short is an error: CI must run them.
func Integration(t testing.TB) {
	t.Helper()
	if testing.Short() {
		if Required() {
			t.Fatal("DYNIA_REQUIRE_INTEGRATION=1 with -short: integration tests would not run")
		}
		t.Skip("integration test skipped under -short")
	}
}

// NeedBinary returns the path of a program the test needs on PATH (or in
// the extra directories given, e.g. $(go env GOPATH)/bin).
func NeedBinary(t testing.TB, name string) string {
	t.Helper()
	Integration(t)
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range binDirs() {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	missing(t, "%s not found on PATH (run `make deps`)", name)
	return ""
}

// NeedRoot requires uid 0 (network namespaces, iptables).
func NeedRoot(t testing.TB) {
	t.Helper()
	Integration(t)
	if os.Geteuid() != 0 {
		missing(t, "must run as root (network namespaces)")
	}
}

func binDirs() []string {
	var dirs []string
	if gb := os.Getenv("GOBIN"); gb != "" {
		dirs = append(dirs, gb)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, gp+"/bin")
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, home+"/go/bin")
	}
	return append(dirs, "/usr/local/bin", "/usr/sbin", "/sbin")
}

// WaitFor polls cond with backoff (10 ms doubling to 500 ms: internal/poll)
// until it returns nil or the timeout passes; then the test fails with
// cond's last error. Tests wait with this, never with a bare sleep.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := poll.Within(timeout, cond); err != nil {
		t.Fatalf("condition not met after %v: %v", timeout, err)
	}
}

// WaitClosed waits until done is closed (a goroutine under test has
// returned), failing the test with what after timeout.
func WaitClosed(t testing.TB, timeout time.Duration, done <-chan struct{}, what string) {
	t.Helper()
	WaitFor(t, timeout, func() error {
		select {
		case <-done:
			return nil
		default:
			return errors.New(what)
		}
	})
}
