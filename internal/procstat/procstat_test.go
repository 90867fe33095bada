package procstat

import (
	"os"
	"os/exec"
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
