package pull

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// supervisor runs haproxy and keepalived as children in supervise mode and
// restarts them with backoff when they exit. Children get SIGTERM when
// dynia-pull stops (and, through Pdeathsig, when it dies), so in supervise
// mode the daemons live and die with dynia-pull.
type supervisor struct {
	log *slog.Logger
	wg  sync.WaitGroup

	mu   sync.Mutex
	pids map[string]int // running child pid by name; 0 while restarting
}

func newSupervisor(log *slog.Logger) *supervisor {
	return &supervisor{log: log, pids: map[string]int{}}
}

// start runs name (once; later calls are no-ops) until ctx ends.
func (s *supervisor) start(ctx context.Context, name, bin string, args []string) {
	s.mu.Lock()
	if _, ok := s.pids[name]; ok {
		s.mu.Unlock()
		return
	}
	s.pids[name] = 0
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.loop(ctx, name, bin, args)
	}()
}

// pid returns the running child's pid, or 0.
func (s *supervisor) pid(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pids[name]
}

func (s *supervisor) setPid(name string, pid int) {
	s.mu.Lock()
	s.pids[name] = pid
	s.mu.Unlock()
}

func (s *supervisor) loop(ctx context.Context, name, bin string, args []string) {
	log := s.log.With("component", name)
	delay := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := s.runOnce(ctx, log, name, bin, args)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > maxBackoff {
			delay = time.Second // it ran long enough: not a crash loop
		}
		log.Warn("child exited; restarting", "err", err, "after", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, maxBackoff)
	}
}

func (s *supervisor) runOnce(ctx context.Context, log *slog.Logger, name, bin string, args []string) error {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 0, 4096), 1<<20)
		for sc.Scan() {
			log.Info(sc.Text())
		}
		// A line past the buffer stops the scanner; keep draining so the
		// child never blocks writing to a pipe nobody reads.
		_, _ = io.Copy(io.Discard, pr)
	}()
	defer func() { _ = pw.Close() }() // ends the log reader; PipeWriter.Close never fails
	if err := cmd.Start(); err != nil {
		return err
	}
	log.Info("started", "pid", cmd.Process.Pid, "args", args)
	s.setPid(name, cmd.Process.Pid)
	defer s.setPid(name, 0)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// ErrProcessDone means it exited by itself; done delivers that.
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			log.Warn("stop: SIGTERM", "pid", cmd.Process.Pid, "err", err)
		}
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				log.Warn("stop: SIGKILL", "pid", cmd.Process.Pid, "err", err)
			}
			return <-done
		}
	}
}

// wait returns when every child has stopped (after ctx ends).
func (s *supervisor) wait() { s.wg.Wait() }
