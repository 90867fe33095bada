// Package signing signs and verifies the documents dynia keeps in the
// bucket — the cluster state the CLI writes, the status report each node
// writes — with Ed25519 (crypto/ed25519, RFC 8032).
//
// Every node holds read-write Spaces credentials on the bucket (Spaces keys
// are scoped per bucket, not per prefix), so the bucket's access control
// cannot stop one node from rewriting the state or another node's report.
// A signature can: the state is signed with the cluster's state key, which
// only the operator holds, and each report with its node's report key,
// which only that node holds (docs/security.md).
//
// A signed document is an envelope, a JSON object that holds the signature
// and the document itself, byte for byte as it was signed:
//
//	{"dynia_signed": "state", "signature": "<base64 of 64 bytes>", "payload":
//	{
//	  "schema_version": 1,
//	  …
//	}}
//
// The signature covers "dynia-signed\x00" + kind + "\x00" + payload, so a
// signature made for one kind of document never verifies as another. The
// payload is not re-encoded on either side (a json.RawMessage keeps the
// exact bytes), so no canonical form is needed: what the signer wrote is
// what the verifier checks.
package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/dynia/dynia/internal/fsutil"
)

// Kinds of signed documents.
const (
	KindState  = "state"  // clusters/<name>/state.json, signed by the cluster's state key
	KindReport = "report" // clusters/<name>/nodes/<id>/status.json, signed by the node's report key
)

// Errors of Open and Verify; wrapped with details.
var (
	// ErrUnsigned: the document is not an envelope, where a signed one is required.
	ErrUnsigned = errors.New("not signed")
	// ErrBadSignature: an envelope whose signature does not verify with the
	// expected key (altered, or signed by another key), or of another kind.
	ErrBadSignature = errors.New("signature does not verify")
)

// Envelope is a parsed signed document.
type Envelope struct {
	Kind      string
	Signature []byte
	// Payload is the signed document, exactly the bytes that were signed.
	Payload []byte
}

// wire is the envelope's JSON form.
type wire struct {
	Kind      *string         `json:"dynia_signed"`
	Signature string          `json:"signature"`
	Payload   json.RawMessage `json:"payload"`
}

// message is what the signature covers: a domain-separated payload.
func message(kind string, payload []byte) []byte {
	m := make([]byte, 0, len("dynia-signed")+len(kind)+2+len(payload))
	m = append(m, "dynia-signed\x00"...)
	m = append(m, kind...)
	m = append(m, 0)
	return append(m, payload...)
}

// Seal signs payload (a JSON value; surrounding whitespace is dropped) as a
// document of kind and returns the envelope, newline-terminated.
func Seal(kind string, key ed25519.PrivateKey, payload []byte) ([]byte, error) {
	payload = bytes.TrimSpace(payload)
	if !json.Valid(payload) {
		return nil, fmt.Errorf("sign %s: payload is not JSON", kind)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign %s: no signing key", kind)
	}
	sig := ed25519.Sign(key, message(kind, payload))
	k, _ := json.Marshal(kind) // a string always encodes
	var b bytes.Buffer
	b.Grow(len(payload) + 160)
	b.WriteString(`{"dynia_signed": `)
	b.Write(k)
	b.WriteString(`, "signature": "`)
	b.WriteString(base64.StdEncoding.EncodeToString(sig))
	b.WriteString(`", "payload":` + "\n")
	b.Write(payload)
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// Parse reads an envelope. A document that is not one (a JSON object without
// "dynia_signed": an unsigned document) is nil and no error; an envelope
// that is malformed is an error.
func Parse(b []byte) (*Envelope, error) {
	// One strict pass: a bare document stops it at its first field (not
	// "dynia_signed"), an envelope is read whole. Whether it is an
	// envelope is decided by that field alone, so an unsigned document is
	// never mistaken for a broken envelope, nor a broken envelope for an
	// unsigned document.
	var w wire
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&w)
	if w.Kind == nil {
		return nil, nil // not an envelope; the document's own decoder judges it
	}
	if err != nil {
		return nil, fmt.Errorf("signed envelope: %w", err)
	}
	if dec.More() {
		return nil, errors.New("signed envelope: trailing data")
	}
	sig, err := base64.StdEncoding.DecodeString(w.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("signed envelope: signature %q is not %d bytes of base64", abbrev(w.Signature), ed25519.SignatureSize)
	}
	if len(w.Payload) == 0 || string(w.Payload) == "null" {
		return nil, errors.New("signed envelope: no payload")
	}
	return &Envelope{Kind: *w.Kind, Signature: sig, Payload: w.Payload}, nil
}

// Verify checks that e is a document of kind signed by pub.
func (e *Envelope) Verify(kind string, pub ed25519.PublicKey) error {
	if e.Kind != kind {
		return fmt.Errorf("%w: signed as a %q document, not a %q", ErrBadSignature, e.Kind, kind)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: no key to verify with", ErrBadSignature)
	}
	if !ed25519.Verify(pub, message(kind, e.Payload), e.Signature) {
		return fmt.Errorf("%w with key %s", ErrBadSignature, PublicKeyString(pub))
	}
	return nil
}

// Open returns the payload of a document of kind signed by pub: an
// unsigned document is ErrUnsigned, a bad signature ErrBadSignature.
func Open(kind string, b []byte, pub ed25519.PublicKey) ([]byte, error) {
	e, err := Parse(b)
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, ErrUnsigned
	}
	if err := e.Verify(kind, pub); err != nil {
		return nil, err
	}
	return e.Payload, nil
}

// Unwrap returns the document inside an envelope without verifying it, or
// b itself when it is not an envelope: for readers that have no key to
// check with (a node made before signing, a local file) and say so.
func Unwrap(b []byte) (payload []byte, signed bool, err error) {
	e, err := Parse(b)
	if err != nil {
		return nil, false, err
	}
	if e == nil {
		return b, false, nil
	}
	return e.Payload, true, nil
}

func abbrev(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// NewKey generates a key pair (crypto/rand).
func NewKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return key, nil
}

// Public returns the public half of key.
func Public(key ed25519.PrivateKey) ed25519.PublicKey {
	return key.Public().(ed25519.PublicKey)
}

// PublicKeyString is the text form of a public key: standard base64 of
// its 32 bytes (44 characters), as the state and pull.json hold it.
func PublicKeyString(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads PublicKeyString's form.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key (base64 of 32 bytes)")
	}
	return ed25519.PublicKey(b), nil
}

// PrivateKeyString is the text form of a private key: standard base64 of
// its 32-byte seed (RFC 8032's private key), one line, like `wg genkey`.
func PrivateKeyString(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(key.Seed())
}

// ParsePrivateKey reads PrivateKeyString's form (surrounding space ignored).
// The error never carries the key.
func ParsePrivateKey(s string) (ed25519.PrivateKey, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != ed25519.SeedSize {
		return nil, errors.New("not an Ed25519 private key (base64 of a 32-byte seed)")
	}
	return ed25519.NewKeyFromSeed(b), nil
}

// LoadPrivateKey reads a key file, refusing one that others may read
// (group or world bits set). Errors name the path, never the key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("signing key %s: mode %04o lets others read it; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	key, err := ParsePrivateKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return key, nil
}

// WritePrivateKey creates path (0600, its directory 0700 if it is made)
// holding key. An existing file is never replaced: the error then wraps
// fs.ErrExist, so two processes racing to make a key keep the first one.
func WritePrivateKey(path string, key ed25519.PrivateKey) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	// Written under a temporary name (fsutil.Stage: 0600, fsynced) and
	// linked into place: the key file appears whole or not at all, and
	// link(2) fails when it exists.
	tmp, err := fsutil.Stage(path, []byte(PrivateKeyString(key)+"\n"), 0o600)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	defer func() { _ = os.Remove(tmp) }() // the link is the file now, or it failed
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("signing key %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("signing key: %w", err)
	}
	return nil
}
