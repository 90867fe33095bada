// Package failover moves the cluster's Reserved IP to this droplet when
// keepalived makes the node MASTER. dynia-pull calls Claim on every MASTER
// transition and Check every few seconds while MASTER (level-triggered: a
// MASTER whose metadata says the IP is not here claims it).
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
}

// Metadata is what failover needs from the droplet metadata service.
type Metadata interface {
	DropletID(ctx context.Context) (int, error)
	ReservedIPv4(ctx context.Context) (ip string, active bool, err error)
}

// Claimer decides whether to move the Reserved IP here, and does it.
type Claimer struct {
	API      API
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
	Logger  *slog.Logger
	// Now is the clock (tests).
	Now func() time.Time

	mu        sync.Mutex
	dropletID int
	lastMove  time.Time
}

// Result says what a Claim did, for the node's status report.
type Result struct {
	Moved  bool
	Reason string // why it moved or why it did not
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

func (c *Claimer) myDroplet(ctx context.Context) (int, error) {
	c.mu.Lock()
	id := c.dropletID
	c.mu.Unlock()
	if id != 0 {
		return id, nil
	}
	id, err := c.Metadata.DropletID(ctx)
	if err != nil {
		return 0, fmt.Errorf("droplet id from metadata: %w", err)
	}
	c.mu.Lock()
	c.dropletID = id
	c.mu.Unlock()
	return id, nil
}

// Claim moves st's Reserved IP to this droplet unless it is already here,
// a healthy peer holds it, or this node moved it within CoolOff.
func (c *Claimer) Claim(ctx context.Context, st *cluster.State, why string) (Result, error) {
	if st == nil || st.ReservedIP == "" {
		return Result{Reason: "no reserved IP in the state"}, nil
	}
	rip := st.ReservedIP
	me, err := c.myDroplet(ctx)
	if err != nil {
		return Result{}, err
	}
	cur, err := c.API.GetReservedIP(ctx, rip)
	if err != nil {
		return Result{}, fmt.Errorf("read reserved IP %s: %w", rip, err)
	}
	if cur.DropletID == me {
		return Result{Reason: "already here"}, nil
	}
	if holder := nodeByDroplet(st, cur.DropletID); holder != nil && holder.PublicIP != "" {
		if c.healthy(ctx, holder.PublicIP) {
			c.log().Warn("MASTER, but the reserved IP's holder is healthy: leaving it (split brain?)",
				"reserved_ip", rip, "holder", holder.ID, "why", why)
			return Result{Reason: "holder " + holder.ID + " is healthy"}, nil
		}
	}
	c.mu.Lock()
	last := c.lastMove
	c.mu.Unlock()
	if !last.IsZero() && c.now().Sub(last) < c.coolOff() {
		return Result{Reason: fmt.Sprintf("cool-off: moved %v ago", c.now().Sub(last).Round(time.Second))}, nil
	}
	start := c.now()
	if err := c.API.AssignReservedIP(ctx, rip, me); err != nil {
		return Result{}, fmt.Errorf("assign reserved IP %s to droplet %d: %w", rip, me, err)
	}
	c.mu.Lock()
	c.lastMove = c.now()
	c.mu.Unlock()
	c.log().Info("reserved IP moved here", "reserved_ip", rip, "from_droplet", cur.DropletID, "droplet", me,
		"why", why, "took", c.now().Sub(start).Round(time.Millisecond))
	return Result{Moved: true, Reason: why}, nil
}

// Check is the level-triggered half: while MASTER, if the metadata says the
// Reserved IP is not on this droplet, claim it.
func (c *Claimer) Check(ctx context.Context, st *cluster.State) (Result, error) {
	if st == nil || st.ReservedIP == "" {
		return Result{Reason: "no reserved IP in the state"}, nil
	}
	_, active, err := c.Metadata.ReservedIPv4(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("reserved IP from metadata: %w", err)
	}
	if active {
		return Result{Reason: "already here"}, nil
	}
	return c.Claim(ctx, st, "MASTER without the reserved IP (metadata)")
}

func (c *Claimer) coolOff() time.Duration {
	if c.CoolOff > 0 {
		return c.CoolOff
	}
	return 10 * time.Second
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
