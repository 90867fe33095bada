package mesh

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/dynia/dynia/internal/fsutil"
)

// LoadOrCreateKey returns the WireGuard private key stored at path,
// creating it when the file does not exist: a new Curve25519 key (wgtypes,
// clamped as WireGuard requires), written base64 with a newline — the
// format of `wg genkey`, so `wg` reads the file too — to a 0600 file in a
// 0700 directory, atomically (temporary file, fsync, rename). created says
// whether it did. A key file readable by group or others is tightened to
// 0600 (fixed reports it) rather than refused: refusing would leave the
// node without VRRP, and the key never leaves the node anyway. Errors name
// the path, never the key.
func LoadOrCreateKey(path string) (key wgtypes.Key, created, fixed bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err = wgtypes.ParseKey(strings.TrimSpace(string(b)))
		if err != nil {
			return wgtypes.Key{}, false, false, fmt.Errorf("mesh key %s: not a base64 WireGuard key", path)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return wgtypes.Key{}, false, false, fmt.Errorf("mesh key %s: %w", path, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return wgtypes.Key{}, false, false, fmt.Errorf("mesh key %s is readable by others and chmod 600 failed: %w", path, err)
			}
			fixed = true
		}
		return key, false, fixed, nil
	case !errors.Is(err, fs.ErrNotExist):
		return wgtypes.Key{}, false, false, fmt.Errorf("mesh key %s: %w", path, err)
	}
	key, err = wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, false, false, fmt.Errorf("mesh key %s: generate: %w", path, err)
	}
	if err := writeKey(path, key); err != nil {
		return wgtypes.Key{}, false, false, err
	}
	return key, true, false, nil
}

// writeKey writes key to path atomically, 0600, in a directory created
// 0700.
func writeKey(path string, key wgtypes.Key) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("mesh key %s: %w", path, err)
	}
	// The key in place is a key written: a failed directory sync only loses
	// the rename to a power cut, and a lost key is made again and re-learned
	// by the peers from the next status report.
	if err := fsutil.WriteFileAtomic(path, []byte(key.String()+"\n"), 0o600); err != nil && !errors.Is(err, fsutil.ErrDirSync) {
		return fmt.Errorf("mesh key %s: %w", path, err)
	}
	return nil
}
