package dockerd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLayout(t *testing.T) {
	t.Parallel()
	e := Engine{Dir: "/x/d", NetNS: "ns1", Config: Config{InsecureRegistries: []string{"198.51.100.1:5000"}}, Args: []string{"--debug"}}
	if got, want := e.DockerdCommand(), []string{
		"nsenter", "--net=/run/netns/ns1", "--", "dockerd",
		"--config-file=/x/d/daemon.json", "--data-root=/x/d/data", "--exec-root=/x/d/exec",
		"--host=unix:///x/d/docker.sock", "--pidfile=/x/d/docker.pid",
		"--containerd=/x/d/containerd.sock", "--containerd-namespace=moby", "--debug",
	}; !cmp.Equal(got, want) {
		t.Errorf("DockerdCommand (-want +got):\n%s", cmp.Diff(want, got))
	}
	if got, want := e.ContainerdCommand(), []string{"nsenter", "--net=/run/netns/ns1", "--", "containerd", "--config", "/x/d/containerd.toml"}; !cmp.Equal(got, want) {
		t.Errorf("ContainerdCommand (-want +got):\n%s", cmp.Diff(want, got))
	}
	// Without a namespace: the caller's, no nsenter.
	if got := (Engine{Dir: "/x/d"}).ContainerdCommand(); got[0] != "containerd" {
		t.Errorf("ContainerdCommand without a namespace: %q", got)
	}
	// Every containerd path is under Dir, the CRI plugin is off.
	toml := e.ContainerdConfig()
	for _, want := range []string{`root = "/x/d/containerd/root"`, `state = "/x/d/containerd/state"`, `address = "/x/d/containerd.sock"`,
		`address = "/x/d/containerd.sock.ttrpc"`, `path = "/x/d/containerd/opt"`, `disabled_plugins = ["io.containerd.grpc.v1.cri"]`} {
		if !strings.Contains(toml, want) {
			t.Errorf("containerd.toml lacks %s:\n%s", want, toml)
		}
	}
	// What a reboot clears is all under Dir.
	for _, p := range append(e.RunPaths(), e.Sockets()...) {
		if !strings.HasPrefix(p, "/x/d/") {
			t.Errorf("%s is not under the engine's directory", p)
		}
	}
	if !slices.Contains(e.RunPaths(), "/x/d/exec") || !slices.Contains(e.RunPaths(), "/x/d/containerd/state") || slices.Contains(e.RunPaths(), "/x/d/data") {
		t.Errorf("RunPaths %q: want exec-root and containerd's state, never the data-root", e.RunPaths())
	}
	if s := e.ShimSocket("abc"); !strings.HasPrefix(s, "/run/containerd/s/") || len(filepath.Base(s)) != 64 || s == (Engine{Dir: "/y"}).ShimSocket("abc") {
		t.Errorf("ShimSocket = %s: want /run/containerd/s/<64 hex>, distinct per containerd", s)
	}
}

func TestDaemonJSON(t *testing.T) {
	t.Parallel()
	cfg := NodeImageConfig()
	cfg.InsecureRegistries = []string{"198.51.100.1:5000"}
	cfg.CgroupParent = "/dynia-d1-docker"
	b, err := Engine{Dir: "/x/d", Config: cfg}.DaemonJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	// dockerd 20.10's daemon.json keys; docs/image.md's proposal.
	want := map[string]any{
		"insecure-registries":      []any{"198.51.100.1:5000"},
		"cgroup-parent":            "/dynia-d1-docker",
		"log-driver":               "local",
		"log-opts":                 map[string]any{"max-size": "10m", "max-file": "3"},
		"live-restore":             true,
		"userland-proxy":           false,
		"max-concurrent-downloads": float64(1),
		"max-concurrent-uploads":   float64(1),
		"deprecated-key-path":      "/x/d/key.json",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("daemon.json (-want +got):\n%s", diff)
	}
	// The zero Config leaves dockerd's defaults alone.
	b, _ = Engine{Dir: "/x/d"}.DaemonJSON()
	if strings.TrimSpace(string(b)) != `{
  "deprecated-key-path": "/x/d/key.json"
}` {
		t.Errorf("daemon.json of the zero Config:\n%s", b)
	}
}

func TestCheckSocketPaths(t *testing.T) {
	t.Parallel()
	short := Engine{Dir: "/var/lib/dynia/sandbox/droplets/3164444/docker"}
	if err := short.CheckSocketPaths(); err != nil {
		t.Errorf("default sandbox dir: %v", err)
	}
	// The longest socket is libnetwork's: exec/libnetwork/<12 hex>.sock.
	dir := "/" + strings.Repeat("d", MaxSocketPath-len("/exec/libnetwork/000000000000.sock")-1)
	if err := (Engine{Dir: dir}).CheckSocketPaths(); err != nil {
		t.Errorf("a dir that just fits: %v", err)
	}
	err := Engine{Dir: dir + "x"}.CheckSocketPaths()
	if err == nil || !strings.Contains(err.Error(), "libnetwork") || !strings.Contains(err.Error(), "108 bytes") {
		t.Errorf("a dir one byte too long: %v", err)
	}
}

// TestCgroups runs against a fake /sys/fs/cgroup: v1 hierarchies (one a
// link, as cpu → cpu,cpuacct), v2 at the root, the parent's sub-cgroups.
func TestCgroups(t *testing.T) {
	root := t.TempDir()
	old := cgroupRoot
	cgroupRoot = root
	t.Cleanup(func() { cgroupRoot = old })
	mk := func(rel, procs string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, rel, "cgroup.procs"), []byte(procs), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("cpu,cpuacct/p-docker", "")
	mk("cpu,cpuacct/p-docker/c1", "101\n102\n")
	if err := os.Symlink("cpu,cpuacct", filepath.Join(root, "cpu")); err != nil {
		t.Fatal(err)
	}
	mk("memory/p-docker/c1", "102\n101\n")
	mk("memory/p-docker/c2", "201\n")
	mk("p-docker/c3", "301\n") // v2
	mk("memory/other/c9", "999\n")
	if got, want := CgroupProcs("/p-docker"), []int{101, 102, 201, 301}; !cmp.Equal(got, want) {
		t.Errorf("CgroupProcs = %v, want %v", got, want)
	}
	if got := CgroupProcs("/"); got != nil {
		t.Errorf("CgroupProcs of the root cgroup = %v, want none: never everything", got)
	}
	// A fake cgroupfs has files in its dirs; rmdir fails on them, naming
	// the cgroup (on the real one a cgroup's files go with it).
	err := RemoveCgroups("/p-docker")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "memory/p-docker/c2")) {
		t.Errorf("RemoveCgroups on non-empty dirs: %v", err)
	}
	for _, d := range []string{"memory/p-docker/c2", "memory/p-docker/c1", "cpu,cpuacct/p-docker/c1", "p-docker/c3"} {
		_ = os.Remove(filepath.Join(root, d, "cgroup.procs"))
	}
	for _, d := range []string{"memory/p-docker", "cpu,cpuacct/p-docker", "p-docker"} {
		_ = os.Remove(filepath.Join(root, d, "cgroup.procs"))
	}
	if err := RemoveCgroups("/p-docker"); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(root, "*", "p-docker"))
	if _, err := os.Stat(filepath.Join(root, "p-docker")); err == nil || len(left) > 0 {
		t.Errorf("left after RemoveCgroups: %v", left)
	}
	if _, err := os.Stat(filepath.Join(root, "memory/other/c9")); err != nil {
		t.Errorf("another cgroup was removed: %v", err)
	}
}

func TestUnescapeMount(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{`/a\040b`: "/a b", "/plain": "/plain", `/t\011ab\134`: "/t\tab\\"} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
