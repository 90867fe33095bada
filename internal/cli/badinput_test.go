package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runLocal runs dynia in-process with an empty environment: nothing to
// reach, so a test of it needs neither network nor root.
func runLocal(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	f.Getenv = func(string) string { return "" }
	code := Run(context.Background(), f, args)
	return result{code, out.String(), errOut.String()}
}

// wantUsage checks exit 2 and one stderr line containing every want.
func wantUsage(t *testing.T, r result, want ...string) {
	t.Helper()
	if r.code != ExitUsage {
		t.Fatalf("exit %d, want 2\nstderr: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if len(lines) != 1 {
		t.Fatalf("stderr has %d lines, want one: %q", len(lines), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Errorf("stderr %q: want it to contain %q", lines[0], w)
		}
	}
}

// TestSandboxUpBadPublicRange: --public-range is checked before the root
// check and anything privileged, so this runs as any user.
func TestSandboxUpBadPublicRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ rng, want string }{
		{"not-a-cidr", "not a CIDR"},
		{"198.51.100.0", "not a CIDR"},
		{"", "not a CIDR"},
		{"203.0.113.0/24", "overlaps 203.0.113.0/24"},
		{"203.0.0.0/16", "overlaps 203.0.113.0/24"},
		{"127.1.0.0/24", "overlaps 127.0.0.0/8"},
		{"169.254.0.0/24", "overlaps 169.254.0.0/16"},
		{"198.51.100.5/24", "host bits set"},
		{"10.0.0.0/8", "between /16 and /26"},
		{"10.99.0.0/24", "overlaps 10.0.0.0/8"},
		{"192.168.7.0/24", "overlaps 192.168.0.0/16"},
		{"100.64.1.0/24", "overlaps 100.64.0.0/10"},
		{"10.0.0.0/28", "between /16 and /26"},
		{"2001:db8::/64", "IPv4"},
	} {
		t.Run(tc.rng, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := runLocal(t, "sandbox", "up", "--dir", dir, "--public-range", tc.rng)
			wantUsage(t, r, `--public-range "`+tc.rng+`"`, tc.want)
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("sandbox dir written on bad input: %v", ents)
			}
		})
	}
}

// TestBadConfig: a typo in the config file is bad input (exit 2), one line
// naming the file and the bad key or value, before the bucket or the API
// is touched.
func TestBadConfig(t *testing.T) {
	e := newEnv(t)
	good, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The env's config has a `contexts: test:` map with a state: key;
	// each case breaks one thing. (A number where a string belongs is not
	// one: sigs.k8s.io/yaml reads `spaces_region: 123` as "123".)
	for _, tc := range []struct {
		name, old, new string
		want           []string
	}{
		{"unknown context key", "    state:", "    stat:", []string{`contexts.test: unknown key "stat"`, "known: state,"}},
		{"unknown top-level key", "current-context:", "current-contxt:", []string{`unknown key "current-contxt"`}},
		{"bool typo", "    state:", "    path_style: maybe\n    state:", []string{`contexts.test.path_style: "maybe" is not true or false`}},
		{"list for a string", "    state:", "    spaces_region: [sgp1]\n    state:", []string{`contexts.test.spaces_region: ["sgp1"] is not a string`}},
		{"duplicate key", "    state:", "    api_url: http://127.0.0.1:1\n    state:", []string{`key "api_url" already set`}},
		{"not yaml", "contexts:", "contexts: [", []string{"config "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(good), tc.old) {
				t.Fatalf("config has no %q:\n%s", tc.old, good)
			}
			bad := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(bad, []byte(strings.Replace(string(good), tc.old, tc.new, 1)), 0o600); err != nil {
				t.Fatal(err)
			}
			calls, writes := len(e.sim.Calls()), e.writes.Load()
			// --config given twice: the later one (the broken file) wins.
			r := e.run("--config", bad, "node", "create-ha", "--name", "typo", "--region", "sgp1", "--size", "s-1vcpu-1gb")
			wantUsage(t, r, append([]string{"config " + bad + ":"}, tc.want...)...)
			if n := len(e.sim.Calls()) - calls; n != 0 {
				t.Errorf("%d API calls with a broken config", n)
			}
			if n := e.writes.Load() - writes; n != 0 {
				t.Errorf("%d bucket writes with a broken config", n)
			}
		})
	}
}

// TestSandboxFaultBadInput: a bad target, component or argument of
// `sandbox fault` is exit 2 with one line naming it, before the root check
// (so this runs as any user) and before the sandbox is touched.
func TestSandboxFaultBadInput(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"cut", "3164444", "s3"}, `TARGET "s3": want one of bucket, api, metadata, vrrp`},
		{[]string{"heal", "3164444", "peer"}, `TARGET "peer"`},
		{[]string{"kill", "3164444", "nginx"}, `COMPONENT "nginx": want one of pull, haproxy, keepalived`},
		{[]string{"bucket", "sideways"}, `bucket "sideways": want down or up`},
		{[]string{"cut", "3164444"}, "accepts 2 arg(s)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runLocal(t, append([]string{"sandbox", "--dir", dir, "fault"}, tc.args...)...)
			wantUsage(t, r, tc.want)
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("sandbox dir touched on bad input: %v", err)
			}
		})
	}
}
