package cloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/digitalocean/godo"
)

// Image is a private image (a Packer snapshot).
type Image struct {
	ID        int
	Name      string
	Regions   []string
	CreatedAt time.Time
	// Type is DO's image type ("snapshot", "backup", "custom", "base")
	// and Public whether it is one of DO's public images: a dynia node
	// image is a private snapshot.
	Type   string
	Public bool
}

// FindSnapshot returns the newest private image whose name starts with
// namePrefix and that is usable in region. DO has no server-side name
// filter: all pages of GET /v2/images?private=true are read. When none
// matches, the error is a *SnapshotError (errors.Is ErrNoSnapshot) saying
// how to get one.
func (c *Client) FindSnapshot(ctx context.Context, namePrefix, region string) (Image, error) {
	op := fmt.Sprintf("find snapshot %q in %s", namePrefix, region)
	imgs, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Image, *godo.Response, error) {
		return c.godo.Images.ListUser(ctx, opt)
	})
	if err != nil {
		return Image{}, wrap(op, err)
	}
	var best *Image
	elsewhere := map[string]bool{}
	for _, im := range imgs {
		if !strings.HasPrefix(im.Name, namePrefix) {
			continue
		}
		// Images still being built or copied are not usable yet.
		if im.Status != "" && im.Status != "available" {
			continue
		}
		if !slices.Contains(im.Regions, region) {
			for _, r := range im.Regions {
				elsewhere[r] = true
			}
			continue
		}
		created, err := time.Parse(time.RFC3339, im.Created)
		if err != nil {
			c.log.Warn("cloud: snapshot with unparsable created_at", "id", im.ID, "created_at", im.Created)
		}
		cand := Image{ID: im.ID, Name: im.Name, Regions: slices.Clone(im.Regions), CreatedAt: created}
		if best == nil || cand.CreatedAt.After(best.CreatedAt) ||
			(cand.CreatedAt.Equal(best.CreatedAt) && cand.ID > best.ID) {
			best = &cand
		}
	}
	if best == nil {
		e := &SnapshotError{Prefix: namePrefix, Region: region}
		for r := range elsewhere {
			e.Elsewhere = append(e.Elsewhere, r)
		}
		slices.Sort(e.Elsewhere)
		return Image{}, e
	}
	return *best, nil
}

// GetImage reads one image by id (GET /v2/images/{id}); an unknown id is
// an *APIError with StatusCode 404.
func (c *Client) GetImage(ctx context.Context, id int) (Image, error) {
	im, _, err := c.godo.Images.GetByID(ctx, id)
	if err != nil {
		return Image{}, wrap(fmt.Sprintf("get image %d", id), err)
	}
	created, _ := time.Parse(time.RFC3339, im.Created)
	return Image{ID: im.ID, Name: im.Name, Regions: slices.Clone(im.Regions), CreatedAt: created, Type: im.Type, Public: im.Public}, nil
}

// Region is a DO region.
type Region struct {
	Slug, Name string
	Available  bool
	Sizes      []string
}

// ListRegions lists DO's regions (for validating --region).
func (c *Client) ListRegions(ctx context.Context) ([]Region, error) {
	rs, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Region, *godo.Response, error) {
		return c.godo.Regions.List(ctx, opt)
	})
	if err != nil {
		return nil, wrap("list regions", err)
	}
	out := make([]Region, len(rs))
	for i, r := range rs {
		out[i] = Region{Slug: r.Slug, Name: r.Name, Available: r.Available, Sizes: slices.Clone(r.Sizes)}
	}
	return out, nil
}

// Size is a DO droplet size.
type Size struct {
	Slug         string
	Available    bool
	Regions      []string
	MemoryMB     int
	VCPUs        int
	PriceMonthly float64
}

// ListSizes lists droplet sizes (for validating --size).
func (c *Client) ListSizes(ctx context.Context) ([]Size, error) {
	ss, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Size, *godo.Response, error) {
		return c.godo.Sizes.List(ctx, opt)
	})
	if err != nil {
		return nil, wrap("list sizes", err)
	}
	out := make([]Size, len(ss))
	for i, s := range ss {
		out[i] = Size{Slug: s.Slug, Available: s.Available, Regions: slices.Clone(s.Regions),
			MemoryMB: s.Memory, VCPUs: s.Vcpus, PriceMonthly: s.PriceMonthly}
	}
	return out, nil
}

// Account is the token's account.
type Account struct {
	Email, UUID, Status           string
	DropletLimit, ReservedIPLimit int
}

// Account reads the account the token belongs to (a cheap token check).
func (c *Client) Account(ctx context.Context) (Account, error) {
	a, _, err := c.godo.Account.Get(ctx)
	if err != nil {
		return Account{}, wrap("get account", err)
	}
	return Account{Email: a.Email, UUID: a.UUID, Status: a.Status,
		DropletLimit: a.DropletLimit, ReservedIPLimit: a.ReservedIPLimit}, nil
}

// UpsertDNSRecord points the A record name.domain at ip: it edits the first
// existing A record of that name, or creates one. name is relative to the
// domain ("lb"; "@" or "" for the apex). It returns the record id.
func (c *Client) UpsertDNSRecord(ctx context.Context, domain, name, ip string) (int, error) {
	if name == "" {
		name = "@"
	}
	fqdn := domain
	if name != "@" {
		fqdn = name + "." + domain
	}
	op := fmt.Sprintf("upsert DNS A %s -> %s", fqdn, ip)
	recs, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.DomainRecord, *godo.Response, error) {
		return c.godo.Domains.RecordsByTypeAndName(ctx, domain, "A", fqdn, opt)
	})
	if err != nil {
		return 0, wrap(op+": list", err)
	}
	req := &godo.DomainRecordEditRequest{Type: "A", Name: name, Data: ip, TTL: 60}
	for _, r := range recs {
		if r.Type != "A" {
			continue
		}
		if r.Data == ip {
			return r.ID, nil
		}
		up, _, err := c.godo.Domains.EditRecord(ctx, domain, r.ID, req)
		if err != nil {
			return 0, wrap(op+": edit", err)
		}
		c.log.Info("cloud: DNS record updated", "fqdn", fqdn, "ip", ip, "id", up.ID)
		return up.ID, nil
	}
	rec, _, err := c.godo.Domains.CreateRecord(ctx, domain, req)
	if err != nil {
		return 0, wrap(op+": create", err)
	}
	c.log.Info("cloud: DNS record created", "fqdn", fqdn, "ip", ip, "id", rec.ID)
	return rec.ID, nil
}

// DeleteDNSRecord deletes a record; one already gone is not an error.
func (c *Client) DeleteDNSRecord(ctx context.Context, domain string, id int) error {
	_, err := c.godo.Domains.DeleteRecord(ctx, domain, id)
	if err = wrap(fmt.Sprintf("delete DNS record %d in %s", id, domain), err); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// DNSRecord is one A record of a DigitalOcean domain.
type DNSRecord struct {
	ID   int
	Name string // relative to the domain ("lb"; "@" for the apex)
	Data string // the IPv4 address
	TTL  int    // seconds
}

// DNSRecords lists the A records named name in domain (name relative to
// the domain; "@" or "" for the apex). A missing domain is ErrNotFound.
func (c *Client) DNSRecords(ctx context.Context, domain, name string) ([]DNSRecord, error) {
	if name == "" {
		name = "@"
	}
	fqdn := domain
	if name != "@" {
		fqdn = name + "." + domain
	}
	recs, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.DomainRecord, *godo.Response, error) {
		return c.godo.Domains.RecordsByTypeAndName(ctx, domain, "A", fqdn, opt)
	})
	if err != nil {
		return nil, wrap(fmt.Sprintf("list DNS A %s", fqdn), err)
	}
	var out []DNSRecord
	for _, r := range recs {
		if r.Type == "A" {
			out = append(out, DNSRecord{ID: r.ID, Name: r.Name, Data: r.Data, TTL: r.TTL})
		}
	}
	return out, nil
}
