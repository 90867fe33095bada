package cloud_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
)

// TestCreateAnswerLost: a create DigitalOcean applied but whose answer was
// lost (a 500 from its edge, or a dropped connection) succeeds once, with
// the resource DO made: godo does not send it again (which made a second
// droplet, firewall or VPC), the client finds it and adopts it. A create
// refused with a 503 (nothing made) is sent again and made once.
func TestCreateAnswerLost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault dosim.Fault
	}{
		{"500 after applying", dosim.Fault{Method: "POST", Status: 500, AnswerLost: true, Count: 1}},
		{"connection dropped after applying", dosim.Fault{Method: "POST", AnswerLost: true, Count: 1}},
		{"503s, nothing applied", dosim.Fault{Method: "POST", Status: 503, Count: 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, dosim.Options{})
			ctx := ctxT(t)
			for _, path := range []string{"/v2/vpcs", "/v2/firewalls", "/v2/droplets"} {
				f := tc.fault
				f.PathPrefix = path
				e.sim.InjectFault(f)
			}
			vpc, created, err := e.c.EnsureVPC(ctx, "dynia-x-nyc3", "nyc3", "")
			if err != nil || !created {
				t.Fatalf("EnsureVPC: %+v created %v, %v", vpc, created, err)
			}
			fw, created, err := e.c.EnsureFirewall(ctx, cloud.FirewallSpec{Name: "dynia-x", Tag: cloud.ClusterTag("x"), AppPort: 8080, MeshPort: 51820})
			if err != nil || !created {
				t.Fatalf("EnsureFirewall: %+v created %v, %v", fw, created, err)
			}
			ds, err := e.c.CreateDroplets(ctx, []cloud.DropletSpec{{Name: "x-amber-fox", Region: "nyc3", Size: "s-1vcpu-1gb",
				Image: "debian-12-x64", VPCUUID: vpc.ID, Tags: []string{cloud.ClusterTag("x"), cloud.NodeTag("amber-fox")}}})
			if err != nil || len(ds) != 1 {
				t.Fatalf("CreateDroplets: %+v, %v", ds, err)
			}
			if got := e.sim.Droplets(); len(got) != 1 || got[0].ID != ds[0].ID {
				t.Errorf("droplets %+v, want exactly the one returned (%d)", got, ds[0].ID)
			}
			if got := e.sim.Firewalls(); len(got) != 1 || got[0].ID != fw.ID {
				t.Errorf("firewalls %+v, want exactly the one returned (%s)", got, fw.ID)
			}
			n := 0
			for _, v := range e.sim.VPCs() {
				if v.Name == "dynia-x-nyc3" {
					n++
					if v.ID != vpc.ID {
						t.Errorf("VPC %s, returned %s", v.ID, vpc.ID)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d VPCs named dynia-x-nyc3, want 1", n)
			}
		})
	}
}

// listLag answers the first hide droplet lookups by name (GET
// /v2/droplets?name=…) with an empty list and passes everything else to
// next: DigitalOcean's list not showing yet a droplet it just made.
type listLag struct {
	next    http.Handler
	mu      sync.Mutex
	hide    int
	lookups int
}

func (l *listLag) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/v2/droplets" && r.URL.Query().Get("name") != "" {
		l.mu.Lock()
		l.lookups++
		hidden := l.lookups <= l.hide
		l.mu.Unlock()
		if hidden {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"droplets":[],"links":{},"meta":{"total":0}}`)
			return
		}
	}
	l.next.ServeHTTP(w, r)
}

// TestCreateDropletAnswerLostListLags: the answer to a droplet create DO
// applied is lost, and DO's list by name does not show the new droplet
// for the first lookups. The client looks again (with backoff) instead of
// sending the create a second time: exactly one droplet, the one returned.
// Before, one empty lookup sent the create again: two droplets.
func TestCreateDropletAnswerLostListLags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault dosim.Fault
		hide  int
	}{
		{"500, one lookup misses it", dosim.Fault{Method: "POST", PathPrefix: "/v2/droplets", Status: 500, AnswerLost: true, Count: 1}, 1},
		{"500, four lookups miss it", dosim.Fault{Method: "POST", PathPrefix: "/v2/droplets", Status: 500, AnswerLost: true, Count: 1}, 4},
		{"connection dropped, two lookups miss it", dosim.Fault{Method: "POST", PathPrefix: "/v2/droplets", AnswerLost: true, Count: 1}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, dosim.Options{})
			lag := &listLag{next: e.sim, hide: tc.hide}
			ts := httptest.NewServer(lag)
			t.Cleanup(ts.Close)
			e.url = ts.URL
			e.c = e.client(t, adminToken, nil)
			e.sim.InjectFault(tc.fault)
			ds, err := e.c.CreateDroplets(ctxT(t), []cloud.DropletSpec{{Name: "x-amber-fox", Region: "nyc3", Size: "s-1vcpu-1gb",
				Image: "debian-12-x64", Tags: []string{cloud.ClusterTag("x"), cloud.NodeTag("amber-fox")}}})
			if err != nil || len(ds) != 1 {
				t.Fatalf("CreateDroplets: %+v, %v", ds, err)
			}
			if got := e.sim.Droplets(); len(got) != 1 || got[0].ID != ds[0].ID {
				t.Errorf("droplets %+v, want exactly the one returned (%d)", got, ds[0].ID)
			}
			lag.mu.Lock()
			defer lag.mu.Unlock()
			if lag.lookups != tc.hide+1 {
				t.Errorf("%d lookups by name, want %d (%d missing it, then the one that found it)", lag.lookups, tc.hide+1, tc.hide)
			}
		})
	}
}
