// Package localca issues the certificate of a local TLS listener from a
// CA made for it alone (its key is thrown away once it signed): Pebble's
// listeners in the sandbox (internal/sandbox) and in tests
// (internal/testutil), which clients trust through that CA only.
package localca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Listener is a listener's certificate and key and the CA that signed the
// certificate, PEM-encoded (the key as PKCS #8), and a pool holding that
// CA alone for the listener's clients.
type Listener struct {
	CertPEM, KeyPEM, CAPEM []byte
	Roots                  *x509.CertPool
}

// Issue makes an ECDSA P-256 CA named caName and, signed by it, a server
// certificate named commonName for dnsNames and ips. Both are valid from
// an hour ago (clock skew) for validity; serial numbers are random.
func Issue(caName, commonName string, dnsNames []string, ips []net.IP, validity time.Duration) (*Listener, error) {
	now := time.Now()
	ca, caKey, err := sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: caName},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign,
	}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	cert, key, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName},
		DNSNames:    dnsNames,
		IPAddresses: ips,
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, caKey)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	l, err := encode(cert, key, ca)
	if err != nil {
		return nil, err
	}
	l.Roots = x509.NewCertPool()
	l.Roots.AddCert(ca)
	return l, nil
}

// sign makes a P-256 key and the certificate of tmpl for it (with a random
// serial number), signed by parent with parentKey, or self-signed when
// parent is nil.
func sign(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // positive
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}
