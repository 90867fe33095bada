package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/testutil"
)

// TestTwoNodeDataPath boots two dynia nodes from real user-data, writes
// their cluster state the way the CLI does, and checks the data path the
// product promises: the Reserved IP → HAProxy (started by dynia-pull inside
// the droplet) → both apps over the VPC; after the holder is powered off
// and the Reserved IP reassigned through the API, it answers from the other.
// (Automatic failover by dynia-pull is tested end to end by the CLI tests.)
func TestTwoNodeDataPath(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "versitygw")
	testutil.NeedBinary(t, "haproxy")
	testutil.NeedBinary(t, "keepalived")
	pullBin := buildPull(t)
	ctx := context.Background()
	p, opts, info := upLab(t, pullBin, nil)
	dir := opts.Dir
	var ids []int
	t.Cleanup(func() { // before upLab's: the droplets' logs while they exist
		if t.Failed() {
			for _, id := range ids {
				for _, c := range []string{"pull", "haproxy", "keepalived"} {
					if b, err := os.ReadFile(filepath.Join(dropletDir(dir, id), "logs", c+".log")); err == nil {
						t.Logf("droplet %d %s.log:\n%s", id, c, b)
					}
				}
			}
		}
	})
	nodes := []string{"misty-owl", "brave-panda"}
	// The nodes' own Spaces key, as create-ha mints it: readwrite on the
	// state's bucket only. dynia-pull reads the state and writes its
	// reports with it.
	keyID, keySecret := mintSpacesKey(t, info, info.Bucket, "readwrite")
	for _, n := range nodes {
		ud, err := cloudinit.Render(cloudinit.Params{
			Cluster: "demo", NodeID: n, Hostname: "demo-" + n,
			Node:              nodeconfig.Config{StateURL: info.StateURL, Endpoint: info.S3Endpoint, Region: info.S3Region, PathStyle: true},
			SpacesAccessKeyID: keyID, SpacesSecretAccessKey: keySecret, DOToken: info.NodeToken,
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, createDroplet(t, info, "demo-"+n, string(ud)))
	}
	var ds []Droplet
	testutil.WaitFor(t, 15*time.Second, func() error {
		ds = nil
		for _, id := range ids {
			d, ok := dropletStatus(t, dir, id)
			if !ok {
				return fmt.Errorf("droplet %d not up yet", id)
			}
			ds = append(ds, d)
		}
		return nil
	})
	var rip struct {
		ReservedIP struct {
			IP string `json:"ip"`
		} `json:"reserved_ip"`
	}
	api(t, info, "POST", "/v2/reserved_ips", map[string]any{"droplet_id": ids[0]}, &rip)

	store, err := bucket.Open(ctx, info.StateURL, bucket.Options{Endpoint: info.S3Endpoint, Region: info.S3Region,
		AccessKeyID: info.AccessKeyID, SecretAccessKey: info.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	st := &cluster.State{SchemaVersion: cluster.SchemaVersion, Name: "demo", Region: "nyc3", Size: "s-1vcpu-1gb",
		Image: info.Image, ReservedIP: rip.ReservedIP.IP,
		App: cluster.App{Port: 8080, HealthPath: "/healthz"}, HA: cluster.HA{AdvertInterval: 1},
		CreatedAt: time.Now().UTC()}
	for i, d := range ds {
		role := cluster.RoleStandby
		if i == 0 {
			role = cluster.RoleActive
		}
		st.Nodes = append(st.Nodes, cluster.Node{ID: nodes[i], DropletID: d.ID, PublicIP: d.PublicIP, PrivateIP: d.PrivateIP,
			Priority: cluster.FirstPriority - i*cluster.PriorityStep, Role: role, Lifecycle: cluster.Ready, CreatedAt: time.Now().UTC()})
	}
	// A release for dynia-pull's runtime (the sandbox's process runtime
	// runs its demo app whatever the image).
	st, _, err = cluster.AddRelease(st, cluster.Release{Image: "demo-app@sha256:" + strings.Repeat("0", 64), Port: 8080}, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.NewStore(store).Create(ctx, st); err != nil {
		t.Fatal(err)
	}

	ripURL := "http://" + rip.ReservedIP.IP + "/"
	seen := map[string]bool{}
	testutil.WaitFor(t, 60*time.Second, func() error {
		for i := 0; i < 6; i++ {
			got, err := httpGet(ripURL, time.Second)
			if err != nil {
				return err
			}
			seen[got] = true
		}
		if !seen[nodes[0]+"\n"] || !seen[nodes[1]+"\n"] {
			return fmt.Errorf("answers through the Reserved IP so far: %v", seen)
		}
		return nil
	})

	// Both reports, written with the nodes' key.
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, n := range nodes {
			if _, err := store.Get(ctx, cluster.StatusKey("demo", n), ""); err != nil {
				return fmt.Errorf("report of %s: %w", n, err)
			}
		}
		return nil
	})

	// haproxy and keepalived run in the droplet outside dynia-pull's process
	// group (they outlive it); their output is in `sandbox logs`.
	ns0 := p.DropletNS(ids[0])
	for _, comm := range []string{"haproxy", "keepalived"} {
		if nsComms(t, ns0)[comm] == 0 {
			t.Errorf("no %s running in %s: %v", comm, ns0, nsComms(t, ns0))
		}
	}
	if rc, err := Logs(dir, strconv.Itoa(ids[0]), "haproxy"); err != nil {
		t.Errorf("Logs haproxy: %v", err)
	} else {
		b, _ := io.ReadAll(rc)
		rc.Close()
		if !strings.Contains(string(b), "[NOTICE]") {
			t.Errorf("sandbox logs --component haproxy has none of haproxy's own lines:\n%s", b)
		}
	}

	api(t, info, "POST", fmt.Sprintf("/v2/droplets/%d/actions", ids[0]), map[string]string{"type": "power_off"}, nil)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if d, _ := dropletStatus(t, dir, ids[0]); d.Status != "off" {
			return fmt.Errorf("status %q, want off", d.Status)
		}
		return nil
	})
	// A power cut stops every process of the droplet, not only dynia-pull.
	testutil.WaitFor(t, 10*time.Second, func() error {
		if left := nsComms(t, ns0); len(left) > 0 {
			return fmt.Errorf("processes left in powered-off %s: %v", ns0, left)
		}
		return nil
	})
	// Reassign, as dynia-pull's new MASTER would. The node may be doing it
	// at the same moment: 422 (pending event) is fine, the check below decides.
	if code, b := apiTry(t, info, "POST", "/v2/reserved_ips/"+rip.ReservedIP.IP+"/actions",
		map[string]any{"type": "assign", "droplet_id": ids[1]}); code >= 300 && code != 422 {
		t.Fatalf("assign reserved IP: %d %s", code, b)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		got, err := httpGet(ripURL, time.Second)
		if err != nil {
			return err
		}
		if got != nodes[1]+"\n" {
			return fmt.Errorf("after failover: %q, want only %s (the other node is off)", got, nodes[1])
		}
		return nil
	})
}

// nsComms counts the processes in a network namespace by program name.
func nsComms(t *testing.T, ns string) map[string]int {
	t.Helper()
	out, err := run(context.Background(), "ip", "netns", "pids", ns)
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", ns, err)
	}
	comms := map[string]int{}
	for _, pid := range strings.Fields(out) {
		if b, err := os.ReadFile("/proc/" + pid + "/comm"); err == nil {
			comms[strings.TrimSpace(string(b))]++
		}
	}
	return comms
}
