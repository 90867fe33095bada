package dns_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/cfsim"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dns"
)

var (
	ip1 = netip.MustParseAddr("10.0.0.1")
	ip2 = netip.MustParseAddr("10.0.0.2")
)

// newCF returns a Cloudflare client talking to a fresh simulator through
// the spec validator, plus a function asserting the traffic conformed.
func newCF(t *testing.T) (*dns.Cloudflare, *cfsim.Server, *bytes.Buffer) {
	t.Helper()
	sim := cfsim.New(cfsim.Options{})
	sim.AddZone("example.test")
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	v, err := cfsim.NewSpecValidator(cfsim.SpecPath(), ts.URL+cfsim.APIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := v.Err(); err != nil {
			t.Errorf("spec violations:\n%v", err)
		}
	})
	var logs bytes.Buffer
	cf, err := dns.NewCloudflare(dns.CloudflareOptions{Token: sim.NewToken(), BaseURL: ts.URL + cfsim.APIPrefix,
		HTTPClient: &http.Client{Transport: v.Transport(nil)},
		Logger:     slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	return cf, sim, &logs
}

func TestCloudflareUpsert(t *testing.T) {
	ctx := context.Background()
	cf, sim, logs := newCF(t)
	want := dns.ARecord{Name: "app.example.test", IP: ip1, Comment: "dynia:cluster:demo"}

	rec, created, err := cf.Upsert(ctx, "example.test", want)
	if err != nil || !created || rec.ID == "" || rec.IP != ip1 || rec.TTL != dns.DefaultTTL || rec.Proxied || rec.Comment != want.Comment {
		t.Fatalf("first Upsert = %+v created=%v err=%v; want a created, unproxied record with TTL 60", rec, created, err)
	}
	calls := sim.CallCount()
	again, created, err := cf.Upsert(ctx, "example.test", want)
	if err != nil || created || again.ID != rec.ID {
		t.Fatalf("second Upsert = %+v created=%v err=%v; want the same record", again, created, err)
	}
	if writes := sim.CallCount() - calls; writes != 1 { // one list, no write
		t.Fatalf("idempotent Upsert made %d calls, want 1 (the list)", writes)
	}
	want.IP = ip2
	moved, created, err := cf.Upsert(ctx, "example.test", want)
	if err != nil || created || moved.ID != rec.ID || moved.IP != ip2 {
		t.Fatalf("moving Upsert = %+v created=%v err=%v; want the same record edited", moved, created, err)
	}
	if got, err := cf.Get(ctx, "example.test", "app.example.test"); err != nil || len(got) != 1 || got[0].IP != ip2 {
		t.Fatalf("Get = %+v %v", got, err)
	}

	// Delete refuses a record someone re-pointed, then deletes ours.
	if err := cf.Delete(ctx, "example.test", rec); !errors.Is(err, dns.ErrChanged) {
		t.Fatalf("Delete of a re-pointed record: %v, want ErrChanged", err)
	}
	if err := cf.Delete(ctx, "example.test", moved); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := cf.Delete(ctx, "example.test", moved); err != nil {
		t.Fatalf("Delete of a gone record: %v, want nil", err)
	}
	if got, _ := cf.Get(ctx, "example.test", "app.example.test"); len(got) != 0 {
		t.Fatalf("records left: %+v", got)
	}
	if strings.Contains(logs.String(), "Bearer") {
		t.Fatal("the token reached the log")
	}
}

func TestCloudflareErrors(t *testing.T) {
	ctx := context.Background()
	cf, sim, _ := newCF(t)
	ts := httptest.NewServer(sim)
	t.Cleanup(ts.Close)
	const secret = "0123456789abcdef0123456789abcdef01234567"
	bad, err := dns.NewCloudflare(dns.CloudflareOptions{Token: secret, BaseURL: ts.URL + cfsim.APIPrefix})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		run    func() error
		wantIs error
		want   string
	}{
		{"unknown zone", func() error {
			_, _, err := cf.Upsert(ctx, "nope.test", dns.ARecord{Name: "a.nope.test", IP: ip1})
			return err
		}, dns.ErrZoneNotFound, `zone "nope.test"`},
		{"name outside the zone", func() error {
			_, _, err := cf.Upsert(ctx, "example.test", dns.ARecord{Name: "a.other.test", IP: ip1})
			return err
		}, nil, `name "a.other.test" is not in zone "example.test"`},
		{"not IPv4", func() error {
			_, _, err := cf.Upsert(ctx, "example.test", dns.ARecord{Name: "a.example.test", IP: netip.MustParseAddr("::1")})
			return err
		}, nil, `"::1" is not an IPv4 address`},
		{"invalid token", func() error {
			_, err := bad.Get(ctx, "example.test", "a.example.test")
			return err
		}, nil, "HTTP 401: 9109 Invalid access token"},
	} {
		err := tc.run()
		if err == nil || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: the token is in the error", tc.name)
		}
	}

	t.Setenv(dns.TokenEnv, "")
	if _, err := dns.NewCloudflare(dns.CloudflareOptions{}); err == nil || !strings.Contains(err.Error(), dns.TokenEnv) {
		t.Fatalf("no token: %v, want an error naming %s", err, dns.TokenEnv)
	}
	t.Setenv(dns.TokenEnv, secret)
	if _, err := dns.NewCloudflare(dns.CloudflareOptions{}); err != nil {
		t.Fatalf("token from the environment: %v", err)
	}
}

// fakeDO is DigitalOcean's DNS for one domain, in memory.
type fakeDO struct {
	recs   map[int]cloud.DNSRecord
	next   int
	writes int
}

func (f *fakeDO) DNSRecords(_ context.Context, _, name string) ([]cloud.DNSRecord, error) {
	var out []cloud.DNSRecord
	for id := 1; id <= f.next; id++ {
		if r, ok := f.recs[id]; ok && r.Name == name {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeDO) UpsertDNSRecord(_ context.Context, _, name, ip string) (int, error) {
	f.writes++
	for id, r := range f.recs {
		if r.Name == name {
			r.Data = ip
			f.recs[id] = r
			return id, nil
		}
	}
	f.next++
	f.recs[f.next] = cloud.DNSRecord{ID: f.next, Name: name, Data: ip, TTL: 60}
	return f.next, nil
}

func (f *fakeDO) DeleteDNSRecord(_ context.Context, _ string, id int) error {
	f.writes++
	delete(f.recs, id)
	return nil
}

func TestDigitalOcean(t *testing.T) {
	ctx := context.Background()
	f := &fakeDO{recs: map[int]cloud.DNSRecord{}}
	d := dns.NewDigitalOcean(f)
	for _, tc := range []struct {
		name        string
		recName     string
		ip          netip.Addr
		wantCreated bool
		wantWrites  int
		wantDOName  string
	}{
		{"create", "lb.example.com", ip1, true, 1, "lb"},
		{"same again: no write", "lb.example.com", ip1, false, 1, "lb"},
		{"move", "lb.example.com", ip2, false, 2, "lb"},
		{"apex", "example.com", ip1, true, 3, "@"},
	} {
		rec, created, err := d.Upsert(ctx, "example.com", dns.ARecord{Name: tc.recName, IP: tc.ip})
		if err != nil || created != tc.wantCreated || f.writes != tc.wantWrites || rec.IP != tc.ip {
			t.Fatalf("%s: %+v created=%v writes=%d err=%v; want created=%v writes=%d", tc.name, rec, created, f.writes, err, tc.wantCreated, tc.wantWrites)
		}
		id, _ := strconv.Atoi(rec.ID)
		if f.recs[id].Name != tc.wantDOName {
			t.Fatalf("%s: DigitalOcean name %q, want %q", tc.name, f.recs[id].Name, tc.wantDOName)
		}
	}
	recs, err := d.Get(ctx, "example.com", "lb.example.com")
	if err != nil || len(recs) != 1 || recs[0].IP != ip2 {
		t.Fatalf("Get = %+v %v", recs, err)
	}
	stale := recs[0]
	stale.IP = ip1
	if err := d.Delete(ctx, "example.com", stale); !errors.Is(err, dns.ErrChanged) {
		t.Fatalf("Delete of a moved record: %v, want ErrChanged", err)
	}
	if err := d.Delete(ctx, "example.com", recs[0]); err != nil {
		t.Fatal(err)
	}
	if err := d.Delete(ctx, "example.com", recs[0]); err != nil {
		t.Fatalf("Delete of a gone record: %v", err)
	}
	if recs, _ := d.Get(ctx, "example.com", "lb.example.com"); len(recs) != 0 {
		t.Fatalf("left: %+v", recs)
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		zone, name string
		ok         bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "app.example.com", true},
		{"example.com", "a.b.example.com", true},
		{"example.com", "badexample.com", false},
		{"example.com", "App.example.com", false},
		{"example.com", "a..example.com", false},
		{"example.com", "-a.example.com", false},
		{"", "a.example.com", false},
		{"example.com", "a b.example.com", false},
	} {
		if err := dns.CheckName(tc.zone, tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q, %q) = %v, want ok=%v", tc.zone, tc.name, err, tc.ok)
		}
	}
}
