// Package metadata reads the DigitalOcean droplet metadata service from
// inside a droplet (http://169.254.169.254/metadata/v1/): who am I, where,
// with which addresses, and whether the reserved IP currently points here.
// dynia-pull uses it; it has no dependencies beyond the standard library.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DefaultBaseURL is the link-local metadata endpoint on every droplet.
const DefaultBaseURL = "http://169.254.169.254"

// ErrNotFound: the metadata service has no such item (404), e.g. no anchor
// IP on a droplet without public networking.
var ErrNotFound = errors.New("metadata: not found")

// maxBody bounds what we read: items are a line, the JSON a few KiB
// (user-data, up to 64 KiB, is the largest thing DO serves).
const maxBody = 1 << 20

// Client reads the metadata service. It is safe for concurrent use.
type Client struct {
	base string
	hc   *http.Client
}

// New returns a client for baseURL ("" means DefaultBaseURL). A nil
// httpClient gets one with a short timeout: the service is local, and a
// droplet that cannot reach it in seconds will not reach it at all.
func New(baseURL string, httpClient *http.Client) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 5 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), hc: httpClient}
}

// get fetches one plain-text item, e.g. "interfaces/public/0/ipv4/address".
func (c *Client) get(ctx context.Context, item string) (string, error) {
	b, err := c.fetch(ctx, "/metadata/v1/"+item)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func (c *Client) fetch(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, fmt.Errorf("metadata: get %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metadata: get %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("metadata: get %s: read body: %w", path, err)
	}
	if len(b) > maxBody {
		// Cut short, it would parse as something it is not.
		return nil, fmt.Errorf("metadata: get %s: body over %d bytes", path, maxBody)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("metadata: get %s: %w", path, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("metadata: get %s: unexpected status %s", path, resp.Status)
	}
	return b, nil
}

// DropletID returns this droplet's id.
func (c *Client) DropletID(ctx context.Context) (int, error) {
	s, err := c.get(ctx, "id")
	if err != nil {
		return 0, err
	}
	return ParseDropletID(s)
}

// ParseDropletID parses the id item: decimal digits only (no sign, no
// spaces), a positive int.
func ParseDropletID(s string) (int, error) {
	if s == "" || len(s) > 19 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("metadata: droplet id %q: not a positive decimal number", s)
	}
	id, err := strconv.Atoi(s)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("metadata: droplet id %q: not a positive decimal number", s)
	}
	return id, nil
}

// ParseIPv4 parses an address item: a dotted-quad IPv4 address, returned
// in its canonical form.
func ParseIPv4(item, s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return "", fmt.Errorf("metadata: %s %q: not an IPv4 address", item, s)
	}
	return a.String(), nil
}

// ParseActive parses reserved_ip/ipv4/active: "true" or "false" (as DO
// serves it; strconv.ParseBool's other spellings are accepted too).
func ParseActive(s string) (bool, error) {
	active, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("metadata: reserved_ip/ipv4/active %q: %w", s, err)
	}
	return active, nil
}

// Hostname returns the droplet's name.
func (c *Client) Hostname(ctx context.Context) (string, error) { return c.get(ctx, "hostname") }

// Region returns the droplet's region slug, e.g. "fra1".
func (c *Client) Region(ctx context.Context) (string, error) { return c.get(ctx, "region") }

// PublicIPv4 returns the droplet's own public address.
func (c *Client) PublicIPv4(ctx context.Context) (string, error) {
	return c.address(ctx, "interfaces/public/0/ipv4/address")
}

// PrivateIPv4 returns the droplet's VPC address.
func (c *Client) PrivateIPv4(ctx context.Context) (string, error) {
	return c.address(ctx, "interfaces/private/0/ipv4/address")
}

// AnchorIPv4 returns the anchor address, where traffic to the reserved IP
// arrives: public listeners bind it.
func (c *Client) AnchorIPv4(ctx context.Context) (string, error) {
	return c.address(ctx, "interfaces/public/0/anchor_ipv4/address")
}

// address fetches an address item and checks it (ParseIPv4).
func (c *Client) address(ctx context.Context, item string) (string, error) {
	s, err := c.get(ctx, item)
	if err != nil {
		return "", err
	}
	return ParseIPv4(item, s)
}

// ReservedIPv4 reports the reserved IP and whether it is assigned to this
// droplet right now. With none assigned it returns ("", false, nil).
func (c *Client) ReservedIPv4(ctx context.Context) (ip string, active bool, err error) {
	s, err := c.get(ctx, "reserved_ip/ipv4/active")
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", false, nil
		}
		return "", false, err
	}
	active, err = ParseActive(s)
	if err != nil {
		return "", false, err
	}
	if !active {
		return "", false, nil
	}
	ip, err = c.get(ctx, "reserved_ip/ipv4/ip_address")
	if err != nil {
		return "", false, err
	}
	ip, err = ParseIPv4("reserved_ip/ipv4/ip_address", ip)
	if err != nil {
		return "", false, err
	}
	return ip, true, nil
}

// Metadata is /metadata/v1.json, the fields dynia uses. User-data is left
// out on purpose: it may carry secrets and nothing here needs it.
type Metadata struct {
	DropletID  int        `json:"droplet_id"`
	Hostname   string     `json:"hostname"`
	Region     string     `json:"region"`
	Tags       []string   `json:"tags"`
	Interfaces Interfaces `json:"interfaces"`
	ReservedIP struct {
		IPv4 ReservedIPv4 `json:"ipv4"`
	} `json:"reserved_ip"`
	DNS struct {
		Nameservers []string `json:"nameservers"`
	} `json:"dns"`
}

// Interfaces lists the droplet's network interfaces.
type Interfaces struct {
	Public  []Interface `json:"public"`
	Private []Interface `json:"private"`
}

// Interface is one network interface.
type Interface struct {
	IPv4       *Address `json:"ipv4,omitempty"`
	AnchorIPv4 *Address `json:"anchor_ipv4,omitempty"`
	MAC        string   `json:"mac"`
	Type       string   `json:"type"`
}

// Address is an IPv4 address with its netmask and gateway.
type Address struct {
	IPAddress string `json:"ip_address"`
	Netmask   string `json:"netmask"`
	Gateway   string `json:"gateway"`
}

// ReservedIPv4 is the reserved_ip.ipv4 object.
type ReservedIPv4 struct {
	IPAddress string `json:"ip_address"`
	Active    bool   `json:"active"`
}

// PublicIPv4 returns the first public interface's address, or "".
func (m *Metadata) PublicIPv4() string { return firstAddr(m.Interfaces.Public, false) }

// PrivateIPv4 returns the first private interface's address, or "".
func (m *Metadata) PrivateIPv4() string { return firstAddr(m.Interfaces.Private, false) }

// AnchorIPv4 returns the anchor address, or "".
func (m *Metadata) AnchorIPv4() string { return firstAddr(m.Interfaces.Public, true) }

func firstAddr(ifs []Interface, anchor bool) string {
	for _, i := range ifs {
		a := i.IPv4
		if anchor {
			a = i.AnchorIPv4
		}
		if a != nil && a.IPAddress != "" {
			return a.IPAddress
		}
	}
	return ""
}

// All reads everything in one request from /metadata/v1.json.
func (c *Client) All(ctx context.Context) (*Metadata, error) {
	b, err := c.fetch(ctx, "/metadata/v1.json")
	if err != nil {
		return nil, err
	}
	return DecodeMetadata(b)
}

// DecodeMetadata decodes /metadata/v1.json (fields dynia does not use are
// ignored) and checks what it uses: a positive droplet id and IPv4
// addresses where addresses are given.
func DecodeMetadata(b []byte) (*Metadata, error) {
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("metadata: decode /metadata/v1.json: %w", err)
	}
	if m.DropletID <= 0 {
		return nil, fmt.Errorf("metadata: decode /metadata/v1.json: droplet_id %d is not positive", m.DropletID)
	}
	for _, group := range []struct {
		name string
		ifs  []Interface
	}{{"public", m.Interfaces.Public}, {"private", m.Interfaces.Private}} {
		for i, itf := range group.ifs {
			for _, addr := range []struct {
				kind string
				a    *Address
			}{{"ipv4", itf.IPv4}, {"anchor_ipv4", itf.AnchorIPv4}} {
				if addr.a == nil || addr.a.IPAddress == "" {
					continue
				}
				if _, err := ParseIPv4(fmt.Sprintf("interfaces.%s[%d].%s.ip_address", group.name, i, addr.kind), addr.a.IPAddress); err != nil {
					return nil, err
				}
			}
		}
	}
	if ip := m.ReservedIP.IPv4.IPAddress; ip != "" {
		if _, err := ParseIPv4("reserved_ip.ipv4.ip_address", ip); err != nil {
			return nil, err
		}
	}
	return &m, nil
}
