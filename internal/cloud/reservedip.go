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
	var r *godo.ReservedIP
	err := c.whileBusy(ctx, op, busyOn{what: fmt.Sprintf("droplet %d", dropletID), droplet: dropletID}, false, func(ctx context.Context) error {
		var err error
		r, _, err = c.godo.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: dropletID})
		return wrap(op, err)
	})
	if err != nil {
		return ReservedIP{}, err
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
	op := "create reserved IP in " + region
	var r *godo.ReservedIP
	err := c.whileBusy(ctx, op, busyOn{what: "a reserved IP in " + region}, false, func(ctx context.Context) error {
		var err error
		r, _, err = c.godo.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{Region: region})
		return wrap(op, err)
	})
	if err != nil {
		return ReservedIP{}, err
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
// complete. While another action holds the IP or the droplet, DO answers 422
// "pending event": that is retried with backoff until ctx ends (whileBusy;
// then the error is a *BusyError naming which stayed busy). An IP may move
// straight from one droplet to another. Assigning to the current holder is
// success. Any other refusal is returned as is (errors.Is ErrUnprocessable).
// The droplet must be active: DO refuses others.
func (c *Client) AssignReservedIP(ctx context.Context, ip string, dropletID int) error {
	op := fmt.Sprintf("assign reserved IP %s to droplet %d", ip, dropletID)
	err := c.ripAction(ctx, op, busyOn{what: "reserved IP " + ip, droplet: dropletID}, ip, func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.godo.ReservedIPActions.Assign(ctx, ip, dropletID)
	})
	if errors.Is(err, ErrUnprocessable) && !errors.Is(err, ErrBusy) {
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
	return c.ripAction(ctx, "unassign reserved IP "+ip, busyOn{what: "reserved IP " + ip}, ip, func(ctx context.Context) (*godo.Action, *godo.Response, error) {
		return c.godo.ReservedIPActions.Unassign(ctx, ip)
	})
}

// ripAction posts a reserved IP action (retried while busy) and waits for
// it to complete.
func (c *Client) ripAction(ctx context.Context, op string, on busyOn, ip string, post func(context.Context) (*godo.Action, *godo.Response, error)) error {
	var action *godo.Action
	err := c.whileBusy(ctx, op, on, true, func(ctx context.Context) error {
		a, _, err := post(ctx)
		action = a
		return wrap(op, err)
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
	c.log.Info("cloud: reserved IP action done", "op", op, "wait", time.Since(start))
	return nil
}

// DeleteReservedIP releases ip; one already gone is not an error. While an
// action holds it, DO answers 422 "pending event": retried (whileBusy).
func (c *Client) DeleteReservedIP(ctx context.Context, ip string) error {
	op := "delete reserved IP " + ip
	err := c.whileBusy(ctx, op, busyOn{what: "reserved IP " + ip}, true, func(ctx context.Context) error {
		_, err := c.godo.ReservedIPs.Delete(ctx, ip)
		return wrap(op, err)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	c.log.Info("cloud: reserved IP deleted", "ip", ip)
	return nil
}
