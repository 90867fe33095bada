// Package dns points a name at the cluster's Reserved IP: an A record kept
// with an idempotent upsert, read back, and deleted only when it is still
// the record dynia wrote. Two providers sit behind one small interface:
// DigitalOcean DNS (through internal/cloud, on godo) and Cloudflare (a
// minimal client of API v4 for the five calls used: list zones by name,
// list, create, edit and delete DNS records; see docs/tls.md for why not
// the official SDK).
//
// Ownership: Upsert reports whether it created the record; the caller
// keeps that (with the record id) and deletes on destroy only what it
// created. Cloudflare records also carry a comment naming their owner
// (ARecord.Comment), which survives a lost answer.
package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ARecord is one A record.
type ARecord struct {
	ID      string     // the provider's record id ("" before creation)
	Name    string     // fully qualified, lower case, no trailing dot: "app.example.com"
	IP      netip.Addr // IPv4
	TTL     int        // seconds; 1 means Cloudflare's "automatic" (300 s)
	Proxied bool       // Cloudflare only: traffic through Cloudflare's proxy (default off)
	Comment string     // Cloudflare only: free text, dynia writes its owner mark here
}

// Provider is a DNS host dynia can keep an A record in. zone is the
// provider's zone (Cloudflare) or domain (DigitalOcean), e.g. "example.com".
type Provider interface {
	// Get returns the A records named name in zone (none: empty, no error).
	Get(ctx context.Context, zone, name string) ([]ARecord, error)
	// Upsert makes want.Name an A record to want.IP with want's TTL and
	// proxying: an identical record is left alone (no write), a record of
	// that name is edited, otherwise one is created (created true).
	Upsert(ctx context.Context, zone string, want ARecord) (rec ARecord, created bool, err error)
	// Delete removes rec (by rec.ID) if it still points at rec.IP; a record
	// already gone is not an error, one pointing elsewhere is ErrChanged.
	Delete(ctx context.Context, zone string, rec ARecord) error
	// String names the provider ("cloudflare", "digitalocean").
	String() string
}

// DefaultTTL is the TTL dynia asks for: short, so a changed Reserved IP
// (a new cluster) propagates within a minute. Cloudflare's minimum for
// non-Enterprise zones is 60; DigitalOcean's is 30.
const DefaultTTL = 60

// Errors.
var (
	// ErrChanged: the record no longer points where dynia put it (someone
	// edited it); Delete leaves it.
	ErrChanged = errors.New("DNS record changed since dynia wrote it")
	// ErrZoneNotFound: the zone is not in the account the token sees.
	ErrZoneNotFound = errors.New("DNS zone not found")
)

// CheckName validates a record name in zone: lower-case DNS labels ending
// in the zone (the apex itself is allowed). The error names the value.
func CheckName(zone, name string) error {
	if zone == "" {
		return errors.New("dns: zone is empty")
	}
	if name != zone && !strings.HasSuffix(name, "."+zone) {
		return fmt.Errorf("dns: name %q is not in zone %q", name, zone)
	}
	if len(name) > 253 {
		return fmt.Errorf("dns: name %q is longer than 253 characters", name)
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return fmt.Errorf("dns: name %q is not a DNS name", name)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("dns: name %q is not a lower-case DNS name", name)
			}
		}
	}
	return nil
}

func checkWant(zone string, want ARecord) error {
	if err := CheckName(zone, want.Name); err != nil {
		return err
	}
	if !want.IP.Is4() {
		return fmt.Errorf("dns: %s: %q is not an IPv4 address", want.Name, want.IP)
	}
	return nil
}
