package testutil

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/procstat"
)

// Dockerd is a Docker Engine a test started: Debian's dockerd with a
// containerd of its own, both inside one network namespace, with every
// directory, socket and pid file under one temporary directory (the layout
// and the reasons for it are internal/dockerd's, which the sandbox's
// droplets share). The machine's own Docker (if any) is never used or
// touched.
type Dockerd struct {
	NetNS  string // network namespace dockerd runs in
	Socket string // API socket path
	Host   string // "unix://" + Socket, for the Docker client
	Dir    string // the temporary root: see dockerd.Engine; *.log

	t        testing.TB
	engine   dockerd.Engine
	ownNetNS bool

	mu        sync.Mutex
	dockerd   *child
	container *child
}

// PID is dockerd's current pid (it changes across PowerCut and Start).
func (d *Dockerd) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dockerd == nil {
		return 0
	}
	return d.dockerd.cmd.Process.Pid
}

// ContainerdPID is the pid of the containerd the test started.
func (d *Dockerd) ContainerdPID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.container == nil {
		return 0
	}
	return d.container.cmd.Process.Pid
}

// StartDockerd starts containerd and dockerd in network namespace netns
// (created with a unique name, and deleted at cleanup, when netns is "")
// and waits until the API answers /_ping. extraArgs go to dockerd (e.g.
// "--insecure-registry=10.1.2.0/24"). Cleanup stops both by pid (SIGTERM,
// then SIGKILL), kills whatever they left (shims, container processes,
// docker-proxy), unmounts what they mounted under Dir and removes Dir. It
// needs root, dockerd, containerd and nsenter; without them it skips, or
// fails under DYNIA_REQUIRE_INTEGRATION=1.
func StartDockerd(t testing.TB, netns string, extraArgs ...string) *Dockerd {
	t.Helper()
	NeedRoot(t)
	for _, b := range append([]string{"ip", "iptables"}, dockerd.Binaries...) {
		NeedBinary(t, b)
	}
	// Short: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "dk")
	if err != nil {
		t.Fatal(err)
	}
	d := &Dockerd{NetNS: netns, Dir: dir, t: t}
	t.Cleanup(func() {
		d.unmountAll()
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("dockerd cleanup: %v", err)
		}
	})
	if netns == "" {
		d.NetNS = fmt.Sprintf("dk%06x", rand.IntN(1<<24))
		mustRun(t, "ip", "netns", "add", d.NetNS)
		d.ownNetNS = true
		t.Cleanup(func() {
			if _, err := extcmd.Combined(exec.Command("ip", "netns", "del", d.NetNS)); err != nil {
				t.Logf("dockerd cleanup: %v", err)
			}
		})
		mustRun(t, "ip", "-n", d.NetNS, "link", "set", "lo", "up")
	}
	d.engine = dockerd.Engine{Dir: dir, NetNS: d.NetNS, Args: extraArgs}
	d.Socket, d.Host = d.engine.Socket(), d.engine.Host()
	if err := d.engine.CheckSocketPaths(); err != nil {
		t.Fatal(err)
	}
	if err := d.engine.WriteConfig(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.stop)
	d.Start()
	return d
}

// DockerdArgs are the flags StartDockerd gives dockerd (extraArgs last).
func (d *Dockerd) DockerdArgs() []string { return d.engine.DockerdArgs() }

// Start starts containerd and dockerd (again, after PowerCut: same
// directories, so the same containers and images) and waits for /_ping.
func (d *Dockerd) Start() {
	t := d.t
	t.Helper()
	argv := d.engine.ContainerdCommand()
	ctd, err := d.spawn("containerd", argv[0], argv[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.container = ctd
	d.mu.Unlock()
	d.waitReady("containerd", ctd, d.engine.ContainerdReady)

	argv = d.engine.DockerdCommand()
	dd, err := d.spawn("dockerd", argv[0], argv[1:]...)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.dockerd = dd
	d.mu.Unlock()
	d.waitReady("dockerd", dd, d.ping)
}

// spawn starts one daemon with its output appended to Dir/<name>.log.
// nsenter execs the daemon in place, so the pid is the daemon's.
func (d *Dockerd) spawn(name, bin string, args ...string) (*child, error) {
	logf, err := os.OpenFile(filepath.Join(d.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startChild(cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return p, nil
}

func (d *Dockerd) waitReady(name string, p *child, ready func() error) {
	t := d.t
	t.Helper()
	err := waitStarted(p.exited, 60*time.Second, func(context.Context) error { return ready() })
	if errors.Is(err, errExited) {
		t.Fatalf("%s exited during start (%v):\n%s", name, p.err, d.LogTail(name, 30))
	}
	if err != nil {
		t.Fatalf("%s not ready after 60s: %v\n%s", name, err, d.LogTail(name, 30))
	}
}

// ping is GET /_ping on the API socket.
func (d *Dockerd) ping() error { return d.engine.Ping(context.Background()) }

// LogTail returns the last n lines of "dockerd" or "containerd"'s log.
func (d *Dockerd) LogTail(name string, n int) string {
	b, err := os.ReadFile(filepath.Join(d.Dir, name+".log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// PowerCut is what a node power cycle does to Docker: dockerd, containerd,
// the shims, every container process and dockerd's children (docker-proxy)
// are killed with SIGKILL at once, and their mounts vanish. Nothing is
// stopped gracefully, so nothing is marked "manually stopped". Start
// brings the daemons back on the same directories.
func (d *Dockerd) PowerCut() {
	d.t.Helper()
	d.mu.Lock()
	dd, ctd := d.dockerd, d.container
	d.dockerd, d.container = nil, nil
	d.mu.Unlock()
	var pids []int
	for _, p := range []*child{dd, ctd} {
		if p != nil {
			pids = append(pids, p.cmd.Process.Pid)
		}
	}
	if dd != nil {
		pids = append(pids, childrenOf(dd.cmd.Process.Pid)...)
	}
	pids = append(pids, d.containerPids()...)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL) // ESRCH: already gone
	}
	for _, p := range []*child{dd, ctd} {
		if p != nil {
			<-p.exited
		}
	}
	// Shims and container processes are not our children (the shim
	// daemonizes): wait until they are gone.
	WaitFor(d.t, 30*time.Second, func() error {
		for _, pid := range pids {
			if st := procState(pid); st != "" && st != "Z" {
				return fmt.Errorf("pid %d still alive (%s)", pid, st)
			}
		}
		return nil
	})
	// A SIGKILLed shim leaves its socket in /run/containerd/s, which
	// every containerd on the machine shares.
	for _, task := range d.engine.Tasks() {
		_ = os.Remove(d.engine.ShimSocket(task.ID)) // ENOENT: the shim removed it
	}
	d.unmountAll()
}

// containerPids are, for every task containerd knows, the container's
// init process (init.pid in the task's bundle) and its parent, the shim.
func (d *Dockerd) containerPids() []int {
	var pids []int
	for _, task := range d.engine.Tasks() {
		if task.InitPID == 0 {
			continue
		}
		pids = append(pids, task.InitPID)
		if pp := parentOf(task.InitPID); pp > 1 {
			pids = append(pids, pp)
		}
	}
	return pids
}

// stop is the cleanup: SIGTERM dockerd (it stops the containers), then
// containerd; SIGKILL after a deadline; then PowerCut for anything left.
func (d *Dockerd) stop() {
	d.mu.Lock()
	dd, ctd := d.dockerd, d.container
	d.mu.Unlock()
	for _, s := range []struct {
		p     *child
		grace time.Duration
	}{{dd, 60 * time.Second}, {ctd, 30 * time.Second}} {
		if s.p == nil {
			continue
		}
		_ = s.p.cmd.Process.Signal(syscall.SIGTERM) // our child, by pid
		select {
		case <-s.p.exited:
		case <-time.After(s.grace):
			d.t.Logf("dockerd cleanup: pid %d ignored SIGTERM for %v, killing it", s.p.cmd.Process.Pid, s.grace)
		}
	}
	d.PowerCut()
	if d.t.Failed() {
		d.t.Logf("dockerd log (%s):\n%s", d.Dir, d.LogTail("dockerd", 40))
	}
}

// unmountAll detaches every mount under Dir (overlay root filesystems,
// shm, network namespace files), deepest first, so Dir can be removed.
func (d *Dockerd) unmountAll() {
	if err := d.engine.Unmount(); err != nil {
		d.t.Logf("dockerd cleanup: %v", err)
	}
}

// procState is the state letter of pid, "" when it is gone.
func procState(pid int) string { return procstat.State(pid) }

// parentOf is pid's parent pid from /proc/PID/status, 0 when it is gone.
func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PPid:"); ok {
			pp, _ := strconv.Atoi(strings.TrimSpace(v))
			return pp
		}
	}
	return 0
}

// childrenOf lists the processes whose parent is pid (dockerd's
// docker-proxy processes), from /proc.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if parentOf(p) == pid {
			kids = append(kids, p)
		}
	}
	return kids
}
