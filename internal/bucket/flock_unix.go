//go:build unix

package bucket

import (
	"errors"
	"os"
	"syscall"
)

// errNotDirSyscall: opening "a/b" when "a" is a file is "not found" to us.
var errNotDirSyscall error = syscall.ENOTDIR

func checkLockSupport() error { return nil }

// tryLock takes an exclusive flock without blocking. flock locks belong to
// the open file description, so two opens in one process exclude each other
// just as two processes do.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

func unlockFile(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
