package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/procstat"
)

// procSpec is one process the sandbox runs. Processes are always found again
// by the PID they were started with (recorded with the kernel's start time,
// so a reused PID is never mistaken for ours), never by name.
type procSpec struct {
	Name    string   // component: pull, app, versitygw, serve, dockerd, containerd, registry
	NetNS   string   // run via `ip netns exec NetNS` ("" = the caller's namespace)
	Path    string   // program
	Args    []string // arguments
	Env     []string // extra environment (secrets go here, never in Args)
	Dir     string   // working directory
	LogPath string   // stdout+stderr, appended, 0600
	PidPath string   // "PID STARTTIME\n", 0600
	// EnterNet runs it in NetNS with `nsenter --net` instead: only the
	// network namespace, not the private mount namespace and remounted
	// /sys `ip netns exec` gives (dockerd needs the machine's cgroup
	// mounts, and its mounts must be visible to the sandbox's cleanup).
	EnterNet bool
	// Detached outlives its starter (the serve process after `sandbox up`
	// returns): own session, no parent-death signal.
	Detached bool
	// After, when set, holds every (re)start back until it returns nil:
	// a dependency (dockerd waits for its containerd's socket). Polled
	// every 50 ms to 1 s.
	After func() error
}

func (s procSpec) command() *exec.Cmd {
	name, args := s.Path, s.Args
	switch {
	case s.NetNS != "" && s.EnterNet:
		// nsenter execs the program in place too.
		name, args = "nsenter", append([]string{"--net=/run/netns/" + s.NetNS, "--", s.Path}, s.Args...)
	case s.NetNS != "":
		// `ip netns exec` execs the program in place: the PID we get is the
		// program's own.
		name, args = "ip", append([]string{"netns", "exec", s.NetNS, s.Path}, s.Args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Dir = s.Dir
	cmd.Env = extcmd.Environ(s.Env...) // never the caller's NOTIFY_SOCKET
	// Own process group, stopped as a whole. haproxy and keepalived are
	// not in dynia-pull's group: they outlive it by design (the next
	// dynia-pull adopts them), so stopping a droplet also kills whatever
	// is left in its namespace (manager.stopLocked). Pdeathsig: a crashed
	// supervisor does not leave the process running unsupervised.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.Detached {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	return cmd
}

// startProc starts s once, records its PID and returns the running command.
func startProc(s procSpec) (*exec.Cmd, error) {
	if err := os.MkdirAll(filepath.Dir(s.LogPath), 0o700); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	logf, err := os.OpenFile(s.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", s.Name, err)
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := s.command()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	if err := writePidFile(s.PidPath, cmd.Process.Pid); err != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	return cmd, nil
}

func writePidFile(path string, pid int) error {
	start, err := procstat.StartTime(pid)
	if err != nil {
		return fmt.Errorf("pid file %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return fsutil.WriteFileAtomic(path, []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o600)
}

// stopPid stops a process we started and its process group: SIGTERM, then
// SIGKILL after grace. grace 0 kills at once (a power cut).
func stopPid(pid int, grace time.Duration) {
	if pid <= 1 {
		return
	}
	start, err := procstat.StartTime(pid)
	if err != nil {
		return
	}
	alive := func() bool { return procstat.Alive(pid, start) }
	if grace > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		_ = poll.Within(grace, func() error {
			if alive() {
				return errStillRunning
			}
			return nil
		})
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// stopPidFile stops the process a pid file names and removes the file.
func stopPidFile(path string, grace time.Duration) error {
	// A malformed file cannot name a process we could safely signal: it is
	// just removed, so Down always finishes.
	pid, _, _ := procstat.ReadPidFile(path)
	stopPid(pid, grace)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pid file: %w", err)
	}
	return nil
}

// supervised keeps one process running: restarted with backoff when it
// exits, until Stop.
type supervised struct {
	spec procSpec
	log  *slog.Logger

	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool
	stopCh  chan struct{}
	done    chan struct{}
}

// errStillRunning is a wait's condition not met yet: the process lives.
var errStillRunning = errors.New("still running")

const (
	restartMin   = 500 * time.Millisecond
	restartMax   = 30 * time.Second
	restartReset = time.Minute // a run this long resets the backoff
)

func supervise(spec procSpec, log *slog.Logger) *supervised {
	p := &supervised{spec: spec, log: log.With("component", spec.Name), stopCh: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *supervised) loop() {
	defer close(p.done)
	n := 1 // the restart's number in internal/poll's doubling schedule
	for {
		if !p.waitAfter() {
			return
		}
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		cmd, err := startProc(p.spec)
		p.cmd = cmd
		p.mu.Unlock()
		began := time.Now()
		if err != nil {
			p.log.Error("process failed to start", "err", err)
		} else {
			p.log.Info("process started", "pid", cmd.Process.Pid)
			err = cmd.Wait()
			p.mu.Lock()
			p.cmd = nil
			stopped := p.stopped
			p.mu.Unlock()
			if stopped {
				return
			}
			p.log.Warn("process exited; restarting", "err", err, "after", poll.Backoff(restartMin, restartMax, n))
		}
		if time.Since(began) > restartReset {
			n = 1
		}
		select {
		case <-p.stopCh:
			return
		case <-time.After(poll.Backoff(restartMin, restartMax, n)):
		}
		n++
	}
}

// waitAfter holds the start back until spec.After holds; false when
// stopped meanwhile.
func (p *supervised) waitAfter() bool {
	if p.spec.After == nil {
		return true
	}
	wait := 50 * time.Millisecond
	var said bool
	for began := time.Now(); ; {
		err := p.spec.After()
		if err == nil {
			return true
		}
		if !said && time.Since(began) > 10*time.Second {
			p.log.Warn("process waits for its dependency", "err", err)
			said = true
		}
		select {
		case <-p.stopCh:
			return false
		case <-time.After(wait):
		}
		wait = min(wait*2, time.Second)
	}
}

// Stop ends supervision and stops the process (and its group); grace 0
// kills at once.
func (p *supervised) Stop(ctx context.Context, grace time.Duration) {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stopCh)
	}
	cmd := p.cmd
	p.mu.Unlock()
	if cmd != nil {
		stopPid(cmd.Process.Pid, grace)
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
	_ = os.Remove(p.spec.PidPath)
}
