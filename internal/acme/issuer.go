package acme

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/poll"
	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/acme/api"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"
)

// ACME directories of Let's Encrypt
// (https://letsencrypt.org/docs/acme-protocol-updates/,
// https://letsencrypt.org/docs/staging-environment/).
const (
	LetsEncryptProduction = "https://acme-v02.api.letsencrypt.org/directory"
	LetsEncryptStaging    = "https://acme-staging-v02.api.letsencrypt.org/directory"
)

// Defaults of Config.
const (
	// DefaultRenewBefore is Let's Encrypt's advice for 90-day certificates:
	// renew when 30 days are left (https://letsencrypt.org/docs/faq/).
	DefaultRenewBefore    = 30 * 24 * time.Hour
	DefaultLeaseTTL       = 10 * time.Minute
	DefaultOrderTimeout   = 5 * time.Minute
	DefaultFailureBackoff = 15 * time.Minute
	// maxFailureBackoff caps the doubling back-off after failed orders.
	// Let's Encrypt allows 5 failed validations per account, hostname and
	// hour (https://letsencrypt.org/docs/rate-limits/).
	maxFailureBackoff = 6 * time.Hour
)

// Config configures an Issuer.
type Config struct {
	Store  Store  // required: where tls/* lives (see WithPrefix)
	Sealer Sealer // required: encrypts the account and certificate keys

	// DirectoryURL is the ACME directory (LetsEncryptProduction, staging,
	// or Pebble's https://host:14000/dir in tests and the sandbox).
	DirectoryURL string
	// CARoots verifies the ACME server's TLS certificate (Pebble's test
	// CA); nil means the system roots.
	CARoots *x509.CertPool
	// TrustRoots are the roots an issued chain must verify to (Verify);
	// nil means the system roots. For Pebble: its issuance root.
	TrustRoots *x509.CertPool

	Domains []string // required: the certificate's names, the first is its subject
	Email   string   // optional ACME account contact
	// Holder names this node in the lease (its dynia node id).
	Holder string

	// RenewBefore: order a new certificate when the stored one expires
	// within this (default DefaultRenewBefore).
	RenewBefore time.Duration
	// LeaseTTL bounds how long a crashed holder blocks renewals (default
	// DefaultLeaseTTL); it must exceed OrderTimeout.
	LeaseTTL time.Duration
	// OrderTimeout bounds one order from account to stored certificate
	// (default DefaultOrderTimeout).
	OrderTimeout time.Duration
	// FailureBackoff is the wait after a failed order before Ensure orders
	// again; it doubles with each consecutive failure up to 6 h (default
	// DefaultFailureBackoff; negative: no back-off, for tests and the CLI's
	// explicit "try now").
	FailureBackoff time.Duration
	// PollInterval is the wait between authorization polls (default 1 s;
	// a server's longer Retry-After wins).
	PollInterval time.Duration

	Now        func() time.Time // default time.Now
	Logger     *slog.Logger     // default: discard
	HTTPClient *http.Client     // default: a client trusting CARoots, 60 s timeout
	UserAgent  string           // prepended to lego's
}

// Issuer obtains and renews the certificate. Its methods are safe for
// concurrent use; coordination between nodes is the lease.
type Issuer struct {
	cfg Config
	log *slog.Logger
}

// NewIssuer checks cfg and fills its defaults. lego logs through one
// process-wide logger; NewIssuer points it at cfg.Logger (discarding when
// nil), since dynia-pull runs one Issuer.
func NewIssuer(cfg Config) (*Issuer, error) {
	switch {
	case cfg.Store == nil:
		return nil, errors.New("acme: config: Store is required")
	case cfg.Sealer == nil:
		return nil, errors.New("acme: config: Sealer is required")
	case cfg.DirectoryURL == "":
		return nil, errors.New("acme: config: DirectoryURL is required")
	case len(cfg.Domains) == 0:
		return nil, errors.New("acme: config: Domains is empty")
	}
	for _, d := range cfg.Domains {
		if err := checkDomain(d); err != nil {
			return nil, fmt.Errorf("acme: config: domain %q: %w", d, err)
		}
	}
	if cfg.Holder == "" {
		cfg.Holder = "unnamed"
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = DefaultRenewBefore
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.OrderTimeout <= 0 {
		cfg.OrderTimeout = DefaultOrderTimeout
	}
	if cfg.LeaseTTL <= cfg.OrderTimeout {
		// A lease lapsing mid-order lets a second node order too.
		return nil, fmt.Errorf("acme: config: LeaseTTL %v must exceed OrderTimeout %v", cfg.LeaseTTL, cfg.OrderTimeout)
	}
	if cfg.FailureBackoff == 0 {
		cfg.FailureBackoff = DefaultFailureBackoff
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: cfg.CARoots, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	}
	cfg.Domains = slices.Clone(cfg.Domains)
	legolog.SetDefault(cfg.Logger.With("component", "lego"))
	return &Issuer{cfg: cfg, log: cfg.Logger}, nil
}

// checkDomain accepts lower-case DNS names (and one leading "*." label);
// HTTP-01 cannot validate wildcards, so they are refused here.
func checkDomain(d string) error {
	if d == "" || len(d) > 253 || strings.HasSuffix(d, ".") {
		return errors.New("not a DNS name")
	}
	if strings.HasPrefix(d, "*.") {
		return errors.New("HTTP-01 cannot validate a wildcard name (RFC 8555 section 7.1.3)")
	}
	if d != strings.ToLower(d) {
		return errors.New("must be lower case")
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return errors.New("not a DNS name")
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return errors.New("not a DNS name")
			}
		}
	}
	return nil
}

// CertInfo is the clear metadata of the stored certificate.
type CertInfo struct {
	Serial    string    `json:"serial"` // lower-case hex
	Names     []string  `json:"names"`  // the leaf's DNS names, sorted
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issuer    string    `json:"issuer"`    // the leaf issuer's common name
	IssuedAt  time.Time `json:"issued_at"` // when the Issuer stored it
	IssuedBy  string    `json:"issued_by"` // the lease holder that ordered it
	Directory string    `json:"directory"` // the ACME directory it came from
}

// certDoc is tls/cert.json: metadata in clear, chain and key sealed.
type certDoc struct {
	CertInfo
	Sealed []byte `json:"sealed"` // Sealer.Seal of a certSecret (JSON); base64 in JSON
}

type certSecret struct {
	ChainPEM string `json:"chain_pem"`
	KeyPEM   string `json:"key_pem"`
}

// Certificate is the stored certificate, opened.
type Certificate struct {
	CertInfo
	ChainPEM []byte // leaf first, then intermediates
	KeyPEM   []byte // the leaf's private key: never log it
	ETag     string // of tls/cert.json, for If-None-Match polling
}

// ReadInfo reads the clear metadata of tls/cert.json without opening the
// sealed part; with ifNoneMatch set to the last ETag an unchanged object
// is bucket.ErrNotModified. A missing certificate is bucket.ErrNotFound.
func ReadInfo(ctx context.Context, store Store, ifNoneMatch string) (CertInfo, string, error) {
	doc, etag, err := readCertDoc(ctx, store, ifNoneMatch)
	if err != nil {
		return CertInfo{}, "", err
	}
	return doc.CertInfo, etag, nil
}

// Load reads and opens tls/cert.json (see ReadInfo for ifNoneMatch and
// errors). It does not Verify: the caller verifies before installing.
func Load(ctx context.Context, store Store, sealer Sealer, ifNoneMatch string) (*Certificate, error) {
	doc, etag, err := readCertDoc(ctx, store, ifNoneMatch)
	if err != nil {
		return nil, err
	}
	return openCertDoc(doc, etag, sealer)
}

func readCertDoc(ctx context.Context, store Store, ifNoneMatch string) (certDoc, string, error) {
	obj, err := store.Get(ctx, KeyCert, ifNoneMatch)
	if err != nil {
		return certDoc{}, "", fmt.Errorf("acme: read %s: %w", KeyCert, err)
	}
	var doc certDoc
	if err := json.Unmarshal(obj.Body, &doc); err != nil {
		return certDoc{}, "", fmt.Errorf("acme: read %s: %w", KeyCert, err)
	}
	return doc, obj.ETag, nil
}

func openCertDoc(doc certDoc, etag string, sealer Sealer) (*Certificate, error) {
	plain, err := sealer.Open(doc.Sealed)
	if err != nil {
		return nil, fmt.Errorf("acme: open %s: %w", KeyCert, err)
	}
	var s certSecret
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, fmt.Errorf("acme: open %s: sealed content is not a certificate", KeyCert)
	}
	return &Certificate{CertInfo: doc.CertInfo, ChainPEM: []byte(s.ChainPEM), KeyPEM: []byte(s.KeyPEM), ETag: etag}, nil
}

// Reasons Ensure orders a certificate (Result.Reason).
const (
	ReasonNone         = "no certificate stored"
	ReasonNames        = "names changed"
	ReasonRenewal      = "renewal due"
	ReasonNewDirectory = "ACME directory changed"
)

// Result says what Ensure did.
type Result struct {
	Issued bool     // a new certificate was ordered and stored
	Reason string   // why it was ordered (Reason*); empty when nothing was due
	Cert   CertInfo // the stored certificate after Ensure (zero if none)
}

// due says why the stored certificate must be replaced ("" if it need not).
func (i *Issuer) due(info CertInfo, now time.Time) string {
	if info.Serial == "" {
		return ReasonNone
	}
	if !sameNames(info.Names, i.cfg.Domains) {
		return ReasonNames
	}
	if info.Directory != i.cfg.DirectoryURL {
		return ReasonNewDirectory
	}
	if !now.Before(info.NotAfter.Add(-i.cfg.RenewBefore)) {
		return ReasonRenewal
	}
	return ""
}

func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// ErrBackoff is matched by the error Ensure returns while it waits after a
// failed order; the error also carries the last failure's text.
var ErrBackoff = errors.New("waiting after a failed order")

// orderDoc is tls/order.json: consecutive failed orders.
type orderDoc struct {
	Failures    int       `json:"failures"`
	LastAttempt time.Time `json:"last_attempt"`
	LastError   string    `json:"last_error"`
	Holder      string    `json:"holder"`
}

func (i *Issuer) backoff(failures int) time.Duration {
	return poll.Backoff(i.cfg.FailureBackoff, maxFailureBackoff, failures)
}

// Ensure makes sure the store holds a certificate for the configured
// names that is not due for renewal. When the stored one is fresh (clear
// metadata: same names and directory, more than RenewBefore left) it
// returns without writing anything, so it is cheap to call every poll.
// Otherwise it takes the lease (ErrLeaseHeld: another node is on it, try
// later), re-reads and opens the stored certificate (an Open failure is an
// error, never a reason to re-order: the cluster key is wrong), orders a
// new one with HTTP-01 when none is stored, the names or directory
// changed, it fails Verify, or it is due, verifies it, stores it with
// compare-and-swap and releases the lease. A failed order keeps the stored
// certificate, is recorded in tls/order.json and returns the CA's reason
// (*ValidationError for a failed challenge); further orders wait
// FailureBackoff, doubling (ErrBackoff).
func (i *Issuer) Ensure(ctx context.Context) (Result, error) {
	doc, _, err := readCertDoc(ctx, i.cfg.Store, "")
	if err != nil && !errors.Is(err, bucket.ErrNotFound) {
		return Result{}, fmt.Errorf("acme: ensure: %w", err)
	}
	if i.due(doc.CertInfo, i.cfg.Now()) == "" {
		return Result{Cert: doc.CertInfo}, nil
	}
	if err := i.checkBackoff(ctx); err != nil {
		return Result{Cert: doc.CertInfo}, err
	}
	lease, err := i.Lease(ctx, i.cfg.Holder, i.cfg.LeaseTTL)
	if err != nil {
		return Result{Cert: doc.CertInfo}, fmt.Errorf("acme: ensure: %w", err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := lease.Release(rctx); err != nil {
			i.log.Warn("acme: releasing the lease failed; it lapses by itself", "err", err, "expires", lease.Expires())
		}
	}()

	// Under the lease: another node may have renewed since the first read.
	doc, etag, err := readCertDoc(ctx, i.cfg.Store, "")
	if err != nil && !errors.Is(err, bucket.ErrNotFound) {
		return Result{}, fmt.Errorf("acme: ensure: %w", err)
	}
	now := i.cfg.Now()
	reason := i.due(doc.CertInfo, now)
	if reason == "" {
		return Result{Cert: doc.CertInfo}, nil
	}
	if doc.Serial != "" {
		// A stored certificate this node cannot open means a wrong cluster
		// key: ordering would only burn the CA's rate limits.
		if _, err := openCertDoc(doc, etag, i.cfg.Sealer); err != nil {
			return Result{Cert: doc.CertInfo}, fmt.Errorf("acme: ensure: %w", err)
		}
	}
	i.log.Info("acme: ordering a certificate", "reason", reason, "names", i.cfg.Domains, "current_serial", doc.Serial, "directory", i.cfg.DirectoryURL)

	octx, cancel := context.WithTimeout(ctx, i.cfg.OrderTimeout)
	defer cancel()
	chain, key, err := i.order(octx)
	if err == nil {
		err = Verify(chain, key, i.cfg.Domains, i.cfg.TrustRoots, i.cfg.Now())
		if err != nil {
			err = fmt.Errorf("the issued certificate fails verification: %w", err)
		}
	}
	if err != nil {
		i.recordFailure(ctx, err)
		return Result{Reason: reason, Cert: doc.CertInfo}, fmt.Errorf("acme: order for %s: %w", strings.Join(i.cfg.Domains, ", "), err)
	}
	info, err := i.store(ctx, chain, key, etag)
	if err != nil {
		return Result{Reason: reason, Cert: doc.CertInfo}, err
	}
	i.clearFailures(ctx)
	i.log.Info("acme: certificate stored", "serial", info.Serial, "names", info.Names, "not_after", info.NotAfter)
	return Result{Issued: true, Reason: reason, Cert: info}, nil
}

func (i *Issuer) checkBackoff(ctx context.Context) error {
	if i.cfg.FailureBackoff < 0 {
		return nil
	}
	obj, err := i.cfg.Store.Get(ctx, KeyOrder, "")
	if errors.Is(err, bucket.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("acme: ensure: read %s: %w", KeyOrder, err)
	}
	var od orderDoc
	if json.Unmarshal(obj.Body, &od) != nil || od.Failures == 0 {
		return nil
	}
	next := od.LastAttempt.Add(i.backoff(od.Failures))
	if i.cfg.Now().Before(next) {
		return fmt.Errorf("acme: ensure: %w until %s after %d failed order(s); last: %s",
			ErrBackoff, next.UTC().Format(time.RFC3339), od.Failures, od.LastError)
	}
	return nil
}

// recordFailure counts a failed order in tls/order.json. It is best
// effort: losing the count only shortens the back-off.
func (i *Issuer) recordFailure(ctx context.Context, orderErr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	od := orderDoc{}
	cond := bucket.Cond{IfNoneMatch: true}
	if obj, err := i.cfg.Store.Get(ctx, KeyOrder, ""); err == nil {
		_ = json.Unmarshal(obj.Body, &od) // a corrupt one restarts the count
		cond = bucket.Cond{IfMatch: obj.ETag}
	}
	od.Failures++
	od.LastAttempt = i.cfg.Now().UTC()
	od.LastError = orderErr.Error()
	od.Holder = i.cfg.Holder
	body, _ := json.Marshal(od)
	if _, err := i.cfg.Store.Put(ctx, KeyOrder, body, cond); err != nil {
		i.log.Warn("acme: recording the failed order failed", "err", err)
	}
}

func (i *Issuer) clearFailures(ctx context.Context) {
	if err := i.cfg.Store.Delete(ctx, KeyOrder); err != nil {
		i.log.Warn("acme: clearing the failed-order record failed", "err", err)
	}
}

// store seals and writes tls/cert.json with compare-and-swap on the ETag
// read under the lease (create-only when there was none).
func (i *Issuer) store(ctx context.Context, chainPEM, keyPEM []byte, etag string) (CertInfo, error) {
	certs, err := parseChain(chainPEM)
	if err != nil {
		return CertInfo{}, fmt.Errorf("acme: store certificate: %w", err)
	}
	leaf := certs[0]
	names := slices.Clone(leaf.DNSNames)
	slices.Sort(names)
	info := CertInfo{
		Serial:    SerialString(leaf),
		Names:     names,
		NotBefore: leaf.NotBefore.UTC(),
		NotAfter:  leaf.NotAfter.UTC(),
		Issuer:    leaf.Issuer.CommonName,
		IssuedAt:  i.cfg.Now().UTC(),
		IssuedBy:  i.cfg.Holder,
		Directory: i.cfg.DirectoryURL,
	}
	secret, _ := json.Marshal(certSecret{ChainPEM: string(chainPEM), KeyPEM: string(keyPEM)})
	sealed, err := i.cfg.Sealer.Seal(secret)
	clear(secret)
	if err != nil {
		return CertInfo{}, fmt.Errorf("acme: store certificate: seal: %w", err)
	}
	body, _ := json.MarshalIndent(certDoc{CertInfo: info, Sealed: sealed}, "", "  ")
	cond := bucket.Cond{IfNoneMatch: true}
	if etag != "" {
		cond = bucket.Cond{IfMatch: etag}
	}
	if _, err := i.cfg.Store.Put(ctx, KeyCert, body, cond); err != nil {
		return CertInfo{}, fmt.Errorf("acme: store certificate %s: %w", info.Serial, err)
	}
	return info, nil
}

// accountDoc is tls/account.json.
type accountDoc struct {
	Directory string `json:"directory"`
	Email     string `json:"email,omitempty"`
	URL       string `json:"url"`        // the account's URL at the CA (its "kid")
	KeySealed []byte `json:"key_sealed"` // Sealer.Seal of the PEM key; base64 in JSON
}

type user struct {
	email string
	reg   *legoacme.ExtendedAccount
	key   crypto.Signer
}

func (u *user) GetEmail() string                           { return u.email }
func (u *user) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *user) GetPrivateKey() crypto.Signer               { return u.key }

// account loads the account key (or makes one), registers it with the CA
// and returns a core signing as that account. newAccount with an existing
// key returns the existing account (RFC 8555 section 7.3.1), so registering
// every order costs one request and survives a CA that forgot the account
// (Pebble keeps accounts in memory).
func (i *Issuer) account(ctx context.Context) (*api.Core, error) {
	var doc accountDoc
	cond := bucket.Cond{IfNoneMatch: true}
	var key crypto.Signer
	obj, err := i.cfg.Store.Get(ctx, KeyAccount, "")
	switch {
	case errors.Is(err, bucket.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("account: read %s: %w", KeyAccount, err)
	default:
		cond = bucket.Cond{IfMatch: obj.ETag}
		if err := json.Unmarshal(obj.Body, &doc); err != nil {
			return nil, fmt.Errorf("account: read %s: %w", KeyAccount, err)
		}
		pemKey, err := i.cfg.Sealer.Open(doc.KeySealed)
		if err != nil {
			return nil, fmt.Errorf("account: open %s: %w", KeyAccount, err)
		}
		key, err = certcrypto.ParsePEMPrivateKey(pemKey)
		clear(pemKey)
		if err != nil {
			return nil, fmt.Errorf("account: %s: the sealed key does not parse", KeyAccount)
		}
	}
	fresh := key == nil
	if fresh {
		if key, err = certcrypto.GeneratePrivateKey(certcrypto.EC256); err != nil {
			return nil, fmt.Errorf("account: generate key: %w", err)
		}
	}
	core, err := api.New(i.cfg.HTTPClient, i.cfg.UserAgent, i.cfg.DirectoryURL, "", key)
	if err != nil {
		return nil, fmt.Errorf("account: directory %s: %w", i.cfg.DirectoryURL, err)
	}
	u := &user{email: i.cfg.Email, key: key}
	reg, err := registration.NewRegistrar(core, u).Register(ctx, registration.RegisterOptions{TermsOfServiceAgreed: true})
	if err != nil {
		return nil, fmt.Errorf("account: register: %w", err)
	}
	if fresh || doc.URL != reg.Location || doc.Directory != i.cfg.DirectoryURL || doc.Email != i.cfg.Email {
		pemKey := certcrypto.PEMEncode(key)
		sealed, err := i.cfg.Sealer.Seal(pemKey)
		clear(pemKey)
		if err != nil {
			return nil, fmt.Errorf("account: seal key: %w", err)
		}
		body, _ := json.MarshalIndent(accountDoc{Directory: i.cfg.DirectoryURL, Email: i.cfg.Email, URL: reg.Location, KeySealed: sealed}, "", "  ")
		if _, err := i.cfg.Store.Put(ctx, KeyAccount, body, cond); err != nil {
			return nil, fmt.Errorf("account: write %s: %w", KeyAccount, err)
		}
		i.log.Info("acme: account stored", "url", reg.Location, "new_key", fresh)
	}
	return core, nil
}

// order runs one ACME order and returns the chain (leaf first) and key.
func (i *Issuer) order(ctx context.Context) (chainPEM, keyPEM []byte, err error) {
	core, err := i.account(ctx)
	if err != nil {
		return nil, nil, err
	}
	prov := &storeProvider{store: i.cfg.Store, log: i.log}
	s := &solver{core: core, provider: prov, poll: i.cfg.PollInterval}
	certifier := certificate.NewCertifier(core, s, certificate.CertifierOptions{Timeout: i.cfg.OrderTimeout})
	res, err := certifier.Obtain(ctx, certificate.ObtainRequest{
		Domains: i.cfg.Domains,
		KeyType: certcrypto.EC256,
		Bundle:  true,
	})
	if err != nil {
		return nil, nil, err
	}
	return res.Certificate, res.PrivateKey, nil
}

// storeProvider presents HTTP-01 key authorizations in the store, where
// every node's ChallengeHandler finds them.
type storeProvider struct {
	store Store
	log   *slog.Logger
}

func (p *storeProvider) Present(ctx context.Context, domain, token, keyAuth string) error {
	if !ValidToken(token) {
		return fmt.Errorf("the CA sent a token that is not base64url (%d bytes)", len(token))
	}
	if _, err := p.store.Put(ctx, ChallengeKey(token), []byte(keyAuth), bucket.Cond{}); err != nil {
		return fmt.Errorf("present token for %s: %w", domain, err)
	}
	p.log.Info("acme: challenge presented", "domain", domain, "token", token)
	return nil
}

func (p *storeProvider) CleanUp(ctx context.Context, domain, token, _ string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := p.store.Delete(ctx, ChallengeKey(token)); err != nil {
		return fmt.Errorf("clean up token for %s: %w", domain, err)
	}
	return nil
}

// ValidationError is a failed HTTP-01 validation, with the CA's reason
// (its problem document, RFC 8555 section 6.7).
type ValidationError struct {
	Domain string
	Type   string // e.g. "urn:ietf:params:acme:error:connection"
	Detail string // the CA's human-readable reason
	Status string // the authorization's final status ("invalid", "expired", ...)
}

func (e *ValidationError) Error() string {
	t := strings.TrimPrefix(e.Type, "urn:ietf:params:acme:error:")
	if t == "" {
		t = e.Status
	}
	return fmt.Sprintf("HTTP-01 validation of %s failed: %s: %s", e.Domain, t, e.Detail)
}

// solver solves each pending authorization with HTTP-01, polling the
// authorization itself. lego's own resolver also links its DNS-01 and
// TLS-ALPN-01 solvers (and a DNS library), which dynia-pull does not need.
type solver struct {
	core     *api.Core
	provider *storeProvider
	poll     time.Duration
}

func (s *solver) Solve(ctx context.Context, authzs []legoacme.Authorization) error {
	var errs []error
	for _, authz := range authzs {
		if authz.Status == legoacme.StatusValid {
			continue // the CA reused a recent validation
		}
		if err := s.solve(ctx, authz); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// solve runs one HTTP-01 challenge: present the key authorization, ask the
// CA to validate, poll, clean up (also on failure). lego's http01.Challenge
// does the same but links a DNS library for its own server's host matching.
func (s *solver) solve(ctx context.Context, authz legoacme.Authorization) error {
	domain := challenge.GetTargetedDomain(authz)
	chlg, err := challenge.FindChallenge(challenge.HTTP01, authz)
	if err != nil {
		return err
	}
	keyAuth, err := s.core.GetKeyAuthorization(chlg.Token)
	if err != nil {
		return fmt.Errorf("key authorization for %s: %w", domain, err)
	}
	if err := s.provider.Present(ctx, domain, chlg.Token, keyAuth); err != nil {
		return err
	}
	defer func() {
		if err := s.provider.CleanUp(ctx, domain, chlg.Token, keyAuth); err != nil {
			s.provider.log.Warn("acme: challenge clean-up failed", "domain", domain, "err", err)
		}
	}()
	return s.validate(ctx, s.core, domain, chlg)
}

func (s *solver) validate(ctx context.Context, core *api.Core, domain string, chlg legoacme.Challenge) error {
	ext, err := core.Challenges.New(ctx, chlg.URL)
	if err != nil {
		return fmt.Errorf("start HTTP-01 validation of %s: %w", domain, err)
	}
	if ext.Status == legoacme.StatusValid {
		return nil
	}
	if ext.Status == legoacme.StatusInvalid {
		return validationError(domain, ext.Status, ext.Error)
	}
	wait := max(s.poll, min(ext.RetryAfter, 10*time.Second))
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("HTTP-01 validation of %s: still pending: %w", domain, ctx.Err())
		case <-time.After(wait):
		}
		authz, err := core.Authorizations.Get(ctx, ext.AuthorizationURL)
		if err != nil {
			return fmt.Errorf("poll authorization of %s: %w", domain, err)
		}
		switch authz.Status {
		case legoacme.StatusValid:
			return nil
		case legoacme.StatusPending, legoacme.StatusProcessing:
			continue
		}
		var prob *legoacme.ProblemDetails
		for _, c := range authz.Challenges {
			if c.Type == chlg.Type && c.Error != nil {
				prob = c.Error
			}
		}
		return validationError(domain, authz.Status, prob)
	}
}

func validationError(domain, status string, p *legoacme.ProblemDetails) error {
	e := &ValidationError{Domain: domain, Status: status, Detail: "no reason given"}
	if p != nil {
		e.Type, e.Detail = p.Type, p.Detail
	}
	return e
}

// String shows the certificate without its key, so %v in a log is safe.
func (c Certificate) String() string {
	return fmt.Sprintf("{serial:%s names:%v not_after:%s key:[redacted]}", c.Serial, c.Names, c.NotAfter.UTC().Format(time.RFC3339))
}

// GoString keeps %#v from printing the key too.
func (c Certificate) GoString() string { return "acme.Certificate" + c.String() }

// LogValue keeps slog from printing the key.
func (c Certificate) LogValue() slog.Value {
	return slog.GroupValue(slog.String("serial", c.Serial), slog.Any("names", c.Names), slog.Time("not_after", c.NotAfter))
}
