package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/secrets"
)

// The cluster key is an age X25519 key pair (internal/secrets): the state
// carries its public recipient, the operator's config directory and each
// node's user-data its identity. Another machine that manages the cluster
// (CI) needs a copy of the key file, like the Spaces key.

// clusterKeyPath is <config dir>/keys/<cluster>-<8 hex of the state URL>.key,
// so two buckets' clusters of the same name never share a key.
func (f *Factory) clusterKeyPath(name string) (string, error) {
	base, err := f.keyBase(name)
	if err != nil {
		return "", err
	}
	return base + ".key", nil
}

// keyBase is <config dir>/keys/<cluster>-<8 hex of the state URL>: the
// cluster key, the state key (.sign.key) and the newest state this
// machine accepted (.seen.json) are named after it.
func (f *Factory) keyBase(name string) (string, error) {
	cfg, _, err := f.Config()
	if err != nil {
		return "", err
	}
	u, err := f.StateURL()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(u))
	return filepath.Join(filepath.Dir(cfg.path), "keys", name+"-"+hex.EncodeToString(sum[:4])), nil
}

// stateKeys are this machine's state keys (docs/security.md): the store
// signs every state it writes with the cluster's key and refuses a state
// that does not verify, or that is older than one it accepted before. The
// key is made at the first write (create-ha, or the first write to a
// cluster made before signing) and reused; another machine that manages
// the cluster needs a copy, like the cluster key.
func (f *Factory) stateKeys() cluster.FileKeys {
	return cluster.FileKeys{Base: f.keyBase}
}

// checkStateKeyFile refuses cluster name's state key file when others may
// read it (group or world bits set), as a UsageError naming the file and
// its mode. It only stats the file: commands call it while checking their
// flags, before the bucket is read or the API called (the store's own
// check, signing.LoadPrivateKey, runs only after the state is read). A
// name that is not valid, a config or state location that cannot be
// resolved, or no key file (a cluster not made yet) pass: the command
// reports those itself, as it did before.
func (f *Factory) checkStateKeyFile(name string) error {
	if cluster.ValidateName(name) != nil {
		return nil
	}
	path, err := f.stateKeys().KeyPath(name)
	if err != nil {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return usagef("state key %s: mode %04o lets others read it; chmod 600 it", path, perm)
	}
	return nil
}

// clusterKey returns the cluster's identity for st: the key file's, which
// must match the state's recipient. A state without a recipient (a cluster
// created before keys) has none: "". create makes a key when neither the
// state nor the file has one.
func (f *Factory) clusterKey(st *cluster.State, create bool) (identity, recipient string, err error) {
	path, err := f.clusterKeyPath(st.Name)
	if err != nil {
		return "", "", err
	}
	id, err := secrets.LoadIdentity(path)
	switch {
	case err == nil:
		rcpt, _ := secrets.RecipientOf(id)
		if st.SecretsRecipient != "" && rcpt != st.SecretsRecipient {
			return "", "", fmt.Errorf("cluster key %s is not cluster %s's (its recipient is %s, the state's %s)", path, st.Name, rcpt, st.SecretsRecipient)
		}
		return id, rcpt, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", "", err
	case st.SecretsRecipient != "":
		return "", "", fmt.Errorf("cluster %s has a cluster key, but not here: copy its key file to %s (mode 0600)", st.Name, path)
	case !create:
		return "", "", nil
	}
	id, rcpt, err := secrets.NewKey()
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", fmt.Errorf("cluster key: %w", err)
	}
	// O_EXCL: two commands racing to make the key never overwrite the
	// one that won (whose recipient may already be in the state).
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return f.clusterKey(st, false)
	}
	if err != nil {
		return "", "", fmt.Errorf("cluster key: %w", err)
	}
	if _, err := fh.WriteString(id + "\n"); err != nil {
		fh.Close()
		return "", "", fmt.Errorf("cluster key: %w", err)
	}
	if err := fh.Close(); err != nil {
		return "", "", fmt.Errorf("cluster key: %w", err)
	}
	return id, rcpt, nil
}
