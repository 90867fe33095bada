package cli

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestConfigInsecureRegistries: the list `sandbox up` writes into its
// context survives a save and a strict load, and a wrongly typed value is
// bad input naming the key and the value.
func TestConfigInsecureRegistries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	c, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	c.Contexts[SandboxContext] = &Context{State: "s3://dynia-sandbox/dynia", InsecureRegistries: []string{"198.51.100.1:5000"}}
	c.CurrentContext = SandboxContext
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	back, err := LoadConfig(path)
	if err != nil {
		t.Fatalf("load what Save wrote: %v", err)
	}
	if diff := cmp.Diff([]string{"198.51.100.1:5000"}, back.Contexts[SandboxContext].InsecureRegistries); diff != "" {
		t.Errorf("insecure_registries after a round trip (-want +got):\n%s", diff)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "insecure_registries:") {
		t.Errorf("the key is not insecure_registries:\n%s", b)
	}

	for _, tc := range []struct {
		name, value, want string
	}{
		{"a string", `"198.51.100.1:5000"`, `contexts.sandbox.insecure_registries: "198.51.100.1:5000" is not a list of strings`},
		{"a map", `{a: b}`, `contexts.sandbox.insecure_registries: {"a":"b"} is not a list of strings`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "config.yaml")
			text := "current-context: sandbox\ncontexts:\n  sandbox:\n    state: s3://b/p\n    insecure_registries: " + tc.value + "\n"
			if err := os.WriteFile(bad, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadConfig(bad)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("LoadConfig = %v, want a usage error", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tc.want)
			}
		})
	}
}
