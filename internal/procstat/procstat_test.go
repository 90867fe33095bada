package procstat

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfAndExited(t *testing.T) {
	t.Parallel()
	start, err := StartTime(os.Getpid())
	if err != nil || start == 0 {
		t.Fatalf("StartTime(self) = %d, %v", start, err)
	}
	if !Alive(os.Getpid(), start) || Alive(os.Getpid(), start+1) {
		t.Error("Alive does not tell this process from one with another start time")
	}
	if s := State(os.Getpid()); s != "R" && s != "S" {
		t.Errorf("State(self) = %q", s)
	}
	// A reaped child is gone; a zombie child counts as exited.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	st, _ := StartTime(pid)
	// Wait (bounded) for the exit, which leaves an unreaped zombie.
	for i := 0; i < 5000 && State(pid) != "Z"; i++ {
		time.Sleep(time.Millisecond)
	}
	if State(pid) != "Z" {
		t.Fatalf("child %d never became a zombie: state %q", pid, State(pid))
	}
	if Alive(pid, st) {
		t.Error("an exited, unreaped child counts as alive")
	}
	_ = cmd.Wait()
	if State(pid) != "" || Alive(pid, st) {
		t.Errorf("a reaped child: state %q", State(pid))
	}
}

func TestReadPidFile(t *testing.T) {
	t.Parallel()
	self := os.Getpid()
	start, err := StartTime(self)
	if err != nil {
		t.Fatal(err)
	}
	// A process that ran and was reaped: its pid names nothing now (or, if
	// reused, another process, which only the start time tells apart).
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	goneStart := start + 1 // not this process's
	tests := []struct {
		name      string
		content   string // "" with missing: no file
		missing   bool
		wantPid   int
		wantStart uint64
		wantErr   bool
	}{
		{name: "missing", missing: true},
		{name: "pid only (haproxy, keepalived)", content: fmt.Sprintf("%d\n", self), wantPid: self, wantStart: start},
		{name: "pid and start (sandbox)", content: fmt.Sprintf("%d %d\n", self, start), wantPid: self, wantStart: start},
		{name: "pid reused: another start time", content: fmt.Sprintf("%d %d\n", self, goneStart)},
		{name: "exited", content: fmt.Sprintf("%d\n", gone.Process.Pid)},
		{name: "empty", content: "\n", wantErr: true},
		{name: "not a number", content: "haproxy\n", wantErr: true},
		{name: "bad start", content: fmt.Sprintf("%d x\n", self), wantErr: true},
		{name: "three fields", content: fmt.Sprintf("%d %d 1\n", self, start), wantErr: true},
		{name: "pid 1 is never ours", content: "1\n", wantErr: true},
		{name: "negative", content: "-5\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.pid")
			if !tc.missing {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			pid, st, err := ReadPidFile(path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if pid != tc.wantPid || st != tc.wantStart {
				t.Errorf("ReadPidFile = %d, %d; want %d, %d", pid, st, tc.wantPid, tc.wantStart)
			}
		})
	}
}
