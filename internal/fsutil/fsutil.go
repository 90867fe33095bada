// Package fsutil is the one atomic file write of the module: readers of a
// path see its old content or its new content, never a part, and the new
// content survives a power cut once the write returned nil.
//
// The write is the POSIX recipe (rename(2) replaces its target atomically
// when both names are on one file system, so the temporary file lives in
// the target's directory): create a temporary file (0600 from its first
// byte, os.CreateTemp), set its mode, write, fsync(2), close, rename over
// the target, fsync the directory so the rename itself is durable.
package fsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrDirSync marks the one failure after which the new file is already in
// place: the directory's fsync, which only makes the rename survive a power
// cut. A caller for which a visible file is an installed file (it reloads a
// daemon next, say) may treat it as success with errors.Is.
var ErrDirSync = errors.New("sync directory")

// TempPrefix starts the name of every temporary file Stage makes, followed
// by the target's name: the file:// bucket hides names starting with
// ".dynia-" from its listings, so a write in progress is never an object.
const TempPrefix = ".dynia-tmp-"

// WriteFileAtomic replaces path with data, mode perm (not masked by the
// umask: the mode is set with fchmod). path's directory must exist. On an
// error path is left as it was (except for ErrDirSync, see there) and no
// temporary file is left behind.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := Stage(path, data, perm)
	if err != nil {
		return err
	}
	return Commit(tmp, path)
}

// Stage writes data, mode perm, to a new temporary file in path's directory
// (TempPrefix, path's name, a random suffix) and fsyncs it; it returns the temporary
// file's name, for Commit, or to remove when the content is refused (by a
// config check, say). On an error nothing is left behind.
func Stage(path string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempPrefix+filepath.Base(path)+"-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	// The mode first: the data is never readable beyond what perm allows
	// (CreateTemp makes the file 0600).
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: the write error is the one to report
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return tmp, nil
}

// Commit renames tmp (from Stage) over path and fsyncs path's directory.
// When the rename fails tmp is removed; when only the directory's fsync
// fails the error wraps ErrDirSync.
func Commit(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp) // best effort: the rename error is the one to report
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: %w: %w", path, ErrDirSync, err)
	}
	return nil
}

// SyncDir fsyncs directory dir, which makes the creation, rename or removal
// of a name in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
