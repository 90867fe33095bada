package cloud_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"go.uber.org/goleak"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
)

func TestUpsertDNSRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)

	// The domain itself is the user's; create it with plain godo.
	gc := godo.NewFromToken(adminToken)
	gc.BaseURL, _ = url.Parse(e.url + "/")
	if _, _, err := gc.Domains.Create(ctx, &godo.DomainCreateRequest{Name: "example.com"}); err != nil {
		t.Fatal(err)
	}

	id, err := e.c.UpsertDNSRecord(ctx, "example.com", "lb", "198.51.100.10")
	if err != nil {
		t.Fatal(err)
	}
	e.c.ResetCalls()
	same, err := e.c.UpsertDNSRecord(ctx, "example.com", "lb", "198.51.100.10")
	if err != nil || same != id {
		t.Fatalf("unchanged upsert: id %d (want %d), %v", same, id, err)
	}
	if e.c.Total() != 1 {
		t.Errorf("unchanged upsert made calls %v, want one lookup", e.c.Calls())
	}
	e.c.ResetCalls()
	moved, err := e.c.UpsertDNSRecord(ctx, "example.com", "lb", "198.51.100.11")
	if err != nil || moved != id {
		t.Fatalf("changed upsert: id %d (want %d), %v", moved, id, err)
	}
	if e.c.Calls()["PUT /v2/domains/{domain}/records/{id}"] != 1 {
		t.Errorf("changed upsert calls %v, want one edit", e.c.Calls())
	}
	rec, _, err := gc.Domains.Record(ctx, "example.com", id)
	if err != nil || rec.Data != "198.51.100.11" || rec.Type != "A" || rec.Name != "lb" {
		t.Fatalf("record %+v, %v", rec, err)
	}
	apex, err := e.c.UpsertDNSRecord(ctx, "example.com", "@", "198.51.100.12")
	if err != nil || apex == id {
		t.Fatalf("apex record %d, %v", apex, err)
	}
	if err := e.c.DeleteDNSRecord(ctx, "example.com", id); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteDNSRecord(ctx, "example.com", id); err != nil {
		t.Errorf("deleting a deleted record: %v", err)
	}
}

// A wait cancelled midway is an error — never a success — and leaves no
// goroutine behind. Not parallel: goleak looks at the whole process.
func TestWaitActiveCancelledLeaksNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	sim := dosim.New(dosim.Options{})
	ts := httptest.NewServer(sim)
	sim.AddToken(adminToken, dosim.FullScopes()...)
	c, err := cloud.New(adminToken, cloud.Options{BaseURL: ts.URL, RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond,
		PollInterval: 5 * time.Millisecond, PollMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		c.CloseIdleConnections()
		ts.Close()
		sim.Close()
	}()

	sim.SetNeverActive("stuck")
	ds, err := c.CreateDroplets(t.Context(), []cloud.DropletSpec{{Name: "stuck", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"}})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	got, err := c.WaitActive(ctx, []int{ds[0].ID})
	if err == nil {
		t.Fatalf("cancelled wait returned success: %+v", got)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v, want context.Canceled in the chain", err)
	}
	if got != nil {
		t.Errorf("cancelled wait returned droplets %+v", got)
	}
	t.Logf("cancelled: %v (after %d polls)", err, c.Calls()["GET /v2/droplets/{id}"])

	// Same for an action wait: a paused queue never completes the assign.
	rip, err := c.CreateReservedIPInRegion(t.Context(), "fra1")
	if err != nil {
		t.Fatal(err)
	}
	sim.PauseActions()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel2()
	d2, err := c.CreateDroplets(t.Context(), []cloud.DropletSpec{{Name: "ok", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitActive(t.Context(), []int{d2[0].ID}); err != nil {
		t.Fatal(err)
	}
	if err := c.AssignReservedIP(ctx2, rip.IP, d2[0].ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("assign with a stuck action: %v, want DeadlineExceeded", err)
	}
	sim.ResumeActions()
}
