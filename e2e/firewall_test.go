package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSandboxUpFirewallsFlag: a bad --firewalls is bad input (exit 2, one
// line naming the flag and the value, nothing written, no root needed);
// `--firewalls enforce` reaches the serve process (its status says so).
// What enforcement does is internal/sandbox's TestFirewallEnforcement.
func TestSandboxUpFirewallsFlag(t *testing.T) {
	dir := t.TempDir()
	bad := &sandboxEnv{t: t, dir: filepath.Join(dir, "sandbox"), config: filepath.Join(dir, "config.yaml")}
	r := bad.run("sandbox", "up", "--firewalls", "on")
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], `--firewalls "on"`) {
		t.Errorf("sandbox up --firewalls on: exit %d, stderr %q; want exit 2 and one line naming the flag and value", r.code, r.stderr)
	}
	if _, err := os.Stat(bad.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox dir written on bad input: %v", err)
	}

	e := upSandbox(t, "--firewalls", "enforce")
	st := e.mustRun("sandbox", "status", "-o", "json")
	if !strings.Contains(st.stdout, `"firewalls": "enforce"`) {
		t.Errorf("sandbox status after up --firewalls enforce:\n%s", st.stdout)
	}
}
