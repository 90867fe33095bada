package cloud

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/digitalocean/godo"
)

// ReservedIP is a DO reserved IPv4. DropletID is 0 when unassigned. Locked
// means an action on it is in progress; a second action now gets a 422.
type ReservedIP struct {
	IP        string
	Region    string
	DropletID int
	Locked    bool
}

func fromGodoRIP(r *godo.ReservedIP) ReservedIP {
	out := ReservedIP{IP: r.IP, Locked: r.Locked}
	if r.Region != nil {
		out.Region = r.Region.Slug
	}
	if r.Droplet != nil {
		out.DropletID = r.Droplet.ID
	}
	return out
}

// CreateReservedIP reserves an IP assigned to the droplet (which must be
// active) and waits until the assignment shows: DO answers droplet:null,
// locked:true until it completes. If the wait fails, the result still names
// the IP, so the caller can release it.
func (c *Client) CreateReservedIP(ctx context.Context, dropletID int) (ReservedIP, error) {
	op := fmt.Sprintf("create reserved IP for droplet %d", dropletID)
	r, _, err := c.godo.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: dropletID})
	if err != nil {
		return ReservedIP{}, wrap(op, err)
	}
	ip := r.IP
	c.log.Info("cloud: reserved IP created", "ip", ip, "droplet", dropletID)
	var cur ReservedIP
	err = c.poll(ctx, fmt.Sprintf("reserved IP %s to be assigned to droplet %d", ip, dropletID), func(ctx context.Context) (bool, error) {
		got, err := c.GetReservedIP(ctx, ip)
		if err != nil {
			return false, err
		}
		cur = got
		return got.DropletID == dropletID && !got.Locked, nil
	})
	if err != nil {
		// The IP exists even if we stopped waiting: say which one.
		return ReservedIP{IP: ip}, withCtxErr(ctx, fmt.Errorf("cloud: %s: created %s: %w", op, ip, err))
	}
	return cur, nil
}

// CreateReservedIPInRegion reserves an unassigned IP in region.
func (c *Client) CreateReservedIPInRegion(ctx context.Context, region string) (ReservedIP, error) {
	r, _, err := c.godo.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: region})
	if err != nil {
		return ReservedIP{}, wrap("create reserved IP in "+region, err)
	}
	c.log.Info("cloud: reserved IP created", "ip", r.IP, "region", region)
	return fromGodoRIP(r), nil
}

// GetReservedIP reads a reserved IP.
func (c *Client) GetReservedIP(ctx context.Context, ip string) (ReservedIP, error) {
	r, _, err := c.godo.ReservedIPs.Get(ctx, ip)
	if err != nil {
		return ReservedIP{}, wrap("get reserved IP "+ip, err)
	}
	return fromGodoRIP(r), nil
}

// ListReservedIPs lists the account's reserved IPs, all pages.
func (c *Client) ListReservedIPs(ctx context.Context) ([]ReservedIP, error) {
	rs, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.ReservedIP, *godo.Response, error) {
		return c.godo.ReservedIPs.List(ctx, opt)
	})
	if err != nil {
		return nil, wrap("list reserved IPs", err)
	}
	out := make([]ReservedIP, len(rs))
	for i := range rs {
		out[i] = fromGodoRIP(&rs[i])
	}
	return out, nil
}

// AssignReservedIP assigns ip to the droplet and waits for the action to
// complete. While another action holds the IP, DO answers 422 "pending
// event": that is retried with backoff until ctx ends. An IP may move
// straight from one droplet to another. Assigning to the current holder is
// success. Any other refusal is returned as is (errors.Is ErrUnprocessable).
// The droplet must be active: DO refuses others.
func (c *Client) AssignReservedIP(ctx context.Context, ip string, dropletID int) error {
	op := fmt.Sprintf("assign reserved IP %s to droplet %d", ip, dropletID)
	err := c.ripAction(ctx, op, ip, func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.godo.ReservedIPActions.Assign(ctx, ip, dropletID)
	})
	if errors.Is(err, ErrUnprocessable) {
		// DO may refuse to assign an IP to the droplet already holding it;
		// for the caller that is success.
		if cur, gerr := c.GetReservedIP(ctx, ip); gerr == nil && cur.DropletID == dropletID && !cur.Locked {
			return nil
		}
	}
	return err
}

// UnassignReservedIP detaches ip from its droplet and waits for the action,
// retrying a pending event like AssignReservedIP.
func (c *Client) UnassignReservedIP(ctx context.Context, ip string) error {
	return c.ripAction(ctx, "unassign reserved IP "+ip, ip, func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.godo.ReservedIPActions.Unassign(ctx, ip)
	})
}

func (c *Client) ripAction(ctx context.Context, op, ip string, post func(context.Context) (*godo.Action, *godo.Response, error)) error {
	var action *godo.Action
	pending := 0
	err := c.poll(ctx, op+" (pending event)", func(ctx context.Context) (bool, error) {
		a, _, err := post(ctx)
		if err != nil {
			err = wrap(op, err)
			if isPendingEvent(err) {
				pending++
				c.log.Debug("cloud: reserved IP busy, retrying", "ip", ip, "attempt", pending)
				return false, nil
			}
			return false, err
		}
		action = a
		return true, nil
	})
	if err != nil {
		return withCtxErr(ctx, err)
	}
	start := time.Now()
	err = c.waitActionWith(ctx, op, action, func(ctx context.Context, id int) (*godo.Action, error) {
		a, _, err := c.godo.ReservedIPActions.Get(ctx, ip, id)
		return a, err
	})
	if err != nil {
		return err
	}
	c.log.Info("cloud: reserved IP action done", "op", op, "pending_retries", pending, "wait", time.Since(start))
	return nil
}

// DeleteReservedIP releases ip; one already gone is not an error.
func (c *Client) DeleteReservedIP(ctx context.Context, ip string) error {
	_, err := c.godo.ReservedIPs.Delete(ctx, ip)
	if err = wrap("delete reserved IP "+ip, err); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	c.log.Info("cloud: reserved IP deleted", "ip", ip)
	return nil
}
