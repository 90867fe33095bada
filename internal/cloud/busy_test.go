package cloud_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
)

// DO's two pending-event answers (the reserved IP's is in the API
// reference; godo names the droplet's ErrDropletPendingEvent).
const (
	dropletBusy = "Droplet already has a pending event."
	ripBusy     = "The floating IP already has a pending event."
)

// TestPendingEventRetried: every action, create and delete DO can refuse
// with 422 "pending event" is sent again after the refusal and succeeds;
// the refused request and its retry are both on the wire.
func TestPendingEventRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	ds := e.activeDroplets(t, ctx, "busy", "fra1", 3)
	rip, err := e.c.CreateReservedIP(ctx, ds[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	fw, _, err := e.c.EnsureFirewall(ctx, cloud.FirewallSpec{Name: "dynia-busy", Tag: cloud.ClusterTag("busy"), AppPort: 8080, MeshPort: 51820})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, message string
		do                          func() error
	}{
		{"create droplet", "POST", "/v2/droplets", dropletBusy, func() error {
			_, err := e.c.CreateDroplets(ctx, []cloud.DropletSpec{{Name: "dynia-busy-x", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"}})
			return err
		}},
		{"create reserved IP for a droplet", "POST", "/v2/reserved_ips", dropletBusy, func() error {
			_, err := e.c.CreateReservedIP(ctx, ds[1].ID)
			return err
		}},
		{"create reserved IP in a region", "POST", "/v2/reserved_ips", ripBusy, func() error {
			_, err := e.c.CreateReservedIPInRegion(ctx, "fra1")
			return err
		}},
		{"assign reserved IP", "POST", "/v2/reserved_ips/" + rip.IP + "/actions", ripBusy, func() error {
			return e.c.AssignReservedIP(ctx, rip.IP, ds[2].ID)
		}},
		{"unassign reserved IP", "POST", "/v2/reserved_ips/" + rip.IP + "/actions", dropletBusy, func() error {
			return e.c.UnassignReservedIP(ctx, rip.IP)
		}},
		{"delete reserved IP", "DELETE", "/v2/reserved_ips/" + rip.IP, ripBusy, func() error {
			return e.c.DeleteReservedIP(ctx, rip.IP)
		}},
		{"power off", "POST", fmt.Sprintf("/v2/droplets/%d/actions", ds[2].ID), dropletBusy, func() error {
			return e.c.PowerOff(ctx, ds[2].ID)
		}},
		{"power on", "POST", fmt.Sprintf("/v2/droplets/%d/actions", ds[2].ID), dropletBusy, func() error {
			return e.c.PowerOn(ctx, ds[2].ID)
		}},
		{"shutdown", "POST", fmt.Sprintf("/v2/droplets/%d/actions", ds[2].ID), dropletBusy, func() error {
			return e.c.Shutdown(ctx, ds[2].ID)
		}},
		{"delete droplet", "DELETE", fmt.Sprintf("/v2/droplets/%d", ds[2].ID), dropletBusy, func() error {
			return e.c.DeleteDroplet(ctx, ds[2].ID)
		}},
		{"update firewall", "PUT", "/v2/firewalls/" + fw.ID, dropletBusy, func() error {
			_, _, err := e.c.EnsureFirewall(ctx, cloud.FirewallSpec{Name: "dynia-busy", Tag: cloud.ClusterTag("busy"), AdminCIDRs: []string{"192.0.2.0/24"}, AppPort: 8080, MeshPort: 51820})
			return err
		}},
		{"delete firewall", "DELETE", "/v2/firewalls/" + fw.ID, dropletBusy, func() error {
			return e.c.DeleteFirewall(ctx, fw.ID)
		}},
		{"create firewall", "POST", "/v2/firewalls", dropletBusy, func() error {
			_, _, err := e.c.EnsureFirewall(ctx, cloud.FirewallSpec{Name: "dynia-busy", Tag: cloud.ClusterTag("busy"), AppPort: 8080, MeshPort: 51820})
			return err
		}},
	}
	// Sequential: the faults and the call log are the simulator's.
	for _, tc := range tests {
		before := len(e.sim.Calls())
		e.sim.InjectFault(dosim.Fault{Method: tc.method, PathPrefix: tc.path, Status: http.StatusUnprocessableEntity, Message: tc.message, Count: 1})
		if err := tc.do(); err != nil {
			t.Fatalf("%s with one pending event: %v", tc.name, err)
		}
		e.sim.ClearFaults()
		var got []int
		for _, c := range e.sim.Calls()[before:] {
			if c.Method == tc.method && c.Path == tc.path {
				got = append(got, c.Status)
			}
		}
		if len(got) != 2 || got[0] != http.StatusUnprocessableEntity || got[1]/100 != 2 {
			t.Fatalf("%s: %s %s answered %v, want 422 then success", tc.name, tc.method, tc.path, got)
		}
	}
}

// TestPendingEventStaysBusy: a resource that stays busy is retried, with
// growing waits, until the caller's context ends; the error names the busy
// resource (the droplet when DO's message speaks of one) and matches
// ErrBusy and the context's error. Any other 422 is not retried.
func TestPendingEventStaysBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	ds := e.activeDroplets(t, ctx, "stuck", "fra1", 2)
	rip, err := e.c.CreateReservedIPInRegion(ctx, "fra1")
	if err != nil {
		t.Fatal(err)
	}
	path := "/v2/reserved_ips/" + rip.IP + "/actions"
	for _, tc := range []struct{ message, resource string }{
		{ripBusy, "reserved IP " + rip.IP},
		{dropletBusy, fmt.Sprintf("droplet %d", ds[0].ID)},
	} {
		e.sim.InjectFault(dosim.Fault{Method: "POST", PathPrefix: path, Status: http.StatusUnprocessableEntity, Message: tc.message})
		before := len(e.sim.Calls())
		// 5 s, not less: on a loaded machine one answer can take a second,
		// and the test needs at least two refusals within the deadline.
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := e.c.AssignReservedIP(short, rip.IP, ds[0].ID)
		cancel()
		e.sim.ClearFaults()
		var be *cloud.BusyError
		if !errors.As(err, &be) || !errors.Is(err, cloud.ErrBusy) || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, cloud.ErrUnprocessable) {
			t.Fatalf("assign to a resource that stays busy: %v, want a BusyError matching ErrBusy, ErrUnprocessable and the deadline", err)
		}
		if be.Resource != tc.resource || !strings.Contains(err.Error(), tc.resource+" stayed busy") || !strings.Contains(err.Error(), tc.message) {
			t.Fatalf("error %q: want it to name %q as staying busy and quote DO's %q", err, tc.resource, tc.message)
		}
		refused := 0
		for _, c := range e.sim.Calls()[before:] {
			if c.Path == path && c.Status == http.StatusUnprocessableEntity {
				refused++
			}
		}
		// Waits from PollInterval (5 ms) growing by half to 2×PollMax
		// (80 ms): retried, but not as fast as the simulator answers
		// (≈ 70 waits fit in 5 s; without backoff it would be thousands).
		// The request the deadline cut may have reached the simulator
		// (and been refused) without its answer reaching the client: the
		// error counts only answered attempts.
		if refused < 2 || (refused != be.Attempts && refused != be.Attempts+1) || refused > 150 {
			t.Fatalf("%d refused requests (error says %d) in 5 s: want retries with backoff, between 2 and 150", refused, be.Attempts)
		}
	}

	// Another 422 is DO's final word: returned at once.
	e.sim.InjectFault(dosim.Fault{Method: "POST", PathPrefix: path, Status: http.StatusUnprocessableEntity, Message: "The Droplet already has a reserved IP assigned."})
	before := len(e.sim.Calls())
	err = e.c.AssignReservedIP(ctx, rip.IP, ds[1].ID)
	e.sim.ClearFaults()
	if !errors.Is(err, cloud.ErrUnprocessable) || errors.Is(err, cloud.ErrBusy) {
		t.Fatalf("assign refused for good: %v", err)
	}
	posts := 0
	for _, c := range e.sim.Calls()[before:] {
		if c.Method == "POST" && c.Path == path {
			posts++
		}
	}
	if posts != 1 {
		t.Fatalf("a final 422 was sent %d times, want once", posts)
	}
}
