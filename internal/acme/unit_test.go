package acme

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/google/go-cmp/cmp"
)

func fileStore(t *testing.T) bucket.Store {
	t.Helper()
	s, err := bucket.Open(context.Background(), "file://"+t.TempDir(), bucket.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testSealer(t testing.TB) Sealer {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	s, err := NewAESGCMSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLease(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	type step struct {
		advance time.Duration
		holder  string
		release int // release the lease taken at this step index (1-based); 0: take instead
		wantErr error
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first take creates", []step{{holder: "a"}}},
		{"second holder refused while held", []step{{holder: "a"}, {holder: "b", wantErr: ErrLeaseHeld}}},
		{"same holder refused while held", []step{{holder: "a"}, {holder: "a", wantErr: ErrLeaseHeld}}},
		{"expired lease taken over", []step{{holder: "a"}, {advance: 11 * time.Minute, holder: "b"}}},
		{"not yet expired", []step{{holder: "a"}, {advance: 9 * time.Minute, holder: "b", wantErr: ErrLeaseHeld}}},
		{"released lease taken at once", []step{{holder: "a"}, {release: 1}, {holder: "b"}}},
		{"release after takeover leaves the new holder alone", []step{
			{holder: "a"}, {advance: 11 * time.Minute, holder: "b"}, {release: 1}, {holder: "c", wantErr: ErrLeaseHeld}}},
		{"release twice is a no-op", []step{{holder: "a"}, {release: 1}, {release: 1}, {holder: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := fileStore(t)
			clk := &clock{t: t0}
			leases := map[int]*Lease{}
			for i, s := range tc.steps {
				clk.Add(s.advance)
				if s.release > 0 {
					if err := leases[s.release].Release(ctx); err != nil {
						t.Fatalf("step %d: release: %v", i+1, err)
					}
					continue
				}
				l, err := takeLease(ctx, store, clk.Now, s.holder, 10*time.Minute)
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("step %d: take(%s) err = %v, want %v", i+1, s.holder, err, s.wantErr)
				}
				if err == nil {
					if l.Holder() != s.holder || !l.Expires().Equal(clk.Now().Add(10*time.Minute)) {
						t.Fatalf("step %d: lease %s until %v", i+1, l.Holder(), l.Expires())
					}
					leases[i+1] = l
				}
			}
		})
	}
}

func TestLeaseRace(t *testing.T) {
	ctx := context.Background()
	store := fileStore(t)
	clk := &clock{t: time.Now()}
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = takeLease(ctx, store, clk.Now, "holder"+string(rune('a'+i)), time.Minute)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrLeaseHeld):
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d holders won the lease, want exactly 1", won)
	}
}

func TestValidToken(t *testing.T) {
	for _, tc := range []struct {
		token string
		want  bool
	}{
		{"evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", true},
		{"a", true},
		{"A-_z09", true},
		{"", false},
		{"abc=", false},
		{"abc+def", false},
		{"abc/def", false},
		{"../etc", false},
		{"abc.def", false},
		{"ab%20", false},
		{strings.Repeat("a", MaxTokenLen), true},
		{strings.Repeat("a", MaxTokenLen+1), false},
		{"é", false},
	} {
		if got := ValidToken(tc.token); got != tc.want {
			t.Errorf("ValidToken(%q) = %v, want %v", tc.token, got, tc.want)
		}
	}
}

// countingStore counts Gets, to see the handler's cache work.
type countingStore struct {
	Store
	mu   sync.Mutex
	gets int
}

func (c *countingStore) Get(ctx context.Context, key, inm string) (*bucket.Object, error) {
	c.mu.Lock()
	c.gets++
	c.mu.Unlock()
	return c.Store.Get(ctx, key, inm)
}

func TestChallengeHandler(t *testing.T) {
	ctx := context.Background()
	store := &countingStore{Store: fileStore(t)}
	const token = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
	keyAuth := token + ".9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
	if _, err := store.Put(ctx, ChallengeKey(token), []byte(keyAuth), bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, ChallengeKey("huge"), bytes.Repeat([]byte("x"), 4096), bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	h := ChallengeHandler(store, nil).(*challengeHandler)
	clk := &clock{t: time.Now()}
	h.now = clk.Now
	for _, tc := range []struct {
		method, path string
		wantCode     int
		wantBody     string
	}{
		{"GET", ChallengePathPrefix + token, 200, keyAuth},
		{"HEAD", ChallengePathPrefix + token, 200, ""},
		{"GET", ChallengePathPrefix + "unknownToken", 404, ""},
		{"GET", ChallengePathPrefix + "bad=token", 404, ""},
		{"GET", ChallengePathPrefix + "..%2Fcert.json", 404, ""},
		{"GET", ChallengePathPrefix, 404, ""},
		{"GET", "/other/" + token, 404, ""},
		{"GET", ChallengePathPrefix + "huge", 404, ""},
		{"POST", ChallengePathPrefix + token, 405, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.wantCode {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, rec.Code, tc.wantCode)
			continue
		}
		if tc.wantCode == 200 && rec.Body.String() != tc.wantBody {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, rec.Body.String(), tc.wantBody)
		}
	}

	// Cached: the token is gone from the store but still served for 10 s.
	if err := store.Delete(ctx, ChallengeKey(token)); err != nil {
		t.Fatal(err)
	}
	before := store.gets
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", ChallengePathPrefix+token, nil))
		return rec.Code
	}
	if code := get(); code != 200 || store.gets != before {
		t.Fatalf("cached hit: code %d, %d store reads (want 200, 0)", code, store.gets-before)
	}
	clk.Add(hitTTL + time.Millisecond)
	if code := get(); code != http.StatusNotFound || store.gets != before+1 {
		t.Fatalf("after expiry: code %d, %d store reads (want 404, 1)", code, store.gets-before)
	}
}

// testCA issues certificates for Verify's table.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &testCA{cert: c, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, names []string, nb, na time.Time) (chainPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func TestVerify(t *testing.T) {
	now := time.Now()
	ca, other := newTestCA(t, "test root"), newTestCA(t, "other root")
	chain, key := ca.issue(t, []string{"app.example.test", "www.example.test"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	_, otherKey := ca.issue(t, []string{"app.example.test"}, now.Add(-time.Hour), now.Add(time.Hour))
	wild, wildKey := ca.issue(t, []string{"*.example.test"}, now.Add(-time.Hour), now.Add(time.Hour))
	for _, tc := range []struct {
		name      string
		chain     []byte
		key       []byte
		names     []string
		roots     *x509.CertPool
		now       time.Time
		wantCheck string // "" = accepted
	}{
		{"good", chain, key, []string{"app.example.test", "www.example.test"}, ca.pool, now, ""},
		{"subset of names", chain, key, []string{"www.example.test"}, ca.pool, now, ""},
		{"wildcard covers", wild, wildKey, []string{"app.example.test"}, ca.pool, now, ""},
		{"other root", chain, key, []string{"app.example.test"}, other.pool, now, CheckChain},
		{"wrong key", chain, otherKey, []string{"app.example.test"}, ca.pool, now, CheckKey},
		{"wrong name", chain, key, []string{"evil.example.test"}, ca.pool, now, CheckName},
		{"expired", chain, key, []string{"app.example.test"}, ca.pool, now.Add(91 * 24 * time.Hour), CheckValidity},
		{"not yet valid", chain, key, []string{"app.example.test"}, ca.pool, now.Add(-2 * time.Hour), CheckValidity},
		{"no chain", nil, key, nil, ca.pool, now, CheckParse},
		{"key in chain", append(append([]byte{}, chain...), key...), key, nil, ca.pool, now, CheckParse},
		{"no key", chain, []byte(strings.Repeat("junk", 20)), nil, ca.pool, now, CheckParse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.chain, tc.key, tc.names, tc.roots, tc.now)
			var ve *VerifyError
			switch {
			case tc.wantCheck == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.wantCheck == "":
			case !errors.As(err, &ve):
				t.Fatalf("err = %v, want a VerifyError %s", err, tc.wantCheck)
			case ve.Check != tc.wantCheck:
				t.Fatalf("check %s (%v), want %s", ve.Check, err, tc.wantCheck)
			}
			if err != nil && (strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), string(tc.key[40:60]))) {
				t.Fatalf("error mentions key material: %v", err)
			}
		})
	}
}

func TestPlaceholder(t *testing.T) {
	now := time.Now()
	chain, key, err := Placeholder([]string{"app.example.test"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !IsPlaceholder(chain) {
		t.Fatal("IsPlaceholder(placeholder) = false")
	}
	// Key and names check out; the chain verifies only to itself.
	self := x509.NewCertPool()
	self.AppendCertsFromPEM(chain)
	if err := Verify(chain, key, []string{"app.example.test"}, self, now); err != nil {
		t.Fatalf("placeholder against itself: %v", err)
	}
	var ve *VerifyError
	if err := Verify(chain, key, []string{"app.example.test"}, x509.NewCertPool(), now); !errors.As(err, &ve) || ve.Check != CheckChain {
		t.Fatalf("placeholder against no roots: %v, want a chain failure", err)
	}
	ca := newTestCA(t, "ca")
	real, _ := ca.issue(t, []string{"app.example.test"}, now, now.Add(time.Hour))
	if IsPlaceholder(real) {
		t.Fatal("IsPlaceholder(CA-issued) = true")
	}
	pemFile := HAProxyPEM(chain, key)
	if !bytes.HasPrefix(pemFile, chain) || !bytes.HasSuffix(pemFile, key) {
		t.Fatal("HAProxyPEM is not chain then key")
	}
}

func TestSealer(t *testing.T) {
	s1, s2 := testSealer(t), testSealer(t)
	msg := []byte("-----BEGIN PRIVATE KEY-----secret")
	c1, err := s1.Seal(msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(c1, []byte("PRIVATE KEY")) {
		t.Fatal("sealed bytes contain the plaintext")
	}
	c2, _ := s1.Seal(msg)
	if bytes.Equal(c1, c2) {
		t.Fatal("two seals of one message are equal (nonce reuse)")
	}
	got, err := s1.Open(c1)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := s2.Open(c1); err == nil {
		t.Fatal("another key opened it")
	}
	c1[len(c1)-1] ^= 1
	if _, err := s1.Open(c1); err == nil {
		t.Fatal("a tampered ciphertext opened")
	}
	if _, err := NewAESGCMSealer(make([]byte, 16)); err == nil {
		t.Fatal("16-byte key accepted")
	}
}

func TestDue(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	i, err := NewIssuer(Config{Store: fileStore(t), Sealer: testSealer(t), DirectoryURL: "https://ca/dir",
		Domains: []string{"b.example.test", "a.example.test"}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	fresh := CertInfo{Serial: "1", Names: []string{"a.example.test", "b.example.test"}, NotAfter: now.Add(60 * 24 * time.Hour), Directory: "https://ca/dir"}
	mod := func(f func(*CertInfo)) CertInfo { c := fresh; f(&c); return c }
	for _, tc := range []struct {
		name string
		info CertInfo
		want string
	}{
		{"fresh", fresh, ""},
		{"none", CertInfo{}, ReasonNone},
		{"names differ", mod(func(c *CertInfo) { c.Names = []string{"a.example.test"} }), ReasonNames},
		{"directory differs", mod(func(c *CertInfo) { c.Directory = "https://other/dir" }), ReasonNewDirectory},
		{"31 days left", mod(func(c *CertInfo) { c.NotAfter = now.Add(31 * 24 * time.Hour) }), ""},
		{"30 days left", mod(func(c *CertInfo) { c.NotAfter = now.Add(30 * 24 * time.Hour) }), ReasonRenewal},
		{"expired", mod(func(c *CertInfo) { c.NotAfter = now.Add(-time.Hour) }), ReasonRenewal},
	} {
		if got := i.due(tc.info, now); got != tc.want {
			t.Errorf("%s: due = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestNewIssuerRejects(t *testing.T) {
	base := Config{Store: fileStore(t), Sealer: testSealer(t), DirectoryURL: "https://ca/dir", Domains: []string{"app.example.test"}}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no store", func(c *Config) { c.Store = nil }, "Store is required"},
		{"no sealer", func(c *Config) { c.Sealer = nil }, "Sealer is required"},
		{"no directory", func(c *Config) { c.DirectoryURL = "" }, "DirectoryURL is required"},
		{"no domains", func(c *Config) { c.Domains = nil }, "Domains is empty"},
		{"wildcard", func(c *Config) { c.Domains = []string{"*.example.test"} }, `domain "*.example.test": HTTP-01 cannot validate a wildcard`},
		{"upper case", func(c *Config) { c.Domains = []string{"App.example.test"} }, "must be lower case"},
		{"bad label", func(c *Config) { c.Domains = []string{"a..b"} }, "not a DNS name"},
		{"lease shorter than an order", func(c *Config) { c.LeaseTTL = time.Minute; c.OrderTimeout = 2 * time.Minute }, "LeaseTTL 1m0s must exceed OrderTimeout 2m0s"},
	} {
		c := base
		tc.mod(&c)
		_, err := NewIssuer(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	i := &Issuer{cfg: Config{FailureBackoff: 15 * time.Minute}}
	got := []time.Duration{}
	for n := 1; n <= 7; n++ {
		got = append(got, i.backoff(n))
	}
	want := []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 6 * time.Hour, 6 * time.Hour}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("backoff (-want +got):\n%s", d)
	}
}

func TestCertificateRedacted(t *testing.T) {
	c := Certificate{CertInfo: CertInfo{Serial: "abc", Names: []string{"a.example.test"}}, KeyPEM: []byte("-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n")}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "cert", c, "ptr", &c)
	for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(&c), logs.String()} {
		if strings.Contains(s, "SECRETKEYBYTES") {
			t.Fatalf("key printed: %s", s)
		}
		if !strings.Contains(s, "abc") {
			t.Fatalf("serial missing: %s", s)
		}
	}
}
