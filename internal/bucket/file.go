package bucket

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/poll"
)

// fileStore keeps objects as files under root, one file per key. It has the
// S3 backend's semantics so tests, the sandbox and single-machine setups can
// use it in place of Spaces:
//   - writes are atomic (temp file in the same directory, fsync, rename), so
//     readers never see a partial object and need no lock;
//   - every write runs under an exclusive flock on root/.dynia-lock, which
//     makes If-Match / If-None-Match hold across goroutines and processes;
//   - ETags are the quoted hex MD5 of the content, as S3 gives for simple
//     PUTs, so identical content has identical ETags on both backends;
//   - files are 0600 and directories 0700: state sits next to secrets.
//
// One difference from S3: a key cannot also be a directory of other keys
// ("a" and "a/b" cannot both exist).
type fileStore struct {
	root string
	log  *slog.Logger
}

const lockName = reservedPrefix + "lock"

func openFile(dir string, opts Options) (*fileStore, error) {
	root, err := absDir(dir)
	if err != nil {
		return nil, fmt.Errorf("bucket: open file://%s: %w", dir, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("bucket: open file://%s: %w", root, err)
	}
	if err := checkLockSupport(); err != nil {
		return nil, fmt.Errorf("bucket: open file://%s: %w", root, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &fileStore{root: root, log: log}, nil
}

func (s *fileStore) String() string { return "file://" + filepath.ToSlash(s.root) }

func (s *fileStore) path(key string) string {
	return filepath.Join(s.root, filepath.FromSlash(key))
}

func (s *fileStore) fail(op, key string, kind error, err error) error {
	return &Error{Op: op, Store: s.String(), Key: key, Kind: kind, Err: err}
}

func (s *fileStore) Get(ctx context.Context, key, ifNoneMatch string) (*Object, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, nil, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, s.fail("get", key, nil, err)
	}
	obj, err := s.read(key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, s.fail("get", key, ErrNotFound, nil)
	case err != nil:
		return nil, s.fail("get", key, nil, err)
	case ifNoneMatch != "" && sameETag(ifNoneMatch, obj.ETag):
		return nil, s.fail("get", key, ErrNotModified, nil)
	}
	return obj, nil
}

// read returns the object at key, or ErrNotFound (also for a directory).
func (s *fileStore) read(key string) (*Object, error) {
	f, err := os.Open(s.path(key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDirSyscall) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, ErrNotFound
	}
	body, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return &Object{Body: body, ETag: etagOf(body), LastModified: st.ModTime().UTC()}, nil
}

func (s *fileStore) Put(ctx context.Context, key string, body []byte, cond Cond) (string, error) {
	if err := checkKey(key); err != nil {
		return "", s.fail("put", key, nil, err)
	}
	if cond.IfMatch != "" && cond.IfNoneMatch {
		return "", s.fail("put", key, nil, errors.New("IfMatch and IfNoneMatch are exclusive"))
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return "", s.fail("put", key, nil, err)
	}
	defer unlock()

	if cond.IfMatch != "" || cond.IfNoneMatch {
		cur, err := s.read(key)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", s.fail("put", key, nil, err)
		}
		switch {
		case cond.IfNoneMatch && exists:
			return "", s.fail("put", key, ErrPrecondition, errors.New("object exists"))
		case cond.IfMatch != "" && !exists:
			return "", s.fail("put", key, ErrPrecondition, errors.New("object does not exist"))
		case cond.IfMatch != "" && cond.IfMatch != "*" && !sameETag(cond.IfMatch, cur.ETag):
			return "", s.fail("put", key, ErrPrecondition, fmt.Errorf("ETag is %s, not %s", cur.ETag, cond.IfMatch))
		}
	}
	if err := s.writeAtomic(key, body); err != nil {
		return "", s.fail("put", key, nil, err)
	}
	return etagOf(body), nil
}

// writeAtomic writes body to key (0600) via a temporary file in the same
// directory, so a crash leaves either the old or the new content, never a
// mix; the temporary file's name starts with reservedPrefix
// (fsutil.TempPrefix), so List never shows it.
func (s *fileStore) writeAtomic(key string, body []byte) error {
	dst := s.path(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(dst, body, 0o600)
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, nil, err)
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return s.fail("delete", key, nil, err)
	}
	defer unlock()
	p := s.path(key)
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return nil // a "directory" is not an object: nothing to delete
	}
	if err := os.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDirSyscall) {
			return nil
		}
		return s.fail("delete", key, nil, err)
	}
	// Drop directories the delete emptied, like S3 prefixes that vanish
	// with their last object; the first non-empty parent stops it.
	dir := filepath.Dir(p)
	for dir != s.root && strings.HasPrefix(dir, s.root) && os.Remove(dir) == nil {
		dir = filepath.Dir(dir)
	}
	if err := fsutil.SyncDir(dir); err != nil {
		return s.fail("delete", key, nil, err)
	}
	return nil
}

func (s *fileStore) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := checkListPrefix(prefix); err != nil {
		return nil, s.fail("list", prefix, nil, err)
	}
	// Walk only the deepest directory the prefix names.
	start := s.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = s.path(prefix[:i])
	}
	var infos []Info
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDirSyscall)) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), reservedPrefix) {
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(s.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		obj, err := s.read(key)
		if errors.Is(err, ErrNotFound) {
			return nil // deleted while we walked
		}
		if err != nil {
			return err
		}
		infos = append(infos, Info{Key: key, ETag: obj.ETag, Size: int64(len(obj.Body)), LastModified: obj.LastModified})
		return nil
	})
	if err != nil {
		return nil, s.fail("list", prefix, nil, err)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	return infos, nil
}

// lock takes the store-wide write lock, polling so ctx can cancel the wait.
func (s *fileStore) lock(ctx context.Context) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(s.root, lockName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock: %w", err)
	}
	for n := 1; ; n++ {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock: %w", err)
		}
		if ok {
			return func() { unlockFile(f); f.Close() }, nil
		}
		// 1 ms doubling to 32 ms: another writer holds it for one write.
		if err := poll.Sleep(ctx, poll.Backoff(time.Millisecond, 32*time.Millisecond, n)); err != nil {
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path.Base(f.Name()), err)
		}
	}
}

// etagOf is the S3-style ETag of body: the quoted hex MD5.
func etagOf(body []byte) string {
	sum := md5.Sum(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// sameETag compares ETags ignoring quotes and the weak marker.
func sameETag(a, b string) bool {
	norm := func(e string) string { return strings.Trim(strings.TrimPrefix(e, "W/"), `"`) }
	return norm(a) == norm(b)
}
