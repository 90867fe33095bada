package cloud_test

import (
	"errors"
	"testing"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
)

func TestListFirewallsAndGetVPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	v, _, err := e.c.EnsureVPC(ctx, "dynia-look-fra1", "fra1", "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.c.GetVPC(ctx, v.ID)
	if err != nil || got.ID != v.ID || got.Name != v.Name || !got.Dynia {
		t.Fatalf("GetVPC = %+v, %v; want %+v", got, err, v)
	}
	if _, err := e.c.GetVPC(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("GetVPC of a missing VPC: %v, want ErrNotFound", err)
	}
	fw, _, err := e.c.EnsureFirewall(ctx, cloud.FirewallSpec{Name: "dynia-look", Tag: cloud.ClusterTag("look"), AppPort: 8080, MeshPort: 51820})
	if err != nil {
		t.Fatal(err)
	}
	fws, err := e.c.ListFirewalls(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fws) != 1 || fws[0].ID != fw.ID || fws[0].Name != "dynia-look" || len(fws[0].Tags) != 1 {
		t.Fatalf("ListFirewalls = %+v, want [%+v]", fws, fw)
	}
}
