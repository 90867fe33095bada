package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/dynia/dynia/internal/demoimage"
	"github.com/dynia/dynia/internal/testutil"
)

type appNode struct {
	Node          string     `json:"node"`
	Release       int64      `json:"release"`
	Image         string     `json:"image"`
	State         string     `json:"state"`
	Healthy       bool       `json:"healthy"`
	FailedRelease int64      `json:"failed_release"`
	Since         *time.Time `json:"since"`
	Error         string     `json:"error"`
	Logs          []string   `json:"logs"`
}

func (e *sandboxEnv) appStatus(name string) []appNode {
	e.t.Helper()
	var v struct {
		Nodes []appNode `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(e.mustRun("app", "status", "--name", name, "-o", "json").stdout), &v); err != nil {
		e.t.Fatal(err)
	}
	return v.Nodes
}

// digest is the sandbox registry's digest of a demo version.
func (e *sandboxEnv) digest(version string) string {
	for _, img := range e.info.Images {
		if img.Tag == version {
			return img.Digest
		}
	}
	e.t.Fatalf("no demo image %s in the sandbox status", version)
	return ""
}

// loads are the two request loops every release change runs under: GETs on
// new connections and POSTs on kept-alive ones.
type loads struct{ gets, posts *loadLoop }

func startLoads(url string) loads {
	return loads{startLoad(url, 40*time.Millisecond, 5*time.Minute), startPosts(url, 40*time.Millisecond, 5*time.Minute)}
}

// waitAnswered is loadLoop.waitAnswered for both loops.
func (l loads) waitAnswered(t testing.TB, since time.Time, n int) {
	t.Helper()
	l.gets.waitAnswered(t, since, n)
	l.posts.waitAnswered(t, since, n)
}

// finish stops both and returns every answer's version, failing the test
// on a single failed request.
func (l loads) finish(t *testing.T, what string) map[string]int {
	t.Helper()
	versions := map[string]int{}
	for kind, loop := range map[string]*loadLoop{"GET": l.gets, "keep-alive POST": l.posts} {
		samples := loop.sorted()
		total, failed, _, _ := loop.finish()
		for _, s := range samples {
			if s.OK {
				versions[versionOf(s.Body)]++
			}
		}
		t.Logf("%s: %d of %d %ss failed", what, failed, total, kind)
		if failed != 0 {
			t.Errorf("%s: %d of %d %ss failed", what, failed, total, kind)
		}
	}
	return versions
}

// TestAppReleases is issue 12's end to end: v1 on three nodes; v2 rolled
// out under load with zero failed requests and every node on v2's digest;
// broken halts after its first node with v2 serving everywhere and the
// failing node's last lines in `app status`; a rollback to v1 with zero
// failed requests; a moved tag changes nothing nodes run; a container
// cannot reach the metadata service; a power-cycled node brings its
// release back without the CLI.
func TestAppReleases(t *testing.T) {
	e := upSandbox(t)
	rip := e.newCluster("shop", 3)
	url := "http://" + rip + "/"
	v1, v2 := e.digest("v1"), e.digest("v2")
	onDigest := func(want string) {
		t.Helper()
		for _, n := range e.appStatus("shop") {
			if !strings.HasSuffix(n.Image, "@"+want) || !n.Healthy || n.State != "running" {
				t.Errorf("node %s: %+v, want %s running healthy", n.Node, n, want)
			}
		}
	}
	onDigest(v1)

	l := startLoads(url)
	l.waitAnswered(t, time.Time{}, 25)
	e.mustRun("app", "deploy", "--name", "shop", "--image", e.demo("v2"), "--soak", "2s")
	l.waitAnswered(t, time.Now(), 50)
	got := l.finish(t, "deploy v2")
	onDigest(v2)
	if got["v2"] == 0 {
		t.Errorf("no answer from v2 during the deploy: %v", got)
	}

	// broken: the first node in the order fails its health check, keeps
	// v2, and the others never start it.
	l = startLoads(url)
	r := e.run("app", "deploy", "--name", "shop", "--image", e.demo("broken"), "--soak", "2s", "--health-timeout", "10s")
	got = l.finish(t, "deploy broken")
	if r.code != 1 || !strings.Contains(r.stderr, "release 3 failed on") || !strings.Contains(r.stderr, "old release keeps serving") {
		t.Fatalf("deploy broken: exit %d\n%s", r.code, r.stderr)
	}
	if got["broken"] != 0 || got["v2"] == 0 {
		t.Errorf("answers during the broken deploy: %v, want v2 only", got)
	}
	failed := 0
	for _, n := range e.appStatus("shop") {
		switch {
		case n.FailedRelease == 3:
			failed++
			if len(n.Logs) == 0 || !strings.Contains(n.Error, "500") {
				t.Errorf("the failing node %s reports %+v; want its reason and last log lines", n.Node, n)
			}
		case n.Release != 2 || !n.Healthy:
			t.Errorf("node %s left v2: %+v", n.Node, n)
		}
	}
	if failed != 1 {
		t.Errorf("%d nodes tried the broken release, want exactly the first", failed)
	}
	status := e.mustRun("app", "status", "--name", "shop")
	if !strings.Contains(status.stdout, "last lines of release 3") {
		t.Errorf("app status shows no log lines of the failed release:\n%s", status.stdout)
	}

	l = startLoads(url)
	e.mustRun("app", "rollback", "--name", "shop", "--to", "1")
	l.waitAnswered(t, time.Now(), 50)
	l.finish(t, "rollback to 1")
	onDigest(v1)
	hist := e.mustRun("app", "history", "--name", "shop").stdout
	for _, want := range []string{"rollback to 1", "failed", "rolled-out"} {
		if !strings.Contains(hist, want) {
			t.Errorf("app history lacks %q:\n%s", want, hist)
		}
	}

	// The tag moves (v2's image pushed as v1): nodes run the digest they
	// were given, also after a power cycle (which pulls nothing new).
	src, err := name.ParseReference(e.demo("v2"), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(src)
	if err != nil {
		t.Fatal(err)
	}
	dst, _ := name.NewTag(e.demo("v1"), name.Insecure)
	if err := remote.Tag(dst, desc); err != nil {
		t.Fatal(err)
	}
	rows := e.nodes("shop")
	standby := rows[len(rows)-1]
	ctx := context.Background()
	if err := e.cloud().PowerOff(ctx, standby.DropletID); err != nil {
		t.Fatal(err)
	}
	poweredOn := time.Now()
	if err := e.cloud().PowerOn(ctx, standby.DropletID); err != nil {
		t.Fatal(err)
	}
	// Its container came back (Docker's restart policy) and the new
	// dynia-pull adopted it: the release runs since after the power-on.
	testutil.WaitFor(t, 2*time.Minute, func() error {
		for _, n := range e.appStatus("shop") {
			if n.Node == standby.ID && (n.Release != 4 || !n.Healthy || !strings.HasSuffix(n.Image, "@"+v1) ||
				n.Since == nil || n.Since.Before(poweredOn.Add(-time.Second))) {
				return fmt.Errorf("the power-cycled node reports %+v", n)
			}
		}
		return nil
	})
	e.waitUp("shop")
	onDigest(v1)

	// A container cannot open the metadata service; its node can.
	ns := e.namespace(standby.DropletID)
	sock := filepath.Join(e.dir, "droplets", strconv.Itoa(standby.DropletID), "docker", "docker.sock")
	out, err := exec.Command("docker", "-H", "unix://"+sock, "ps", "-q", "--filter", "label=dynia.release=4").CombinedOutput()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		t.Fatalf("no container of release 4 on %s: %v %q", standby.ID, err, out)
	}
	fetch := exec.Command("docker", "-H", "unix://"+sock, "exec", id, demoimage.BinaryPath, "fetch", "http://169.254.169.254/metadata/v1/id")
	if out, err := fetch.CombinedOutput(); err == nil {
		t.Errorf("a container reached the metadata service: %s", out)
	} else {
		t.Logf("container → metadata: %s", strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "curl", "-sf", "--max-time", "3", "http://169.254.169.254/metadata/v1/id").CombinedOutput(); err != nil {
		t.Errorf("the node itself cannot reach the metadata service: %v %s", err, out)
	}
}
