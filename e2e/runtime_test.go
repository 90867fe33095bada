package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSandboxUpRuntimeFlag: a bad --runtime is bad input (exit 2, one line
// naming the flag and the value, nothing written, no root needed);
// `--runtime process` reaches the serve process (its status says so) and
// runs no Docker. What the docker runtime gives a droplet is
// internal/sandbox's TestSandboxDocker, and TestSandboxDownLeavesNothing.
func TestSandboxUpRuntimeFlag(t *testing.T) {
	dir := t.TempDir()
	bad := &sandboxEnv{t: t, dir: filepath.Join(dir, "sandbox"), config: filepath.Join(dir, "config.yaml")}
	r := bad.run("sandbox", "up", "--runtime", "podman")
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != 2 || len(lines) != 1 || !strings.Contains(lines[0], `--runtime "podman"`) {
		t.Errorf("sandbox up --runtime podman: exit %d, stderr %q; want exit 2 and one line naming the flag and value", r.code, r.stderr)
	}
	if _, err := os.Stat(bad.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox dir written on bad input: %v", err)
	}

	e := upSandbox(t, "--runtime", "process")
	if e.info.Runtime != "process" {
		t.Errorf("sandbox status runtime %q after up --runtime process", e.info.Runtime)
	}
	e.mustRun("node", "create-ha", "--name", "plain", "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "2m")
	d := e.refresh().Droplets[0]
	b, err := os.ReadFile(filepath.Join(e.dir, "droplets", strconv.Itoa(d.ID), "pull.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"runtime": "process"`) || !strings.Contains(string(b), `"app_command": [`) || strings.Contains(string(b), "docker_host") {
		t.Errorf("pull.json of a process-runtime droplet:\n%s", b)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "droplets", strconv.Itoa(d.ID), "docker")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a process-runtime droplet has a docker directory (%v)", err)
	}
}
