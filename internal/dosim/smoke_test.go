package dosim

import (
	"context"
	"testing"

	"github.com/digitalocean/godo"
)

func TestSmoke(t *testing.T) {
	t.Parallel()
	_, hs, _ := newSim(t, Options{})
	c := godoClient(t, hs, "tok")
	ctx := context.Background()
	d, _, err := c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: "n1", Region: "nyc3", Size: "s-1vcpu-1gb", Image: godo.DropletCreateImage{Slug: "debian-12-x64"}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "new" {
		t.Fatalf("status %q", d.Status)
	}
	d, _, err = c.Droplets.Get(ctx, d.ID)
	if err != nil || d.Status != "active" {
		t.Fatalf("get: %v %v", d, err)
	}
	rip, _, err := c.ReservedIPs.Create(ctx, &godo.ReservedIPCreateRequest{DropletID: d.ID})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rip.IP, rip.Locked)
}
