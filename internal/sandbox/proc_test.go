package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestProcEnvironment: a process the sandbox starts (a droplet's
// dynia-pull, its app, versitygw) gets the caller's environment without
// NOTIFY_SOCKET, plus its own variables. Not parallel: it sets the
// process's environment.
func TestProcEnvironment(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("DYNIA_SANDBOX_ENV_KEPT", "kept")
	dir := t.TempDir()
	out := filepath.Join(dir, "env")
	cmd, err := startProc(procSpec{Name: "env", Path: "sh", Args: []string{"-c", `env > "$0"`, out},
		Env: []string{"SPEC_VAR=1"}, LogPath: filepath.Join(dir, "log"), PidPath: filepath.Join(dir, "pid")})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "NOTIFY_SOCKET=") }) {
		t.Errorf("the process inherited NOTIFY_SOCKET:\n%s", b)
	}
	for _, w := range []string{"DYNIA_SANDBOX_ENV_KEPT=kept", "SPEC_VAR=1"} {
		if !slices.Contains(lines, w) {
			t.Errorf("%s missing from its environment:\n%s", w, b)
		}
	}
}
