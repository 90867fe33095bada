package pull

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/procstat"
)

// startProc runs name with args in its own process group until the test ends.
func startProc(t *testing.T, name string, args ...string) int {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

func writePid(t *testing.T, path string, pid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAdoptionGuard: a pid file is adopted only when it names a live
// process running the expected program with this node's config in its
// arguments — never the test itself, a `sleep`, a dead pid, or the same
// daemon serving another node's config.
func TestAdoptionGuard(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	spec := daemonSpec{name: "haproxy", bin: "/usr/sbin/haproxy", config: cfg, pidFile: filepath.Join(dir, "haproxy.pid")}
	adopt := func(pid int) (int, error) {
		t.Helper()
		writePid(t, spec.pidFile, pid)
		got, _, err := adoptable(spec)
		return got, err
	}

	if got, _, err := adoptable(spec); got != 0 || err != nil {
		t.Errorf("no pid file: adopted %d, %v", got, err)
	}
	if got, err := adopt(os.Getpid()); got != 0 || err == nil {
		t.Errorf("the test's own pid: adopted %d, %v; want a refusal", got, err)
	}
	// A sleep whose argv names the config (as argv[0]: sleep itself would
	// reject an extra argument and exit at once).
	sleepPid := startProc(t, "bash", "-c", `exec -a "$0" sleep 60`, cfg)
	waitComm(t, sleepPid, "sleep")
	if got, err := adopt(sleepPid); got != 0 || err == nil || !strings.Contains(err.Error(), `"sleep"`) {
		t.Errorf("a sleep naming the config: adopted %d, %v; want a refusal naming sleep", got, err)
	}
	// A stand-in "haproxy": a script of that name (its comm), which waits.
	fake := filepath.Join(dir, "haproxy")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\nsleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := startProc(t, fake, "-f", filepath.Join(t.TempDir(), "haproxy.cfg"))
	ours := startProc(t, fake, "-f", cfg)
	// The kernel sets comm at exec: wait until the script runs.
	waitComm(t, ours, "haproxy")
	waitComm(t, other, "haproxy")
	if got, err := adopt(other); got != 0 || err == nil {
		t.Errorf("another node's haproxy: adopted %d, %v; want a refusal", got, err)
	}
	if got, err := adopt(ours); got != ours || err != nil {
		t.Errorf("this node's haproxy: adopted %d, %v; want %d", got, err, ours)
	}
	// Dead: its pid is gone (reaped), nothing to adopt and nothing to say.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if got, err := adopt(dead.Process.Pid); got != 0 || err != nil {
		t.Errorf("dead pid: adopted %d, %v", got, err)
	}
	writePid(t, spec.pidFile, 0)
	os.WriteFile(spec.pidFile, []byte("garbage"), 0o644)
	if got, _, err := adoptable(spec); got != 0 || err != nil {
		t.Errorf("malformed pid file: adopted %d, %v", got, err)
	}
}

func waitComm(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if strings.TrimSpace(string(b)) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d comm %q, want %q", pid, b, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSupervisorAdoptsWatchesAndLeaves: an adopted daemon's pid is what
// pid() returns (reloads signal it); when it dies the supervisor starts
// the program itself; when ctx ends the child is left running.
func TestSupervisorAdoptsWatchesAndLeaves(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keepalived.conf")
	os.WriteFile(cfg, nil, 0o644)
	fake := filepath.Join(dir, "keepalived")
	// Writes its pid file like keepalived -p, then waits.
	pidFile := filepath.Join(dir, "keepalived.pid")
	os.WriteFile(fake, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nsleep 60\n"), 0o755)
	adoptee := startProc(t, fake, "-f", cfg)
	waitComm(t, adoptee, "keepalived")
	writePid(t, pidFile, adoptee)

	sup := newSupervisor(slog.New(slog.DiscardHandler), "")
	ctx, cancel := context.WithCancel(context.Background())
	spec := daemonSpec{name: "keepalived", bin: fake, config: cfg, pidFile: pidFile,
		args: []string{"-f", cfg}}
	a := sup.start(ctx, spec)
	if a == nil || a.pid != adoptee || sup.pid("keepalived") != adoptee {
		t.Fatalf("adopted %+v, pid() %d; want %d", a, sup.pid("keepalived"), adoptee)
	}
	if a.started.IsZero() || time.Since(a.started) > time.Minute || time.Until(a.started) > 2*time.Second {
		t.Errorf("adopted start time %v, want about now", a.started)
	}
	// It dies: the supervisor starts its own within a few seconds.
	syscall.Kill(-adoptee, syscall.SIGKILL)
	var child int
	deadline := time.Now().Add(15 * time.Second)
	for child == 0 || child == adoptee {
		if time.Now().After(deadline) {
			t.Fatalf("no new child after the adopted daemon died (pid() %d)", sup.pid("keepalived"))
		}
		time.Sleep(50 * time.Millisecond)
		child = sup.pid("keepalived")
	}
	t.Cleanup(func() { syscall.Kill(-child, syscall.SIGKILL) })
	cancel()
	sup.wait()
	time.Sleep(100 * time.Millisecond)
	if err := syscall.Kill(child, 0); err != nil {
		t.Errorf("the child %d did not outlive the supervisor: %v", child, err)
	}
}

// TestChangeTimeFollowsRename: an installed config's change time is the
// rename's, even when its modification time (the staged write) is older,
// so an adopted daemon started in between is still reloaded.
func TestChangeTimeFollowsRename(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	staged, target := filepath.Join(dir, ".haproxy.cfg.tmp"), filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(staged, []byte("global\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(staged, old, old); err != nil {
		t.Fatal(err)
	}
	daemonStarted := time.Now().Add(-time.Minute)
	if err := os.Rename(staged, target); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Before(daemonStarted) || !changeTime(fi).After(daemonStarted) {
		t.Fatalf("mtime %v, change time %v; want the change time after %v", fi.ModTime(), changeTime(fi), daemonStarted)
	}
}

// TestRestartDelay: a daemon that ran past its start is restarted at once,
// even when killed again soon after; one that keeps exiting at start backs
// off 1 s, 2 s, 4 s … up to maxBackoff, and is started at once again after
// it ran past its start.
func TestRestartDelay(t *testing.T) {
	t.Parallel()
	long, short := stableRun+time.Second, 100*time.Millisecond
	steps := []struct {
		ran  time.Duration
		want time.Duration
	}{
		{long, 0},
		{long, 0}, // killed again 6 s after its restart (process chaos)
		{short, time.Second},
		{short, 2 * time.Second},
		{short, 4 * time.Second},
		{short, 8 * time.Second},
		{short, 16 * time.Second},
		{short, maxBackoff},
		{short, maxBackoff},
		{long, 0},
		{short, time.Second},
	}
	var prev time.Duration
	for i, s := range steps {
		got := restartDelay(prev, s.ran)
		if got != s.want {
			t.Errorf("exit %d (ran %v, previous wait %v): wait %v, want %v", i, s.ran, prev, got, s.want)
		}
		prev = got
	}
}

// TestWatchSeesExitAndLeavesOnCancel: both ways of watching an adopted
// daemon (pidfd, and polling where there is none) return true when it
// exits and false, leaving it running, when ctx ends.
func TestWatchSeesExitAndLeavesOnCancel(t *testing.T) {
	t.Parallel()
	sup := newSupervisor(slog.New(slog.DiscardHandler), "")
	for _, w := range []struct {
		name  string
		watch func(context.Context, *slog.Logger, int, uint64) bool
	}{{"pidfd", sup.watch}, {"poll", sup.pollWatch}} {
		pid := startProc(t, "sleep", "60")
		tick, err := procstat.StartTime(pid)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan bool, 1)
		go func() { done <- w.watch(ctx, sup.log, pid, tick) }()
		cancel()
		if exited := <-done; exited {
			t.Errorf("%s: watch says a running daemon exited", w.name)
		}
		if err := syscall.Kill(pid, 0); err != nil {
			t.Errorf("%s: the daemon did not outlive the watch: %v", w.name, err)
		}
		go func() { done <- w.watch(context.Background(), sup.log, pid, tick) }()
		_ = syscall.Kill(pid, syscall.SIGKILL)
		select {
		case exited := <-done:
			if !exited {
				t.Errorf("%s: watch returned false for a killed daemon", w.name)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: watch did not return 30 s after the daemon was killed", w.name)
		}
	}
}

// TestHAProxyPredatesConfig is the reproduction of a node left on its
// first config: HAProxy, started by one apply, had not opened its master
// socket when the next apply installed a new config, and that apply took
// it for "not running yet" and skipped the reload. A daemon started no
// later than the config's installation predates it (the reload waits for
// the socket); one started after, or none, does not.
func TestHAProxyPredatesConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte("global\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(cfg)
	if err != nil {
		t.Fatal(err)
	}
	installed := changeTime(fi)
	d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: dir, PollInterval: time.Second, HAProxyConfig: cfg}, newMemStore(), Options{})
	set, _ := d.current()
	if d.ap.haproxyPredatesConfig(set) {
		t.Error("no HAProxy running: predates its config")
	}
	d.sup.setPid("haproxy", os.Getpid(), installed.Add(-time.Second))
	if !d.ap.haproxyPredatesConfig(set) {
		t.Error("HAProxy started a second before the config was installed: does not predate it")
	}
	d.sup.setPid("haproxy", os.Getpid(), installed.Add(time.Second))
	if d.ap.haproxyPredatesConfig(set) {
		t.Error("HAProxy started after the config was installed: predates it")
	}
}
