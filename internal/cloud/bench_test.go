package cloud_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
)

// The benchmarks report API calls per operation (what counts against DO's
// 250/minute budget), not wall time: the simulator answers instantly.

func benchClient(b *testing.B, opts dosim.Options) (*dosim.Server, *cloud.Client) {
	b.Helper()
	sim := dosim.New(opts)
	ts := httptest.NewServer(sim)
	b.Cleanup(ts.Close)
	b.Cleanup(sim.Close)
	c, err := cloud.New("bench", cloud.Options{BaseURL: ts.URL, PollInterval: time.Millisecond, PollMax: 10 * time.Millisecond,
		RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	return sim, c
}

// BenchmarkClusterCreate: network, firewall, three droplets, wait, reserved IP.
func BenchmarkClusterCreate(b *testing.B) {
	_, c := benchClient(b, dosim.Options{DropletActiveDelay: 20 * time.Millisecond, ActionDelay: 5 * time.Millisecond})
	ctx := context.Background()
	i, calls := 0, 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("b%d", i)
		vpc, _, err := c.EnsureVPC(ctx, "dynia-"+name, "fra1", "")
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.EnsureFirewall(ctx, cloud.FirewallSpec{Name: "dynia-" + name, Tag: cloud.ClusterTag(name), AdminCIDRs: []string{"192.0.2.1/32"}, AppPort: 8080, MeshPort: 51820}); err != nil {
			b.Fatal(err)
		}
		var specs []cloud.DropletSpec
		for n := range 3 {
			specs = append(specs, cloud.DropletSpec{Name: fmt.Sprintf("dynia-%s-%d", name, n), Region: "fra1", Size: "s-1vcpu-1gb",
				Image: "debian-12-x64", VPCUUID: vpc.ID, Tags: []string{cloud.BaseTag, cloud.ClusterTag(name)}})
		}
		ds, err := c.CreateDroplets(ctx, specs)
		if err != nil {
			b.Fatal(err)
		}
		ids := []int{ds[0].ID, ds[1].ID, ds[2].ID}
		if _, err := c.WaitActive(ctx, ids); err != nil {
			b.Fatal(err)
		}
		rip, err := c.CreateReservedIP(ctx, ids[0])
		if err != nil {
			b.Fatal(err)
		}
		// Tear down outside the measured calls.
		calls += c.Total()
		for _, id := range ids {
			_ = c.DeleteDroplet(ctx, id)
		}
		_ = c.DeleteReservedIP(ctx, rip.IP)
		c.ResetCalls()
	}
	b.ReportMetric(float64(calls)/float64(i), "calls/op")
}

// BenchmarkFailover: what dynia-pull spends moving the reserved IP.
func BenchmarkFailover(b *testing.B) {
	_, c := benchClient(b, dosim.Options{ActionDelay: 5 * time.Millisecond})
	ctx := context.Background()
	ds, err := c.CreateDroplets(ctx, []cloud.DropletSpec{
		{Name: "a", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
		{Name: "b", Region: "fra1", Size: "s-1vcpu-1gb", Image: "debian-12-x64"},
	})
	if err != nil {
		b.Fatal(err)
	}
	ids := []int{ds[0].ID, ds[1].ID}
	if _, err := c.WaitActive(ctx, ids); err != nil {
		b.Fatal(err)
	}
	rip, err := c.CreateReservedIP(ctx, ids[0])
	if err != nil {
		b.Fatal(err)
	}
	c.ResetCalls()
	i := 0
	for b.Loop() {
		i++
		if err := c.AssignReservedIP(ctx, rip.IP, ids[i%2]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(c.Total())/float64(b.N), "calls/op")
}
