package pull

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// writeFileAtomic writes data next to path, fsyncs it and renames it over
// path, so readers see the old or the new file, never a half-written one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := stageFile(path, data, perm)
	if err != nil {
		return err
	}
	return commitFile(tmp, path)
}

// stageFile writes data to a temporary file in path's directory (same file
// system, so the rename is atomic) and fsyncs it. An existing file's mode is
// kept.
func stageFile(path string, data []byte, perm os.FileMode) (string, error) {
	if st, err := os.Stat(path); err == nil {
		perm = st.Mode().Perm()
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("stage %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".dynia-*")
	if err != nil {
		return "", fmt.Errorf("stage %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: the write error is the one to report
		return "", fmt.Errorf("stage %s: %w", path, err)
	}
	return tmp, nil
}

// commitFile renames a staged file over path and fsyncs the directory.
func commitFile(tmp, path string) error {
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp) // best effort: the rename error is the one to report
		return fmt.Errorf("install %s: %w", path, err)
	}
	// The new file is in place and visible. Syncing the directory only makes
	// the rename survive a power cut, so it is best effort, not a failed install.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
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
