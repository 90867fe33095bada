// Package secrets seals what nodes need and nobody else may read —
// secret environment values, registry credentials, certificates — with the
// cluster key: an age X25519 key pair (filippo.io/age, age-encryption.org/v1).
// The CLI seals to the public recipient, which the state carries; the
// identity (private half) lives only in the operator's config directory and
// in each node's user-data (/etc/dynia/cluster.key, 0600). The state may be
// read by anyone with the bucket key; sealed values stay opaque to them.
package secrets

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// NewKey generates a cluster key: the identity (AGE-SECRET-KEY-1…, keep it
// secret) and its recipient (age1…, public).
func NewKey() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("generate cluster key: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// RecipientOf returns the public recipient of an identity.
func RecipientOf(identity string) (string, error) {
	id, err := age.ParseX25519Identity(strings.TrimSpace(identity))
	if err != nil {
		return "", errors.New("cluster key: not an age X25519 identity")
	}
	return id.Recipient().String(), nil
}

// Seal encrypts plaintext to recipient and returns it ASCII-armored.
func Seal(recipient string, plaintext []byte) (string, error) {
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		return "", fmt.Errorf("seal: recipient: %w", err)
	}
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	if err := aw.Close(); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	return buf.String(), nil
}

// Open decrypts an armored value sealed to identity's recipient. The error
// never carries the key.
func Open(identity, sealed string) ([]byte, error) {
	id, err := age.ParseX25519Identity(strings.TrimSpace(identity))
	if err != nil {
		return nil, errors.New("open sealed value: the cluster key is not an age X25519 identity")
	}
	r, err := age.Decrypt(armor.NewReader(strings.NewReader(sealed)), id)
	if err != nil {
		return nil, fmt.Errorf("open sealed value (sealed to another cluster key?): %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("open sealed value: %w", err)
	}
	return b, nil
}

// LoadIdentity reads an identity file, refusing one that others may read.
func LoadIdentity(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("cluster key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("cluster key %s: mode %04o lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("cluster key: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if _, err := RecipientOf(id); err != nil {
		return "", fmt.Errorf("cluster key %s: %w", path, err)
	}
	return id, nil
}

// Release is what a release seals: the secret part of its environment and
// the registry credentials nodes pull its image with.
type Release struct {
	Env          map[string]string `json:"env,omitempty"`
	RegistryAuth *RegistryAuth     `json:"registry_auth,omitempty"`
}

// RegistryAuth is a login for one registry.
type RegistryAuth struct {
	Server   string `json:"server"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// IdentityToken is an OAuth refresh token some registries hand out
	// instead of a password.
	IdentityToken string `json:"identity_token,omitempty"`
}

// String hides the secret parts (a %v in a log is safe).
func (a RegistryAuth) String() string {
	return fmt.Sprintf("{Server:%s Username:%s Password:[redacted]}", a.Server, a.Username)
}

// SealRelease seals r (nothing to seal: "").
func SealRelease(recipient string, r Release) (string, error) {
	if len(r.Env) == 0 && r.RegistryAuth == nil {
		return "", nil
	}
	b, err := json.Marshal(r)
	if err != nil {
		return "", err
	}
	return Seal(recipient, b)
}

// OpenRelease opens a release's sealed secrets ("" opens to nothing).
func OpenRelease(identity, sealed string) (Release, error) {
	var r Release
	if sealed == "" {
		return r, nil
	}
	b, err := Open(identity, sealed)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("open sealed release: %w", err)
	}
	return r, nil
}

// Sealer seals to the cluster key and opens with it (acme.Sealer: the
// ACME account key and the certificate key are stored sealed). Identity
// may be empty when only sealing is needed.
type Sealer struct {
	Recipient string
	Identity  string
}

// Seal encrypts b to the recipient (armored).
func (s Sealer) Seal(b []byte) ([]byte, error) {
	out, err := Seal(s.Recipient, b)
	return []byte(out), err
}

// Open decrypts b with the identity.
func (s Sealer) Open(b []byte) ([]byte, error) {
	if s.Identity == "" {
		return nil, errors.New("open sealed value: no cluster key")
	}
	return Open(s.Identity, string(b))
}
