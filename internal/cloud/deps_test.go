package cloud

import (
	"os/exec"
	"strings"
	"testing"
)

// dynia-pull links this package onto every node: it must not drag in the
// CLI framework or the simulator.
func TestDependencies(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go tool not on PATH: %v", err)
	}
	for pkg, banned := range map[string][]string{
		"github.com/dynia/dynia/internal/cloud":    {"github.com/spf13/cobra", "github.com/dynia/dynia/internal/dosim", "github.com/getkin/kin-openapi"},
		"github.com/dynia/dynia/internal/metadata": {"github.com/"},
	} {
		out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Skipf("go list unavailable: %v", err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range banned {
				if strings.HasPrefix(dep, b) && dep != pkg {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
