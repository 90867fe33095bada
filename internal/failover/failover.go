// Package failover moves the cluster's Reserved IP to this droplet when
// keepalived makes the node MASTER. dynia-pull calls Claim on every MASTER
// transition and Check every few seconds while MASTER (level-triggered: a
// MASTER that does not hold the IP claims it).
//
// At failover time the claim depends on the DO API and nothing else: the
// Reserved IP and this node's droplet id come from the state the node last
// applied (kept in memory by dynia-pull), not from the bucket or the
// metadata service, either of which may be what just failed. Metadata is
// only a cheap, optional answer to "is the IP here?" between checks.
//
// The community recipe this replaces let both nodes claim the IP in a loop;
// here three rules keep the IP from flapping:
//   - a node claims only while it is MASTER (the caller's job) and only if
//     the IP is not already its own;
//   - split brain: when the current holder is another node of the cluster
//     whose /dynia/healthz answers over its public address, the holder is
//     left alone (VRRP between the nodes is cut, but the holder serves);
//   - cool-off: after moving the IP, a node does not move it again for
//     CoolOff, whatever it hears.
//
// A MASTER that leaves a healthy holder alone re-reads the Reserved IP from
// the DO API with a backoff growing to CheckBackoffMax (DO allows 5,000
// requests an hour per token), while it health-checks the holder on every
// Check; a failed health check or a VRRP transition ends the backoff.
package failover

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
)

// API is what failover needs from DigitalOcean (internal/cloud.Client
// implements it with the node's scoped token).
type API interface {
	GetReservedIP(ctx context.Context, ip string) (cloud.ReservedIP, error)
	AssignReservedIP(ctx context.Context, ip string, dropletID int) error
	// CheckToken makes the cheapest authenticated read the node token
	// allows; an invalid or under-scoped token fails it.
	CheckToken(ctx context.Context) error
}

// Metadata is what failover needs from the droplet metadata service.
type Metadata interface {
	DropletID(ctx context.Context) (int, error)
	ReservedIPv4(ctx context.Context) (ip string, active bool, err error)
}

// Defaults.
const (
	DefaultCoolOff         = 10 * time.Second
	DefaultCheckBackoffMin = 5 * time.Second
	// DefaultCheckBackoffMax keeps a MASTER that yields to a healthy holder
	// under 60 API reads an hour, the ramp included (DO allows 5,000 an
	// hour per token, shared by every node of the account).
	DefaultCheckBackoffMax = 70 * time.Second
	// metadataRetryAfter is how long Check leaves a failing metadata
	// service alone: each failed call costs its timeout.
	metadataRetryAfter = 30 * time.Second
)

// Claimer decides whether to move the Reserved IP here, and does it.
type Claimer struct {
	// NodeID is this node's id in the state: its droplet id comes from there.
	NodeID   string
	Metadata Metadata
	// HealthURL builds the holder's health URL from its public IP
	// (default http://<ip>/dynia/healthz, served by HAProxy).
	HealthURL func(publicIP string) string
	// HTTP is used for the holder's health check. The default times out
	// after 300 ms: a healthy holder answers from HAProxy itself in about a
	// millisecond, a powered-off one is silent, and every millisecond
	// waited here is outage.
	HTTP *http.Client
	// CoolOff is the minimum time between two moves by this node (default 10 s).
	CoolOff time.Duration
	// CheckBackoffMin/Max bound how often Check re-reads the Reserved IP
	// from the API while a healthy holder keeps it (default 5 s to 70 s).
	CheckBackoffMin, CheckBackoffMax time.Duration
	Logger                           *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time

	mu        sync.Mutex
	api       API
	apiErr    error // why there is no api (an unreadable token file)
	dropletID int   // from metadata, when the state did not name it
	lastMove  time.Time
	// What the last API read said, so Check can skip the API while a
	// healthy holder keeps the IP.
	holder     int       // droplet holding the IP at the last read (0: none)
	readAt     time.Time // when
	backoff    time.Duration
	nextRead   time.Time // no API read before this unless the holder fails
	metaFailAt time.Time
}

// Outcome is what a Claim or Check found or did, for the caller to switch
// on (never the text of Reason).
type Outcome int

// Outcomes.
const (
	// Unknown is the zero Outcome: a Result no Claim or Check filled in.
	// It holds nothing and moved nothing, so a forgotten assignment is
	// never mistaken for a real answer.
	Unknown Outcome = iota
	// NoReservedIP: the state has no Reserved IP; nothing to hold.
	NoReservedIP
	// AlreadyHere: the IP is on this droplet as far as this call knows.
	AlreadyHere
	// Assigned: this call assigned the IP to this droplet.
	Assigned
	// Yielding: MASTER without the IP because a healthy holder keeps it;
	// the caller reports it once, not on every Check.
	Yielding
	// CoolingOff: the IP is elsewhere and this node moved it within
	// CoolOff; not moved again yet.
	CoolingOff
	// Failed: the call returned an error before it knew where the IP is.
	Failed
)

var outcomeNames = [...]string{"unknown", "no_reserved_ip", "already_here", "assigned", "yielding", "cooling_off", "failed"}

// String is the outcome's name as docs/pull.md spells it ("already_here"),
// or "Outcome(N)" for a value outside the list.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// MarshalText is String, so log/slog's JSON and text handlers (and
// encoding/json) write the name, not the number.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// Result says what a Claim or Check did, for the node's status report.
type Result struct {
	Outcome Outcome
	// APICalls is how many DO API requests this call made.
	APICalls int
	// Reason says why it moved or why not, in words for the log and the
	// report.
	Reason string
}

// Held says whether the IP is on this droplet as far as this call knows.
func (r Result) Held() bool { return r.Outcome == AlreadyHere || r.Outcome == Assigned }

// Moved says whether this call assigned the IP to this droplet.
func (r Result) Moved() bool { return r.Outcome == Assigned }

// New returns a claimer for node nodeID using api.
func New(nodeID string, api API, md Metadata) *Claimer {
	return &Claimer{NodeID: nodeID, api: api, Metadata: md}
}

// SetAPI swaps the API client (a replaced token file); err says why there
// is none. The next call uses it.
func (c *Claimer) SetAPI(api API, err error) {
	c.mu.Lock()
	c.api, c.apiErr = api, err
	c.mu.Unlock()
}

func (c *Claimer) client() (API, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		if c.apiErr != nil {
			return nil, c.apiErr
		}
		return nil, fmt.Errorf("no DO API client")
	}
	return c.api, nil
}

func (c *Claimer) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Claimer) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// myDroplet is this node's droplet id: the state's, which the CLI records
// as soon as the droplet exists; metadata only for a state that lacks it.
func (c *Claimer) myDroplet(ctx context.Context, st *cluster.State) (int, error) {
	if self := st.Node(c.NodeID); self != nil && self.DropletID != 0 {
		return self.DropletID, nil
	}
	c.mu.Lock()
	id := c.dropletID
	c.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	if c.Metadata == nil {
		return 0, fmt.Errorf("node %s has no droplet id in the state", c.NodeID)
	}
	id, err := c.Metadata.DropletID(ctx)
	if err != nil {
		return 0, fmt.Errorf("node %s has no droplet id in the state, and metadata failed: %w", c.NodeID, err)
	}
	c.mu.Lock()
	c.dropletID = id
	c.mu.Unlock()
	return id, nil
}

// Verify checks that the node token works (one cheap authenticated read).
func (c *Claimer) Verify(ctx context.Context) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	if err := api.CheckToken(ctx); err != nil {
		return fmt.Errorf("node token: %w", err)
	}
	return nil
}

// Claim moves st's Reserved IP to this droplet unless it is already here,
// a healthy peer holds it, or this node moved it within CoolOff. It always
// reads the IP's holder from the API (a VRRP transition is news), and ends
// any Check backoff.
func (c *Claimer) Claim(ctx context.Context, st *cluster.State, why string) (Result, error) {
	c.mu.Lock()
	c.backoff, c.nextRead = 0, time.Time{}
	c.mu.Unlock()
	return c.claim(ctx, st, why)
}

func (c *Claimer) claim(ctx context.Context, st *cluster.State, why string) (Result, error) {
	if st == nil || st.ReservedIP == "" {
		return Result{Outcome: NoReservedIP, Reason: "no reserved IP in the state"}, nil
	}
	rip := st.ReservedIP
	me, err := c.myDroplet(ctx, st)
	if err != nil {
		return Result{Outcome: Failed}, err
	}
	api, err := c.client()
	if err != nil {
		return Result{Outcome: Failed}, err
	}
	res := Result{Outcome: Failed, APICalls: 1}
	cur, err := api.GetReservedIP(ctx, rip)
	if err != nil {
		return res, fmt.Errorf("read reserved IP %s: %w", rip, err)
	}
	c.mu.Lock()
	c.holder, c.readAt = cur.DropletID, c.now()
	c.mu.Unlock()
	if cur.DropletID == me {
		res.Outcome, res.Reason = AlreadyHere, "already here"
		return res, nil
	}
	if holder := nodeByDroplet(st, cur.DropletID); holder != nil && holder.PublicIP != "" {
		if c.healthy(ctx, holder.PublicIP) {
			c.yield()
			res.Outcome, res.Reason = Yielding, "holder "+holder.ID+" is healthy"
			return res, nil
		}
	}
	c.mu.Lock()
	last := c.lastMove
	c.mu.Unlock()
	if !last.IsZero() && c.now().Sub(last) < c.coolOff() {
		res.Outcome, res.Reason = CoolingOff, fmt.Sprintf("cool-off: moved %v ago", c.now().Sub(last).Round(time.Second))
		return res, nil
	}
	start := c.now()
	res.APICalls++ // the assign; its action polls are not counted here
	if err := api.AssignReservedIP(ctx, rip, me); err != nil {
		return res, fmt.Errorf("assign reserved IP %s to droplet %d: %w", rip, me, err)
	}
	c.mu.Lock()
	c.lastMove, c.holder, c.readAt = c.now(), me, c.now()
	c.mu.Unlock()
	c.log().Info("reserved IP moved here", "reserved_ip", rip, "from_droplet", cur.DropletID, "droplet", me,
		"why", why, "took", c.now().Sub(start).Round(time.Millisecond))
	res.Outcome, res.Reason = Assigned, why
	return res, nil
}

// yield records that a healthy holder keeps the IP: the next API read
// waits out a growing backoff.
func (c *Claimer) yield() {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.backoff == 0:
		c.backoff = c.backoffMin()
	default:
		c.backoff = min(2*c.backoff, c.backoffMax())
	}
	c.nextRead = c.now().Add(c.backoff)
}

// Check is the level-triggered half, called every few seconds while MASTER.
// It asks metadata first (free); without an answer it relies on the last
// API read while that is recent. A MASTER without the IP health-checks the
// holder on every call but reads the API only when the holder fails or its
// backoff has run out.
func (c *Claimer) Check(ctx context.Context, st *cluster.State) (Result, error) {
	if st == nil || st.ReservedIP == "" {
		return Result{Outcome: NoReservedIP, Reason: "no reserved IP in the state"}, nil
	}
	me, err := c.myDroplet(ctx, st)
	if err != nil {
		return Result{Outcome: Failed}, err
	}
	c.mu.Lock()
	metaOK := c.Metadata != nil && (c.metaFailAt.IsZero() || c.now().Sub(c.metaFailAt) > metadataRetryAfter)
	holder, readAt, nextRead := c.holder, c.readAt, c.nextRead
	c.mu.Unlock()
	if metaOK {
		ip, active, err := c.Metadata.ReservedIPv4(ctx)
		switch {
		case err != nil:
			c.mu.Lock()
			c.metaFailAt = c.now()
			c.mu.Unlock()
			c.log().Warn("metadata unavailable; checking the reserved IP through the DO API", "err", err)
		case active && ip == st.ReservedIP:
			return Result{Outcome: AlreadyHere, Reason: "already here"}, nil
		}
	}
	now := c.now()
	if holder == me && !readAt.IsZero() && now.Sub(readAt) < c.backoffMax() {
		return Result{Outcome: AlreadyHere, Reason: "already here (last read " + now.Sub(readAt).Round(time.Second).String() + " ago)"}, nil
	}
	if holder != 0 && holder != me && now.Before(nextRead) {
		if h := nodeByDroplet(st, holder); h != nil && h.PublicIP != "" && c.healthy(ctx, h.PublicIP) {
			return Result{Outcome: Yielding, Reason: "holder " + h.ID + " is healthy"}, nil
		}
	}
	return c.claim(ctx, st, "MASTER without the reserved IP")
}

func (c *Claimer) coolOff() time.Duration {
	if c.CoolOff > 0 {
		return c.CoolOff
	}
	return DefaultCoolOff
}

func (c *Claimer) backoffMin() time.Duration {
	if c.CheckBackoffMin > 0 {
		return c.CheckBackoffMin
	}
	return DefaultCheckBackoffMin
}

func (c *Claimer) backoffMax() time.Duration {
	if c.CheckBackoffMax > 0 {
		return c.CheckBackoffMax
	}
	return DefaultCheckBackoffMax
}

func (c *Claimer) healthy(ctx context.Context, publicIP string) bool {
	url := "http://" + publicIP + "/dynia/healthz"
	if c.HealthURL != nil {
		url = c.HealthURL(publicIP)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 300 * time.Millisecond}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func nodeByDroplet(st *cluster.State, id int) *cluster.Node {
	if id == 0 {
		return nil
	}
	for i := range st.Nodes {
		if st.Nodes[i].DropletID == id {
			return &st.Nodes[i]
		}
	}
	return nil
}
