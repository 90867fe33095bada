package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/testutil"
)

// nextImage is the second snapshot TestUpgrade's sandbox offers
// (`sandbox up --extra-image`): the same node binaries under a newer
// dynia-node-* name, so an upgrade shows as the droplets' image id.
const nextImage = "dynia-node-e2e-next"

// imageIDs reads the simulated DO's private images, id by name.
func (e *sandboxEnv) imageIDs() map[string]int {
	e.t.Helper()
	var out struct {
		Images []struct {
			ID   int    `json:"id"`
			Name string `json:"name"`
		} `json:"images"`
	}
	e.apiGet("/v2/images?private=true&per_page=200", &out)
	ids := map[string]int{}
	for _, im := range out.Images {
		ids[im.Name] = im.ID
	}
	return ids
}

// TestUpgrade is `dynia cluster upgrade` on a 3-node cluster under a
// bounded request loop through the Reserved IP: every node is replaced
// by a droplet of the newer image, standbys first, the Reserved IP's
// holder last; no request fails, and the Reserved IP is held by one of the
// cluster's droplets at every look, from before the upgrade to after it.
func TestUpgrade(t *testing.T) {
	e := upSandbox(t, "--extra-image", nextImage)
	ids := e.imageIDs()
	var base string
	for name := range ids {
		if name != nextImage {
			base = name
		}
	}
	if len(ids) != 2 || ids[nextImage] == 0 {
		t.Fatalf("the sandbox offers images %v, want its own and %s", ids, nextImage)
	}
	// The cluster starts on the sandbox's own image, by id: the extra one
	// is the newest, which create-ha would pick by default.
	e.mustRun("node", "create-ha", "--name", "up", "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "2m",
		"--snapshot", strconv.Itoa(ids[base]), "--image", e.demo("v1"))
	e.mustRun("node", "add", "--name", "up", "--count", "2", "--timeout", "2m")
	e.waitUp("up")
	rip := e.reservedIP("up")
	before := e.nodes("up")
	if len(before) != 3 {
		t.Fatalf("%d nodes before the upgrade", len(before))
	}
	cl := e.cloud()
	images := func() map[int]int { // droplet → image, the cluster's droplets
		ds, err := cl.ListDropletsByTag(context.Background(), cloud.ClusterTag("up"))
		if err != nil {
			t.Fatal(err)
		}
		out := map[int]int{}
		for _, d := range ds {
			out[d.ID] = d.ImageID
		}
		return out
	}
	for d, im := range images() {
		if im != ids[base] {
			t.Fatalf("droplet %d on image %d before the upgrade, want %s (%d)", d, im, base, ids[base])
		}
	}

	// The Reserved IP's holder, every 200 ms while the upgrade runs.
	var mu sync.Mutex
	var unheld []string
	holders := map[int]bool{}
	watch, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for watch.Err() == nil {
			r, err := cl.GetReservedIP(watch, rip)
			mu.Lock()
			switch {
			case err != nil && watch.Err() == nil:
				unheld = append(unheld, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
			case err == nil && r.DropletID == 0:
				unheld = append(unheld, time.Now().Format("15:04:05.000")+": unassigned")
			case err == nil:
				holders[r.DropletID] = true
			}
			mu.Unlock()
			select {
			case <-watch.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()

	url := "http://" + rip + "/"
	load := startLoad(url, 50*time.Millisecond, 5*time.Minute)
	testutil.WaitFor(t, 30*time.Second, func() error { return load.healthyFor(5) }) // the loop answers before the upgrade
	start := time.Now()
	e.mustRun("cluster", "upgrade", "--name", "up", "--timeout", "3m", "--health-timeout", "2m")
	took := time.Since(start)
	testutil.WaitFor(t, 30*time.Second, func() error { return load.healthyFor(20) })
	total, failed, outage, answered := load.finish()
	stopWatch()
	wg.Wait()
	t.Logf("UPGRADE of 3 nodes took %v: %d of %d requests failed (longest outage %v; slowest answer %v; answered by %v)",
		took.Round(time.Millisecond), failed, total, outage, load.slowest(), answered)
	if failed != 0 {
		t.Errorf("%d of %d requests through the Reserved IP failed during the upgrade: %v", failed, total, load.failures(10))
	}

	after := e.nodes("up")
	if len(after) != 3 {
		t.Fatalf("%d nodes after the upgrade: %+v", len(after), after)
	}
	drops := images()
	for _, r := range after {
		if row(before, r.ID).ID != "" {
			t.Errorf("node %s is still there after the upgrade", r.ID)
		}
		if drops[r.DropletID] != ids[nextImage] {
			t.Errorf("node %s: droplet %d on image %d, want %s (%d)", r.ID, r.DropletID, drops[r.DropletID], nextImage, ids[nextImage])
		}
		// What the node itself reports: the image cloud-init wrote beside
		// pull.json, and dynia-pull's version.
		if r.Image != strconv.Itoa(ids[nextImage]) || r.Version == "" {
			t.Errorf("node %s reports image %q version %q, want image %d and a version", r.ID, r.Image, r.Version, ids[nextImage])
		}
	}
	if len(drops) != 3 {
		t.Errorf("%d droplets tagged for the cluster after the upgrade, want 3: %v", len(drops), drops)
	}
	var was, is []int
	for _, r := range before {
		was = append(was, r.Priority)
	}
	for _, r := range after {
		is = append(is, r.Priority)
	}
	slices.Sort(was)
	slices.Sort(is)
	if !slices.Equal(was, is) {
		t.Errorf("priorities %v after the upgrade, were %v", is, was)
	}
	if h := e.ripHolder(rip); row(after, after[0].ID).DropletID != h || after[0].Role != "active" {
		t.Errorf("Reserved IP on droplet %d, the active node after the upgrade: %+v", h, after[0])
	}
	mu.Lock()
	defer mu.Unlock()
	if len(unheld) > 0 {
		t.Errorf("the Reserved IP was not held at %d look(s): %v", len(unheld), unheld)
	}
	t.Logf("Reserved IP holders seen during the upgrade: %d droplets", len(holders))
	if _, err := get(url); err != nil {
		t.Errorf("the Reserved IP does not answer after the upgrade: %v", err)
	}
}
