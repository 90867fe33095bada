package cli

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// sshSources is the firewall's 22/tcp sources in the simulator.
func (e *testEnv) sshSources(name string) []string {
	e.t.Helper()
	for _, fw := range e.sim.Firewalls() {
		if fw.Name != resourceName(name) {
			continue
		}
		for _, r := range fw.InboundRules {
			if r.Protocol == "tcp" && r.Ports == "22" && r.Sources != nil {
				return slices.Sorted(slices.Values(r.Sources.Addresses))
			}
		}
		return nil
	}
	e.t.Fatalf("no firewall %s", resourceName(name))
	return nil
}

// TestAdminCIDRsAreKept: the SSH sources live in the state, so a re-run of
// create-ha without --admin-cidr and a repair that recreates the firewall
// keep the SSH rule; `cluster update` changes it.
func TestAdminCIDRsAreKept(t *testing.T) {
	e := newEnv(t)
	defer e.fakeNodes("ssh")()
	e.mustRun("node", "create-ha", "--name", "ssh", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--admin-cidr", "192.0.2.7/32")
	want := []string{"192.0.2.7/32"}
	if got := e.sshSources("ssh"); !slices.Equal(got, want) {
		t.Fatalf("SSH sources after create-ha: %v, want %v", got, want)
	}
	e.mustRun("node", "create-ha", "--name", "ssh", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	if got := e.sshSources("ssh"); !slices.Equal(got, want) {
		t.Fatalf("SSH sources after a re-run without --admin-cidr: %v, want %v", got, want)
	}
	// The firewall deleted behind dynia's back: repair recreates it whole.
	cl := e.cloud()
	if err := cl.DeleteFirewall(t.Context(), e.state("ssh").FirewallID); err != nil {
		t.Fatal(err)
	}
	e.mustRun("node", "repair-ha", "--name", "ssh", "--force")
	if got := e.sshSources("ssh"); !slices.Equal(got, want) {
		t.Fatalf("SSH sources after repair-ha --force: %v, want %v", got, want)
	}
	e.mustRun("cluster", "update", "--name", "ssh", "--admin-cidr", "198.51.100.0/28", "--admin-cidr", "192.0.2.9/32")
	want = []string{"192.0.2.9/32", "198.51.100.0/28"}
	if got := e.sshSources("ssh"); !slices.Equal(got, want) {
		t.Fatalf("SSH sources after cluster update: %v, want %v", got, want)
	}
	if got := e.state("ssh").AdminCIDRs; len(got) != 2 {
		t.Fatalf("state admin_cidrs %v", got)
	}
	e.mustRun("cluster", "update", "--name", "ssh", "--no-admin-cidr")
	if got := e.sshSources("ssh"); got != nil {
		t.Fatalf("SSH sources after --no-admin-cidr: %v, want none", got)
	}
	wantUsage(t, e.run("cluster", "update", "--name", "ssh", "--admin-cidr", "192.0.2.7/24"), `--admin-cidr "192.0.2.7/24"`, "host bits")
	wantUsage(t, e.run("cluster", "update", "--name", "ssh"), "--admin-cidr", "nothing to update")
}

// TestNodesGetTheCLIsSpacesEndpoint: an endpoint and region given by flag
// or environment (not in the context) reach every droplet's pull.json, so
// nodes read the state where the CLI wrote it (they used to fall back to
// nyc3 and never report).
func TestNodesGetTheCLIsSpacesEndpoint(t *testing.T) {
	e := newS3Env(t)
	defer e.fakeNodes("ep")()
	good, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	// The context without its endpoint and region.
	var kept []string
	for _, l := range strings.Split(string(good), "\n") {
		if !strings.Contains(l, "spaces_endpoint:") && !strings.Contains(l, "spaces_region:") {
			kept = append(kept, l)
		}
	}
	if err := os.WriteFile(e.cfg, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	e.env["SPACES_REGION"] = e.s3.Region
	e.mustRun("--spaces-endpoint", e.s3.Endpoint, "node", "create-ha", "--name", "ep", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	var found int
	for _, d := range e.sim.Droplets() {
		if !slices.Contains(d.Tags, cloud.ClusterTag("ep")) {
			continue
		}
		cc, err := cloudinit.Parse([]byte(d.UserData))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range cc.WriteFiles {
			if f.Path != cloudinit.PullConfigPath {
				continue
			}
			cfg, err := nodeconfig.Decode([]byte(f.Content))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Endpoint != e.s3.Endpoint || cfg.Region != e.s3.Region {
				t.Errorf("droplet %d pull.json endpoint %q region %q, want %q %q", d.ID, cfg.Endpoint, cfg.Region, e.s3.Endpoint, e.s3.Region)
			}
			found++
		}
	}
	if found != 1 {
		t.Fatalf("%d pull.json files found, want 1", found)
	}
	wantUsage(t, e.run("--spaces-endpoint", "sgp1.digitaloceanspaces.com", "node", "list", "--name", "ep"), `--spaces-endpoint "sgp1.digitaloceanspaces.com"`)
	wantUsage(t, e.run("--spaces-region", "SGP 1", "node", "list", "--name", "ep"), `--spaces-region "SGP 1"`)
}

// TestFileStateWithRealDORefused: droplets cannot read a local directory,
// so a file:// state with DigitalOcean's own API is bad input, before any
// API call or write.
func TestFileStateWithRealDORefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	for _, args := range [][]string{
		{"node", "create-ha", "--name", "local", "--region", "sgp1", "--size", "s-1vcpu-1gb"},
		{"node", "add", "--name", "local"},
	} {
		r := runLocal(t, append([]string{"--config", cfg, "--state", "file://" + dir + "/state"}, args...)...)
		wantUsage(t, r, `--state "file://`+dir+`/state"`, "cannot read a local directory")
		if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
			t.Errorf("%v wrote the state directory", args)
		}
	}
}

func TestLineTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		ok   bool
	}{
		{`{"time":"2026-11-29T10:00:00.123Z","level":"INFO","msg":"x"}`, true},
		{`2026-11-29T10:00:00Z sandbox cloud-init: write_files /etc/dynia/pull.json`, true},
		{`Sun Nov 29 10:00:00 2026: (dynia) Entering MASTER STATE`, true},
		{`[NOTICE]   (1234) : haproxy version is 2.6.12`, false},
	} {
		if _, ok := lineTime(tc.line); ok != tc.ok {
			t.Errorf("lineTime(%q) ok=%v, want %v", tc.line, ok, tc.ok)
		}
	}
}
