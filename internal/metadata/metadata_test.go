package metadata_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/metadata"
)

// A /metadata/v1.json document as DigitalOcean documents it (abridged).
const doSample = `{
  "droplet_id": 2756294,
  "hostname": "sample-droplet",
  "vendor_data": "#cloud-config\n",
  "public_keys": ["ssh-rsa AAAA sammy@example.com"],
  "region": "nyc3",
  "interfaces": {
    "private": [{"ipv4": {"ip_address": "10.132.255.113", "netmask": "255.255.0.0", "gateway": "0.0.0.0"},
                 "mac": "04:01:2a:0f:2a:02", "type": "private"}],
    "public": [{"ipv4": {"ip_address": "104.131.20.105", "netmask": "255.255.192.0", "gateway": "104.131.0.1"},
                "anchor_ipv4": {"ip_address": "10.17.0.5", "netmask": "255.255.0.0", "gateway": "10.17.0.1"},
                "ipv6": {"ip_address": "2604:A880:0800:0010:0000:0000:017D:2001", "cidr": 64, "gateway": "2604:A880:0800:0010:0000:0000:0000:0001"},
                "mac": "04:01:2a:0f:2a:01", "type": "public"}]
  },
  "floating_ip": {"ipv4": {"active": false}},
  "reserved_ip": {"ipv4": {"active": true, "ip_address": "45.55.96.47"}},
  "dns": {"nameservers": ["2001:4860:4860::8844", "8.8.8.8"]},
  "tags": ["dynia"],
  "features": {"dhcp_enabled": false}
}`

func TestDecodeDOSample(t *testing.T) {
	t.Parallel()
	var m metadata.Metadata
	if err := json.Unmarshal([]byte(doSample), &m); err != nil {
		t.Fatal(err)
	}
	if m.DropletID != 2756294 || m.Hostname != "sample-droplet" || m.Region != "nyc3" ||
		m.PublicIPv4() != "104.131.20.105" || m.PrivateIPv4() != "10.132.255.113" || m.AnchorIPv4() != "10.17.0.5" ||
		!m.ReservedIP.IPv4.Active || m.ReservedIP.IPv4.IPAddress != "45.55.96.47" {
		t.Fatalf("decoded %+v", m)
	}
}

// headerTransport names the droplet the way the sandbox does.
type headerTransport struct{ id int }

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Dynia-Droplet-ID", strconv.Itoa(h.id))
	return http.DefaultTransport.RoundTrip(r)
}

func TestAgainstSimulator(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sim := dosim.New(dosim.Options{})
	api := httptest.NewServer(sim)
	defer api.Close()
	md := httptest.NewServer(sim.MetadataHandler())
	defer md.Close()
	defer sim.Close()

	cc, err := cloud.New("t", cloud.Options{BaseURL: api.URL, PollInterval: 5 * time.Millisecond, PollMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.CloseIdleConnections()
	ds, err := cc.CreateDroplets(ctx, []cloud.DropletSpec{
		{Name: "dynia-m-a", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64", Tags: []string{"dynia"}},
		{Name: "dynia-m-b", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ds, err = cc.WaitActive(ctx, []int{ds[0].ID, ds[1].ID})
	if err != nil {
		t.Fatal(err)
	}
	a, b := ds[0], ds[1]
	ma := metadata.New(md.URL, &http.Client{Transport: headerTransport{a.ID}, Timeout: 5 * time.Second})
	mb := metadata.New(md.URL, &http.Client{Transport: headerTransport{b.ID}, Timeout: 5 * time.Second})

	if id, err := ma.DropletID(ctx); err != nil || id != a.ID {
		t.Fatalf("DropletID = %d, %v; want %d", id, err, a.ID)
	}
	if h, err := ma.Hostname(ctx); err != nil || h != a.Name {
		t.Fatalf("Hostname = %q, %v", h, err)
	}
	if r, err := ma.Region(ctx); err != nil || r != "fra1" {
		t.Fatalf("Region = %q, %v", r, err)
	}
	if ip, err := ma.PublicIPv4(ctx); err != nil || ip != a.PublicIP {
		t.Fatalf("PublicIPv4 = %q, %v; want %q", ip, err, a.PublicIP)
	}
	if ip, err := ma.PrivateIPv4(ctx); err != nil || ip != a.PrivateIP {
		t.Fatalf("PrivateIPv4 = %q, %v; want %q", ip, err, a.PrivateIP)
	}
	anchor, err := ma.AnchorIPv4(ctx)
	if err != nil || anchor == "" {
		t.Fatalf("AnchorIPv4 = %q, %v", anchor, err)
	}
	if ip, active, err := ma.ReservedIPv4(ctx); err != nil || active || ip != "" {
		t.Fatalf("ReservedIPv4 before any = %q %v %v", ip, active, err)
	}

	rip, err := cc.CreateReservedIP(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ip, active, err := ma.ReservedIPv4(ctx); err != nil || !active || ip != rip.IP {
		t.Fatalf("ReservedIPv4 on holder = %q %v %v; want %s active", ip, active, err, rip.IP)
	}
	if _, active, err := mb.ReservedIPv4(ctx); err != nil || active {
		t.Fatalf("ReservedIPv4 on other = %v %v", active, err)
	}

	// The reserved IP follows an assignment.
	if err := cc.AssignReservedIP(ctx, rip.IP, b.ID); err != nil {
		t.Fatal(err)
	}
	if ip, active, err := mb.ReservedIPv4(ctx); err != nil || !active || ip != rip.IP {
		t.Fatalf("after move, new holder = %q %v %v", ip, active, err)
	}
	if _, active, err := ma.ReservedIPv4(ctx); err != nil || active {
		t.Fatalf("after move, old holder active=%v %v", active, err)
	}

	all, err := mb.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if all.DropletID != b.ID || all.Hostname != b.Name || all.Region != "fra1" ||
		all.PublicIPv4() != b.PublicIP || all.PrivateIPv4() != b.PrivateIP || all.AnchorIPv4() == "" ||
		!all.ReservedIP.IPv4.Active || all.ReservedIP.IPv4.IPAddress != rip.IP {
		t.Fatalf("All = %+v", all)
	}

	// An unknown droplet is not found, and says so.
	mz := metadata.New(md.URL, &http.Client{Transport: headerTransport{1}, Timeout: 5 * time.Second})
	if _, err := mz.DropletID(ctx); err == nil {
		t.Fatal("metadata for an unknown droplet succeeded")
	}
}

func TestUnreachableIsAnError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	if _, err := metadata.New(url, nil).DropletID(ctx); err == nil {
		t.Fatal("DropletID from a closed port succeeded")
	}
}
