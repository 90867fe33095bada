package cluster

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/signing"
)

// FileKeys keeps Keys in files: for each cluster, Base(name) + ".sign.key"
// holds the state key (Ed25519 seed, base64, 0600; refused when others may
// read it) and Base(name) + ".seen.json" the newest state this machine
// accepted (created_at and generation), against replays.
type FileKeys struct {
	// Base maps a cluster name to its files' path without extension, e.g.
	// <config dir>/keys/<cluster>-<8 hex of the state URL>.
	Base func(cluster string) (string, error)
}

// KeyPath is the cluster's state key file.
func (k FileKeys) KeyPath(name string) (string, error) {
	b, err := k.Base(name)
	if err != nil {
		return "", err
	}
	return b + ".sign.key", nil
}

// SigningKey implements Keys.
func (k FileKeys) SigningKey(name string, create bool) (ed25519.PrivateKey, string, error) {
	path, err := k.KeyPath(name)
	if err != nil {
		return nil, "", err
	}
	key, err := signing.LoadPrivateKey(path)
	switch {
	case err == nil:
		return key, path, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, path, fmt.Errorf("cluster %s: %w", name, err)
	case !create:
		return nil, path, nil
	}
	if key, err = signing.NewKey(); err != nil {
		return nil, path, err
	}
	if err := signing.WritePrivateKey(path, key); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return k.SigningKey(name, false) // another command made it first: use that one
		}
		return nil, path, fmt.Errorf("cluster %s: %w", name, err)
	}
	return key, path, nil
}

// Retire sets aside the state key of a cluster this machine saw before
// (it has a .seen.json record) and forgets that record, so the next
// create-ha of the name signs with a new key. Nodes of the new cluster pin
// the new key: a signed state of the earlier cluster put back in the
// bucket then fails their signature check instead of being applied (and
// raising their replay floor above every genuine state). A key never used
// for an accepted state (a create-ha that stopped before its first write)
// is kept. The old key is renamed to .sign.key.retired-<unix seconds>, not
// deleted.
func (k FileKeys) Retire(name string) error {
	base, err := k.Base(name)
	if err != nil {
		return err
	}
	unlock, err := lockFile(base + ".seen.lock")
	if err != nil {
		return fmt.Errorf("retire cluster %s's state key: %w", name, err)
	}
	defer unlock()
	if _, err := os.Stat(base + ".seen.json"); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	key := base + ".sign.key"
	if err := os.Rename(key, fmt.Sprintf("%s.retired-%d", key, time.Now().Unix())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("retire cluster %s's state key: %w", name, err)
	}
	if err := os.Remove(base + ".seen.json"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("retire cluster %s's state key: %w", name, err)
	}
	return nil
}

// seen is the newest state of a cluster this machine accepted. A state of
// a cluster created again under the same name has a later created_at.
type seen struct {
	CreatedAt  time.Time `json:"created_at"`
	Generation int64     `json:"generation"`
}

// ErrReplayed means a state is older than one this reader already accepted.
var ErrReplayed = errors.New("state older than one already accepted (an old state put back?)")

// Accept implements Keys: it refuses a state older than the newest this
// machine accepted of the same cluster, and records a newer one.
func (k FileKeys) Accept(st *State) error {
	base, err := k.Base(st.Name)
	if err != nil {
		return err
	}
	path := base + ".seen.json"
	// Commands on this machine accept states concurrently: the record is
	// read, compared and replaced under a lock, so it only ever grows
	// (two unlocked writers could put back the lower of two generations).
	unlock, err := lockFile(base + ".seen.lock")
	if err != nil {
		return fmt.Errorf("record the accepted state: %w", err)
	}
	defer unlock()
	var last seen
	if b, err := os.ReadFile(path); err == nil {
		if json.Unmarshal(b, &last) != nil {
			last = seen{} // unreadable: start over rather than refuse every state
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	now := seen{CreatedAt: st.CreatedAt.UTC(), Generation: st.Generation}
	switch {
	case now.CreatedAt.Before(last.CreatedAt):
		return fmt.Errorf("%w: generation %d of a cluster created %s, but this machine already saw the cluster created %s (generation %d); see %s",
			ErrReplayed, now.Generation, now.CreatedAt.Format(time.RFC3339), last.CreatedAt.Format(time.RFC3339), last.Generation, path)
	case now.CreatedAt.Equal(last.CreatedAt) && now.Generation < last.Generation:
		return fmt.Errorf("%w: generation %d, but this machine already saw generation %d (%s)", ErrReplayed, now.Generation, last.Generation, path)
	case now == last:
		return nil
	}
	b, _ := json.Marshal(now) // two plain fields always encode
	if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record the accepted state: %w", err)
	}
	return nil
}

// lockFile takes an exclusive flock on path (made 0600 if missing) and
// returns its release. flock locks belong to the open file description,
// so two goroutines of one process exclude each other as two processes do.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// writeFileAtomic writes a file by rename, so a reader never sees half, in
// a directory made 0700 when it is missing.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, data, mode)
}

// Seen is the newest generation of cluster name this machine accepted
// (0: none), whatever cluster incarnation it was of.
func (k FileKeys) Seen(name string) (int64, error) {
	base, err := k.Base(name)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(base + ".seen.json")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var last seen
	if json.Unmarshal(b, &last) != nil {
		return 0, nil
	}
	return last.Generation, nil
}
