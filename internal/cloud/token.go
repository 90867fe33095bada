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

// CheckNodeToken makes the reads a node token needs to move the Reserved IP
// and judge its holder: one reserved IP (reserved_ip:read) and one droplet
// (droplet:read), one page of one each. An invalid token fails with
// ErrAuth (401), a token without one of the scopes with ErrAuth (403); the
// *APIError names the read. reserved_ip:update itself cannot be checked
// without moving an IP.
func (c *Client) CheckNodeToken(ctx context.Context) error {
	if err := c.CheckToken(ctx); err != nil {
		return err
	}
	_, _, err := c.godo.Droplets.List(ctx, &godo.ListOptions{PerPage: 1})
	return wrap("check token (list droplets)", err)
}
