package localca

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
)

// encode is the listener of cert, key and ca in PEM (Roots left nil).
func encode(cert *x509.Certificate, key *ecdsa.PrivateKey, ca *x509.Certificate) (*Listener, error) {
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	return &Listener{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		CAPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}),
	}, nil
}

// Write writes the certificate, the key and the CA to their files, mode
// 0600, with write (os.WriteFile, or an atomic write).
func (l *Listener) Write(write func(path string, data []byte, perm os.FileMode) error, certFile, keyFile, caFile string) error {
	for _, f := range []struct {
		path string
		data []byte
	}{{keyFile, l.KeyPEM}, {certFile, l.CertPEM}, {caFile, l.CAPEM}} {
		if err := write(f.path, f.data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
