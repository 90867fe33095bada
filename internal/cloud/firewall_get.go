package cloud

import "context"

// GetFirewall reads one firewall; a missing one is ErrNotFound (repair-ha
// uses it to notice a firewall deleted behind dynia's back).
func (c *Client) GetFirewall(ctx context.Context, id string) (Firewall, error) {
	fw, _, err := c.godo.Firewalls.Get(ctx, id)
	if err != nil {
		return Firewall{}, wrap("get firewall "+id, err)
	}
	return fromGodoFirewall(fw), nil
}
