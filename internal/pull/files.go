package pull

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/fsutil"
)

// writeFileAtomic writes data, mode perm, next to path, fsyncs it and
// renames it over path (its directory made 0755 when missing), so readers
// see the old or the new file, never a half-written one: fsutil's write,
// with a failed directory sync not a failure (commitFile).
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := fsutil.Stage(path, data, perm)
	if err == nil {
		err = commitFile(tmp, path)
	}
	return err
}

// stageFile writes a daemon's config to a temporary file in path's
// directory (made 0755 when missing) and fsyncs it (fsutil.Stage), for a
// check before commitFile installs it. An existing config's mode is kept:
// an operator's (or the image's) choice for haproxy.cfg or
// keepalived.conf survives dynia's rewrites.
func stageFile(path string, data []byte, perm os.FileMode) (string, error) {
	if st, err := os.Stat(path); err == nil {
		perm = st.Mode().Perm()
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("stage %s: %w", path, err)
	}
	return fsutil.Stage(path, data, perm)
}

// commitFile renames a staged file over path and fsyncs the directory
// (fsutil.Commit). The new file is in place and visible once renamed: a
// failed directory sync only loses the rename to a power cut, so it is not a
// failed install (the caller reloads next).
func commitFile(tmp, path string) error {
	if err := fsutil.Commit(tmp, path); err != nil && !errors.Is(err, fsutil.ErrDirSync) {
		return err
	}
	return nil
}

// runTool runs a validation command; a failure is an *extcmd.Error ending
// with the tail of what the tool said (stdout and stderr).
func runTool(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	_, err := extcmd.Combined(exec.CommandContext(ctx, name, args...))
	return err
}

// validateHAProxy checks a staged haproxy.cfg with `haproxy -c -f`.
func validateHAProxy(ctx context.Context, bin, path string) error {
	return runTool(ctx, bin, "-c", "-q", "-f", path)
}

// validateKeepalived checks a staged keepalived.conf with `keepalived -t -f`.
// keepalived checks interfaces in the current network namespace, which is
// the node's: dynia-pull runs there (a sandbox droplet is a network
// namespace, so the host's interfaces would be the wrong ones).
func validateKeepalived(ctx context.Context, bin, path string) error {
	return runTool(ctx, bin, "-t", "-f", path)
}
