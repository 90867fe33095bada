package deps

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/dynia/dynia/"

// Never in dynia-pull: the CLI and its framework, the simulators and the
// sandbox (RULES: dynia-pull must not link cobra, internal/dosim or the
// sandbox).
var notInPull = []string{
	"github.com/spf13/cobra", mod + "internal/cli",
	mod + "internal/dosim", mod + "internal/cfsim", mod + "internal/sandbox",
}

// Never in the CLI: dynia-pull's daemon and what only it needs (its
// metrics and file watching). The CLI reads node reports through
// internal/report.
var notInCLI = []string{
	mod + "internal/pull", "github.com/prometheus/client_golang", "github.com/fsnotify/fsnotify",
}

// TestDeps: go list -deps of each package holds none of its banned import
// paths (a path bans itself and everything under it).
func TestDeps(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pkg    string
		banned []string
		why    string
	}{
		{mod + "cmd/dynia-pull", notInPull, "dynia-pull stays small and runs nothing of the CLI's"},
		{mod + "internal/pull", notInPull, "dynia-pull's body"},
		{mod + "cmd/dynia", notInCLI, "the CLI links no daemon: report types live in internal/report"},
		{mod + "internal/cli", notInCLI, "the CLI links no daemon: report types live in internal/report"},
		{mod + "internal/ops", append([]string{"github.com/spf13/cobra", mod + "internal/cli"}, notInCLI...), "operations know no flags, output or exit codes, and no daemon"},
		{mod + "internal/report", append([]string{
			"github.com/docker", mod + "internal/render",
		}, append(notInCLI, notInPull...)...), "the report types are shared by the CLI and dynia-pull, and link neither"},
		{mod + "internal/acme", append([]string{
			"github.com/miekg/dns", "github.com/cloudflare",
			"github.com/go-acme/lego/v5/challenge/resolver", "github.com/go-acme/lego/v5/challenge/dns01",
			"github.com/go-acme/lego/v5/providers", "github.com/go-acme/lego/v5/lego",
		}, notInPull...), "none of lego's DNS-01 machinery: its DNS library costs dynia-pull 0.7 MB (docs/tls.md)"},
		{mod + "internal/cloud", append([]string{"github.com/getkin/kin-openapi"}, notInPull...), "dynia-pull links it onto every node; the OpenAPI checker is the simulator's"},
		{mod + "internal/metadata", []string{"github.com/"}, "the metadata client is the standard library only"},
	}
	for _, tc := range tests {
		t.Run(strings.TrimPrefix(tc.pkg, mod), func(t *testing.T) {
			t.Parallel()
			out, err := exec.Command("go", "list", "-deps", tc.pkg).Output()
			if err != nil {
				t.Fatalf("go list -deps %s: %v", tc.pkg, err)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 2 || deps[len(deps)-1] != tc.pkg {
				t.Fatalf("go list -deps %s: %q, want its dependencies, then itself", tc.pkg, deps)
			}
			for _, dep := range deps[:len(deps)-1] {
				for _, bad := range tc.banned {
					if dep == bad || strings.HasPrefix(dep, strings.TrimSuffix(bad, "/")+"/") {
						t.Errorf("%s links %s (%s)", tc.pkg, dep, tc.why)
					}
				}
			}
		})
	}
}
