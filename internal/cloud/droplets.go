package cloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/digitalocean/godo"
	"golang.org/x/sync/errgroup"
)

// DropletSpec is one droplet to create.
type DropletSpec struct {
	Name   string
	Region string
	Size   string
	// Image is a private image id ("182746331") or a distribution slug
	// ("debian-12-x64").
	Image      string
	UserData   string
	VPCUUID    string
	Tags       []string
	Monitoring bool
}

// Droplet is the part of a DO droplet dynia uses. PublicIP and PrivateIP are
// empty until the droplet is active (DO fills networks then).
type Droplet struct {
	ID        int
	Name      string
	Status    string // new | active | off | archive
	Region    string
	PublicIP  string
	PrivateIP string
	Tags      []string
	CreatedAt time.Time
	// ImageID is the image the droplet was created from (0: not given).
	ImageID int
}

func fromGodoDroplet(d *godo.Droplet) Droplet {
	out := Droplet{ID: d.ID, Name: d.Name, Status: d.Status, Tags: append([]string(nil), d.Tags...)}
	if d.Region != nil {
		out.Region = d.Region.Slug
	}
	if d.Networks != nil {
		out.PublicIP, _ = d.PublicIPv4()
		out.PrivateIP, _ = d.PrivateIPv4()
	}
	if t, err := time.Parse(time.RFC3339, d.Created); err == nil {
		out.CreatedAt = t
	}
	if d.Image != nil {
		out.ImageID = d.Image.ID
	}
	return out
}

func imageRef(s string) godo.DropletCreateImage {
	if id, err := strconv.Atoi(s); err == nil {
		return godo.DropletCreateImage{ID: id}
	}
	return godo.DropletCreateImage{Slug: s}
}

// CreateDroplets creates one droplet per spec, a few at a time. Siblings are
// not cancelled when one fails: a create already sent may have succeeded, and
// the caller must learn about it to clean up. The result holds the droplets
// that were created, in spec order; the error joins every failure.
func (c *Client) CreateDroplets(ctx context.Context, specs []DropletSpec) ([]Droplet, error) {
	results := make([]*Droplet, len(specs))
	var (
		mu   sync.Mutex
		errs []error
	)
	var g errgroup.Group
	g.SetLimit(c.par)
	for i, s := range specs {
		g.Go(func() error {
			d, err := c.createDroplet(ctx, s)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return nil
			}
			results[i] = &d
			return nil
		})
	}
	_ = g.Wait() // errors are collected above
	out := make([]Droplet, 0, len(specs))
	for _, d := range results {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, errors.Join(errs...)
}

func (c *Client) createDroplet(ctx context.Context, s DropletSpec) (Droplet, error) {
	op := "create droplet " + s.Name
	req := &godo.DropletCreateRequest{
		Name:       s.Name,
		Region:     s.Region,
		Size:       s.Size,
		Image:      imageRef(s.Image),
		UserData:   s.UserData,
		VPCUUID:    s.VPCUUID,
		Tags:       s.Tags,
		Monitoring: s.Monitoring,
	}
	var d *godo.Droplet
	err := c.createOnce(ctx, op, busyOn{what: "droplet " + s.Name}, func(ctx context.Context) error {
		var err error
		d, _, err = c.godo.Droplets.Create(ctx, req)
		return wrap(op, err)
	}, func(ctx context.Context) (bool, error) {
		// The same name, region and tags: dynia's names and node tags are
		// unique, so this is the droplet the lost answer was about.
		// createOnce calls this until it finds it, createdLookups times:
		// DO's list can miss a droplet made a moment ago.
		ds, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
			return c.godo.Droplets.ListByName(ctx, s.Name, opt)
		})
		if err != nil {
			return false, wrap(op+": look for it", err)
		}
		for i := range ds {
			if ds[i].Region != nil && ds[i].Region.Slug == s.Region && hasAll(ds[i].Tags, s.Tags) {
				d = &ds[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return Droplet{}, err
	}
	c.log.Info("cloud: droplet created", "name", d.Name, "id", d.ID, "region", s.Region)
	return fromGodoDroplet(d), nil
}

// GetDroplet reads one droplet.
func (c *Client) GetDroplet(ctx context.Context, id int) (Droplet, error) {
	d, _, err := c.godo.Droplets.Get(ctx, id)
	if err != nil {
		return Droplet{}, wrap(fmt.Sprintf("get droplet %d", id), err)
	}
	return fromGodoDroplet(d), nil
}

// ListDropletsByTag lists every droplet carrying tag, all pages.
func (c *Client) ListDropletsByTag(ctx context.Context, tag string) ([]Droplet, error) {
	ds, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
		return c.godo.Droplets.ListByTag(ctx, tag, opt)
	})
	if err != nil {
		return nil, wrap("list droplets tagged "+tag, err)
	}
	out := make([]Droplet, len(ds))
	for i := range ds {
		out[i] = fromGodoDroplet(&ds[i])
	}
	return out, nil
}

// WaitActive polls until every droplet is active and returns them (with
// their addresses) in the order of ids. A droplet that leaves "new" for
// anything but "active", or disappears, is an error; so is ctx ending.
func (c *Client) WaitActive(ctx context.Context, ids []int) ([]Droplet, error) {
	done := make(map[int]Droplet, len(ids))
	err := c.poll(ctx, fmt.Sprintf("droplets %v to become active", ids), func(ctx context.Context) (bool, error) {
		for _, id := range ids {
			if _, ok := done[id]; ok {
				continue
			}
			d, err := c.GetDroplet(ctx, id)
			if err != nil {
				return false, fmt.Errorf("cloud: wait active: %w", err)
			}
			switch d.Status {
			case "active":
				done[id] = d
			case "new", "":
			default:
				return false, fmt.Errorf("cloud: wait active: droplet %d is %s", id, d.Status)
			}
		}
		return len(done) == len(ids), nil
	})
	if err != nil {
		return nil, withCtxErr(ctx, err)
	}
	out := make([]Droplet, len(ids))
	for i, id := range ids {
		out[i] = done[id]
	}
	return out, nil
}

// DeleteDroplet deletes a droplet; one already gone is not an error. While
// an event holds it, DO answers 422 "pending event": retried (whileBusy).
func (c *Client) DeleteDroplet(ctx context.Context, id int) error {
	op := fmt.Sprintf("delete droplet %d", id)
	err := c.whileBusy(ctx, op, busyOn{what: fmt.Sprintf("droplet %d", id), droplet: id}, true, func(ctx context.Context) error {
		_, err := c.godo.Droplets.Delete(ctx, id)
		return wrap(op, err)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	c.log.Info("cloud: droplet deleted", "id", id)
	return nil
}

// PowerOff powers a droplet off and waits for the action (a pending event
// retried, as for every droplet action).
func (c *Client) PowerOff(ctx context.Context, id int) error {
	return c.dropletAction(ctx, fmt.Sprintf("power off droplet %d", id), id, c.godo.DropletActions.PowerOff)
}

// PowerOn powers a droplet on and waits for the action.
func (c *Client) PowerOn(ctx context.Context, id int) error {
	return c.dropletAction(ctx, fmt.Sprintf("power on droplet %d", id), id, c.godo.DropletActions.PowerOn)
}

// Shutdown shuts a droplet down gracefully (ACPI) and waits for the action.
func (c *Client) Shutdown(ctx context.Context, id int) error {
	return c.dropletAction(ctx, fmt.Sprintf("shut down droplet %d", id), id, c.godo.DropletActions.Shutdown)
}

// dropletAction posts a droplet action, retried while DO answers 422
// "Droplet already has a pending event." (whileBusy), and waits for it.
func (c *Client) dropletAction(ctx context.Context, op string, id int, post func(context.Context, int) (*godo.Action, *godo.Response, error)) error {
	var a *godo.Action
	err := c.whileBusy(ctx, op, busyOn{what: fmt.Sprintf("droplet %d", id), droplet: id}, true, func(ctx context.Context) error {
		var err error
		a, _, err = post(ctx, id)
		return wrap(op, err)
	})
	if err != nil {
		return err
	}
	return c.waitAction(ctx, op, a)
}

// waitAction polls GET /v2/actions/{id} until the action completes.
func (c *Client) waitAction(ctx context.Context, op string, a *godo.Action) error {
	return c.waitActionWith(ctx, op, a, func(ctx context.Context, id int) (*godo.Action, error) {
		a, _, err := c.godo.Actions.Get(ctx, id)
		return a, err
	})
}

func (c *Client) waitActionWith(ctx context.Context, op string, a *godo.Action, get func(context.Context, int) (*godo.Action, error)) error {
	if a == nil {
		return fmt.Errorf("cloud: %s: API returned no action", op)
	}
	id := a.ID
	status := a.Status
	err := c.poll(ctx, fmt.Sprintf("%s (action %d)", op, id), func(ctx context.Context) (bool, error) {
		switch status {
		case godo.ActionCompleted:
			return true, nil
		case "errored":
			return false, fmt.Errorf("cloud: %s: action %d errored", op, id)
		}
		cur, err := get(ctx, id)
		if err != nil {
			return false, wrap(fmt.Sprintf("%s: get action %d", op, id), err)
		}
		status = cur.Status
		switch status {
		case godo.ActionCompleted:
			return true, nil
		case "errored":
			return false, fmt.Errorf("cloud: %s: action %d errored", op, id)
		}
		return false, nil
	})
	return withCtxErr(ctx, err)
}

// withCtxErr makes sure an error that happened because ctx ended says so
// (errors.Is(err, context.Canceled)), whichever layer noticed first.
func withCtxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

// listAll pages through a DO collection, 200 at a time (DO's maximum).
func listAll[T any](ctx context.Context, page func(*godo.ListOptions) ([]T, *godo.Response, error)) ([]T, error) {
	var all []T
	opt := &godo.ListOptions{Page: 1, PerPage: 200}
	// A bound on pages keeps a misbehaving server from looping us forever.
	for range 1000 {
		if err := ctx.Err(); err != nil {
			return all, err
		}
		items, resp, err := page(opt)
		if err != nil {
			return all, err
		}
		all = append(all, items...)
		if resp == nil || resp.Links == nil || resp.Links.IsLastPage() || len(items) == 0 {
			return all, nil
		}
		opt.Page++
	}
	return all, errors.New("more than 1000 pages")
}

// hasAll says whether every tag of want is in tags.
func hasAll(tags, want []string) bool {
	for _, w := range want {
		if !slices.Contains(tags, w) {
			return false
		}
	}
	return true
}
