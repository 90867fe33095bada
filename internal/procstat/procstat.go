// Package procstat reads a process's state and start time from
// /proc/PID/stat. A pid alone is not an identity: pids are recycled, so
// code that finds a pid in a pid file (the sandbox, dynia-pull adopting its
// daemons) keeps the start time with it and checks both.
package procstat

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// fields returns the fields of /proc/PID/stat after the command name (which
// may hold spaces and parentheses, so it is skipped up to its last ')'):
// [0] is the state, [19] the start time in clock ticks since boot.
func fields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return f, nil
}

// StartTime is the process's start time in clock ticks since boot.
func StartTime(pid int) (uint64, error) {
	f, err := fields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// State is the process's state letter ("R", "S", "Z", …), "" when it is gone.
func State(pid int) string {
	f, err := fields(pid)
	if err != nil {
		return ""
	}
	return f[0]
}

// Alive reports whether pid is still the process that started at start
// and has not exited (a zombie waiting to be reaped counts as exited).
func Alive(pid int, start uint64) bool {
	f, err := fields(pid)
	if err != nil || f[0] == "Z" || f[0] == "X" {
		return false
	}
	now, err := strconv.ParseUint(f[19], 10, 64)
	return err == nil && now == start
}

// ReadPidFile returns the process the pid file at path names if it still
// runs: its pid and start time (clock ticks since boot, as StartTime). The
// file holds "PID" (what haproxy -p, keepalived and dynia-pull's supervisor
// write) or "PID START" (the sandbox's, which keeps the identity with the
// pid); with a START a process with that pid but another start time is not
// the one named. (0, 0, nil): the file is missing, or its process exited or
// is a zombie. An error: the file cannot be read or is malformed (no
// number, a pid ≤ 1 that could never be signalled safely).
func ReadPidFile(path string) (pid int, start uint64, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("pid file: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 1 || len(f) == 2 {
		pid, err = strconv.Atoi(f[0])
	}
	if len(f) == 2 && err == nil {
		start, err = strconv.ParseUint(f[1], 10, 64)
	}
	if len(f) == 0 || len(f) > 2 || err != nil || pid <= 1 {
		return 0, 0, fmt.Errorf("pid file %s: malformed: %q", path, strings.TrimSpace(string(b)))
	}
	if start == 0 {
		if start, err = StartTime(pid); err != nil {
			return 0, 0, nil // gone
		}
	}
	if !Alive(pid, start) {
		return 0, 0, nil // exited, or the pid now names another process
	}
	return pid, start, nil
}
