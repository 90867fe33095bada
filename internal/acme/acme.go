// Package acme obtains, stores and renews the cluster's HTTPS certificate
// with ACME (RFC 8555) HTTP-01 validation through the cluster itself, on
// go-acme/lego's protocol code (acme/api, certificate, registration,
// challenge/http01).
//
// Every node's HAProxy sends /.well-known/acme-challenge/ to dynia-pull,
// which answers from the bucket (ChallengeHandler), so whichever node holds
// the Reserved IP when the CA connects answers the challenge. One node at a
// time orders or renews, under a lease object (Issuer.Lease) created with
// If-None-Match: * and taken over with If-Match only once expired. All the
// state lives in the bucket under "tls/" (see docs/tls.md):
//
//	tls/lease.json          the renewal lease (holder, expiry)             Issuer
//	tls/account.json        ACME account URL + sealed account key          Issuer
//	tls/cert.json           metadata in clear + sealed chain and key       Issuer
//	tls/order.json          the last failed order (for back-off)           Issuer
//	tls/challenges/<token>  HTTP-01 key authorization, during a challenge  Issuer
//
// Private keys are only ever stored sealed (Sealer: the cluster key's
// encryption); the metadata beside them (serial, names, validity) is
// readable without the key so a node can tell whether anything changed.
// Every node checks a certificate with Verify (chain, key, names, dates)
// before installing it. There is no OCSP stapling: Let's Encrypt ended its
// OCSP service in 2025 (https://letsencrypt.org/2024/12/05/ending-ocsp/).
package acme

import (
	"context"
	"strings"

	"github.com/dynia/dynia/internal/bucket"
)

// Store is the part of an object store this package uses. bucket.Store
// satisfies it. Conditional writes are the whole safety story: Put with
// Cond.IfNoneMatch is create-only, Put with Cond.IfMatch is compare-and-swap,
// and a failed condition is bucket.ErrPrecondition; a missing key is
// bucket.ErrNotFound.
type Store interface {
	Get(ctx context.Context, key string, ifNoneMatch string) (*bucket.Object, error)
	Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (etag string, err error)
	Delete(ctx context.Context, key string) error
}

// Sealer encrypts and decrypts secrets at rest (account key, certificate
// key). dynia plugs in the cluster key's encryption; NewAESGCMSealer is a
// self-contained implementation for tests and tools.
type Sealer interface {
	// Seal returns an opaque ciphertext of plaintext.
	Seal(plaintext []byte) ([]byte, error)
	// Open reverses Seal; a tampered or foreign ciphertext is an error.
	Open(ciphertext []byte) ([]byte, error)
}

// Keys of the objects, relative to the store (see WithPrefix).
const (
	KeyLease         = "tls/lease.json"
	KeyAccount       = "tls/account.json"
	KeyCert          = "tls/cert.json"
	KeyOrder         = "tls/order.json"
	KeyChallengesDir = "tls/challenges/"
)

// ChallengeKey is the object holding the key authorization of an HTTP-01
// token while its challenge is pending.
func ChallengeKey(token string) string { return KeyChallengesDir + token }

// WithPrefix returns a Store whose keys are prefix+key in s, e.g.
// WithPrefix(s, "clusters/demo/") puts the lease at
// clusters/demo/tls/lease.json. A prefix without a trailing slash gets one.
func WithPrefix(s Store, prefix string) Store {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return prefixed{s: s, prefix: prefix}
}

type prefixed struct {
	s      Store
	prefix string
}

func (p prefixed) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	return p.s.Get(ctx, p.prefix+key, ifNoneMatch)
}

func (p prefixed) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	return p.s.Put(ctx, p.prefix+key, body, cond)
}

func (p prefixed) Delete(ctx context.Context, key string) error {
	return p.s.Delete(ctx, p.prefix+key)
}
