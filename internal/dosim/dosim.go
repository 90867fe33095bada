// Package dosim is an in-process, stateful simulator of the parts of the
// DigitalOcean API v2 and the droplet metadata service that dynia uses.
//
// It exists because no test machine can reach DigitalOcean: the CLI, the
// failover path and the sandbox all talk to a *Server instead, through the real
// godo client (godo.SetBaseURL(srv.URL+"/") — keep the trailing slash). The
// simulator aims to behave like DO, not like dynia's assumptions: status codes,
// error bodies, pagination, rate-limit headers, token scopes, the reserved IP
// "pending event" lock and the droplet new → active transition all follow
// DigitalOcean's published API reference and OpenAPI spec, or public reports
// where those are silent (docs/simulator.md rates each fact). Where it
// knowingly differs, the difference is listed in docs/simulator.md.
//
// A zero Server is usable and accepts any bearer token with every scope until
// AddToken is called; New applies Options. Test controls (fault injection,
// paused actions, droplets that never become active, drift helpers) and hooks
// (droplet create/delete/power/tags, reserved IP assignment, firewall
// changes) let tests and the sandbox drive ordering and react to state
// changes.
package dosim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configure a Server. The zero value is valid: every field has a
// DO-like default.
type Options struct {
	// DropletActiveDelay is how long a droplet stays "new" after creation.
	// Zero means it is active at the next request (the create response still
	// says "new" with empty networks, as DO does).
	DropletActiveDelay time.Duration
	// ActionDelay is how long an action (reserved IP assign/unassign, droplet
	// power) stays "in-progress". Zero completes it at the next request.
	ActionDelay time.Duration
	// ReservedIPLimit is the per-account reserved IP limit (default 3).
	ReservedIPLimit int
	// Regions are the available region slugs (default nyc3, sgp1, ams3, fra1,
	// sfo3, lon1, tor1, blr1, syd1). They must be in the spec's region_slug
	// enum for responses to validate.
	Regions []string
	// Sizes are the available droplet sizes (default DefaultSizes()).
	Sizes []Size
	// PublicRange is where droplet public IPs and reserved IPs come from
	// (default 198.51.100.0/24, TEST-NET-2; .1 is the gateway).
	PublicRange netip.Prefix
	// AnchorRange is where anchor IPs come from (default 10.17.0.0/16).
	AnchorRange netip.Prefix
	// RateLimitPerMinute is the per-token request budget per minute; past it
	// the server answers 429 with retry-after. 0 means unlimited (headers are
	// still sent, with DO's hourly limit of 5000).
	RateLimitPerMinute int
	// Now is the clock (default time.Now). Delays are measured against it.
	Now func() time.Time
	// Logger receives one debug line per request (default: discard).
	Logger *slog.Logger
	// Validator, when set, checks every request and response against the
	// OpenAPI spec and records violations (see NewSpecValidator).
	Validator *SpecValidator

	// Hooks are called synchronously, outside the server's lock, after the
	// state change is visible through the API.
	OnDropletCreate func(d Droplet)
	OnDropletActive func(d Droplet)
	OnDropletDelete func(d Droplet)
	// OnDropletPower reports power_off/shutdown (on=false) and power_on (on=true)
	// when the action completes.
	OnDropletPower func(d Droplet, on bool)
	// OnReservedIPAssign reports the droplet now holding ip (0 = unassigned).
	OnReservedIPAssign func(ip string, dropletID int)
	// OnFirewallChange reports a firewall whose rules or targets changed:
	// create, update (PUT), delete (deleted=true, fw as it was), rules,
	// droplets or tags added or removed, and a tag or droplet deleted out
	// from under it. fw is a snapshot taken with the change.
	OnFirewallChange func(fw Firewall, deleted bool)
	// OnCall reports every API request once answered, with the client's IP
	// address (in the sandbox a droplet's public IP, which its routes leave
	// from) and when it arrived: the benchmarks count DO API calls per
	// command and per node with it.
	OnCall func(c Call, remote string, at time.Time)
	// OnDropletTags reports a droplet whose tags changed (POST/DELETE
	// /v2/tags/{tag}/resources, tag delete). Tags decide which firewalls
	// target a droplet and which addresses a rule's tag sources mean.
	OnDropletTags func(d Droplet)
	// OnSpacesKeyChange reports a Spaces key created, updated (name or
	// grants) or deleted (deleted=true, k as it was), secret included:
	// the sandbox makes its S3 store honour the key's grants.
	OnSpacesKeyChange func(k SpacesKey, deleted bool)
}

// Server is the simulator. It implements http.Handler for the API (/v2/...);
// MetadataHandler serves the metadata service.
type Server struct {
	opts Options
	once sync.Once

	mu             sync.Mutex
	tokens         map[string]map[string]bool // token → scopes; empty map = accept anything
	nextDropletID  int
	nextActionID   int
	nextImageID    int
	nextRecordID   int
	nextVPCNet     int
	droplets       map[int]*droplet
	rips           map[string]*rip
	actions        map[int]*action
	vpcs           map[string]*VPC
	firewalls      map[string]*firewall
	images         map[int]*Image
	tags           map[string]time.Time
	domains        map[string]*domain
	keys           map[string]*SpacesKey
	faults         []*faultState
	calls          []Call
	neverActive    map[string]bool // droplet id (decimal) or name
	paused         bool
	rate           map[string]*rateWindow
	usedPublic     map[netip.Addr]bool
	usedAnchor     map[netip.Addr]bool
	timers         map[*time.Timer]bool
	hooks          []func() // queued by the current update
	hookQueue      []func() // awaiting delivery, in order
	delivering     bool
	closed         bool
	validatorHTTP  http.Handler
	metadataHandle http.Handler
}

// New returns a Server configured by opts.
func New(opts Options) *Server {
	s := &Server{opts: opts}
	s.init()
	return s
}

func (s *Server) init() {
	s.once.Do(func() {
		o := &s.opts
		if o.ReservedIPLimit == 0 {
			o.ReservedIPLimit = 3
		}
		if len(o.Regions) == 0 {
			o.Regions = []string{"nyc3", "sgp1", "ams3", "fra1", "sfo3", "lon1", "tor1", "blr1", "syd1"}
		}
		if len(o.Sizes) == 0 {
			o.Sizes = DefaultSizes()
		}
		if !o.PublicRange.IsValid() {
			o.PublicRange = netip.MustParsePrefix("198.51.100.0/24")
		}
		if !o.AnchorRange.IsValid() {
			o.AnchorRange = netip.MustParsePrefix("10.17.0.0/16")
		}
		if o.Now == nil {
			o.Now = time.Now
		}
		if o.Logger == nil {
			o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		}
		s.tokens = map[string]map[string]bool{}
		s.nextDropletID = 3164444
		s.nextActionID = 1500000
		s.nextImageID = 90000000
		s.nextRecordID = 2800000
		s.droplets = map[int]*droplet{}
		s.rips = map[string]*rip{}
		s.actions = map[int]*action{}
		s.vpcs = map[string]*VPC{}
		s.firewalls = map[string]*firewall{}
		s.images = map[int]*Image{}
		s.tags = map[string]time.Time{}
		s.domains = map[string]*domain{}
		s.keys = map[string]*SpacesKey{}
		s.neverActive = map[string]bool{}
		s.rate = map[string]*rateWindow{}
		s.usedPublic = map[netip.Addr]bool{}
		s.usedAnchor = map[netip.Addr]bool{}
		s.timers = map[*time.Timer]bool{}
		for _, img := range distributionImages(o.Regions, o.Now()) {
			img := img
			s.images[img.ID] = &img
		}
		var h http.Handler = http.HandlerFunc(s.serveAPI)
		if o.Validator != nil {
			h = o.Validator.Wrap(h)
		}
		s.validatorHTTP = h
		s.metadataHandle = http.HandlerFunc(s.serveMetadata)
	})
}

// ServeHTTP serves the API under /v2/.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.init()
	s.validatorHTTP.ServeHTTP(w, r)
}

// MetadataHandler serves /metadata/v1/... and /metadata/v1.json. The droplet
// is the one named by the X-Dynia-Droplet-ID header, or else the one owning
// the caller's source IP (public, private or anchor address).
func (s *Server) MetadataHandler() http.Handler {
	s.init()
	return s.metadataHandle
}

// Close stops the timers that complete actions in the background. The server
// still answers requests afterwards (completing work lazily).
func (s *Server) Close() {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for t := range s.timers {
		t.Stop()
	}
	s.timers = map[*time.Timer]bool{}
}

// ListenAndServe serves the API on apiAddr and the metadata service on
// metadataAddr (either may be empty to skip it) until ctx is done.
func (s *Server) ListenAndServe(ctx context.Context, apiAddr, metadataAddr string) error {
	s.init()
	type srv struct {
		addr string
		h    http.Handler
	}
	var srvs []srv
	if apiAddr != "" {
		srvs = append(srvs, srv{apiAddr, s})
	}
	if metadataAddr != "" {
		srvs = append(srvs, srv{metadataAddr, s.MetadataHandler()})
	}
	if len(srvs) == 0 {
		return errors.New("dosim: listen: no address given")
	}
	errc := make(chan error, len(srvs))
	var servers []*http.Server
	for _, x := range srvs {
		ln, err := net.Listen("tcp", x.addr)
		if err != nil {
			for _, hs := range servers {
				_ = hs.Close() // the listen error below is the one worth reporting
			}
			return fmt.Errorf("dosim: listen on %s: %w", x.addr, err)
		}
		hs := &http.Server{Handler: x.h, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, hs)
		go func() { errc <- hs.Serve(ln) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, hs := range servers {
		if err := hs.Shutdown(shutCtx); err != nil {
			// Connections still open after the grace period; the simulator
			// is going away regardless, so note it rather than fail.
			s.opts.Logger.Warn("dosim: shutdown", "err", err)
		}
	}
	s.Close()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("dosim: serve: %w", err)
	}
	return nil
}

// AddToken registers a bearer token with the given scopes. Once any token is
// added, only registered tokens are accepted.
func (s *Server) AddToken(token string, scopes ...string) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	set := map[string]bool{}
	for _, sc := range scopes {
		set[sc] = true
	}
	s.tokens[token] = set
}

// FullScopes returns every scope any simulated route requires.
func FullScopes() []string {
	seen := map[string]bool{}
	var out []string
	for _, rt := range routes(nil) {
		for _, sc := range rt.scopes {
			if !seen[sc] {
				seen[sc] = true
				out = append(out, sc)
			}
		}
	}
	sort.Strings(out)
	return out
}

// NodeScopes returns the least-privilege scopes of a node token: granting
// reserved_ip:update needs its companion read scopes (DO: "Required Scopes",
// https://docs.digitalocean.com/reference/api/scopes/reserved_ip/update).
func NodeScopes() []string {
	return []string{"reserved_ip:update", "reserved_ip:read", "droplet:read", "regions:read", "sizes:read", "actions:read", "image:read"}
}

// Call is one API request the server answered.
type Call struct {
	Method string
	Path   string
	Query  string
	Status int
}

// CallCount returns how many API requests the server has answered.
func (s *Server) CallCount() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// Calls returns the API requests answered so far, oldest first.
func (s *Server) Calls() []Call {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// update runs f under the lock (after advancing time-driven state), then
// delivers the hooks f queued, outside the lock. Hooks are delivered one at a
// time in the order their changes happened: if another goroutine is already
// delivering, it also delivers ours (so they may run just after this call
// returns), and a hook that calls back into the server never deadlocks.
func (s *Server) update(f func()) {
	s.mu.Lock()
	s.advanceLocked()
	f()
	s.hookQueue = append(s.hookQueue, s.hooks...)
	s.hooks = nil
	if s.delivering {
		s.mu.Unlock()
		return
	}
	s.delivering = true
	for len(s.hookQueue) > 0 {
		h := s.hookQueue[0]
		s.hookQueue = s.hookQueue[1:]
		s.mu.Unlock()
		s.deliver(h)
		s.mu.Lock()
	}
	s.delivering = false
	s.mu.Unlock()
}

// deliver runs one hook; a panicking hook does not wedge delivery.
func (s *Server) deliver(h func()) {
	defer func() {
		if r := recover(); r != nil {
			s.mu.Lock()
			s.delivering = false
			s.mu.Unlock()
			panic(r)
		}
	}()
	h()
}

// queueHook schedules fn to run after the lock is released. Caller holds mu.
func (s *Server) queueHook(fn func()) { s.hooks = append(s.hooks, fn) }

func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func newUUID() string { return newRequestID() }

func ipToUint32(ip string) int {
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4() {
		return 0
	}
	b := a.As4()
	return int(uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]))
}

func containsString(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func hostOnly(remoteAddr string) string {
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return h
	}
	return strings.Trim(remoteAddr, "[]")
}
