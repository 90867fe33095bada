package dns

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/dynia/dynia/internal/cloud"
)

// DOClient is what DigitalOcean needs from internal/cloud's *cloud.Client.
type DOClient interface {
	DNSRecords(ctx context.Context, domain, name string) ([]cloud.DNSRecord, error)
	UpsertDNSRecord(ctx context.Context, domain, name, ip string) (int, error)
	DeleteDNSRecord(ctx context.Context, domain string, id int) error
}

// DigitalOcean keeps A records in DigitalOcean DNS. Its records have no
// comment, so ownership rests with the caller alone; Proxied and Comment
// are ignored, TTL is DigitalOcean's (internal/cloud writes 60).
type DigitalOcean struct{ c DOClient }

// NewDigitalOcean wraps a *cloud.Client (or a test double).
func NewDigitalOcean(c DOClient) *DigitalOcean { return &DigitalOcean{c: c} }

func (d *DigitalOcean) String() string { return "digitalocean" }

// relative turns "app.example.com" in "example.com" into "app" ("@" for
// the apex), DigitalOcean's record names.
func relative(zone, name string) string {
	if name == zone {
		return "@"
	}
	return strings.TrimSuffix(name, "."+zone)
}

func (d *DigitalOcean) Get(ctx context.Context, zone, name string) ([]ARecord, error) {
	if err := CheckName(zone, name); err != nil {
		return nil, err
	}
	recs, err := d.c.DNSRecords(ctx, zone, relative(zone, name))
	if err != nil {
		return nil, fmt.Errorf("dns: digitalocean: %w", err)
	}
	var out []ARecord
	for _, r := range recs {
		ip, err := netip.ParseAddr(r.Data)
		if err != nil {
			return nil, fmt.Errorf("dns: digitalocean: record %d: data %q is not an address", r.ID, r.Data)
		}
		out = append(out, ARecord{ID: strconv.Itoa(r.ID), Name: name, IP: ip, TTL: r.TTL})
	}
	return out, nil
}

func (d *DigitalOcean) Upsert(ctx context.Context, zone string, want ARecord) (ARecord, bool, error) {
	if err := checkWant(zone, want); err != nil {
		return ARecord{}, false, err
	}
	cur, err := d.Get(ctx, zone, want.Name)
	if err != nil {
		return ARecord{}, false, err
	}
	for _, r := range cur {
		if r.IP == want.IP {
			return r, false, nil
		}
	}
	id, err := d.c.UpsertDNSRecord(ctx, zone, relative(zone, want.Name), want.IP.String())
	if err != nil {
		return ARecord{}, false, fmt.Errorf("dns: digitalocean: %w", err)
	}
	return ARecord{ID: strconv.Itoa(id), Name: want.Name, IP: want.IP, TTL: DefaultTTL}, len(cur) == 0, nil
}

func (d *DigitalOcean) Delete(ctx context.Context, zone string, rec ARecord) error {
	id, err := strconv.Atoi(rec.ID)
	if err != nil {
		return fmt.Errorf("dns: digitalocean: delete: record id %q is not a number", rec.ID)
	}
	cur, err := d.Get(ctx, zone, rec.Name)
	if err != nil {
		return err
	}
	for _, r := range cur {
		if r.ID != rec.ID {
			continue
		}
		if r.IP != rec.IP {
			return fmt.Errorf("dns: digitalocean: %s now points at %s, not %s: %w", rec.Name, r.IP, rec.IP, ErrChanged)
		}
		if err := d.c.DeleteDNSRecord(ctx, zone, id); err != nil {
			return fmt.Errorf("dns: digitalocean: %w", err)
		}
		return nil
	}
	return nil
}
