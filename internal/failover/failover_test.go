package failover

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/metadata"
)

type headerRT struct {
	id   int
	next http.RoundTripper
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(dosim.DropletIDHeader, strconv.Itoa(h.id))
	return h.next.RoundTrip(r)
}

type world struct {
	sim      *dosim.Server
	api      *cloud.Client
	meta     *httptest.Server
	st       *cluster.State
	droplets []cloud.Droplet
	healthy  atomic.Bool
	health   *httptest.Server
}

// newWorld: two droplets in the simulator, the RIP on the first; the
// state's nodes point at a health server the test controls.
func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{sim: dosim.New(dosim.Options{})}
	w.sim.AddToken("node", dosim.NodeScopes()...)
	w.sim.AddToken("full", dosim.FullScopes()...)
	api := httptest.NewServer(w.sim)
	t.Cleanup(api.Close)
	w.meta = httptest.NewServer(w.sim.MetadataHandler())
	t.Cleanup(w.meta.Close)
	full, err := cloud.New("full", cloud.Options{BaseURL: api.URL, PollInterval: 5 * time.Millisecond, PollMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ds, err := full.CreateDroplets(ctx, []cloud.DropletSpec{
		{Name: "a", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
		{Name: "b", Region: "nyc3", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if w.droplets, err = full.WaitActive(ctx, []int{ds[0].ID, ds[1].ID}); err != nil {
		t.Fatal(err)
	}
	rip, err := full.CreateReservedIP(ctx, w.droplets[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	w.api, err = cloud.New("node", cloud.Options{BaseURL: api.URL, PollInterval: 5 * time.Millisecond, PollMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.healthy.Store(true)
	w.health = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		if !w.healthy.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(w.health.Close)
	w.st = &cluster.State{ReservedIP: rip.IP, Nodes: []cluster.Node{
		{ID: "amber-fox", DropletID: w.droplets[0].ID, PublicIP: w.droplets[0].PublicIP},
		{ID: "brave-owl", DropletID: w.droplets[1].ID, PublicIP: w.droplets[1].PublicIP},
	}}
	return w
}

// claimer is node b's view.
func (w *world) claimer(now *time.Time) *Claimer {
	md := metadata.New(w.meta.URL, &http.Client{Transport: headerRT{w.droplets[1].ID, http.DefaultTransport}})
	return &Claimer{API: w.api, Metadata: md, CoolOff: time.Minute,
		HealthURL: func(string) string { return w.health.URL },
		Now:       func() time.Time { return *now }}
}

func (w *world) holder(t *testing.T) int {
	t.Helper()
	r, err := w.api.GetReservedIP(context.Background(), w.st.ReservedIP)
	if err != nil {
		t.Fatal(err)
	}
	return r.DropletID
}

func TestHealthyHolderIsLeftAlone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	now := time.Now()
	c := w.claimer(&now)
	res, err := c.Claim(context.Background(), w.st, "vrrp BACKUP -> MASTER")
	if err != nil || res.Moved {
		t.Fatalf("claim against a healthy holder: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[0].ID {
		t.Fatal("the reserved IP moved away from a healthy holder")
	}
}

func TestDeadHolderLosesTheIPOnceThenCoolOff(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.healthy.Store(false)
	now := time.Now()
	c := w.claimer(&now)
	res, err := c.Claim(context.Background(), w.st, "vrrp BACKUP -> MASTER")
	if err != nil || !res.Moved {
		t.Fatalf("claim against a dead holder: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[1].ID {
		t.Fatal("the reserved IP did not move")
	}
	if res, _ := c.Claim(context.Background(), w.st, "again"); res.Moved || res.Reason != "already here" {
		t.Fatalf("second claim: %+v", res)
	}
	// Someone moves it back; within the cool-off this node does not fight.
	if err := w.api.AssignReservedIP(context.Background(), w.st.ReservedIP, w.droplets[0].ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(5 * time.Second)
	if res, _ := c.Claim(context.Background(), w.st, "flap"); res.Moved {
		t.Fatalf("moved again within the cool-off: %+v", res)
	}
	now = now.Add(2 * time.Minute)
	if res, err := c.Claim(context.Background(), w.st, "after cool-off"); err != nil || !res.Moved {
		t.Fatalf("after the cool-off: %+v %v", res, err)
	}
}

func TestCheckClaimsWhenMetadataSaysNotHere(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.sim.UnassignReservedIP(w.st.ReservedIP)
	now := time.Now()
	c := w.claimer(&now)
	res, err := c.Check(context.Background(), w.st)
	if err != nil || !res.Moved {
		t.Fatalf("check with an unassigned IP: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[1].ID {
		t.Fatal("the reserved IP is not here after Check")
	}
	if res, _ := c.Check(context.Background(), w.st); res.Moved {
		t.Fatalf("second check moved again: %+v", res)
	}
}
