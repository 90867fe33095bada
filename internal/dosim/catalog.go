package dosim

import (
	"net/http"
	"sort"
	"time"
)

// Size is a droplet size.
type Size struct {
	Slug         string
	Memory       int // MiB
	VCPUs        int
	Disk         int // GiB
	Transfer     float64
	PriceMonthly float64
	PriceHourly  float64
	Description  string
}

// DefaultSizes returns the basic droplet sizes dynia uses, priced like DO.
func DefaultSizes() []Size {
	return []Size{
		{"s-1vcpu-512mb-10gb", 512, 1, 10, 0.5, 4, 0.00595, "Basic"},
		{"s-1vcpu-1gb", 1024, 1, 25, 1, 6, 0.00893, "Basic"},
		{"s-1vcpu-2gb", 2048, 1, 50, 2, 12, 0.01786, "Basic"},
		{"s-2vcpu-2gb", 2048, 2, 60, 3, 18, 0.02679, "Basic"},
		{"s-2vcpu-4gb", 4096, 2, 80, 4, 24, 0.03571, "Basic"},
		{"s-4vcpu-8gb", 8192, 4, 160, 5, 48, 0.07143, "Basic"},
	}
}

var regionNames = map[string]string{
	"nyc1": "New York 1", "nyc2": "New York 2", "nyc3": "New York 3",
	"sfo1": "San Francisco 1", "sfo2": "San Francisco 2", "sfo3": "San Francisco 3",
	"ams2": "Amsterdam 2", "ams3": "Amsterdam 3", "sgp1": "Singapore 1", "lon1": "London 1",
	"fra1": "Frankfurt 1", "tor1": "Toronto 1", "blr1": "Bangalore 1", "syd1": "Sydney 1",
}

var regionFeatures = []string{"backups", "ipv6", "metadata", "install_agent", "storage", "image_transfer"}

func (s *Server) regionJSON(slug string) map[string]any {
	name := regionNames[slug]
	if name == "" {
		name = slug
	}
	sizes := make([]string, 0, len(s.opts.Sizes))
	for _, sz := range s.opts.Sizes {
		sizes = append(sizes, sz.Slug)
	}
	return map[string]any{"name": name, "slug": slug, "features": regionFeatures, "available": true, "sizes": sizes}
}

func (s *Server) sizeJSON(sz Size) map[string]any {
	return map[string]any{
		"slug": sz.Slug, "memory": sz.Memory, "vcpus": sz.VCPUs, "disk": sz.Disk,
		"transfer": sz.Transfer, "price_monthly": sz.PriceMonthly, "price_hourly": sz.PriceHourly,
		"regions": s.opts.Regions, "available": true, "description": sz.Description,
		"disk_info": []any{map[string]any{"type": "local", "size": map[string]any{"amount": sz.Disk, "unit": "gib"}}},
	}
}

func (s *Server) size(slug string) (Size, bool) {
	for _, sz := range s.opts.Sizes {
		if sz.Slug == slug {
			return sz, true
		}
	}
	return Size{}, false
}

func (s *Server) hasRegion(slug string) bool { return containsString(s.opts.Regions, slug) }

func (s *Server) listRegions(q *request) {
	q.do(func() (int, any) {
		out := make([]map[string]any, 0, len(s.opts.Regions))
		for _, slug := range s.opts.Regions {
			out = append(out, s.regionJSON(slug))
		}
		return paged(q, "regions", out)
	})
}

func (s *Server) listSizes(q *request) {
	q.do(func() (int, any) {
		out := make([]map[string]any, 0, len(s.opts.Sizes))
		for _, sz := range s.opts.Sizes {
			out = append(out, s.sizeJSON(sz))
		}
		return paged(q, "sizes", out)
	})
}

func (s *Server) getAccount(q *request) {
	q.do(func() (int, any) {
		return http.StatusOK, map[string]any{"account": map[string]any{
			"droplet_limit": 25, "floating_ip_limit": s.opts.ReservedIPLimit, "reserved_ip_limit": s.opts.ReservedIPLimit,
			"volume_limit": 100, "email": "sammy@example.com", "name": "Sammy the Shark",
			"uuid": "b6fr89dbf6d9156cace5f3c78dc9851d957381ef", "email_verified": true,
			"status": "active", "status_message": "",
		}}
	})
}

// distributionImages is the public image catalogue droplet create accepts by
// slug.
func distributionImages(regions []string, now time.Time) []Image {
	created := now.Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	mk := func(id int, name, dist, slug string) Image {
		return Image{ID: id, Name: name, Type: "base", Distribution: dist, Slug: slug, Public: true,
			Regions: append([]string(nil), regions...), CreatedAt: created, MinDiskSize: 10, SizeGigabytes: 1.2,
			Description: dist + " " + name + " x64", Status: "available"}
	}
	return []Image{
		mk(170000001, "12 x64", "Debian", "debian-12-x64"),
		mk(170000002, "24.04 (LTS) x64", "Ubuntu", "ubuntu-24-04-x64"),
		mk(170000003, "22.04 (LTS) x64", "Ubuntu", "ubuntu-22-04-x64"),
	}
}

// sortedKeys returns a map's int keys in order, for stable listings.
func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Ints(ks)
	return ks
}
