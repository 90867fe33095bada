package bucket_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/fsutil"
)

func openFileStore(t *testing.T) bucket.Store {
	t.Helper()
	s, err := bucket.Open(context.Background(), "file://"+t.TempDir()+"/store", bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFileConformance(t *testing.T) {
	t.Parallel()
	runConformance(t, openFileStore)
}

func TestFilePermissionsAndLeftovers(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := bucket.Open(context.Background(), "file://"+dir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "clusters/demo/state.json", "{}", bucket.Cond{})
	mustPut(t, s, "clusters/demo/state.json", "{}", bucket.Cond{IfMatch: `"99914b932bd37a50b983c5e7c90ae93b"`}) // md5("{}")
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
		if strings.Contains(d.Name(), "tmp") {
			t.Errorf("temp file left behind: %s", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.String(), "file://"+dir; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestFileRelativeURL(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	s, err := bucket.Open(context.Background(), "file://rel/store", bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "k", "v", bucket.Cond{})
	if _, err := os.Stat(filepath.Join(dir, "rel", "store", "k")); err != nil {
		t.Errorf("object not under the relative directory: %v", err)
	}
}

// TestFileCrossProcessCAS runs several processes (this test binary again)
// that each increment a counter object with If-Match retries: if the lock
// did not hold across processes, increments would be lost.
func TestFileCrossProcessCAS(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	s, err := bucket.Open(context.Background(), "file://"+dir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "counter", "0", bucket.Cond{})
	const procs, incs = 4, 25
	cmds := make([]*exec.Cmd, procs)
	for i := range cmds {
		cmds[i] = exec.Command(os.Args[0], "-test.run=^TestHelperIncrement$")
		cmds[i].Env = append(os.Environ(), "DYNIA_BUCKET_HELPER_DIR="+dir, "DYNIA_BUCKET_HELPER_N="+strconv.Itoa(incs))
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("helper %d: %v", c.Process.Pid, err)
		}
	}
	if got, want := mustGet(t, s, "counter"), strconv.Itoa(procs*incs); got != want {
		t.Errorf("counter = %s, want %s (lost updates)", got, want)
	}
}

// TestHelperIncrement is the child of TestFileCrossProcessCAS.
func TestHelperIncrement(t *testing.T) {
	dir := os.Getenv("DYNIA_BUCKET_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestFileCrossProcessCAS")
	}
	n, _ := strconv.Atoi(os.Getenv("DYNIA_BUCKET_HELPER_N"))
	ctx := context.Background()
	s, err := bucket.Open(ctx, "file://"+dir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		for attempt := 0; ; attempt++ {
			if attempt > 10000 {
				t.Fatal("no progress")
			}
			obj, err := s.Get(ctx, "counter", "")
			if err != nil {
				t.Fatal(err)
			}
			v, _ := strconv.Atoi(string(obj.Body))
			_, err = s.Put(ctx, "counter", fmt.Appendf(nil, "%d", v+1), bucket.Cond{IfMatch: obj.ETag})
			if err == nil {
				break
			}
			if !errors.Is(err, bucket.ErrPrecondition) {
				t.Fatal(err)
			}
		}
	}
}

func TestFileLockHonoursContext(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, err := bucket.Open(context.Background(), "file://"+dir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the lock from "another process" (another open file description).
	f, err := os.OpenFile(filepath.Join(dir, ".dynia-lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := flock(f); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "k", []byte("v"), bucket.Cond{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Put while locked with a cancelled context: %v, want context.Canceled", err)
	}
}

func flock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }

// A write in progress (fsutil's temporary file, in the key's directory) is
// not an object: List hides it by its name.
func TestFileListHidesWritesInProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := bucket.Open(ctx, "file://"+dir, bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "clusters/demo/state.json", "{}", bucket.Cond{})
	tmp, err := fsutil.Stage(filepath.Join(dir, "clusters/demo/state.json"), []byte("{\"half\""), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(tmp)
	infos, err := s.List(ctx, "clusters/")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, in := range infos {
		keys = append(keys, in.Key)
	}
	if diff := cmp.Diff([]string{"clusters/demo/state.json"}, keys); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
}
