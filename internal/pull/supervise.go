package pull

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/procstat"
)

// supervisor runs haproxy and keepalived in supervise mode and restarts
// them with backoff when they exit. The daemons outlive dynia-pull: when it
// stops (or crashes) they keep serving with the last good config, and the
// next dynia-pull adopts them through their pid files instead of starting
// new ones, so an upgrade of dynia-pull causes no VRRP transition.
type supervisor struct {
	log *slog.Logger
	// out receives the daemons' stdout and stderr. It is a file (dynia-pull's
	// own stderr: journald under systemd), never a pipe we read: a pipe would
	// close under the daemons when dynia-pull exits.
	out *os.File
	// logDir, when set, gets each daemon's output in <name>.log instead
	// (appended: the file outlives dynia-pull with the daemon).
	logDir string
	wg     sync.WaitGroup

	mu      sync.Mutex
	pids    map[string]int       // running pid by name (child or adopted); 0 while restarting
	started map[string]time.Time // when that process started (a child: just before its exec)
}

func newSupervisor(log *slog.Logger, logDir string) *supervisor {
	return &supervisor{log: log, out: os.Stderr, logDir: logDir, pids: map[string]int{}, started: map[string]time.Time{}}
}

// daemonSpec is one supervised daemon.
type daemonSpec struct {
	name    string   // haproxy or keepalived: log component, and the program adopted
	bin     string   // program to start
	args    []string // its arguments; they name config
	config  string   // its config file: an adopted process must have it in its argv
	pidFile string   // where it writes its (master) pid
	// prestart, if set, runs before every start (not before an adoption);
	// an error is logged and the daemon started anyway.
	prestart func() error
	// writePid: the daemon writes no pid file of its own (wireguard-go in
	// the foreground), so the supervisor writes pidFile for the next
	// dynia-pull to adopt it.
	writePid bool
	env      []string // added to dynia-pull's environment (extcmd.Environ)
}

// adopted describes a daemon found running at start.
type adopted struct {
	pid     int
	started time.Time // the process's start time
}

// start supervises spec (once per name; later calls are no-ops) until ctx
// ends. A daemon already running from spec.pidFile is adopted rather than
// started again; start returns it (nil when there was none).
func (s *supervisor) start(ctx context.Context, spec daemonSpec) *adopted {
	s.mu.Lock()
	if _, ok := s.pids[spec.name]; ok {
		s.mu.Unlock()
		return nil
	}
	s.pids[spec.name] = 0
	s.mu.Unlock()
	log := s.log.With("component", spec.name)
	var a *adopted
	pid, tick, err := adoptable(spec)
	if err != nil {
		log.Info("not adopting the pid file's process", "pid_file", spec.pidFile, "reason", err)
	} else if pid != 0 {
		a = &adopted{pid: pid, started: tickTime(tick)}
		s.setPid(spec.name, pid, a.started)
		log.Info("adopted running daemon", "pid", pid, "pid_file", spec.pidFile)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if a != nil {
			if !s.watch(ctx, log, pid, tick) {
				return
			}
			s.setPid(spec.name, 0, time.Time{})
			log.Warn("adopted daemon exited; starting it", "pid", pid)
		}
		s.loop(ctx, log, spec)
	}()
	return a
}

// watch waits for an adopted daemon (not our child: no wait status) to
// exit, or for ctx to end (false: it keeps running). It waits on a pidfd
// (Linux ≥ 5.3, pidfd_open(2)), readable the moment the process exits;
// where there is none it polls /proc/PID/stat. Every 100 ms HAProxy stays
// down on the Reserved IP's holder costs requests.
func (s *supervisor) watch(ctx context.Context, log *slog.Logger, pid int, tick uint64) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return s.pollWatch(ctx, log, pid, tick)
	}
	defer unix.Close(fd) //nolint:errcheck // a pidfd: nothing to flush
	// The pidfd names this process even if its pid is reused later; the
	// start time check covers the moment before it was opened.
	if !procstat.Alive(pid, tick) {
		return true
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		// The timeout only bounds how long ctx's end goes unnoticed.
		n, err := unix.Poll(fds, 250)
		switch {
		case n > 0:
			return true
		case err != nil && err != unix.EINTR:
			log.Warn("waiting on the daemon's pidfd; polling instead", "pid", pid, "err", err)
			return s.pollWatch(ctx, log, pid, tick)
		case ctx.Err() != nil:
			log.Info("stopping; leaving the daemon running", "pid", pid)
			return false
		}
	}
}

// pollWatch is watch without a pidfd: one read of /proc/PID/stat every
// 100 ms.
func (s *supervisor) pollWatch(ctx context.Context, log *slog.Logger, pid int, tick uint64) bool {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if !procstat.Alive(pid, tick) {
			return true
		}
		select {
		case <-ctx.Done():
			log.Info("stopping; leaving the daemon running", "pid", pid)
			return false
		case <-t.C:
		}
	}
}

// supervising says whether start was called for name (running or restarting).
func (s *supervisor) supervising(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pids[name]
	return ok
}

// pid returns the running daemon's pid (child or adopted), or 0.
func (s *supervisor) pid(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pids[name]
}

// running returns the running daemon's pid (0: none) and when it started.
func (s *supervisor) running(name string) (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pids[name], s.started[name]
}

func (s *supervisor) setPid(name string, pid int, started time.Time) {
	s.mu.Lock()
	s.pids[name], s.started[name] = pid, started
	s.mu.Unlock()
}

func (s *supervisor) loop(ctx context.Context, log *slog.Logger, spec daemonSpec) {
	var delay time.Duration
	for ctx.Err() == nil {
		began := time.Now()
		err := s.runOnce(ctx, log, spec)
		if ctx.Err() != nil {
			return
		}
		delay = restartDelay(delay, time.Since(began))
		log.Warn("daemon exited; restarting", "err", err, "after", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// restartDelay is how long to wait before starting again a daemon that
// exited after running for ran, the previous wait having been prev (0 for
// none). One that ran longer than stableRun got past its start and was
// killed or crashed, not crash-looping: it is started at once, however
// recently it last exited, because every second HAProxy is down on the
// Reserved IP's holder fails requests (measured in the sandbox: a restart
// at once costs ~150 ms of refused connections, a 1 s wait 21 requests at
// 20 per second), and after 2 s keepalived's check (interval 1, fall 2)
// puts the node in FAULT and the IP moves. One that keeps exiting within
// stableRun waits 1 s, 2 s, 4 s … up to maxBackoff.
func restartDelay(prev, ran time.Duration) time.Duration {
	switch {
	case ran > stableRun:
		return 0
	case prev == 0:
		return time.Second
	}
	return min(prev*2, maxBackoff)
}

// stableRun is how long a daemon must run before an exit is no longer
// taken for a failure to start (a bad config, a port in use): HAProxy and
// keepalived start in well under a second.
const stableRun = 5 * time.Second

// runOnce starts the daemon and returns when it exits, or when ctx ends,
// leaving it running.
func (s *supervisor) runOnce(ctx context.Context, log *slog.Logger, spec daemonSpec) error {
	if spec.prestart != nil {
		if err := spec.prestart(); err != nil {
			log.Warn("before start", "err", err)
		}
	}
	cmd := exec.Command(spec.bin, spec.args...)
	// Own process group, so a signal to dynia-pull's group (a terminal's
	// ^C) does not reach it; no Pdeathsig: the daemon outlives dynia-pull.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := s.out
	if s.logDir != "" {
		if err := os.MkdirAll(s.logDir, 0o750); err != nil {
			return fmt.Errorf("log dir: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(s.logDir, spec.name+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("daemon log: %w", err)
		}
		defer f.Close() // the child has its own descriptor
		out = f
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Never our NOTIFY_SOCKET: the daemon does not speak for the unit.
	cmd.Env = extcmd.Environ(spec.env...)
	began := time.Now() // before the exec: the daemon reads its config after
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	if spec.writePid {
		if err := writeFileAtomic(spec.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
			// Only adoption by the next dynia-pull needs it.
			log.Warn("write pid file", "pid_file", spec.pidFile, "err", err)
		}
	}
	log.Info("started", "pid", pid, "args", spec.args)
	s.setPid(spec.name, pid, began)
	defer s.setPid(spec.name, 0, time.Time{})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		log.Info("stopping; leaving the daemon running", "pid", pid)
		return nil
	}
}

// wait returns when every supervising goroutine has returned (after ctx
// ends); the daemons themselves keep running.
func (s *supervisor) wait() { s.wg.Wait() }

// adoptable returns the pid (and its start time in clock ticks) of the
// daemon spec.pidFile names if it may be adopted: alive, running the
// expected program, with this node's config in its argv. A pid file whose
// pid was reused by another program, or names the same daemon of another
// node (network namespaces share PIDs and /run), is never adopted. It
// returns 0 and no error when there is nothing to adopt, and an error
// saying why a live process was refused.
func adoptable(spec daemonSpec) (int, uint64, error) {
	pid, tick, err := procstat.ReadPidFile(spec.pidFile)
	if err != nil || pid == 0 {
		return 0, 0, nil // none, gone, or a malformed file: a daemon to start, nothing to refuse
	}
	proc := "/proc/" + strconv.Itoa(pid)
	comm, err := os.ReadFile(proc + "/comm")
	if err != nil {
		return 0, 0, nil
	}
	if got := strings.TrimSpace(string(comm)); !programMatches(got, spec) {
		return 0, 0, fmt.Errorf("pid %d runs %q, not %s", pid, got, spec.name)
	}
	raw, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return 0, 0, nil
	}
	for _, arg := range strings.Split(string(raw), "\x00") {
		if arg == spec.config {
			return pid, tick, nil
		}
	}
	return 0, 0, fmt.Errorf("pid %d is a %s without %s in its arguments", pid, spec.name, spec.config)
}

// programMatches compares a process's comm (truncated to 15 bytes by the
// kernel) with the daemon's name and the configured program's base name
// (a test's wrapper execs the real program, whose name is the comm).
func programMatches(comm string, spec daemonSpec) bool {
	for _, want := range []string{spec.name, filepath.Base(spec.bin)} {
		if len(want) > 15 {
			want = want[:15]
		}
		if comm == want {
			return true
		}
	}
	return false
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

// tickTime converts a start time in clock ticks since boot to wall time
// (zero if the boot time is unreadable).
func tickTime(tick uint64) time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}
			}
			return time.Unix(boot, 0).Add(time.Duration(tick) * time.Second / clockTicks)
		}
	}
	return time.Time{}
}
