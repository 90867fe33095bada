package acme

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"
)

// Checks Verify names in a VerifyError.
const (
	CheckParse    = "parse"    // the PEM does not hold a certificate chain and a private key
	CheckKey      = "key"      // the private key is not the leaf's
	CheckName     = "name"     // a wanted name is not covered by the leaf
	CheckValidity = "validity" // now is outside [NotBefore, NotAfter]
	CheckChain    = "chain"    // the chain does not verify to the roots
)

// VerifyError says which check of Verify failed and why.
type VerifyError struct {
	Check string // one of the Check* constants
	Err   error
}

func (e *VerifyError) Error() string { return "certificate check " + e.Check + ": " + e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

// Verify checks a certificate before it is installed: chainPEM holds the
// leaf first and then its intermediates (PEM "CERTIFICATE" blocks), keyPEM
// the leaf's private key (PKCS#8, SEC 1 "EC PRIVATE KEY" or PKCS#1). It
// checks, in this order, that both parse, that the key is the leaf's, that
// every name is covered by the leaf (x509.Certificate.VerifyHostname, so
// wildcards count), that now is within the leaf's validity, and that the
// chain verifies to roots for server authentication at now (nil roots: the
// system pool). The error is a *VerifyError naming the failed check; it
// never contains key material.
func Verify(chainPEM, keyPEM []byte, names []string, roots *x509.CertPool, now time.Time) error {
	certs, err := parseChain(chainPEM)
	if err != nil {
		return &VerifyError{Check: CheckParse, Err: err}
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return &VerifyError{Check: CheckParse, Err: err}
	}
	leaf := certs[0]
	if !publicKeyEqual(leaf.PublicKey, key.Public()) {
		return &VerifyError{Check: CheckKey, Err: fmt.Errorf("the private key does not match the certificate (serial %s)", SerialString(leaf))}
	}
	for _, n := range names {
		if err := leaf.VerifyHostname(n); err != nil {
			return &VerifyError{Check: CheckName, Err: fmt.Errorf("%q is not covered (certificate names %v)", n, leaf.DNSNames)}
		}
	}
	if now.Before(leaf.NotBefore) {
		return &VerifyError{Check: CheckValidity, Err: fmt.Errorf("not valid before %s (now %s)", leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	if now.After(leaf.NotAfter) {
		return &VerifyError{Check: CheckValidity, Err: fmt.Errorf("expired at %s (now %s)", leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return &VerifyError{Check: CheckChain, Err: err}
	}
	return nil
}

// parseChain reads every CERTIFICATE block; other block types are an error
// (a key pasted into the chain is a mistake worth naming).
func parseChain(chainPEM []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := chainPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("chain: unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("chain: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("chain: no PEM CERTIFICATE block")
	}
	return certs, nil
}

// parseKey reads one private key block. Parse errors are replaced by a
// fixed message: x509's errors do not carry key bytes, but keep it certain.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("key: no PEM block")
	}
	var k any
	var err error
	switch b.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		return nil, fmt.Errorf("key: unexpected PEM block %q", b.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key: %s block does not parse", b.Type)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key: %T is not a signing key", k)
	}
	return s, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	switch a.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		if e, ok := a.(equaler); ok {
			return e.Equal(b)
		}
	}
	return false
}

// SerialString renders a certificate's serial number as lower-case hex, the
// form Let's Encrypt and crt.sh show.
func SerialString(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }
