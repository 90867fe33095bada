package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// TLS is HTTPS on every node: a certificate for Domains from an ACME CA
// (Let's Encrypt), obtained through the cluster (HTTP-01: whichever node
// holds the Reserved IP answers the challenge from the bucket) and renewed
// by the nodes themselves, one at a time under a lease. docs/tls.md.
type TLS struct {
	// Domains are the certificate's names; the first is its subject.
	Domains []string `json:"domains"`
	// Email is the ACME account's contact (expiry warnings from the CA).
	Email string `json:"email,omitempty"`
	// Directory is the ACME directory URL.
	Directory string `json:"directory"`
	// DirectoryRoots are PEM certificates the directory's TLS certificate
	// must chain to (empty: the system roots; the sandbox's Pebble needs
	// its own).
	DirectoryRoots string `json:"directory_roots,omitempty"`
	// TrustRoots are PEM roots an issued certificate must chain to before
	// a node installs it (empty: the system roots).
	TrustRoots string `json:"trust_roots,omitempty"`
	// RedirectHTTP answers plain HTTP with a 301 to HTTPS (the ACME
	// challenge path excepted).
	RedirectHTTP bool `json:"redirect_http"`
	// HSTS adds Strict-Transport-Security (one year) to HTTPS answers.
	HSTS bool `json:"hsts,omitempty"`
	// RenewBeforeSeconds renews a certificate this long before it expires
	// (0: 30 days, Let's Encrypt's advice for 90-day certificates).
	RenewBeforeSeconds int64 `json:"renew_before_seconds,omitempty"`
}

// ACME directories of Let's Encrypt.
const (
	LetsEncryptDirectory        = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStagingDirectory = "https://acme-staging-v02.api.letsencrypt.org/directory"
	DefaultRenewBefore          = 30 * 24 * time.Hour
)

// RenewBefore is the renewal window.
func (t *TLS) RenewBefore() time.Duration {
	if t.RenewBeforeSeconds > 0 {
		return time.Duration(t.RenewBeforeSeconds) * time.Second
	}
	return DefaultRenewBefore
}

// domainRE is a DNS name of LDH labels (no wildcards: HTTP-01 cannot
// validate them), at least two labels.
var domainRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$`)

// ValidateDomain checks a certificate or record name.
func ValidateDomain(d string) error {
	if len(d) > 253 || !domainRE.MatchString(d) {
		return fmt.Errorf("not a lowercase DNS name like app.example.com (no wildcard: HTTP-01 cannot validate one)")
	}
	return nil
}

// ValidateEmail checks an ACME contact address.
func ValidateEmail(e string) error {
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || !strings.Contains(e, "@") || strings.ContainsAny(e, " <>") {
		return fmt.Errorf("not an email address like ops@example.com")
	}
	return nil
}

// ValidateDirectory checks an ACME directory URL: https, or http only to
// a test server on a private or loopback address is not allowed either:
// ACME requires HTTPS (RFC 8555 §6.1).
func ValidateDirectory(u string) error {
	p, err := url.Parse(u)
	if err != nil || p.Scheme != "https" || p.Host == "" || p.User != nil {
		return fmt.Errorf("not an https ACME directory URL (RFC 8555 requires HTTPS)")
	}
	return nil
}

// ValidatePEMCerts checks a bundle of PEM certificates.
func ValidatePEMCerts(s string) error {
	rest := []byte(s)
	n := 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return fmt.Errorf("holds a %s block; only certificates belong here", b.Type)
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %v", n+1, err)
		}
		n++
	}
	if n == 0 || strings.TrimSpace(string(rest)) != "" {
		return fmt.Errorf("not PEM certificates")
	}
	return nil
}

func (s *State) validateTLS() error {
	t := s.TLS
	if t == nil {
		return nil
	}
	if len(t.Domains) == 0 || len(t.Domains) > 100 {
		return fieldErr("tls.domains", fmt.Sprint(len(t.Domains)), "must name 1-100 domains")
	}
	for i, d := range t.Domains {
		if err := ValidateDomain(d); err != nil {
			return fieldErr(fmt.Sprintf("tls.domains[%d]", i), d, "%v", err)
		}
		if slices.Index(t.Domains, d) != i {
			return fieldErr(fmt.Sprintf("tls.domains[%d]", i), d, "duplicate")
		}
	}
	if t.Email != "" {
		if err := ValidateEmail(t.Email); err != nil {
			return fieldErr("tls.email", t.Email, "%v", err)
		}
	}
	if err := ValidateDirectory(t.Directory); err != nil {
		return fieldErr("tls.directory", t.Directory, "%v", err)
	}
	for name, v := range map[string]string{"tls.directory_roots": t.DirectoryRoots, "tls.trust_roots": t.TrustRoots} {
		if v == "" {
			continue
		}
		if len(v) > 64<<10 {
			return fieldErr(name, "", "longer than 64 KiB")
		}
		if err := ValidatePEMCerts(v); err != nil {
			return fieldErr(name, "", "%v", err)
		}
	}
	if t.RenewBeforeSeconds < 0 || t.RenewBeforeSeconds > 365*24*3600 {
		return fieldErr("tls.renew_before_seconds", fmt.Sprint(t.RenewBeforeSeconds), "must be 0 (30 days) to one year")
	}
	return nil
}
