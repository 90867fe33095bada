package acme

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// aesGCMSealer seals with AES-256-GCM: a random 12-byte nonce followed by
// the ciphertext and its 16-byte tag.
type aesGCMSealer struct{ aead cipher.AEAD }

// NewAESGCMSealer returns a Sealer using AES-256-GCM with a 32-byte key.
// Output: nonce (12 bytes) || ciphertext || tag (16 bytes).
func NewAESGCMSealer(key []byte) (Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("acme: AES-GCM sealer: key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("acme: AES-GCM sealer: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("acme: AES-GCM sealer: %w", err)
	}
	return aesGCMSealer{aead: aead}, nil
}

func (s aesGCMSealer) Seal(plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("acme: seal: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plaintext, nil), nil
}

func (s aesGCMSealer) Open(sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, errors.New("acme: open: sealed data too short")
	}
	out, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		// The cause is always "message authentication failed": a wrong
		// key or tampered bytes. Say so without echoing the bytes.
		return nil, errors.New("acme: open: wrong key or corrupted data")
	}
	return out, nil
}
