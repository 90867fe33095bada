// Package dockerd lays out and controls a private Docker Engine: Debian's
// dockerd (20.10) with a containerd (1.6) of its own, every path under one
// directory, both started inside a named network namespace with
// `nsenter --net`. The integration tests (internal/testutil.StartDockerd)
// and the sandbox's droplets (internal/sandbox) run their engines from it;
// neither ever uses or touches the machine's own Docker.
//
// Why a network namespace: dockerd sets `iptables -P FORWARD DROP` and adds
// its chains in the namespace it runs in; in the root namespace that would
// silently break bridged traffic between other namespaces. Why `nsenter
// --net` and not `ip netns exec`: the latter also remounts /sys in a private
// mount namespace, hiding the cgroup mounts dockerd needs, and the mounts
// dockerd makes must be visible to whoever cleans them up. Why a containerd
// of its own: without --containerd, dockerd 20.10 uses
// /run/containerd/containerd.sock when it exists (the system containerd,
// shared by everyone) and only otherwise starts one.
//
// The package only knows paths, configuration and the daemons' on-disk
// state; starting, supervising and killing the processes is the caller's
// business (the tests and the sandbox do it differently).
package dockerd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/fsutil"
)

// Binaries are the programs an Engine runs (dockerd and containerd
// directly, the rest through them), all from Debian's docker.io and
// util-linux.
var Binaries = []string{"dockerd", "containerd", "containerd-shim-runc-v2", "runc", "nsenter"}

// ContainerdNamespace is the containerd namespace dockerd keeps its
// containers in (dockerd's default, stated so paths under the state dir are
// known).
const ContainerdNamespace = "moby"

// MaxSocketPath is the longest path a unix socket may have: sun_path holds
// 108 bytes with the terminating NUL (unix(7)).
const MaxSocketPath = 107

// Engine is one private Docker Engine's layout and settings. Everything
// lives under Dir:
//
//	daemon.json            dockerd's --config-file (Config)
//	containerd.toml        containerd's --config
//	docker.sock            the Engine API (Host)
//	docker.pid             dockerd's pid file
//	containerd.sock(.ttrpc) containerd's sockets
//	key.json               dockerd's identity key (else /etc/docker/key.json)
//	data/                  dockerd's data-root (images, containers, volumes)
//	exec/                  dockerd's exec-root
//	containerd/root/       containerd's root (content, snapshots)
//	containerd/state/      containerd's state (task bundles, init.pid)
//
// On a real machine the pid file, the sockets, exec/ and containerd/state/
// are on /run (a tmpfs, empty after a reboot): RunPaths lists them.
type Engine struct {
	Dir string
	// NetNS is the named network namespace (/run/netns/NAME) both daemons
	// run in; "" runs them in the caller's.
	NetNS string
	// Config is written to daemon.json by WriteConfig.
	Config Config
	// Args are more dockerd flags. A setting must not be both here and in
	// Config: dockerd refuses to start ("specified both as a flag and in
	// the configuration file").
	Args []string
}

// Config is the part of dockerd's daemon.json dynia sets
// (https://docs.docker.com/reference/cli/dockerd/#daemon-configuration-file;
// the keys are dockerd 20.10's). Zero values are left out: dockerd's
// default applies.
type Config struct {
	// InsecureRegistries are host:port (or CIDRs) dockerd may talk plain
	// HTTP to. 127.0.0.0/8 is always insecure.
	InsecureRegistries []string `json:"insecure-registries,omitempty"`
	// CgroupParent puts every container's cgroup under this one (cgroupfs
	// driver: an absolute path such as "/dynia-d1-docker"), in every
	// hierarchy: CgroupProcs and RemoveCgroups find them there.
	CgroupParent string `json:"cgroup-parent,omitempty"`
	// Bip is the default bridge's address and prefix (default
	// 172.17.0.1/16).
	Bip                    string            `json:"bip,omitempty"`
	LogDriver              string            `json:"log-driver,omitempty"`
	LogOpts                map[string]string `json:"log-opts,omitempty"`
	LiveRestore            bool              `json:"live-restore,omitempty"`
	UserlandProxy          *bool             `json:"userland-proxy,omitempty"`
	MaxConcurrentDownloads int               `json:"max-concurrent-downloads,omitempty"`
	MaxConcurrentUploads   int               `json:"max-concurrent-uploads,omitempty"`
}

// NodeImageConfig is the daemon.json docs/image.md proposes for a 1 GiB
// droplet: the local log driver capped at 3 × 10 MB per container,
// live-restore, no userland proxy (no docker-proxy process per published
// port), one download and one upload at a time.
func NodeImageConfig() Config {
	off := false
	return Config{
		LogDriver:              "local",
		LogOpts:                map[string]string{"max-size": "10m", "max-file": "3"},
		LiveRestore:            true,
		UserlandProxy:          &off,
		MaxConcurrentDownloads: 1,
		MaxConcurrentUploads:   1,
	}
}

// Paths under Dir.
func (e Engine) Socket() string               { return filepath.Join(e.Dir, "docker.sock") }
func (e Engine) Host() string                 { return "unix://" + e.Socket() }
func (e Engine) PidFile() string              { return filepath.Join(e.Dir, "docker.pid") }
func (e Engine) ConfigFile() string           { return filepath.Join(e.Dir, "daemon.json") }
func (e Engine) DataRoot() string             { return filepath.Join(e.Dir, "data") }
func (e Engine) ExecRoot() string             { return filepath.Join(e.Dir, "exec") }
func (e Engine) ContainerdConfigFile() string { return filepath.Join(e.Dir, "containerd.toml") }
func (e Engine) ContainerdSocket() string     { return filepath.Join(e.Dir, "containerd.sock") }
func (e Engine) ContainerdRoot() string       { return filepath.Join(e.Dir, "containerd", "root") }
func (e Engine) ContainerdState() string      { return filepath.Join(e.Dir, "containerd", "state") }

// Sockets are the unix sockets the daemons bind under Dir, each of which
// must fit MaxSocketPath (CheckSocketPaths): the API, containerd's two,
// and in the exec-root dockerd's metrics socket and libnetwork's
// <exec-root>/libnetwork/<12 hex of the daemon's id>.sock (given here with
// a placeholder id of the same length).
func (e Engine) Sockets() []string {
	return []string{e.Socket(), e.ContainerdSocket(), e.ContainerdSocket() + ".ttrpc",
		filepath.Join(e.ExecRoot(), "metrics.sock"), filepath.Join(e.ExecRoot(), "libnetwork", "000000000000.sock")}
}

// CheckSocketPaths fails, naming the path, when a socket under Dir would
// be longer than a unix socket path may be: the daemon would fail to bind
// it with a message that does not say why.
func (e Engine) CheckSocketPaths() error {
	for _, s := range e.Sockets() {
		if len(s) > MaxSocketPath {
			return fmt.Errorf("docker engine dir %q is too long: socket %s would be %d bytes, a unix socket path holds at most %d", e.Dir, s, len(s), MaxSocketPath)
		}
	}
	return nil
}

// RunPaths are what lives on /run on a real machine, and so is gone after
// a power cycle: the pid file, the sockets, the exec-root and containerd's
// state.
func (e Engine) RunPaths() []string {
	return []string{e.PidFile(), e.ExecRoot(), e.ContainerdState(), e.Socket(), e.ContainerdSocket(), e.ContainerdSocket() + ".ttrpc"}
}

// ContainerdConfig is containerd.toml: every containerd path under Dir, and
// the CRI plugin (Kubernetes) disabled: dockerd does not use it, and it
// costs memory.
func (e Engine) ContainerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, e.ContainerdRoot(), e.ContainerdState(), e.ContainerdSocket(), e.ContainerdSocket()+".ttrpc", filepath.Join(e.Dir, "containerd", "opt"))
}

// DaemonJSON is daemon.json: Config, plus the identity key under Dir
// (dockerd 20.10 otherwise creates /etc/docker/key.json, shared by every
// engine on the machine).
func (e Engine) DaemonJSON() ([]byte, error) {
	var m map[string]any
	b, err := json.Marshal(e.Config)
	if err != nil {
		return nil, fmt.Errorf("docker daemon.json: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("docker daemon.json: %w", err)
	}
	m["deprecated-key-path"] = filepath.Join(e.Dir, "key.json")
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("docker daemon.json: %w", err)
	}
	return append(out, '\n'), nil
}

// WriteConfig creates Dir (0700) and writes containerd.toml and
// daemon.json (0600, atomically).
func (e Engine) WriteConfig() error {
	if err := os.MkdirAll(e.Dir, 0o700); err != nil {
		return fmt.Errorf("docker engine dir: %w", err)
	}
	dj, err := e.DaemonJSON()
	if err != nil {
		return err
	}
	for path, b := range map[string][]byte{e.ContainerdConfigFile(): []byte(e.ContainerdConfig()), e.ConfigFile(): dj} {
		if err := fsutil.WriteFileAtomic(path, b, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// nsenter prefixes argv with `nsenter --net=/run/netns/NetNS --`; nsenter
// execs the program in place, so the pid the caller gets is the daemon's.
func (e Engine) nsenter(argv ...string) []string {
	if e.NetNS == "" {
		return argv
	}
	return append([]string{"nsenter", "--net=/run/netns/" + e.NetNS, "--"}, argv...)
}

// ContainerdCommand is the argv that runs containerd.
func (e Engine) ContainerdCommand() []string {
	return e.nsenter("containerd", "--config", e.ContainerdConfigFile())
}

// DockerdArgs are dockerd's flags: the config file, the directories, the
// socket, the pid file, the containerd to use, then Args.
func (e Engine) DockerdArgs() []string {
	return append([]string{
		"--config-file=" + e.ConfigFile(),
		"--data-root=" + e.DataRoot(),
		"--exec-root=" + e.ExecRoot(),
		"--host=" + e.Host(),
		"--pidfile=" + e.PidFile(),
		"--containerd=" + e.ContainerdSocket(),
		"--containerd-namespace=" + ContainerdNamespace,
	}, e.Args...)
}

// DockerdCommand is the argv that runs dockerd.
func (e Engine) DockerdCommand() []string {
	return e.nsenter(append([]string{"dockerd"}, e.DockerdArgs()...)...)
}

// ContainerdReady reports whether containerd accepts connections on its
// socket (a stale socket file of a killed containerd refuses them).
func (e Engine) ContainerdReady() error {
	c, err := net.DialTimeout("unix", e.ContainerdSocket(), time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

// Ping is GET /_ping on the API socket: nil when dockerd answers 200.
func (e Engine) Ping(ctx context.Context) error {
	return Ping(ctx, e.Socket())
}

// Ping is GET /_ping on the Engine API at the unix socket path.
func Ping(ctx context.Context, socket string) error {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("docker %s: /_ping: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("docker %s: /_ping: %s", socket, resp.Status)
	}
	return nil
}

// Task is one container task containerd recorded in its state directory.
type Task struct {
	ID      string // the container id (dockerd's)
	InitPID int    // the container's init process (0: unknown)
}

// Tasks lists the tasks in containerd's state directory, which stays on
// disk when containerd and the shims are killed.
func (e Engine) Tasks() []Task {
	files, _ := filepath.Glob(filepath.Join(e.ContainerdState(), "io.containerd.runtime.v2.task", ContainerdNamespace, "*", "init.pid"))
	var out []Task
	for _, f := range files {
		t := Task{ID: filepath.Base(filepath.Dir(f))}
		if b, err := os.ReadFile(f); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				t.InitPID = pid
			}
		}
		out = append(out, t)
	}
	return out
}

// ShimSocket is where containerd 1.6's runc shim of a task listens:
// /run/containerd/s/<sha256 of "<containerd socket>/<namespace>/<id>">,
// shared by every containerd on the machine (the hash keeps them apart).
// A SIGKILLed shim leaves it behind.
func (e Engine) ShimSocket(id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(e.ContainerdSocket(), ContainerdNamespace, id)))
	return filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
}

// Unmount detaches every mount under Dir (overlay root filesystems, shm,
// network namespace files, the data-root bind mount), deepest first, so Dir
// can be removed. Mounts already gone are not an error.
func (e Engine) Unmount() error {
	return UnmountUnder(e.Dir)
}

// UnmountUnder detaches every mount at or under dir, deepest first.
func UnmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("unmount under %s: %w", dir, err)
	}
	dir = filepath.Clean(dir)
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, mp := range mounts {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("umount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupRoot is where the cgroup hierarchies are mounted.
var cgroupRoot = "/sys/fs/cgroup"

// cgroupDirs are the directories of cgroup parent in every hierarchy:
// /sys/fs/cgroup/<parent> (cgroup v2) and /sys/fs/cgroup/<hierarchy>/<parent>
// (v1, and the hybrid layout's "unified"), each with its sub-cgroups,
// deepest first.
func cgroupDirs(parent string) []string {
	parent = strings.Trim(filepath.Clean("/"+parent), "/")
	if parent == "" || parent == "." {
		return nil // never the root cgroup
	}
	tops := []string{filepath.Join(cgroupRoot, parent)}
	more, _ := filepath.Glob(filepath.Join(cgroupRoot, "*", parent))
	tops = append(tops, more...)
	seen := map[string]bool{}
	var dirs []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil // a hierarchy without the cgroup, or one going away
			}
			// cpu and cpuacct are often links to one "cpu,cpuacct" hierarchy.
			real, rerr := filepath.EvalSymlinks(p)
			if rerr != nil || seen[real] {
				return nil // gone meanwhile, or seen
			}
			seen[real] = true
			dirs = append(dirs, real)
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// CgroupProcs lists every process in cgroup parent and below, in any
// hierarchy: with Config.CgroupParent set, these are all the engine's
// container processes (init, its children, `docker exec` sessions).
func CgroupProcs(parent string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, d := range cgroupDirs(parent) {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	sort.Ints(pids)
	return pids
}

// RemoveCgroups removes cgroup parent and its sub-cgroups in every
// hierarchy (rmdir, deepest first); a cgroup that still holds a process
// stays and is named in the error.
func RemoveCgroups(parent string) error {
	var errs []error
	for _, d := range cgroupDirs(parent) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
