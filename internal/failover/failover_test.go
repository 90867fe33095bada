package failover

import (
	"context"
	"errors"
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
	apiURL   string
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
	w.apiURL = api.URL
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

// claimer is node b's view (brave-owl, droplets[1]).
func (w *world) claimer(now *time.Time) *Claimer {
	md := metadata.New(w.meta.URL, &http.Client{Transport: headerRT{w.droplets[1].ID, http.DefaultTransport}})
	c := New("brave-owl", &countingAPI{API: w.api}, md)
	c.CoolOff = time.Minute
	c.HealthURL = func(string) string { return w.health.URL }
	c.Now = func() time.Time { return *now }
	return c
}

// countingAPI counts the DO API calls the claimer makes.
type countingAPI struct {
	API
	calls atomic.Int64
}

func (a *countingAPI) GetReservedIP(ctx context.Context, ip string) (cloud.ReservedIP, error) {
	a.calls.Add(1)
	return a.API.GetReservedIP(ctx, ip)
}

func (a *countingAPI) AssignReservedIP(ctx context.Context, ip string, id int) error {
	a.calls.Add(1)
	return a.API.AssignReservedIP(ctx, ip, id)
}

func calls(c *Claimer) int64 {
	api, _ := c.client()
	return api.(*countingAPI).calls.Load()
}

// deadMetadata answers nothing useful: the metadata service is down.
type deadMetadata struct{}

func (deadMetadata) DropletID(context.Context) (int, error) {
	return 0, context.DeadlineExceeded
}

func (deadMetadata) ReservedIPv4(context.Context) (string, bool, error) {
	return "", false, context.DeadlineExceeded
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
	if err != nil || res.Moved() {
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
	if err != nil || !res.Moved() {
		t.Fatalf("claim against a dead holder: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[1].ID {
		t.Fatal("the reserved IP did not move")
	}
	if res, _ := c.Claim(context.Background(), w.st, "again"); res.Moved() || res.Reason != "already here" {
		t.Fatalf("second claim: %+v", res)
	}
	// Someone moves it back; within the cool-off this node does not fight.
	if err := w.api.AssignReservedIP(context.Background(), w.st.ReservedIP, w.droplets[0].ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(5 * time.Second)
	if res, _ := c.Claim(context.Background(), w.st, "flap"); res.Moved() {
		t.Fatalf("moved again within the cool-off: %+v", res)
	}
	now = now.Add(2 * time.Minute)
	if res, err := c.Claim(context.Background(), w.st, "after cool-off"); err != nil || !res.Moved() {
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
	if err != nil || !res.Moved() {
		t.Fatalf("check with an unassigned IP: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[1].ID {
		t.Fatal("the reserved IP is not here after Check")
	}
	if res, _ := c.Check(context.Background(), w.st); res.Moved() {
		t.Fatalf("second check moved again: %+v", res)
	}
}

// The claim reads the Reserved IP and the droplet id from the state the
// node applied: with the metadata service down, a MASTER still takes the
// IP from a dead holder (the reproduction: a standby whose traffic to
// 169.254.169.254 is dropped became MASTER and never claimed).
func TestClaimNeedsNoMetadata(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.healthy.Store(false)
	now := time.Now()
	c := w.claimer(&now)
	c.Metadata = deadMetadata{}
	res, err := c.Claim(context.Background(), w.st, "vrrp BACKUP -> MASTER")
	if err != nil || !res.Moved() {
		t.Fatalf("claim with metadata down: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[1].ID {
		t.Fatal("the reserved IP did not move")
	}
	// Check with metadata down relies on the last API read while it is
	// recent, then reads the API again: no metadata call blocks it.
	now = now.Add(5 * time.Second)
	before := calls(c)
	if res, err := c.Check(context.Background(), w.st); err != nil || !res.Held() || res.Moved() {
		t.Fatalf("check after the move: %+v %v", res, err)
	}
	if got := calls(c) - before; got != 0 {
		t.Errorf("check right after a move made %d API calls, want 0", got)
	}
	now = now.Add(DefaultCheckBackoffMax + time.Second)
	if res, err := c.Check(context.Background(), w.st); err != nil || !res.Held() {
		t.Fatalf("check a minute later: %+v %v", res, err)
	}
	if got := calls(c) - before; got != 1 {
		t.Errorf("check after the backoff made %d API calls, want 1", got)
	}
}

// A MASTER without the IP while a healthy holder keeps it (VRRP cut) used
// to read the API every 5 s (720 calls an hour). Now the reads back off to
// one a minute, and a failed health check of the holder ends the backoff at
// once.
func TestCheckBacksOffWhileAHealthyHolderKeepsTheIP(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	now := time.Now()
	c := w.claimer(&now)
	ctx := context.Background()
	res, err := c.Claim(ctx, w.st, "vrrp BACKUP -> MASTER")
	if err != nil || res.Moved() || !(res.Outcome == Yielding) {
		t.Fatalf("claim against a healthy holder: %+v %v", res, err)
	}
	start := calls(c)
	for i := 0; i < 720; i++ { // an hour of checks, 5 s apart
		now = now.Add(5 * time.Second)
		res, err := c.Check(ctx, w.st)
		if err != nil || res.Moved() || !(res.Outcome == Yielding) {
			t.Fatalf("check %d: %+v %v", i, res, err)
		}
	}
	if got := calls(c) - start; got > 60 {
		t.Errorf("an hour of checks made %d DO API calls, want <= 60", got)
	}
	w.healthy.Store(false)
	now = now.Add(5 * time.Second)
	res, err = c.Check(ctx, w.st)
	if err != nil || !res.Moved() {
		t.Fatalf("check after the holder failed: %+v %v", res, err)
	}
	if w.holder(t) != w.droplets[1].ID {
		t.Fatal("the reserved IP did not move after the holder failed")
	}
}

// Verify says whether the node token works; a bad token is ErrAuth.
func TestVerifyToken(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	now := time.Now()
	c := w.claimer(&now)
	if err := c.Verify(context.Background()); err != nil {
		t.Fatalf("verify a good token: %v", err)
	}
	bad, err := cloud.New("wrong", cloud.Options{BaseURL: w.apiURL, RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	c.SetAPI(bad, nil)
	if err := c.Verify(context.Background()); !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("verify a bad token: %v, want ErrAuth", err)
	}
	if _, err := c.Claim(context.Background(), w.st, "MASTER"); !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("claim with a bad token: %v, want ErrAuth", err)
	}
}

// TestOutcomes: each way a Claim or Check ends has its own Outcome, and
// Held/Moved follow from it (never from Reason's text): a healthy holder
// is left alone (Yielding), a dead one loses the IP (Assigned), a second
// claim finds it here (AlreadyHere), a claim within the cool-off after
// someone moved it back is refused (CoolingOff), a state without a
// Reserved IP has none, and an error is Failed.
func TestOutcomes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	now := time.Now()
	c := w.claimer(&now)
	ctx := context.Background()
	type want struct {
		outcome     Outcome
		held, moved bool
	}
	check := func(what string, res Result, err error, wantErr bool, w want) {
		t.Helper()
		if (err != nil) != wantErr {
			t.Fatalf("%s: err %v, want error %v", what, err, wantErr)
		}
		if got := (want{res.Outcome, res.Held(), res.Moved()}); got != w {
			t.Errorf("%s: outcome %v held %v moved %v (reason %q), want %v held %v moved %v",
				what, got.outcome, got.held, got.moved, res.Reason, w.outcome, w.held, w.moved)
		}
	}
	res, err := c.Claim(ctx, w.st, "vrrp BACKUP -> MASTER")
	check("healthy holder", res, err, false, want{Yielding, false, false})
	w.healthy.Store(false)
	res, err = c.Claim(ctx, w.st, "vrrp BACKUP -> MASTER")
	check("dead holder", res, err, false, want{Assigned, true, true})
	res, err = c.Claim(ctx, w.st, "again")
	check("second claim", res, err, false, want{AlreadyHere, true, false})
	if err := w.api.AssignReservedIP(ctx, w.st.ReservedIP, w.droplets[0].ID); err != nil {
		t.Fatal(err)
	}
	now = now.Add(5 * time.Second)
	res, err = c.Claim(ctx, w.st, "flap")
	check("within the cool-off", res, err, false, want{CoolingOff, false, false})
	res, err = c.Check(ctx, &cluster.State{Nodes: w.st.Nodes})
	check("no reserved IP", res, err, false, want{NoReservedIP, false, false})
	c.SetAPI(nil, errors.New("token file unreadable"))
	res, err = c.Claim(ctx, w.st, "no client")
	check("no API client", res, err, true, want{Failed, false, false})
	if got := Assigned.String(); got != "assigned" {
		t.Errorf("Assigned.String() = %q", got)
	}
	// The zero Result is Unknown: it holds and moved nothing.
	check("zero Result", Result{}, nil, false, want{Unknown, false, false})
	if Unknown == NoReservedIP {
		t.Error("the zero Outcome is NoReservedIP")
	}
	for o, name := range map[Outcome]string{Unknown: "unknown", NoReservedIP: "no_reserved_ip", AlreadyHere: "already_here",
		Failed: "failed", Outcome(99): "Outcome(99)", Outcome(-1): "Outcome(-1)"} {
		b, err := o.MarshalText()
		if o.String() != name || string(b) != name || err != nil {
			t.Errorf("outcome %d: String %q, MarshalText %q %v; want %q", int(o), o.String(), b, err, name)
		}
	}
}
