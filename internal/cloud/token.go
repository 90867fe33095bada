package cloud

import (
	"context"

	"github.com/digitalocean/godo"
)

// CheckToken makes the cheapest authenticated read a node token is allowed
// (reserved_ip:read, which DO grants with reserved_ip:update): one page of
// one reserved IP. An invalid token fails with ErrAuth (401); a token
// without the scope, with ErrAuth (403).
func (c *Client) CheckToken(ctx context.Context) error {
	_, _, err := c.godo.ReservedIPs.List(ctx, &godo.ListOptions{PerPage: 1})
	return wrap("check token (list reserved IPs)", err)
}
