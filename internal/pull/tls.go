package pull

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/acme"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/secrets"
)

// HTTPS on this node (docs/tls.md). Every node serves the certificate the
// cluster stores sealed in the bucket (tls/cert.json), after verifying it
// (chain, key, names, dates); until one exists, a self-signed placeholder
// lets HAProxy bind :443. Every node answers ACME HTTP-01 challenges from
// the bucket, so the node holding the Reserved IP answers for the cluster.
// Every node also runs the renewal check: it costs one GET while the
// certificate is fresh, and the lease lets one node at a time order.

// Timing of the TLS loop.
const (
	tlsTick = 10 * time.Second
	// ensureEvery is how often a node checks whether the certificate is
	// due (one GET of tls/cert.json when it is not); ensureEveryMissing
	// when none is stored yet.
	ensureEvery        = 10 * time.Minute
	ensureEveryMissing = time.Minute
)

// tlsState is the node's TLS bookkeeping (touched by tlsLoop; read by Apply).
type tlsState struct {
	mu        sync.Mutex
	installed *installedCert // what cert.pem holds (nil: nothing)
	etag      string         // of tls/cert.json as last read
	issuer    *acme.Issuer
	issuerKey string // the settings the issuer was built for
	nextCheck time.Time
	kick      chan struct{}
}

type installedCert struct {
	Serial      string
	Names       []string
	NotAfter    time.Time
	InstalledAt time.Time
	Placeholder bool
}

func (d *Daemon) certFile() string {
	set, _ := d.current()
	return filepath.Join(set.TLSDir, "cert.pem")
}

// localTLS is what Apply renders for st: the ACME route while TLS is on,
// the HTTPS frontend once a certificate (or the placeholder) is installed.
func (d *Daemon) localTLS(st *cluster.State) (acmeAddr string, lt *render.LocalTLS) {
	if st.TLS == nil || d.tls == nil {
		return "", nil
	}
	set, _ := d.current()
	d.tls.mu.Lock()
	inst := d.tls.installed
	d.tls.mu.Unlock()
	if inst == nil {
		return set.ChallengeAddr, nil
	}
	return set.ChallengeAddr, &render.LocalTLS{CertFile: d.certFile(), Serial: inst.Serial,
		Redirect: st.TLS.RedirectHTTP && !inst.Placeholder, HSTS: st.TLS.HSTS}
}

// kickTLS asks the TLS loop to look now (a new state was applied).
func (d *Daemon) kickTLS() {
	if d.tls == nil {
		return
	}
	select {
	case d.tls.kick <- struct{}{}:
	default:
	}
}

// serveChallenges answers ACME HTTP-01 challenges on the challenge address
// (loopback: HAProxy forwards them) from the bucket, read through the
// daemon's current store (a rotated key reaches it too).
func (d *Daemon) serveChallenges(ctx context.Context) {
	set, _ := d.current()
	ln, err := net.Listen("tcp", set.ChallengeAddr)
	if err != nil {
		d.log.Error("ACME challenge server not started; HTTPS certificates cannot be validated through this node", "addr", set.ChallengeAddr, "err", err)
		return
	}
	srv := &http.Server{Handler: acme.ChallengeHandler(d.clusterStore(), d.log.With("component", "acme")), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close() // shutting down
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		d.log.Error("ACME challenge server stopped", "err", err)
	}
}

// clusterStore is the cluster's part of the bucket, through the current store.
func (d *Daemon) clusterStore() acme.Store {
	set, _ := d.current()
	return acme.WithPrefix(currentStore{d}, "clusters/"+set.Cluster+"/")
}

// currentStore reads and writes through the daemon's store of the moment.
type currentStore struct{ d *Daemon }

func (c currentStore) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	_, s := c.d.current()
	return s.Get(ctx, key, ifNoneMatch)
}

func (c currentStore) Put(ctx context.Context, key string, body []byte, cond bucket.Cond) (string, error) {
	_, s := c.d.current()
	return s.Put(ctx, key, body, cond)
}

func (c currentStore) Delete(ctx context.Context, key string) error {
	_, s := c.d.current()
	return s.Delete(ctx, key)
}

// tlsLoop keeps the node's certificate current.
func (d *Daemon) tlsLoop(ctx context.Context) {
	if d.tls == nil {
		return
	}
	d.loadInstalledCert()
	tick := time.NewTicker(tlsTick)
	defer tick.Stop()
	for {
		if st := d.appliedState(); st != nil {
			d.tlsStep(ctx, st)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.tls.kick:
		}
	}
}

// loadInstalledCert reads what a previous dynia-pull installed, so a
// restart renders :443 at once.
func (d *Daemon) loadInstalledCert() {
	b, err := os.ReadFile(d.certFile())
	if err != nil {
		return
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return
	}
	fi, _ := os.Stat(d.certFile())
	d.tls.mu.Lock()
	d.tls.installed = &installedCert{Serial: fmt.Sprintf("%x", c.SerialNumber), Names: c.DNSNames, NotAfter: c.NotAfter,
		InstalledAt: fi.ModTime().UTC(), Placeholder: acme.IsPlaceholder(b)}
	d.tls.mu.Unlock()
}

// tlsStep installs the stored certificate when it changed, the placeholder
// when there is none, and now and then asks whether a renewal is due.
func (d *Daemon) tlsStep(ctx context.Context, st *cluster.State) {
	t := d.tls
	if st.TLS == nil {
		t.mu.Lock()
		had := t.installed != nil
		t.installed, t.etag = nil, ""
		t.mu.Unlock()
		d.rep.update(func(s *report.Status) { s.TLS = nil })
		if had {
			if err := d.reapply(ctx); err != nil {
				d.log.Warn("drop HTTPS", "err", err)
			}
		}
		return
	}
	t.mu.Lock()
	inst, etag := t.installed, t.etag
	t.mu.Unlock()
	if inst == nil {
		if err := d.installPlaceholder(ctx, st); err != nil {
			d.tlsError("install the placeholder certificate: " + err.Error())
			return
		}
	}
	store := d.clusterStore()
	info, newEtag, err := acme.ReadInfo(ctx, store, etag)
	switch {
	case errors.Is(err, bucket.ErrNotModified), errors.Is(err, bucket.ErrNotFound):
	case err != nil:
		d.tlsError("read the certificate: " + err.Error())
	default:
		t.mu.Lock()
		t.etag = newEtag
		cur := t.installed
		t.mu.Unlock()
		if cur == nil || cur.Serial != info.Serial {
			if err := d.installCert(ctx, st, store); err != nil {
				d.tlsError(err.Error())
			}
		}
	}
	d.ensureCert(ctx, st, store)
}

// sealer opens the cluster's sealed keys with this node's cluster key.
func (d *Daemon) sealer(st *cluster.State) (secrets.Sealer, error) {
	set, _ := d.current()
	id, err := secrets.LoadIdentity(set.ClusterKeyFile)
	if err != nil {
		return secrets.Sealer{}, err
	}
	return secrets.Sealer{Recipient: st.SecretsRecipient, Identity: id}, nil
}

func pool(pemCerts string) *x509.CertPool {
	if pemCerts == "" {
		return nil
	}
	p := x509.NewCertPool()
	p.AppendCertsFromPEM([]byte(pemCerts))
	return p
}

// installCert loads, verifies and installs the stored certificate. A
// certificate that fails verification is never installed: the node keeps
// serving what it has and says why.
func (d *Daemon) installCert(ctx context.Context, st *cluster.State, store acme.Store) error {
	sl, err := d.sealer(st)
	if err != nil {
		return fmt.Errorf("open the certificate: %w", err)
	}
	cert, err := acme.Load(ctx, store, sl, "")
	if err != nil {
		return fmt.Errorf("open the certificate: %w", err)
	}
	if err := acme.Verify(cert.ChainPEM, cert.KeyPEM, st.TLS.Domains, pool(st.TLS.TrustRoots), time.Now()); err != nil {
		return fmt.Errorf("certificate %s not installed: %w", cert.Serial, err)
	}
	if err := d.writeCertFile(cert.ChainPEM, cert.KeyPEM); err != nil {
		return err
	}
	now := time.Now().UTC()
	d.tls.mu.Lock()
	d.tls.installed = &installedCert{Serial: cert.Serial, Names: cert.Names, NotAfter: cert.NotAfter, InstalledAt: now}
	d.tls.mu.Unlock()
	if err := d.reapply(ctx); err != nil {
		return fmt.Errorf("reload HAProxy with certificate %s: %w", cert.Serial, err)
	}
	d.log.Info("certificate installed", "serial", cert.Serial, "names", cert.Names, "not_after", cert.NotAfter)
	d.reportTLS("")
	return nil
}

func (d *Daemon) installPlaceholder(ctx context.Context, st *cluster.State) error {
	chain, key, err := acme.Placeholder(st.TLS.Domains, time.Now())
	if err != nil {
		return err
	}
	if err := d.writeCertFile(chain, key); err != nil {
		return err
	}
	d.tls.mu.Lock()
	d.tls.installed = &installedCert{Serial: "placeholder", Names: st.TLS.Domains, InstalledAt: time.Now().UTC(), Placeholder: true}
	d.tls.mu.Unlock()
	d.reportTLS("")
	return d.reapply(ctx)
}

// writeCertFile installs HAProxy's PEM (chain and key) 0600, atomically.
func (d *Daemon) writeCertFile(chain, key []byte) error {
	path := d.certFile()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("install certificate: %w", err)
	}
	tmp, err := stageFile(path, acme.HAProxyPEM(chain, key), 0o600)
	if err != nil {
		return fmt.Errorf("install certificate: %w", err)
	}
	// stageFile keeps an existing file's mode: make sure it is 0600.
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("install certificate: %w", err)
	}
	return commitFile(tmp, path)
}

// ensureCert asks, now and then, whether the certificate is due; the lease
// lets one node at a time order.
func (d *Daemon) ensureCert(ctx context.Context, st *cluster.State, store acme.Store) {
	t := d.tls
	if time.Now().Before(t.nextCheck) {
		return
	}
	// Only the VRRP MASTER orders: the Reserved IP points at it, so the CA's
	// validation request reaches a HAProxy that already routes the challenge
	// path. Another node that applied the TLS settings first would order
	// while the holder still sent the path to the app, and the failed order
	// would hold every node back for the failure backoff.
	if !d.rep.isMaster() {
		return
	}
	key := strings.Join(append(slices.Clone(st.TLS.Domains), st.TLS.Email, st.TLS.Directory, st.TLS.DirectoryRoots,
		st.TLS.TrustRoots, fmt.Sprint(st.TLS.RenewBeforeSeconds), st.SecretsRecipient), "\x00")
	if t.issuer == nil || t.issuerKey != key {
		sl, err := d.sealer(st)
		if err != nil {
			d.tlsError("renewal: " + err.Error())
			t.nextCheck = time.Now().Add(ensureEveryMissing)
			return
		}
		set, _ := d.current()
		iss, err := acme.NewIssuer(acme.Config{Store: store, Sealer: sl, DirectoryURL: st.TLS.Directory,
			CARoots: pool(st.TLS.DirectoryRoots), TrustRoots: pool(st.TLS.TrustRoots), Domains: st.TLS.Domains,
			Email: st.TLS.Email, Holder: set.NodeID, RenewBefore: st.TLS.RenewBefore(), Logger: d.log.With("component", "acme")})
		if err != nil {
			d.tlsError("renewal: " + err.Error())
			t.nextCheck = time.Now().Add(ensureEvery)
			return
		}
		t.issuer, t.issuerKey = iss, key
	}
	res, err := t.issuer.Ensure(ctx)
	var held *acme.LeaseHeldError
	switch {
	case errors.As(err, &held):
		err = nil // another node is ordering
	case err != nil:
		d.tlsError("renewal: " + err.Error())
	case res.Issued:
		d.log.Info("certificate ordered and stored", "serial", res.Cert.Serial, "reason", res.Reason)
		t.mu.Lock()
		t.etag = "" // install it at the next step
		t.mu.Unlock()
		d.kickTLS()
	}
	if err == nil {
		d.reportTLS("")
	}
	every := ensureEvery
	if res.Cert.Serial == "" {
		every = ensureEveryMissing
	}
	t.nextCheck = time.Now().Add(jitter(every, 0.2))
}

// reportTLS puts the installed certificate and an error ("" clears it) in
// the report.
func (d *Daemon) reportTLS(errMsg string) {
	d.tls.mu.Lock()
	inst := d.tls.installed
	d.tls.mu.Unlock()
	changed := false
	d.rep.update(func(s *report.Status) {
		next := &report.TLSStatus{Error: errMsg}
		if inst != nil {
			na, ia := inst.NotAfter, inst.InstalledAt
			next.Serial, next.Names, next.InstalledAt, next.Placeholder = inst.Serial, inst.Names, &ia, inst.Placeholder
			if !na.IsZero() {
				next.NotAfter = &na
			}
		}
		changed = s.TLS == nil || s.TLS.Serial != next.Serial || s.TLS.Error != next.Error || s.TLS.Placeholder != next.Placeholder
		s.TLS = next
	})
	if changed {
		d.rep.kick()
	}
}

func (d *Daemon) tlsError(msg string) {
	d.log.Warn("tls", "err", msg)
	d.reportTLS(msg)
}
