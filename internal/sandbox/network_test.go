package sandbox

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/testutil"
)

// appBooter runs the demo app (the test binary) answering the user-data
// text as its node id.
type appBooter struct{ bin string }

func (b appBooter) Boot(_ context.Context, ddir string, _ dropletNet, userData []byte) ([]procSpec, error) {
	return []procSpec{{
		Name: "app", Path: b.bin, Args: []string{"sandbox", "demo-app", "--listen", ":8080", "--id", string(userData)},
		Dir: ddir, LogPath: filepath.Join(ddir, "logs", "app.log"), PidPath: filepath.Join(ddir, "pids", "app.pid"),
	}}, nil
}

func addr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr()
	for i := 0; i < n; i++ {
		a = a.Next()
	}
	return a
}

// TestDropletNetwork drives the droplet manager directly (no simulator):
// reachability, metadata address, Reserved IP moves, power off/on, delete,
// and that Down leaves nothing behind.
func TestDropletNetwork(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "curl")
	ctx := context.Background()
	p := testPlan(t)
	dir := filepath.Join(t.TempDir(), "sandbox")
	bin := testBinary(t)
	log := testLogger(t)
	if err := writeJSON(manifestPath(dir), manifest{Prefix: p.Prefix, PublicRange: p.Public.String(), RouterNS: p.RouterNS(), HostVeth: p.HostVeth()}); err != nil {
		t.Fatal(err)
	}
	var mgr *manager
	t.Cleanup(func() {
		if mgr != nil {
			mgr.StopAll(ctx, time.Second)
		}
		if err := Down(ctx, dir); err != nil {
			t.Errorf("Down: %v", err)
		}
		assertClean(t, p, dir)
	})
	if err := setupRouter(ctx, p); err != nil {
		t.Fatal(err)
	}
	// A stand-in for the metadata service on the router's 169.254.169.254.
	md := supervise(procSpec{Name: "metadata", NetNS: p.RouterNS(), Path: bin,
		Args:    []string{"sandbox", "demo-app", "--listen", p.MetadataAddr(), "--id", "metadata"},
		LogPath: filepath.Join(dir, "logs", "metadata.log"), PidPath: filepath.Join(dir, "run", "metadata.pid")}, log)
	t.Cleanup(func() { md.Stop(ctx, time.Second) })

	mgr = newManager(dir, p, appBooter{bin}, log, nil)
	vpc := netip.MustParsePrefix("10.99.0.0/24")
	pubA, pubB := addr(p.Public, 2), addr(p.Public, 3)
	for i, id := range []int{101, 102} {
		err := mgr.Create(ctx, dropletSpec{ID: id, Name: fmt.Sprintf("d%d", id), Status: "active", VPC: "vpc-1",
			Private: addr(vpc, 2+i), PrivLen: 24, Gateway: addr(vpc, 1), Public: []netip.Addr{pubA, pubB}[i],
			UserData: []byte([]string{"node-a", "node-b"}[i])})
		if err != nil {
			t.Fatal(err)
		}
	}
	urlA, urlB := "http://"+pubA.String()+":8080/", "http://"+pubB.String()+":8080/"
	waitBody := func(url, want string) {
		t.Helper()
		testutil.WaitFor(t, 20*time.Second, func() error {
			got, err := httpGet(url, time.Second)
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("GET %s = %q, want %q", url, got, want)
			}
			return nil
		})
	}
	waitBody(urlA, "node-a\n")
	waitBody(urlB, "node-b\n")

	// Inside a droplet: the metadata address and the other droplet over the VPC.
	nsA := p.DropletNS(101)
	testutil.WaitFor(t, 10*time.Second, func() error {
		out, err := inNS(nsA, "curl", "-sf", "-m", "2", "http://169.254.169.254/")
		if err != nil || out != "metadata\n" {
			return fmt.Errorf("metadata from droplet: %q %v", out, err)
		}
		return nil
	})
	if out, err := inNS(nsA, "curl", "-sf", "-m", "2", "http://"+addr(vpc, 3).String()+":8080/"); err != nil || out != "node-b\n" {
		t.Errorf("droplet A → B over the VPC: %q %v", out, err)
	}

	// The Reserved IP follows its route.
	rip := addr(p.Public, 100)
	ripURL := "http://" + rip.String() + ":8080/"
	if err := mgr.AssignReservedIP(ctx, rip.String(), 101); err != nil {
		t.Fatal(err)
	}
	waitBody(ripURL, "node-a\n")
	start := time.Now()
	if err := mgr.AssignReservedIP(ctx, rip.String(), 102); err != nil {
		t.Fatal(err)
	}
	waitBody(ripURL, "node-b\n")
	t.Logf("reserved IP move: answered by the new holder %v after the route change", time.Since(start))
	if err := mgr.AssignReservedIP(ctx, rip.String(), 0); err != nil {
		t.Fatal(err)
	}
	wantSilence(t, ripURL)
	if err := mgr.AssignReservedIP(ctx, rip.String(), 101); err != nil {
		t.Fatal(err)
	}
	waitBody(ripURL, "node-a\n")

	// Power off: silence, processes gone; power on: back.
	if err := mgr.Power(ctx, 101, false); err != nil {
		t.Fatal(err)
	}
	wantSilence(t, urlA)
	wantSilence(t, ripURL)
	if out, _ := run(ctx, "ip", "netns", "pids", nsA); strings.TrimSpace(out) != "" {
		t.Errorf("processes still running in a powered-off droplet: %q", out)
	}
	waitBody(urlB, "node-b\n")
	if err := mgr.Power(ctx, 101, true); err != nil {
		t.Fatal(err)
	}
	waitBody(urlA, "node-a\n")
	waitBody(ripURL, "node-a\n")

	ds, rs := mgr.Snapshot()
	if len(ds) != 2 || len(rs) != 1 || rs[0].DropletID != 101 || ds[0].Namespace != nsA {
		t.Errorf("snapshot = %+v %+v", ds, rs)
	}

	// Delete: namespace gone, its veth too.
	if err := mgr.Delete(ctx, 101); err != nil {
		t.Fatal(err)
	}
	if netnsExists(nsA) {
		t.Errorf("namespace %s survived delete", nsA)
	}
	wantSilence(t, ripURL) // the Reserved IP still points at a deleted droplet
}
