package metadata_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/metadata"
)

// FuzzMetadata feeds one body to every parser of the metadata service's
// answers: none panics, none errs in more than one line, and what each
// accepts is what dynia relies on (a positive droplet id that prints back
// as the item did; canonical IPv4 addresses). Seeds:
// testdata/fuzz/FuzzMetadata (DO's documented sample and edge cases).
func FuzzMetadata(f *testing.F) {
	f.Add([]byte(doSample))
	f.Fuzz(func(t *testing.T, b []byte) {
		oneLine := func(err error) {
			t.Helper()
			if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		}
		item := strings.TrimSpace(string(b)) // as the client trims an item
		id, err := metadata.ParseDropletID(item)
		oneLine(err)
		if err == nil && (id <= 0 || strconv.Itoa(id) != strings.TrimLeft(item, "0")) {
			t.Fatalf("ParseDropletID(%q) = %d", item, id)
		}
		ip, err := metadata.ParseIPv4("item", item)
		oneLine(err)
		if err == nil {
			if a, perr := netip.ParseAddr(ip); perr != nil || !a.Is4() || a.String() != ip {
				t.Fatalf("ParseIPv4(%q) = %q", item, ip)
			}
		}
		_, err = metadata.ParseActive(item)
		oneLine(err)
		m, err := metadata.DecodeMetadata(b)
		oneLine(err)
		if err == nil {
			if m.DropletID <= 0 {
				t.Fatalf("DecodeMetadata accepted droplet_id %d", m.DropletID)
			}
			for _, a := range []string{m.PublicIPv4(), m.PrivateIPv4(), m.AnchorIPv4(), m.ReservedIP.IPv4.IPAddress} {
				if a == "" {
					continue
				}
				if p, perr := netip.ParseAddr(a); perr != nil || !p.Is4() {
					t.Fatalf("DecodeMetadata accepted address %q", a)
				}
			}
		}
	})
}

// TestClientUsesParsers: the client's methods go through the parse
// functions, so what FuzzMetadata proves holds for them.
func TestClientUsesParsers(t *testing.T) {
	t.Parallel()
	items := map[string]string{
		"/metadata/v1/id":                                "-5",
		"/metadata/v1/reserved_ip/ipv4/active":           "true",
		"/metadata/v1/reserved_ip/ipv4/ip_address":       "169.254.169.254.1",
		"/metadata/v1.json":                              `{"droplet_id": 0}`,
		"/metadata/v1/interfaces/private/0/ipv4/address": "10.10.0.5\n; rm -rf /",
		"/metadata/v1/interfaces/public/0/ipv4/address":  strings.Repeat("9", 1<<20+1),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := items[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	c := metadata.New(srv.URL, srv.Client())
	ctx := context.Background()
	if id, err := c.DropletID(ctx); err == nil || !strings.Contains(err.Error(), `droplet id "-5"`) {
		t.Errorf("DropletID = %d, %v", id, err)
	}
	if ip, _, err := c.ReservedIPv4(ctx); err == nil || !strings.Contains(err.Error(), "not an IPv4 address") {
		t.Errorf("ReservedIPv4 = %q, %v", ip, err)
	}
	if m, err := c.All(ctx); err == nil || !strings.Contains(err.Error(), "droplet_id 0 is not positive") {
		t.Errorf("All = %+v, %v", m, err)
	}
	if ip, err := c.PublicIPv4(ctx); err == nil || !strings.Contains(err.Error(), "body over") {
		t.Errorf("PublicIPv4 of an oversized body = %.20q…, %v", ip, err)
	}
	if ip, err := c.PrivateIPv4(ctx); err == nil || !strings.Contains(err.Error(), "not an IPv4 address") {
		t.Errorf("PrivateIPv4 = %q, %v", ip, err)
	}
}
