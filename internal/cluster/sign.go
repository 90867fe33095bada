package cluster

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/signing"
)

// The state object is signed (internal/signing, docs/security.md): the CLI
// writes it as an envelope signed with the cluster's state key, and every
// reader that holds the public half — each node (pull.json's
// state_public_key), each CLI with the key file — refuses a document that
// does not verify. Every node can write the bucket; only the operator can
// sign.

// SignatureError is a state object that is not signed by the key its
// reader trusts: unsigned, altered, or signed by another key.
type SignatureError struct{ Err error }

func (e *SignatureError) Error() string { return "state signature: " + e.Err.Error() }
func (e *SignatureError) Unwrap() error { return e.Err }

// EncodeSigned validates the state and returns it as a signed envelope:
// Encode's bytes, signed with key. The state must name key's public half
// in SigningKey, so that a reader can tell which key signed it.
func (s *State) EncodeSigned(key ed25519.PrivateKey) ([]byte, error) {
	if want := signing.PublicKeyString(signing.Public(key)); s.SigningKey != want {
		return nil, fmt.Errorf("state of %s names signing key %q, not the key it is signed with (%s)", s.Name, s.SigningKey, want)
	}
	b, err := s.Encode()
	if err != nil {
		return nil, err
	}
	return signing.Seal(signing.KindState, key, b)
}

// DecodeSigned reads a state object. With pub, only an envelope signed by
// pub is accepted, whose document also names pub as its signing_key; any
// other is a *SignatureError (and a bad document inside a good envelope
// the error Decode returns). Without pub the signature is not checked:
// an envelope's document and a bare document are both decoded, for a
// reader that has no key (a node made before signing, a local file).
func DecodeSigned(b []byte, pub ed25519.PublicKey) (*State, error) {
	return decodeSigned(b, pub, Decode)
}

// DecodeSignedNode is DecodeSigned for dynia-pull of build version
// pullVersion: the document is read with DecodeNode. The signature covers
// the payload's bytes as stored, so a document with fields this build
// does not know verifies like any other.
func DecodeSignedNode(b []byte, pub ed25519.PublicKey, pullVersion string) (*State, error) {
	return decodeSigned(b, pub, func(p []byte) (*State, error) { return DecodeNode(p, pullVersion) })
}

func decodeSigned(b []byte, pub ed25519.PublicKey, decode func([]byte) (*State, error)) (*State, error) {
	if pub == nil {
		payload, _, err := signing.Unwrap(b)
		if err != nil {
			return nil, fmt.Errorf("state: %w", err)
		}
		return decode(payload)
	}
	payload, err := signing.Open(signing.KindState, b, pub)
	if err != nil {
		if errors.Is(err, signing.ErrUnsigned) || errors.Is(err, signing.ErrBadSignature) {
			return nil, &SignatureError{fmt.Errorf("%w%s (this reader trusts key %s)", err, namedKey(b), signing.PublicKeyString(pub))}
		}
		return nil, fmt.Errorf("state: %w", err)
	}
	st, err := decode(payload)
	if err != nil {
		return nil, err
	}
	if want := signing.PublicKeyString(pub); st.SigningKey != want {
		return nil, &SignatureError{fmt.Errorf("signed with key %s, but the document names signing key %q", want, st.SigningKey)}
	}
	return st, nil
}

// namedKey says which signing key an unverified document names, for an
// error message ("" when none can be read).
func namedKey(b []byte) string {
	payload, _, err := signing.Unwrap(b)
	if err != nil {
		return ""
	}
	var doc struct {
		SigningKey string `json:"signing_key"`
	}
	if json.Unmarshal(payload, &doc) != nil || doc.SigningKey == "" {
		return ""
	}
	return fmt.Sprintf("; the document names signing key %s", doc.SigningKey)
}

// IsSigned reports whether a state object is a signed envelope (not
// whether its signature verifies).
func IsSigned(b []byte) bool {
	e, err := signing.Parse(b)
	return err == nil && e != nil
}

// validateKeys checks the public keys the state holds.
func (s *State) validateKeys() error {
	if s.SigningKey != "" {
		if _, err := signing.ParsePublicKey(s.SigningKey); err != nil {
			return fieldErr("signing_key", s.SigningKey, "%v", err)
		}
	}
	for i, n := range s.Nodes {
		if n.ReportKey == "" {
			continue
		}
		if _, err := signing.ParsePublicKey(n.ReportKey); err != nil {
			return fieldErr(fmt.Sprintf("nodes[%d].report_key", i), n.ReportKey, "%v", err)
		}
	}
	return nil
}

// SetReportKeys records nodes' report keys (id → public half, base64):
// the CLI does so before it creates a node's droplet, whose user-data
// carries the private half. ErrNoChange when every node already has its.
func SetReportKeys(s *State, keys map[string]string) (*State, error) {
	next := s.Clone()
	changed := false
	for id, k := range keys {
		n := next.Node(id)
		if n == nil {
			return nil, fieldErr("node", id, "not in cluster %s", s.Name)
		}
		if n.ReportKey != k {
			n.ReportKey, changed = k, true
		}
	}
	if !changed {
		return nil, ErrNoChange
	}
	return next, next.Validate()
}

// Resign signs the state object as the bucket holds it now, without
// verifying it first: the operator's way back after the object was
// replaced (tampered with, or a signed write was interrupted), once they
// have looked at what it holds. The document must still decode. It is
// written with this machine's key (made if there is none), generation
// max(its own, minGeneration) + 1 — above what nodes applied, or they
// refuse it as a replay — under If-Match on the object read.
func (s *Store) Resign(ctx context.Context, name string, minGeneration int64) (*State, error) {
	if s.Keys == nil {
		return nil, fmt.Errorf("%w: resign %s", ErrNoSigningKey, name)
	}
	obj, err := s.B.Get(ctx, StateKey(name), "")
	if errors.Is(err, bucket.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s (no %s)", ErrClusterNotFound, name, s.object(name))
	}
	if err != nil {
		return nil, fmt.Errorf("read state of %s: %w", name, err)
	}
	st, err := DecodeSigned(obj.Body, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (nothing to sign: fix or restore the document first)", s.object(name), err)
	}
	if st.Name != name {
		return nil, fmt.Errorf("%s: the document is cluster %q's", s.object(name), st.Name)
	}
	// Never a new key for a signed-era cluster: its nodes pin the key they
	// were given and would refuse everything signed with another.
	if key, path, err := s.Keys.SigningKey(name, false); err != nil {
		return nil, err
	} else if key == nil && (st.SigningKey != "" || signedEra(st)) {
		return nil, fmt.Errorf("%w: cluster %s's nodes pin the state key its states were signed with; this machine has none (%s): resign on the machine that holds it", ErrNoSigningKey, name, path)
	}
	if minGeneration >= math.MaxInt64/2 || st.Generation >= math.MaxInt64/2 {
		return nil, fmt.Errorf("%s: generation %d (or %d) is out of range", s.object(name), st.Generation, minGeneration)
	}
	st.Generation = max(st.Generation, minGeneration) + 1
	st.UpdatedAt = s.now()
	st.withOp(NewOpID())
	b, err := s.encode(st)
	if err != nil {
		return nil, err
	}
	if _, err := s.B.Put(ctx, StateKey(name), b, bucket.Cond{IfMatch: obj.ETag}); err != nil {
		return nil, fmt.Errorf("resign %s: %w (if it changed meanwhile, look again and re-run)", name, err)
	}
	s.accepted(st)
	return st, nil
}
