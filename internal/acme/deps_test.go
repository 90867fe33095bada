package acme

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeps keeps what dynia-pull links through this package small: no CLI,
// simulator or sandbox, and none of lego's DNS-01 machinery (its DNS
// library costs dynia-pull 0.7 MB; see docs/tls.md).
func TestDeps(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, bad := range []string{
			"github.com/spf13/cobra", "github.com/miekg/dns", "github.com/cloudflare",
			"github.com/go-acme/lego/v5/challenge/resolver", "github.com/go-acme/lego/v5/challenge/dns01",
			"github.com/go-acme/lego/v5/providers", "github.com/go-acme/lego/v5/lego",
			"github.com/dynia/dynia/internal/dosim", "github.com/dynia/dynia/internal/sandbox",
			"github.com/dynia/dynia/internal/cli", "github.com/dynia/dynia/internal/cfsim",
		} {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("internal/acme links %s", dep)
			}
		}
	}
}
