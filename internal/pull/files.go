package pull

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dynia/dynia/internal/fsutil"
)

// writeFileAtomic writes data next to path, fsyncs it and renames it over
// path, so readers see the old or the new file, never a half-written one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := stageFile(path, data, perm)
	if err == nil {
		err = commitFile(tmp, path)
	}
	return err
}

// stageFile writes data to a temporary file in path's directory (made 0755
// when missing) and fsyncs it (fsutil.Stage). An existing file's mode is
// kept.
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

// ToolError is a config the real tool rejected; Output is what it said.
type ToolError struct {
	Cmd    string
	Err    error
	Output string
}

func (e *ToolError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Cmd, e.Err, e.Output)
}

func (e *ToolError) Unwrap() error { return e.Err }

// runTool runs a validation command and returns a ToolError carrying its
// output when it fails.
func runTool(ctx context.Context, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &ToolError{Cmd: name + " " + strings.Join(args, " "), Err: err, Output: lastLines(out.String(), 8)}
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
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
