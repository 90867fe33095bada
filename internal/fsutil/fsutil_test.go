package fsutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteFileAtomic(t *testing.T) {
	// A umask that would strip the modes below if the write used it.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	tests := []struct {
		name    string
		existed bool
		perm    os.FileMode
	}{
		{"new secret", false, 0o600},
		{"new world-readable", false, 0o644},
		{"replaces, mode from perm", true, 0o640},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f.conf")
			if tc.existed {
				if err := os.WriteFile(path, []byte("old"), 0o666); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFileAtomic(path, []byte("new\n"), tc.perm); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != "new\n" {
				t.Fatalf("content %q, %v; want %q", b, err, "new\n")
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.perm)
			}
			assertOnly(t, dir, "f.conf")
		})
	}
}

func TestStageRefusedLeavesTheOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp, err := Stage(path, []byte("new"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(tmp) != dir {
		t.Errorf("staged in %s, want %s (rename is atomic on one file system only)", filepath.Dir(tmp), dir)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Errorf("staging changed the file: %q", b)
	}
	if err := os.Remove(tmp); err != nil { // the caller's refusal
		t.Fatal(err)
	}
	assertOnly(t, dir, "haproxy.cfg")
}

func TestWriteFileAtomicErrors(t *testing.T) {
	dir := t.TempDir()
	// No directory: nothing written, the error names the path.
	missing := filepath.Join(dir, "no", "f")
	if err := WriteFileAtomic(missing, []byte("x"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v, want ErrNotExist", err)
	}
	// A rename over a directory fails: the temporary file is removed.
	target := filepath.Join(dir, "d")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(target, []byte("x"), 0o600); err == nil || errors.Is(err, ErrDirSync) {
		t.Errorf("rename over a non-empty directory: %v, want a rename error", err)
	}
	assertOnly(t, dir, "d")
}

// assertOnly fails unless dir holds exactly the named entries (no temporary
// file left behind).
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if diff := cmp.Diff(names, got); diff != "" {
		t.Fatalf("%s (-want +got):\n%s", dir, diff)
	}
}
