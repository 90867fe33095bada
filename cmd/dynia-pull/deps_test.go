package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps dynia-pull small: it must not link cobra, the DO simulator
// or the sandbox.
func TestDeps(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{"github.com/spf13/cobra", "github.com/dynia/dynia/internal/dosim", "github.com/dynia/dynia/internal/sandbox", "github.com/dynia/dynia/internal/cli"} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("dynia-pull links %s", dep)
			}
		}
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	var out, errb strings.Builder
	if c := Main(t.Context(), nil, &out, &errb); c != exitUsage {
		t.Errorf("no args: %d", c)
	}
	if c := Main(t.Context(), []string{"bogus"}, &out, &errb); c != exitUsage {
		t.Errorf("unknown command: %d", c)
	}
	if c := Main(t.Context(), []string{"render", "--node", "a-b"}, &out, &errb); c != exitUsage {
		t.Errorf("render without --state: %d", c)
	}
	if c := Main(t.Context(), []string{"once", "--config", "/nonexistent/pull.json"}, &out, &errb); c != exitFailed {
		t.Errorf("once with a missing config: %d", c)
	}
	if c := Main(t.Context(), []string{"version"}, &out, &errb); c != exitOK || !strings.Contains(out.String(), "dynia-pull") {
		t.Errorf("version: %d %q", c, out.String())
	}
}
