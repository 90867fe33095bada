package sandbox

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/nodeconfig"
)

func TestParseRuntime(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "docker", "docker": "docker", "process": "process"} {
		if got, err := ParseRuntime(in); err != nil || got != want {
			t.Errorf("ParseRuntime(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"podman", "Docker", " docker"} {
		if _, err := ParseRuntime(bad); err == nil || err.Error() != "must be docker or process" {
			t.Errorf("ParseRuntime(%q) = %v, want an error", bad, err)
		}
	}
}

func TestDockerBip(t *testing.T) {
	t.Parallel()
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name  string
		avoid []netip.Prefix
		want  string
	}{
		{"sandbox VPC and public range", []netip.Prefix{pfx("10.10.0.0/24"), pfx("198.51.100.0/24")}, ""},
		{"no networks", nil, ""},
		{"a VPC in 172.17/16", []netip.Prefix{pfx("172.17.5.0/24")}, "172.31.255.1/24"},
		{"a VPC over all of 172.16/12", []netip.Prefix{pfx("172.16.0.0/12")}, "192.168.255.1/24"},
		{"everything taken", []netip.Prefix{pfx("172.16.0.0/12"), pfx("192.168.0.0/16")}, "192.168.255.1/24"},
		{"a droplet address given with its prefix", []netip.Prefix{pfx("172.17.0.9/16")}, "172.31.255.1/24"},
	} {
		if got := dockerBip(tc.avoid...); got != tc.want {
			t.Errorf("%s: dockerBip = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCheckDir(t *testing.T) {
	t.Parallel()
	if err := CheckDir(DefaultDir, RuntimeDocker); err != nil {
		t.Errorf("the default dir: %v", err)
	}
	long := "/tmp/" + strings.Repeat("x", 60)
	if err := CheckDir(long, RuntimeProcess); err != nil {
		t.Errorf("a long dir with the process runtime (no Docker sockets): %v", err)
	}
	err := CheckDir(long, RuntimeDocker)
	if err == nil || !strings.Contains(err.Error(), "<dir>/droplets/9999999999/docker/") || !strings.Contains(err.Error(), "at most 107") {
		t.Errorf("CheckDir(%s) = %v", long, err)
	}
}

// TestRewriteRuntime: what pull.json says about the app runtime, per
// sandbox runtime.
func TestRewriteRuntime(t *testing.T) {
	t.Parallel()
	p, err := newPlan("dynia", DefaultPublicRange)
	if err != nil {
		t.Fatal(err)
	}
	ddir := "/var/lib/dynia/sandbox/droplets/3164444"
	for _, tc := range []struct {
		runtime string
		want    nodeconfig.Config
	}{
		{RuntimeDocker, nodeconfig.Config{Runtime: "docker", DockerHost: "unix:///var/lib/dynia/sandbox/droplets/3164444/docker/docker.sock"}},
		{RuntimeProcess, nodeconfig.Config{Runtime: "process", AppCommand: []string{"/usr/local/bin/dynia", "sandbox", "demo-app"}}},
	} {
		b := cloudBooter{plan: p, binary: "/usr/local/bin/dynia", runtime: tc.runtime}
		// Whatever the CLI wrote is replaced: the sandbox is the image.
		c := &nodeconfig.Config{Cluster: "demo", NodeID: "misty-owl", StateURL: "s3://b/p",
			Runtime: "other", DockerHost: "tcp://1.2.3.4:2375", AppCommand: []string{"/bin/false"}}
		b.rewrite(c, ddir)
		got := nodeconfig.Config{Runtime: c.Runtime, DockerHost: c.DockerHost, AppCommand: c.AppCommand}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s runtime (-want +got):\n%s", tc.runtime, diff)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s runtime: the rewritten config does not validate: %v", tc.runtime, err)
		}
		// The cluster key, like every file cloud-init wrote, is under the
		// droplet's root, never the machine's /etc.
		c = &nodeconfig.Config{ClusterKeyFile: "/etc/dynia/cluster.key"}
		b.rewrite(c, ddir)
		if c.ClusterKeyFile != ddir+"/root/etc/dynia/cluster.key" {
			t.Errorf("cluster_key_file rewritten to %q", c.ClusterKeyFile)
		}
	}
}

// TestDropletEngine: a droplet's dockerd gets docs/image.md's options, the
// sandbox registry as insecure and a cgroup parent named after its
// namespace.
func TestDropletEngine(t *testing.T) {
	t.Parallel()
	e := dropletEngine("/s/droplets/7", "dynia-d7", "198.51.100.1:5000", netip.MustParsePrefix("10.10.0.2/24"))
	c := e.Config
	if e.Dir != "/s/droplets/7/docker" || e.Socket() != "/s/droplets/7/docker/docker.sock" {
		t.Errorf("engine dir %s socket %s", e.Dir, e.Socket())
	}
	if !cmp.Equal(c.InsecureRegistries, []string{"198.51.100.1:5000"}) || c.CgroupParent != "/dynia-d7-docker" || c.Bip != "" {
		t.Errorf("insecure %v cgroup parent %q bip %q", c.InsecureRegistries, c.CgroupParent, c.Bip)
	}
	if c.UserlandProxy == nil || *c.UserlandProxy || !c.LiveRestore || c.MaxConcurrentDownloads != 1 || c.LogDriver != "local" {
		t.Errorf("not docs/image.md's daemon options: %+v", c)
	}
	procs := dockerProcs(e, "/s/droplets/7")
	if len(procs) != 2 || procs[0].Name != "containerd" || procs[1].Name != "dockerd" || procs[1].After == nil ||
		!procs[0].EnterNet || !procs[1].EnterNet || procs[1].PidPath != "/s/droplets/7/pids/dockerd.pid" {
		t.Errorf("docker processes: %+v", procs)
	}
}
