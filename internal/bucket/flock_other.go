//go:build !unix

package bucket

import (
	"errors"
	"os"
)

var errNotDirSyscall = errors.New("not a directory")

func checkLockSupport() error {
	return errors.New("the file:// store needs flock (Linux, macOS, BSD)")
}

func tryLock(*os.File) (bool, error) { return false, checkLockSupport() }
func unlockFile(*os.File)            {}
