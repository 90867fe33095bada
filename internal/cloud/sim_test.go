package cloud_test

// These tests drive the real godo client through internal/cloud against the
// in-process DigitalOcean simulator (internal/dosim) over HTTP.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
)

const adminToken = "dop_v1_admin_secret_for_tests"

type env struct {
	sim *dosim.Server
	url string
	c   *cloud.Client
}

// newEnv starts a simulator behind httptest and a cloud client on an
// all-scopes token. Small retry and poll waits keep the tests quick.
func newEnv(t *testing.T, opts dosim.Options) *env {
	t.Helper()
	// Every exchange is checked against DO's OpenAPI subset: the requests
	// godo sends for each cloud operation, and the simulator's answers.
	v, err := dosim.NewSpecValidator(dosim.SpecPath())
	if err != nil {
		t.Fatal(err)
	}
	opts.Validator = v
	sim := dosim.New(opts)
	ts := httptest.NewServer(sim)
	t.Cleanup(func() {
		if err := v.Err(); err != nil {
			t.Errorf("OpenAPI violations:\n%v", err)
		}
		t.Logf("exchanges validated against the spec: %v", v.Checked())
		if len(v.Checked()) == 0 {
			t.Error("the spec validator checked nothing")
		}
	})
	t.Cleanup(ts.Close)
	t.Cleanup(sim.Close)
	sim.AddToken(adminToken, dosim.FullScopes()...)
	e := &env{sim: sim, url: ts.URL}
	e.c = e.client(t, adminToken, nil)
	return e
}

func (e *env) client(t *testing.T, token string, log *slog.Logger) *cloud.Client {
	t.Helper()
	c, err := cloud.New(token, cloud.Options{
		BaseURL:      e.url,
		RetryWaitMin: 2 * time.Millisecond,
		RetryWaitMax: 20 * time.Millisecond,
		PollInterval: 5 * time.Millisecond,
		PollMax:      40 * time.Millisecond,
		Logger:       log,
		UserAgent:    "dynia-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// activeDroplets creates n droplets in region and waits for them.
func (e *env) activeDroplets(t *testing.T, ctx context.Context, cluster, region string, n int) []cloud.Droplet {
	t.Helper()
	vpc, _, err := e.c.EnsureVPC(ctx, "dynia-"+cluster, region, "")
	if err != nil {
		t.Fatal(err)
	}
	var specs []cloud.DropletSpec
	for i := range n {
		id := fmt.Sprintf("n%d", i)
		specs = append(specs, cloud.DropletSpec{
			Name: "dynia-" + cluster + "-" + id, Region: region, Size: "s-1vcpu-1gb", Image: "debian-12-x64",
			UserData: "#cloud-config\n", VPCUUID: vpc.ID, Monitoring: true,
			Tags: []string{cloud.BaseTag, cloud.ClusterTag(cluster), cloud.NodeTag(id)},
		})
	}
	ds, err := e.c.CreateDroplets(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	ds, err = e.c.WaitActive(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func TestDropletsCreateWaitDeleteInParallel(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{DropletActiveDelay: 100 * time.Millisecond})
	ctx := ctxT(t)

	vpc, created, err := e.c.EnsureVPC(ctx, "dynia-alpha", "fra1", "10.20.0.0/20")
	if err != nil || !created {
		t.Fatalf("EnsureVPC: %v created=%v", err, created)
	}
	var specs []cloud.DropletSpec
	for i := range 6 {
		id := fmt.Sprintf("n%d", i)
		specs = append(specs, cloud.DropletSpec{
			Name: "dynia-alpha-" + id, Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64",
			UserData: "#cloud-config\nruncmd: [true]\n", VPCUUID: vpc.ID,
			Tags: []string{cloud.BaseTag, cloud.ClusterTag("alpha"), cloud.NodeTag(id)},
		})
	}
	ds, err := e.c.CreateDroplets(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != len(specs) {
		t.Fatalf("created %d droplets, want %d", len(ds), len(specs))
	}
	ids := make([]int, len(ds))
	for i, d := range ds {
		if d.Name != specs[i].Name {
			t.Errorf("droplet %d is %q, want %q (spec order)", i, d.Name, specs[i].Name)
		}
		if d.Status != "new" || d.PublicIP != "" {
			t.Errorf("fresh droplet %+v: want status new without addresses", d)
		}
		ids[i] = d.ID
	}

	active, err := e.c.WaitActive(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	prefix := netip.MustParsePrefix(vpc.IPRange)
	for i, d := range active {
		if d.ID != ids[i] || d.Status != "active" || d.PublicIP == "" || d.Region != "fra1" {
			t.Errorf("active droplet %+v", d)
		}
		if a, err := netip.ParseAddr(d.PrivateIP); err != nil || !prefix.Contains(a) {
			t.Errorf("droplet %d private IP %q not in VPC %s", d.ID, d.PrivateIP, vpc.IPRange)
		}
		if !slices.Contains(d.Tags, cloud.ClusterTag("alpha")) {
			t.Errorf("droplet %d tags %v", d.ID, d.Tags)
		}
	}

	listed, err := e.c.ListDropletsByTag(ctx, cloud.ClusterTag("alpha"))
	if err != nil || len(listed) != len(specs) {
		t.Fatalf("ListDropletsByTag: %d droplets, %v", len(listed), err)
	}

	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i, id := range ids {
		wg.Go(func() { errs[i] = e.c.DeleteDroplet(ctx, id) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteDroplet(ctx, ids[0]); err != nil {
		t.Errorf("deleting a deleted droplet: %v (want nil)", err)
	}
	if _, err := e.c.GetDroplet(ctx, ids[0]); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("GetDroplet after delete: %v, want ErrNotFound", err)
	}
	if left, err := e.c.ListDropletsByTag(ctx, cloud.ClusterTag("alpha")); err != nil || len(left) != 0 {
		t.Errorf("after delete: %d droplets, %v", len(left), err)
	}
	calls := e.c.Calls()
	if calls["POST /v2/droplets"] != len(specs) || calls["DELETE /v2/droplets/{id}"] != len(specs)+1 {
		t.Errorf("calls %v", calls)
	}
	t.Logf("API calls: total %d %v", e.c.Total(), calls)
}

func TestCreateDropletsReportsPartialFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	ds, err := e.c.CreateDroplets(ctx, []cloud.DropletSpec{
		{Name: "ok-1", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
		{Name: "bad", Region: "nowhere", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
		{Name: "ok-2", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
	})
	if err == nil {
		t.Fatal("create in an unknown region succeeded")
	}
	if !strings.Contains(err.Error(), "create droplet bad") {
		t.Errorf("error does not name the droplet: %v", err)
	}
	if len(ds) != 2 || ds[0].Name != "ok-1" || ds[1].Name != "ok-2" {
		t.Errorf("created %+v, want ok-1 and ok-2 so the caller can clean up", ds)
	}
}

func TestPowerOffOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{ActionDelay: 30 * time.Millisecond})
	ctx := ctxT(t)
	d := e.activeDroplets(t, ctx, "pow", "fra1", 1)[0]
	if err := e.c.PowerOff(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.c.GetDroplet(ctx, d.ID); err != nil || got.Status != "off" {
		t.Fatalf("after power off: %+v %v", got, err)
	}
	if err := e.c.PowerOn(ctx, d.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := e.c.GetDroplet(ctx, d.ID); err != nil || got.Status != "active" {
		t.Fatalf("after power on: %+v %v", got, err)
	}
}

func TestReservedIPCreateWithDroplet(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{ActionDelay: 50 * time.Millisecond})
	ctx := ctxT(t)
	d := e.activeDroplets(t, ctx, "rip", "fra1", 1)[0]
	rip, err := e.c.CreateReservedIP(ctx, d.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rip.DropletID != d.ID || rip.Locked || rip.Region != "fra1" || rip.IP == "" {
		t.Fatalf("reserved IP %+v, want assigned to %d and unlocked", rip, d.ID)
	}
	got, err := e.c.GetReservedIP(ctx, rip.IP)
	if err != nil || got != rip {
		t.Fatalf("GetReservedIP = %+v, %v; want %+v", got, err, rip)
	}
	all, err := e.c.ListReservedIPs(ctx)
	if err != nil || len(all) != 1 || all[0].IP != rip.IP {
		t.Fatalf("ListReservedIPs = %+v, %v", all, err)
	}

	if err := e.c.UnassignReservedIP(ctx, rip.IP); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.c.GetReservedIP(ctx, rip.IP); got.DropletID != 0 {
		t.Fatalf("after unassign: %+v", got)
	}
	if err := e.c.DeleteReservedIP(ctx, rip.IP); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteReservedIP(ctx, rip.IP); err != nil {
		t.Errorf("deleting a deleted reserved IP: %v", err)
	}
	if _, err := e.c.GetReservedIP(ctx, rip.IP); !errors.Is(err, cloud.ErrNotFound) {
		t.Errorf("GetReservedIP after delete: %v", err)
	}

	regional, err := e.c.CreateReservedIPInRegion(ctx, "fra1")
	if err != nil || regional.DropletID != 0 || regional.Region != "fra1" {
		t.Fatalf("CreateReservedIPInRegion = %+v, %v", regional, err)
	}
	if err := e.c.AssignReservedIP(ctx, regional.IP, d.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.c.GetReservedIP(ctx, regional.IP); got.DropletID != d.ID || got.Locked {
		t.Fatalf("after assign: %+v", got)
	}
}

// Two assigns race on one reserved IP: the second hits DO's 422 "pending
// event" while the first action runs, retries with backoff, and wins.
func TestReservedIPReassignWhileLocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{ActionDelay: 20 * time.Millisecond})
	ctx := ctxT(t)
	ds := e.activeDroplets(t, ctx, "swap", "fra1", 2)
	a, b := ds[0], ds[1]
	rip, err := e.c.CreateReservedIP(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}

	e.sim.PauseActions()
	first := make(chan error, 1)
	go func() { first <- e.c.AssignReservedIP(ctx, rip.IP, b.ID) }()
	// Wait until the first assign is in flight (the IP is locked).
	for {
		got, err := e.c.GetReservedIP(ctx, rip.IP)
		if err != nil {
			t.Fatal(err)
		}
		if got.Locked {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("reserved IP never locked")
		case <-time.After(2 * time.Millisecond):
		}
	}
	second := make(chan error, 1)
	go func() { second <- e.c.AssignReservedIP(ctx, rip.IP, a.ID) }()
	// Let the second one be refused a few times before the queue moves.
	for e.rejected422() < 3 {
		select {
		case <-ctx.Done():
			t.Fatal("second assign never got a 422")
		case <-time.After(2 * time.Millisecond):
		}
	}
	e.sim.ResumeActions()
	if err := <-first; err != nil {
		t.Fatalf("first assign: %v", err)
	}
	if err := <-second; err != nil {
		t.Fatalf("second assign: %v", err)
	}
	got, err := e.c.GetReservedIP(ctx, rip.IP)
	if err != nil || got.DropletID != a.ID || got.Locked {
		t.Fatalf("final %+v, %v; want on droplet %d", got, err, a.ID)
	}
	t.Logf("422 pending-event answers: %d; calls %v", e.rejected422(), e.c.Calls())
}

func (e *env) rejected422() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if c.Method == http.MethodPost && strings.HasSuffix(c.Path, "/actions") && c.Status == http.StatusUnprocessableEntity {
			n++
		}
	}
	return n
}

func TestEnsureVPCAndFirewallAreIdempotent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)

	v1, created, err := e.c.EnsureVPC(ctx, "dynia-beta", "fra1", "10.30.0.0/20")
	if err != nil || !created || !v1.Dynia {
		t.Fatalf("first EnsureVPC: %v created=%v dynia=%v", err, created, v1.Dynia)
	}
	e.c.ResetCalls()
	v2, created, err := e.c.EnsureVPC(ctx, "dynia-beta", "fra1", "10.30.0.0/20")
	if err != nil || created || v2 != v1 {
		t.Fatalf("second EnsureVPC: %+v created=%v %v; want %+v", v2, created, err, v1)
	}
	if calls := e.c.Calls(); calls["POST /v2/vpcs"] != 0 || e.c.Total() != 1 {
		t.Errorf("second EnsureVPC made calls %v, want one list", calls)
	}
	// VPC names are unique per account: the same name in another region is
	// refused before any create is attempted.
	e.c.ResetCalls()
	if _, _, err := e.c.EnsureVPC(ctx, "dynia-beta", "ams3", ""); err == nil || !strings.Contains(err.Error(), "taken") || e.c.Calls()["POST /v2/vpcs"] != 0 {
		t.Fatalf("same name in another region: %v, calls %v", err, e.c.Calls())
	}
	other, created, err := e.c.EnsureVPC(ctx, "dynia-beta-ams3", "ams3", "")
	if err != nil || !created || other.ID == v1.ID || other.Region != "ams3" {
		t.Fatalf("VPC in another region: %+v created=%v %v", other, created, err)
	}

	spec := cloud.FirewallSpec{Name: "dynia-beta", Tag: cloud.ClusterTag("beta"), AdminCIDRs: []string{"192.0.2.10/32"}, AppPort: 8080, MeshPort: 51820}
	f1, created, err := e.c.EnsureFirewall(ctx, spec)
	if err != nil || !created {
		t.Fatalf("first EnsureFirewall: %v created=%v", err, created)
	}
	e.c.ResetCalls()
	f2, created, err := e.c.EnsureFirewall(ctx, spec)
	if err != nil || created || f2.ID != f1.ID {
		t.Fatalf("second EnsureFirewall: %+v created=%v %v", f2, created, err)
	}
	if calls := e.c.Calls(); e.c.Total() != 1 || calls["GET /v2/firewalls"] != 1 {
		t.Errorf("second EnsureFirewall made calls %v, want one list", calls)
	}

	spec.AdminCIDRs = []string{"192.0.2.10/32", "198.18.7.0/24"}
	e.c.ResetCalls()
	f3, created, err := e.c.EnsureFirewall(ctx, spec)
	if err != nil || created || f3.ID != f1.ID {
		t.Fatalf("EnsureFirewall with new admin CIDRs: %+v created=%v %v", f3, created, err)
	}
	if calls := e.c.Calls(); calls["PUT /v2/firewalls/{id}"] != 1 {
		t.Errorf("changed firewall: calls %v, want one update", calls)
	}
	e.c.ResetCalls()
	if _, created, err := e.c.EnsureFirewall(ctx, spec); err != nil || created || e.c.Total() != 1 {
		t.Errorf("after update, EnsureFirewall: created=%v %v calls %v", created, err, e.c.Calls())
	}

	if got, err := e.c.GetFirewall(ctx, f1.ID); err != nil || got.ID != f1.ID || got.Name != spec.Name {
		t.Fatalf("GetFirewall = %+v, %v", got, err)
	}
	if err := e.c.DeleteFirewall(ctx, f1.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.GetFirewall(ctx, f1.ID); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("GetFirewall after delete: %v, want ErrNotFound", err)
	}
	if err := e.c.DeleteFirewall(ctx, f1.ID); err != nil {
		t.Errorf("deleting a deleted firewall: %v", err)
	}
	// The first VPC of a region becomes its default, which DO never deletes.
	if err := e.c.DeleteVPC(ctx, other.ID); err == nil {
		t.Error("deleted a region's default VPC")
	}
	spare, _, err := e.c.EnsureVPC(ctx, "dynia-beta-spare", "ams3", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteVPC(ctx, spare.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteVPC(ctx, spare.ID); err != nil {
		t.Errorf("deleting a deleted VPC: %v", err)
	}
}

func TestTransientErrorsAreRetriedAndBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	d := e.activeDroplets(t, ctx, "flaky", "fra1", 1)[0]

	// A burst of 429s (with retry-after, capped at RetryWaitMax) then success.
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Status: http.StatusTooManyRequests, Count: 3})
	e.c.ResetCalls()
	if _, err := e.c.GetDroplet(ctx, d.ID); err != nil {
		t.Fatalf("GetDroplet through 3×429: %v", err)
	}
	if n := e.c.Calls()["GET /v2/droplets/{id}"]; n != 4 {
		t.Errorf("GET attempts %d, want 4 (3 refused + 1)", n)
	}

	// 500s on a POST: godo retries those too; exactly one droplet results.
	e.sim.ClearFaults()
	e.sim.InjectFault(dosim.Fault{Method: "POST", PathPrefix: "/v2/droplets", Status: http.StatusInternalServerError, Count: 2})
	e.c.ResetCalls()
	ds, err := e.c.CreateDroplets(ctx, []cloud.DropletSpec{{Name: "after-500", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"}})
	if err != nil || len(ds) != 1 {
		t.Fatalf("create through 2×500: %v", err)
	}
	if n := e.c.Calls()["POST /v2/droplets"]; n != 3 {
		t.Errorf("POST attempts %d, want 3", n)
	}

	// A storm that never ends: bounded by RetryMax (4 retries = 5 attempts).
	e.sim.ClearFaults()
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/reserved_ips", Status: http.StatusTooManyRequests})
	e.c.ResetCalls()
	start := time.Now()
	_, err = e.c.ListReservedIPs(ctx)
	var ae *cloud.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("endless 429: %v, want an APIError 429", err)
	}
	if n := e.c.Total(); n != 5 {
		t.Errorf("attempts in a 429 storm: %d, want 5", n)
	}
	t.Logf("429 storm gave up after %v: %v", time.Since(start), err)

	e.sim.ClearFaults()
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/regions", Status: http.StatusInternalServerError})
	if _, err := e.c.ListRegions(ctx); !errors.As(err, &ae) || ae.StatusCode != 500 {
		t.Fatalf("endless 500: %v", err)
	}
}

func TestFindSnapshotNewestInRegion(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := func(name string, age int, regions ...string) int {
		return e.sim.RegisterImage(dosim.Image{Name: name, Regions: regions, CreatedAt: base.AddDate(0, 0, age)})
	}
	// More than one page (200) of unrelated images.
	for i := range 230 {
		reg(fmt.Sprintf("other-%03d", i), i, "fra1")
	}
	reg("dynia-node-old", 1, "fra1", "ams3")
	want := reg("dynia-node-mid", 5, "fra1")
	reg("dynia-node-new-but-ams", 9, "ams3")
	reg("unrelated-newest", 400, "fra1")

	img, err := e.c.FindSnapshot(ctx, "dynia-node-", "fra1")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != want || img.Name != "dynia-node-mid" || !img.CreatedAt.Equal(base.AddDate(0, 0, 5)) {
		t.Fatalf("FindSnapshot = %+v, want id %d", img, want)
	}
	if n := e.c.Calls()["GET /v2/images"]; n < 2 {
		t.Errorf("images list read %d pages, want all (≥2)", n)
	}

	_, err = e.c.FindSnapshot(ctx, "dynia-node-", "lon1")
	var se *cloud.SnapshotError
	if !errors.Is(err, cloud.ErrNoSnapshot) || !errors.As(err, &se) || !slices.Equal(se.Elsewhere, []string{"ams3", "fra1"}) {
		t.Fatalf("FindSnapshot in lon1: %v", err)
	}
	if _, err := e.c.FindSnapshot(ctx, "nope-", "fra1"); !errors.Is(err, cloud.ErrNoSnapshot) {
		t.Fatalf("FindSnapshot with unknown prefix: %v", err)
	}

	// The snapshot id as a string is a valid droplet image.
	ds, err := e.c.CreateDroplets(ctx, []cloud.DropletSpec{{Name: "from-snap", Region: "fra1", Size: "s-1vcpu-1gb", Image: fmt.Sprint(img.ID)}})
	if err != nil || len(ds) != 1 {
		t.Fatalf("create from snapshot: %v", err)
	}
}

// The least-privilege node token moves the reserved IP and reads droplets,
// and nothing else.
func TestNodeScopedToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	ds := e.activeDroplets(t, ctx, "scope", "fra1", 2)
	rip, err := e.c.CreateReservedIP(ctx, ds[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	const nodeToken = "dop_v1_node_secret_for_tests"
	e.sim.AddToken(nodeToken, dosim.NodeScopes()...)
	node := e.client(t, nodeToken, nil)

	if _, err := node.GetDroplet(ctx, ds[1].ID); err != nil {
		t.Fatalf("node token GetDroplet: %v", err)
	}
	if err := node.AssignReservedIP(ctx, rip.IP, ds[1].ID); err != nil {
		t.Fatalf("node token AssignReservedIP: %v", err)
	}
	if got, err := node.GetReservedIP(ctx, rip.IP); err != nil || got.DropletID != ds[1].ID {
		t.Fatalf("node token GetReservedIP = %+v, %v", got, err)
	}
	_, err = node.CreateDroplets(ctx, []cloud.DropletSpec{{Name: "x", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"}})
	var ae *cloud.APIError
	if !errors.Is(err, cloud.ErrAuth) || !errors.As(err, &ae) || ae.StatusCode != http.StatusForbidden {
		t.Fatalf("node token CreateDroplets: %v, want 403 ErrAuth", err)
	}
	if _, err := node.CreateReservedIPInRegion(ctx, "fra1"); !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("node token CreateReservedIPInRegion: %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), nodeToken) {
		t.Fatal("token in error")
	}
}

func TestBadTokenIsErrAuthAndNeverPrinted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const bad = "dop_v1_wrong_secret_value"
	c := e.client(t, bad, log)
	_, err := c.Account(ctx)
	if !errors.Is(err, cloud.ErrAuth) {
		t.Fatalf("Account with a bad token: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(err.Error(), bad) || strings.Contains(logs.String(), bad) {
		t.Fatal("token leaked into the error or the logs")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestCatalogAndAccount(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	regions, err := e.c.ListRegions(ctx)
	if err != nil || !slices.ContainsFunc(regions, func(r cloud.Region) bool { return r.Slug == "fra1" && r.Available }) {
		t.Fatalf("ListRegions = %+v, %v", regions, err)
	}
	sizes, err := e.c.ListSizes(ctx)
	if err != nil || !slices.ContainsFunc(sizes, func(s cloud.Size) bool { return s.Slug == "s-1vcpu-1gb" }) {
		t.Fatalf("ListSizes = %+v, %v", sizes, err)
	}
	acct, err := e.c.Account(ctx)
	if err != nil || acct.ReservedIPLimit == 0 {
		t.Fatalf("Account = %+v, %v", acct, err)
	}
}

func TestRetriesDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{})
	ctx := ctxT(t)
	c, err := cloud.New(adminToken, cloud.Options{BaseURL: e.url, RetryMax: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	if _, err := c.Account(ctx); err != nil {
		t.Fatal(err)
	}
	e.sim.InjectFault(dosim.Fault{PathPrefix: "/v2/account", Status: http.StatusServiceUnavailable, Count: 1})
	if _, err := c.Account(ctx); err == nil {
		t.Fatal("503 without retries succeeded")
	}
	if n := c.Calls()["GET /v2/account"]; n != 2 {
		t.Errorf("calls %v, want 2 GET /v2/account", c.Calls())
	}
}

// TestWaitsPollThroughTransientErrors: a wait whose poll fails with a 5xx
// (after godo's retries, none here) polls on, and gives up after
// five such polls in a row rather than waiting out its deadline.
func TestWaitsPollThroughTransientErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dosim.Options{DropletActiveDelay: 50 * time.Millisecond})
	ctx := ctxT(t)
	c, err := cloud.New(adminToken, cloud.Options{BaseURL: e.url, RetryMax: -1, PollInterval: 10 * time.Millisecond, PollMax: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	ds, err := c.CreateDroplets(ctx, []cloud.DropletSpec{{Name: "blip", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"}})
	if err != nil {
		t.Fatal(err)
	}
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Status: http.StatusServiceUnavailable, Count: 4})
	if _, err := c.WaitActive(ctx, []int{ds[0].ID}); err != nil {
		t.Fatalf("wait through 4 polls answered 503: %v", err)
	}
	e.sim.ClearFaults()
	e.sim.InjectFault(dosim.Fault{Method: "GET", PathPrefix: "/v2/droplets/", Status: http.StatusServiceUnavailable})
	c.ResetCalls()
	_, err = c.WaitActive(ctx, []int{ds[0].ID})
	var ae *cloud.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("wait against an API that stays down: %v, want the 503", err)
	}
	if n := c.Calls()["GET /v2/droplets/{id}"]; n != 5 {
		t.Errorf("polls before giving up: %d, want 5", n)
	}
	// A permanent error (404) ends the wait at once.
	e.sim.ClearFaults()
	c.ResetCalls()
	if _, err := c.WaitActive(ctx, []int{999999}); !errors.Is(err, cloud.ErrNotFound) {
		t.Fatalf("wait for a missing droplet: %v", err)
	}
	if n := c.Calls()["GET /v2/droplets/{id}"]; n != 1 {
		t.Errorf("polls for a missing droplet: %d, want 1", n)
	}
}

func TestTransient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&cloud.APIError{StatusCode: 429}, true},
		{&cloud.APIError{StatusCode: 503}, true},
		{&cloud.APIError{StatusCode: 404}, false},
		{&cloud.APIError{StatusCode: 422}, false},
		{fmt.Errorf("get: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), true},
		{fmt.Errorf("get: %w", context.Canceled), false},
		{errors.New("droplet 3 is archive"), false},
	} {
		if got := cloud.Transient(tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	// A request that outlives the client's timeout (RequestTimeout) is
	// transient; its error matches context.DeadlineExceeded too.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	resp, err := (&http.Client{Timeout: 50 * time.Millisecond}).Get(slow.URL)
	if err == nil {
		resp.Body.Close()
	}
	if err == nil || !cloud.Transient(err) {
		t.Errorf("a request timeout: Transient(%v) = false, want true", err)
	}
}
