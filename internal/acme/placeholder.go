package acme

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"
)

// PlaceholderValidity is how long a placeholder certificate is valid.
const PlaceholderValidity = 365 * 24 * time.Hour

// Placeholder returns a self-signed ECDSA P-256 certificate and its key
// (PEM) for names, valid from now-1h for PlaceholderValidity. HAProxy 2.6
// refuses to start an "ssl crt" bind whose file holds no certificate, so a
// node installs this until the cluster's real certificate is verified; a
// browser rejects it (it chains to nothing), which is the honest state.
// With no names the certificate is for "localhost".
func Placeholder(names []string, now time.Time) (chainPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		names = []string{"localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("acme: placeholder: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, fmt.Errorf("acme: placeholder: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"dynia placeholder"}},
		DNSNames:              names,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(PlaceholderValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("acme: placeholder: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("acme: placeholder: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// IsPlaceholder reports whether chainPEM's leaf is a placeholder made by
// Placeholder (self-signed, organisation "dynia placeholder").
func IsPlaceholder(chainPEM []byte) bool {
	certs, err := parseChain(chainPEM)
	if err != nil {
		return false
	}
	c := certs[0]
	return len(c.Subject.Organization) == 1 && c.Subject.Organization[0] == "dynia placeholder" &&
		bytes.Equal(c.RawIssuer, c.RawSubject)
}

// HAProxyPEM joins a chain and its key into the single file HAProxy's
// "crt" bind option loads (certificates first, then the key; see
// https://docs.haproxy.org/2.6/configuration.html#5.1-crt). The result holds
// the private key: write it 0600.
func HAProxyPEM(chainPEM, keyPEM []byte) []byte {
	var b bytes.Buffer
	b.Write(chainPEM)
	if len(chainPEM) > 0 && chainPEM[len(chainPEM)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.Write(keyPEM)
	return b.Bytes()
}
