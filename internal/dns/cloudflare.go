package dns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CloudflareAPI is Cloudflare's API v4 root
// (https://developers.cloudflare.com/api/).
const CloudflareAPI = "https://api.cloudflare.com/client/v4"

// TokenEnv names the environment variable holding the Cloudflare API token
// (a token with Zone:Read and DNS:Edit on the zone).
const TokenEnv = "CLOUDFLARE_API_TOKEN"

// CloudflareOptions configure NewCloudflare.
type CloudflareOptions struct {
	// Token is the API token; empty means $CLOUDFLARE_API_TOKEN. It is sent
	// only in the Authorization header, never logged or put in an error.
	Token string
	// BaseURL is the API root (default CloudflareAPI; the simulator's URL
	// + "/client/v4" in tests and the sandbox).
	BaseURL    string
	HTTPClient *http.Client // default: 30 s timeout
	Logger     *slog.Logger // default: discard
}

// Cloudflare keeps A records in Cloudflare DNS.
type Cloudflare struct {
	base  string
	token string
	hc    *http.Client
	log   *slog.Logger

	mu    sync.Mutex
	zones map[string]string // zone name -> id
}

// NewCloudflare returns a client; a missing token is an error naming the
// variable.
func NewCloudflare(opts CloudflareOptions) (*Cloudflare, error) {
	if opts.Token == "" {
		opts.Token = os.Getenv(TokenEnv)
	}
	if opts.Token == "" {
		return nil, fmt.Errorf("dns: cloudflare: no API token (set %s)", TokenEnv)
	}
	if strings.ContainsAny(opts.Token, " \t\r\n") {
		return nil, fmt.Errorf("dns: cloudflare: the API token in %s contains whitespace", TokenEnv)
	}
	if opts.BaseURL == "" {
		opts.BaseURL = CloudflareAPI
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Cloudflare{base: strings.TrimSuffix(opts.BaseURL, "/"), token: opts.Token, hc: opts.HTTPClient,
		log: opts.Logger, zones: map[string]string{}}, nil
}

func (c *Cloudflare) String() string { return "cloudflare" }

// APIError is a failed Cloudflare call: the HTTP status and the envelope's
// errors (code and message, as Cloudflare documents them).
type APIError struct {
	Op     string // "GET /zones"
	Status int
	Errors []CloudflareMessage
}

// CloudflareMessage is one entry of the envelope's errors or messages.
type CloudflareMessage struct {
	Code       int                 `json:"code"`
	Message    string              `json:"message"`
	ErrorChain []CloudflareMessage `json:"error_chain,omitempty"`
}

func (e *APIError) Error() string {
	var parts []string
	for _, m := range e.Errors {
		s := fmt.Sprintf("%d %s", m.Code, m.Message)
		for _, c := range m.ErrorChain {
			s += fmt.Sprintf(" (%d %s)", c.Code, c.Message)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		parts = append(parts, http.StatusText(e.Status))
	}
	return fmt.Sprintf("dns: cloudflare: %s: HTTP %d: %s", e.Op, e.Status, strings.Join(parts, "; "))
}

// envelope is Cloudflare's v4 response wrapper.
type envelope struct {
	Success    bool                `json:"success"`
	Errors     []CloudflareMessage `json:"errors"`
	Messages   []CloudflareMessage `json:"messages"`
	Result     json.RawMessage     `json:"result"`
	ResultInfo *struct {
		Page       int `json:"page"`
		PerPage    int `json:"per_page"`
		Count      int `json:"count"`
		TotalCount int `json:"total_count"`
		TotalPages int `json:"total_pages"`
	} `json:"result_info"`
}

// maxPages bounds a listing (a zone with thousands of records of one name
// is not something dynia made).
const maxPages = 50

// do sends one request and decodes the envelope's result into out.
func (c *Cloudflare) do(ctx context.Context, method, path string, q url.Values, body, out any) (*envelope, error) {
	op := method + " " + path
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("dns: cloudflare: %s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("dns: cloudflare: %s: %w", op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// url.Error carries the URL, never the header: no token here.
		return nil, fmt.Errorf("dns: cloudflare: %s: %w", op, err)
	}
	defer func() { _ = resp.Body.Close() }() // read fully below
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("dns: cloudflare: %s: read answer: %w", op, err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return nil, fmt.Errorf("dns: cloudflare: %s: HTTP %d: answer is not Cloudflare's JSON envelope", op, resp.StatusCode)
	}
	if resp.StatusCode/100 != 2 || !env.Success {
		return nil, &APIError{Op: op, Status: resp.StatusCode, Errors: env.Errors}
	}
	if out != nil {
		if err := json.Unmarshal(env.Result, out); err != nil {
			return nil, fmt.Errorf("dns: cloudflare: %s: decode result: %w", op, err)
		}
	}
	c.log.Debug("dns: cloudflare call", "op", op, "status", resp.StatusCode)
	return &env, nil
}

// ZoneID finds zone's id by name (GET /zones?name=...), cached.
func (c *Cloudflare) ZoneID(ctx context.Context, zone string) (string, error) {
	c.mu.Lock()
	id, ok := c.zones[zone]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	var zs []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/zones", url.Values{"name": {zone}}, nil, &zs); err != nil {
		return "", err
	}
	for _, z := range zs {
		if z.Name == zone {
			c.mu.Lock()
			c.zones[zone] = z.ID
			c.mu.Unlock()
			return z.ID, nil
		}
	}
	return "", fmt.Errorf("dns: cloudflare: zone %q: %w (the token sees no such zone)", zone, ErrZoneNotFound)
}

// cfRecord is a DNS record in Cloudflare's JSON.
type cfRecord struct {
	ID      string  `json:"id,omitempty"`
	Name    string  `json:"name"`
	Type    string  `json:"type"`
	Content string  `json:"content"`
	TTL     int     `json:"ttl"`
	Proxied bool    `json:"proxied"`
	Comment *string `json:"comment,omitempty"`
}

func (r cfRecord) toA() (ARecord, error) {
	ip, err := netip.ParseAddr(r.Content)
	if err != nil {
		return ARecord{}, fmt.Errorf("dns: cloudflare: record %s: content %q is not an address", r.ID, r.Content)
	}
	a := ARecord{ID: r.ID, Name: r.Name, IP: ip, TTL: r.TTL, Proxied: r.Proxied}
	if r.Comment != nil {
		a.Comment = *r.Comment
	}
	return a, nil
}

// Get lists the A records named name (type=A&name.exact=..., every page).
func (c *Cloudflare) Get(ctx context.Context, zone, name string) ([]ARecord, error) {
	if err := CheckName(zone, name); err != nil {
		return nil, err
	}
	zid, err := c.ZoneID(ctx, zone)
	if err != nil {
		return nil, err
	}
	var out []ARecord
	for page := 1; page <= maxPages; page++ {
		var recs []cfRecord
		q := url.Values{"type": {"A"}, "name.exact": {name}, "page": {strconv.Itoa(page)}, "per_page": {"100"}}
		env, err := c.do(ctx, http.MethodGet, "/zones/"+zid+"/dns_records", q, nil, &recs)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.Type != "A" || r.Name != name {
				continue // the filter is the server's; keep our own promise
			}
			a, err := r.toA()
			if err != nil {
				return nil, err
			}
			out = append(out, a)
		}
		if env.ResultInfo == nil || page >= env.ResultInfo.TotalPages {
			break
		}
	}
	return out, nil
}

// Upsert: see Provider. want.TTL 0 means DefaultTTL.
func (c *Cloudflare) Upsert(ctx context.Context, zone string, want ARecord) (ARecord, bool, error) {
	if err := checkWant(zone, want); err != nil {
		return ARecord{}, false, err
	}
	if want.TTL == 0 {
		want.TTL = DefaultTTL
	}
	cur, err := c.Get(ctx, zone, want.Name)
	if err != nil {
		return ARecord{}, false, err
	}
	zid, err := c.ZoneID(ctx, zone)
	if err != nil {
		return ARecord{}, false, err
	}
	for _, r := range cur {
		if r.IP == want.IP && r.TTL == want.TTL && r.Proxied == want.Proxied {
			return r, false, nil
		}
	}
	body := cfRecord{Name: want.Name, Type: "A", Content: want.IP.String(), TTL: want.TTL, Proxied: want.Proxied}
	if want.Comment != "" {
		body.Comment = &want.Comment
	}
	var got cfRecord
	if len(cur) > 0 {
		// PATCH keeps fields dynia does not manage (tags, a user's comment
		// when want has none).
		if _, err := c.do(ctx, http.MethodPatch, "/zones/"+zid+"/dns_records/"+cur[0].ID, nil, body, &got); err != nil {
			return ARecord{}, false, err
		}
		a, err := got.toA()
		c.log.Info("dns: cloudflare record updated", "name", want.Name, "ip", want.IP, "id", got.ID, "others", len(cur)-1)
		return a, false, err
	}
	if _, err := c.do(ctx, http.MethodPost, "/zones/"+zid+"/dns_records", nil, body, &got); err != nil {
		return ARecord{}, false, err
	}
	a, err := got.toA()
	c.log.Info("dns: cloudflare record created", "name", want.Name, "ip", want.IP, "id", got.ID)
	return a, true, err
}

// Delete: see Provider.
func (c *Cloudflare) Delete(ctx context.Context, zone string, rec ARecord) error {
	if rec.ID == "" {
		return errors.New("dns: cloudflare: delete: record id is empty")
	}
	cur, err := c.Get(ctx, zone, rec.Name)
	if err != nil {
		return err
	}
	var found *ARecord
	for i := range cur {
		if cur[i].ID == rec.ID {
			found = &cur[i]
		}
	}
	if found == nil {
		return nil
	}
	if found.IP != rec.IP {
		return fmt.Errorf("dns: cloudflare: %s now points at %s, not %s: %w", rec.Name, found.IP, rec.IP, ErrChanged)
	}
	zid, err := c.ZoneID(ctx, zone)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, http.MethodDelete, "/zones/"+zid+"/dns_records/"+rec.ID, nil, nil, nil)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return nil
	}
	if err == nil {
		c.log.Info("dns: cloudflare record deleted", "name", rec.Name, "id", rec.ID)
	}
	return err
}
