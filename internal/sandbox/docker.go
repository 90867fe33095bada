package sandbox

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/procstat"
)

// App runtimes a sandbox droplet offers (Options.Runtime, `sandbox up
// --runtime`), as dynia-pull's pull.json names them.
const (
	// RuntimeDocker: every dynia node droplet runs its own dockerd (and
	// containerd), as a droplet from the node image does.
	RuntimeDocker = nodeconfig.RuntimeDocker
	// RuntimeProcess: no Docker; dynia-pull runs the demo app as a process
	// (for machines without Docker).
	RuntimeProcess = nodeconfig.RuntimeProcess
	// DefaultRuntime is what `sandbox up` picks.
	DefaultRuntime = RuntimeDocker
)

// ParseRuntime checks a --runtime value ("" is DefaultRuntime).
func ParseRuntime(s string) (string, error) {
	switch s {
	case "":
		return DefaultRuntime, nil
	case RuntimeDocker, RuntimeProcess:
		return s, nil
	}
	return "", fmt.Errorf("must be %s or %s", RuntimeDocker, RuntimeProcess)
}

// CheckDir refuses a sandbox directory too long for the unix sockets the
// droplets' dockerd and containerd bind under it (with the docker
// runtime; a unix socket path holds at most 107 bytes), before anything is
// written: the daemons would fail with a message that does not say why.
func CheckDir(dir, runtime string) error {
	if runtime == RuntimeProcess {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	// The longest droplet id the simulator could hand out.
	e := dropletEngine(dropletDir(abs, 9_999_999_999), "", "")
	for _, sock := range e.Sockets() {
		if len(sock) > dockerd.MaxSocketPath {
			rel, _ := filepath.Rel(abs, sock)
			return fmt.Errorf("too long for the droplets' Docker sockets (<dir>/%s would be %d bytes, a unix socket path holds at most %d); use a shorter one",
				rel, len(sock), dockerd.MaxSocketPath)
		}
	}
	return nil
}

// dockerDir is where a droplet's Docker Engine keeps everything (the
// layout is dockerd.Engine's): what /var/lib/docker, /etc/docker,
// /run/docker and /run/containerd are on a droplet.
func dockerDir(ddir string) string { return filepath.Join(ddir, "docker") }

// dockerCgroupParent is the cgroup every container of the droplet in
// namespace ns lives under: its name is unique on the machine (the
// namespace's is), so everything in it is the sandbox's, and a power cut
// finds the container processes there (each has a network namespace of its
// own, so `ip netns pids` of the droplet does not list them).
func dockerCgroupParent(ns string) string { return "/" + ns + "-docker" }

// bipCandidates are the default bridge addresses a droplet's dockerd may
// get: Docker's own default first, then the one docs/image.md suggests,
// then one more.
var bipCandidates = []netip.Prefix{
	netip.MustParsePrefix("172.17.0.1/16"),
	netip.MustParsePrefix("172.31.255.1/24"),
	netip.MustParsePrefix("192.168.255.1/24"),
}

// dockerBip picks the droplet's docker0 address: "" (Docker's default,
// 172.17.0.1/16) unless that overlaps one of the droplet's own networks
// (its VPC, the public range), then the first candidate that does not.
// docker0 lives in the droplet's namespace, so droplets never collide with
// each other; the sandbox's own ranges (10.10.x.0/24 VPCs, TEST-NET public
// ranges) never overlap 172.17.0.0/16, but a VPC created with its own
// ip_range may.
func dockerBip(avoid ...netip.Prefix) string {
	for i, c := range bipCandidates {
		clash := false
		for _, a := range avoid {
			if a.IsValid() && a.Masked().Overlaps(c.Masked()) {
				clash = true
			}
		}
		if !clash {
			if i == 0 {
				return ""
			}
			return c.String()
		}
	}
	return bipCandidates[len(bipCandidates)-1].String()
}

// dropletEngine is the Docker Engine of the droplet in ddir, namespace ns:
// docs/image.md's daemon options (local logs capped at 3 × 10 MB, live
// restore, no userland proxy, one download and upload at a time), the
// sandbox registry as insecure (plain HTTP), containers under the
// droplet's cgroup parent. The engine's NetNS is left empty: the
// supervisor enters the namespace (procSpec.EnterNet).
func dropletEngine(ddir, ns, registry string, avoid ...netip.Prefix) dockerd.Engine {
	cfg := dockerd.NodeImageConfig()
	if registry != "" {
		cfg.InsecureRegistries = []string{registry}
	}
	cfg.CgroupParent = dockerCgroupParent(ns)
	cfg.Bip = dockerBip(avoid...)
	return dockerd.Engine{Dir: dockerDir(ddir), Config: cfg}
}

// dockerProcs are the droplet's containerd and dockerd, run like its other
// processes (supervised, pid files in pids/, output in logs/), entering the
// namespace with nsenter --net; dockerd starts once containerd answers.
func dockerProcs(e dockerd.Engine, ddir string) []procSpec {
	logs, pids := filepath.Join(ddir, "logs"), filepath.Join(ddir, "pids")
	ctd := e.ContainerdCommand()
	return []procSpec{
		{
			Name: "containerd", Path: ctd[0], Args: ctd[1:], EnterNet: true,
			Dir: ddir, LogPath: filepath.Join(logs, "containerd.log"), PidPath: filepath.Join(pids, "containerd.pid"),
		},
		{
			Name: "dockerd", Path: "dockerd", Args: e.DockerdArgs(), EnterNet: true, After: e.ContainerdReady,
			Dir: ddir, LogPath: filepath.Join(logs, "dockerd.log"), PidPath: filepath.Join(pids, "dockerd.pid"),
		},
	}
}

// powerCutDocker finishes a droplet's power cut for its Docker Engine,
// once its namespace's processes (dockerd, containerd, the shims) were
// killed: the container processes (in the droplet's cgroup parent, each in
// a network namespace of its own) are killed and waited for, the mounts
// under the engine's directory detached, what lives on /run on a droplet
// removed (pid file, sockets, exec-root, containerd's state, the shims'
// sockets in /run/containerd/s), and the cgroups removed: what the next
// boot finds is what a rebooted droplet finds. A droplet without a Docker
// directory (bare, or --runtime process) is left alone.
func powerCutDocker(ddir, ns string) error {
	e := dropletEngine(ddir, ns, "")
	if _, err := os.Stat(e.Dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	parent := dockerCgroupParent(ns)
	var errs []error
	// Container processes may still fork while the first ones die: kill
	// until the cgroup is empty (bounded).
	err := poll.Within(30*time.Second, func() error {
		var live []int
		for _, pid := range dockerd.CgroupProcs(parent) {
			// A zombie is dead already; it waits for a parent to reap it
			// (this machine's init, once its shim is gone).
			if st := procstat.State(pid); st != "" && st != "Z" {
				live = append(live, pid)
			}
		}
		if len(live) == 0 {
			return nil
		}
		for _, pid := range live {
			_ = syscall.Kill(pid, syscall.SIGKILL) // ESRCH: gone already
		}
		return fmt.Errorf("docker containers of %s: processes %v survive SIGKILL", ns, live)
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, t := range e.Tasks() {
		if err := os.Remove(e.ShimSocket(t.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := e.Unmount(); err != nil {
		errs = append(errs, err)
	}
	for _, p := range e.RunPaths() {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := dockerd.RemoveCgroups(parent); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("power cut docker of %s: %w", ns, err)
	}
	return nil
}
