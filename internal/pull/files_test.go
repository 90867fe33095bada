package pull

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFileAtomicMode: a file dynia-pull writes gets the mode asked
// for, also over an existing file with another (a secret written 0600 is
// never left 0644); a config staged for install keeps its existing mode.
func TestWriteFileAtomicMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "accepted-state.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after writeFileAtomic(0600) over a 0644 file: %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new" {
		t.Fatalf("content %q, want new", b)
	}

	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	tmp, err := stageFile(cfg, []byte("new"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := commitFile(tmp, cfg); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(cfg); err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("installed config's mode: %v, %v; want the existing 0640", fi.Mode().Perm(), err)
	}
}
