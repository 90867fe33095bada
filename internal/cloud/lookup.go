package cloud

import (
	"context"

	"github.com/digitalocean/godo"
)

// ListFirewalls lists the account's firewalls, all pages. `cluster destroy`
// uses it to find a cluster's firewall by name when the state never recorded
// its id (a create-ha that died right after creating it).
func (c *Client) ListFirewalls(ctx context.Context) ([]Firewall, error) {
	fws, err := listAll(ctx, func(opt *godo.ListOptions) ([]godo.Firewall, *godo.Response, error) {
		return c.godo.Firewalls.List(ctx, opt)
	})
	if err != nil {
		return nil, wrap("list firewalls", err)
	}
	out := make([]Firewall, len(fws))
	for i := range fws {
		out[i] = fromGodoFirewall(&fws[i])
	}
	return out, nil
}

// GetVPC reads one VPC; a missing one is ErrNotFound (repair-ha uses it to
// notice a VPC deleted behind dynia's back).
func (c *Client) GetVPC(ctx context.Context, id string) (VPC, error) {
	v, _, err := c.godo.VPCs.Get(ctx, id)
	if err != nil {
		return VPC{}, wrap("get VPC "+id, err)
	}
	return fromGodoVPC(v), nil
}
