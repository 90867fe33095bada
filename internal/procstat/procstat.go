// Package procstat reads a process's state and start time from
// /proc/PID/stat. A pid alone is not an identity: pids are recycled, so
// code that finds a pid in a pid file (the sandbox, dynia-pull adopting its
// daemons) keeps the start time with it and checks both.
package procstat

import (
	"fmt"
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
