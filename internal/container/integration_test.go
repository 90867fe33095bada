package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
	"golang.org/x/sys/unix"

	"github.com/dynia/dynia/internal/demoimage"
	"github.com/dynia/dynia/internal/testutil"
)

const (
	regUser   = "dynia-pull"
	regPass   = "registry-pass-7f3a"
	appSecret = "app-secret-value-91c2"
	nodeID    = "node-1"
)

// TestRuntime drives a real dockerd (Debian's 20.10, API 1.41) in a node
// namespace of a NetLab, pulling from a real docker-registry with htpasswd
// authentication, through one release sequence: v1, v2 beside it, v1
// stopped, a broken release and a crashing one refused, a power cycle,
// the metadata block, GC, and a tag moved in the registry. The steps
// depend on each other, so the first failure ends the test.
//
// It runs twice: with dockerd's defaults, and with the daemon options
// docs/image.md proposes for the node image (no userland proxy,
// live-restore, one download at a time).
func TestRuntime(t *testing.T) {
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"dockerd defaults", nil},
		{"proposed dockerd options", proposedDockerdFlags},
	} {
		t.Run(c.name, func(t *testing.T) { testRuntime(t, c.flags...) })
	}
}

// proposedDockerdFlags are docs/image.md's proposal for daemon.json, as flags.
var proposedDockerdFlags = []string{"--userland-proxy=false", "--live-restore", "--max-concurrent-downloads=1", "--max-concurrent-uploads=1"}

func testRuntime(t *testing.T, dockerdFlags ...string) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	lab := testutil.NewNetLab(t, 1)
	node := lab.Nodes[0]
	reg := testutil.StartRegistry(t, lab.RootAddr.String(), testutil.WithHtpasswd(regUser, regPass))
	ipt := nsIptables(node.NS)
	// As at boot: the block goes in before dockerd starts (it creates
	// DOCKER-USER, which dockerd then adopts).
	if err := BlockMetadata(ctx, ipt); err != nil {
		t.Fatalf("BlockMetadata before dockerd: %v", err)
	}
	d := testutil.StartDockerd(t, node.NS, append([]string{"--insecure-registry=" + reg.Addr}, dockerdFlags...)...)
	rt, err := New(Options{Host: d.Host, Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	// Build and push the demo images, then resolve each tag to its digest
	// as dynia does: a release names the digest, never the tag.
	pushAuth := remote.WithAuth(&authn.Basic{Username: regUser, Password: regPass})
	digests := map[string]string{}
	for _, v := range []string{"v1", "v2", demoimage.Broken} {
		img, err := demoimage.Build(v)
		if err != nil {
			t.Fatal(err)
		}
		pushed, err := demoimage.Push(ctx, reg.Addr, demoimage.Repo, v, img, pushAuth)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(mustTag(t, reg.Addr+"/"+demoimage.Repo+":"+v), pushAuth, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("resolve %s: %v", v, err)
		}
		if desc.Digest.String() != pushed {
			t.Fatalf("tag %s resolves to %s, pushed %s", v, desc.Digest, pushed)
		}
		digests[v] = pushed
	}
	ref := func(v string) string { return reg.Addr + "/" + demoimage.Repo + "@" + digests[v] }
	goodAuth := Auth{Username: regUser, Password: regPass}
	spec := func(v string, release int64) Spec {
		return Spec{
			Cluster: "blue-fox", Node: nodeID, Release: release, Image: ref(v),
			BindIP: node.Addr, ContainerPort: demoimage.AppPort,
			Env: map[string]string{"DYNIA_NODE_ID": nodeID, "APP_SECRET": appSecret},
		}
	}
	insts := map[string]Instance{}
	var idleRSS map[string]int
	var pullV1 time.Duration

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("api version", func(t *testing.T) {
		v, err := rt.APIVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sv, err := rt.cli.ServerVersion(ctx, client.ServerVersionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want := sv.APIVersion
		if versions.LessThan(client.MaxAPIVersion, want) {
			want = client.MaxAPIVersion
		}
		if v != want {
			t.Errorf("negotiated API %s, daemon speaks %s, client at most %s: want %s", v, sv.APIVersion, client.MaxAPIVersion, want)
		}
		t.Logf("dockerd %s, Engine API %s (negotiated %s)", sv.Version, sv.APIVersion, v)
		idleRSS = daemonRSS(t, d)
	})

	step("registry auth", func(t *testing.T) {
		for _, c := range []struct {
			name string
			auth Auth
		}{
			{"wrong password", Auth{Username: regUser, Password: "not-the-password"}},
			{"anonymous", Auth{}},
		} {
			_, err := rt.Pull(ctx, ref("v1"), c.auth)
			if err == nil {
				t.Fatalf("%s: Pull succeeded", c.name)
			}
			msg := err.Error()
			t.Logf("%s: %v", c.name, err)
			if !errors.Is(err, ErrRegistryAuth) || !strings.Contains(msg, "registry "+reg.Addr) || !strings.Contains(msg, ref("v1")) {
				t.Errorf("%s: Pull error %q: want ErrRegistryAuth naming registry %s and image %s", c.name, msg, reg.Addr, ref("v1"))
			}
			if strings.Contains(msg, "not-the-password") || strings.Contains(msg, regPass) {
				t.Errorf("%s: Pull error shows a password: %s", c.name, msg)
			}
		}
	})

	step("pull by digest", func(t *testing.T) {
		if _, err := rt.Pull(ctx, reg.Addr+"/"+demoimage.Repo+":v1", goodAuth); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("Pull by tag: %v, want ErrInvalidSpec", err)
		}
		for _, v := range []string{"v1", "v2", demoimage.Broken} {
			t0 := time.Now()
			pulled, err := rt.Pull(ctx, ref(v), goodAuth)
			if err != nil || !pulled {
				t.Fatalf("Pull %s = %v, %v; want pulled", v, pulled, err)
			}
			if v == "v1" {
				pullV1 = time.Since(t0)
			}
		}
		// Present: no second pull, even without credentials.
		if pulled, err := rt.Pull(ctx, ref("v1"), Auth{}); err != nil || pulled {
			t.Errorf("second Pull v1 = %v, %v; want skipped", pulled, err)
		}
	})

	step("start v1", func(t *testing.T) {
		t0 := time.Now()
		inst, err := rt.Start(ctx, spec("v1", 1))
		if err != nil {
			t.Fatal(err)
		}
		started := time.Since(t0)
		if err := rt.WaitHealthy(ctx, inst, "/healthz", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("measure: v1 pull %v + start %v + healthy %v = %v", pullV1.Round(time.Millisecond), started.Round(time.Millisecond),
			(time.Since(t0) - started).Round(time.Millisecond), (pullV1 + time.Since(t0)).Round(time.Millisecond))
		if got, want := inst.HostAddr.Addr(), node.Addr; got != want {
			t.Errorf("published on %s, want %s", got, want)
		}
		if p := inst.HostAddr.Port(); p < DefaultPorts.First || p > DefaultPorts.Last {
			t.Errorf("host port %d outside %v", p, DefaultPorts)
		}
		if got, want := get(t, inst, "/"), nodeID+" v1\n"; got != want {
			t.Errorf("GET / = %q, want %q", got, want)
		}
		want := Instance{Name: Name(1, digests["v1"]), Cluster: "blue-fox", Node: nodeID, Release: 1, Image: ref("v1"), Digest: digests["v1"], State: "running"}
		if got := (Instance{Name: inst.Name, Cluster: inst.Cluster, Node: inst.Node, Release: inst.Release, Image: inst.Image, Digest: inst.Digest, State: inst.State}); got != want {
			t.Errorf("instance = %+v, want %+v", got, want)
		}
		checkHostConfig(t, rt, inst, DefaultMemory, false)
		// Re-running Start adopts the running container.
		again, err := rt.Start(ctx, spec("v1", 1))
		if err != nil || again.ID != inst.ID {
			t.Errorf("second Start = %s, %v; want the running %s", again.ID, err, inst.ID)
		}
		insts["v1"] = inst
	})

	step("start v2 beside v1", func(t *testing.T) {
		s := spec("v2", 2)
		s.Memory, s.ReadOnlyRootfs = 64<<20, true
		inst, err := rt.Start(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.WaitHealthy(ctx, inst, "/healthz", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if inst.HostAddr == insts["v1"].HostAddr {
			t.Fatalf("v2 got v1's address %s", inst.HostAddr)
		}
		if got, want := get(t, inst, "/"), nodeID+" v2\n"; got != want {
			t.Errorf("v2 GET / = %q, want %q", got, want)
		}
		if got, want := get(t, insts["v1"], "/"), nodeID+" v1\n"; got != want {
			t.Errorf("v1 GET / = %q, want %q (both run)", got, want)
		}
		checkHostConfig(t, rt, inst, 64<<20, true)
		insts["v2"] = inst
		busy := daemonRSS(t, d)
		for _, n := range []string{"dockerd", "containerd"} {
			t.Logf("measure: %s RSS idle %d KiB, with two demo containers %d KiB", n, idleRSS[n], busy[n])
		}
		t.Logf("measure: per container, shim %d KiB + docker-proxy %d KiB + app (init + demo-app) %d KiB",
			busy["shim"]/2, busy["docker-proxy"]/2, busy["app"]/2)
	})

	step("stop v1", func(t *testing.T) {
		if err := rt.Stop(ctx, insts["v1"], 10*time.Second); err != nil {
			t.Fatal(err)
		}
		list, err := rt.List(ctx, "blue-fox")
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, i := range list {
			got[i.Name] = i.State
		}
		want := map[string]string{insts["v1"].Name: "exited", insts["v2"].Name: "running"}
		if !maps.Equal(got, want) {
			t.Errorf("List states = %v, want %v", got, want)
		}
		if len(list) != 2 || list[0].Release != 2 || list[0].StartedAt.IsZero() || list[1].FinishedAt.IsZero() {
			t.Errorf("List = %+v: want v2 (release 2, started) first, then v1 (finished)", list)
		}
		if other, err := rt.List(ctx, "other-cluster"); err != nil || len(other) != 0 {
			t.Errorf("List(other-cluster) = %v, %v; want none", other, err)
		}
		if s := fmt.Sprintf("%+v %#v", list, list); strings.Contains(s, appSecret) {
			t.Errorf("List shows the secret env value")
		}
	})

	step("broken release", func(t *testing.T) {
		inst, err := rt.Start(ctx, spec(demoimage.Broken, 3))
		if err != nil {
			t.Fatal(err)
		}
		// It answers 500 forever: the wait has to end by its timeout.
		err = rt.WaitHealthy(ctx, inst, "/healthz", 3*time.Second)
		var ue *UnhealthyError
		if !errors.As(err, &ue) {
			t.Fatalf("WaitHealthy(broken) = %v, want *UnhealthyError", err)
		}
		if ue.Exited || !strings.Contains(ue.Reason, "500 Internal Server Error") {
			t.Errorf("reason %q (exited %v): want no 200, last 500", ue.Reason, ue.Exited)
		}
		if !slices.ContainsFunc(ue.Logs, func(l string) bool { return strings.Contains(l, "DEMO_APP_MODE=broken") }) {
			t.Errorf("logs %q: want the app's line about DEMO_APP_MODE=broken", ue.Logs)
		}
		// dynia-pull's side: the healthy release is untouched.
		if err := rt.WaitHealthy(ctx, insts["v2"], "/healthz", 30*time.Second); err != nil {
			t.Errorf("v2 after the broken release: %v", err)
		}
		if got, want := get(t, insts["v2"], "/"), nodeID+" v2\n"; got != want {
			t.Errorf("v2 GET / = %q, want %q", got, want)
		}
		if err := rt.Remove(ctx, inst); err == nil {
			t.Errorf("Remove of a running container succeeded; want it refused")
		}
		if err := rt.Stop(ctx, inst, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := rt.Remove(ctx, inst); err != nil {
			t.Fatal(err)
		}
		if err := rt.Remove(ctx, inst); err != nil {
			t.Errorf("second Remove: %v, want nil (gone)", err)
		}
	})

	step("crashing release", func(t *testing.T) {
		s := spec("v1", 4)
		s.Env["DEMO_APP_MODE"] = "exit"
		inst, err := rt.Start(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		err = rt.WaitHealthy(ctx, inst, "/healthz", 60*time.Second)
		var ue *UnhealthyError
		if !errors.As(err, &ue) {
			t.Fatalf("WaitHealthy(crashing) = %v, want *UnhealthyError", err)
		}
		// -1: the restart policy started it again before a poll saw it
		// exited, and Docker cleared the code (a loaded machine).
		if !ue.Exited || (ue.ExitCode != 3 && ue.ExitCode != -1) {
			t.Errorf("exited %v, code %d (%s): want exited with status 3 (or -1: restarted before seen)", ue.Exited, ue.ExitCode, ue.Reason)
		}
		if !slices.ContainsFunc(ue.Logs, func(l string) bool { return strings.Contains(l, "exiting with status 3") }) {
			t.Errorf("logs %q: want the app's last words", ue.Logs)
		}
		if strings.Contains(err.Error(), appSecret) {
			t.Errorf("error shows the secret env value: %v", err)
		}
		if err := rt.Stop(ctx, inst, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := rt.Remove(ctx, inst); err != nil {
			t.Fatal(err)
		}
	})

	step("power cycle", func(t *testing.T) {
		d.PowerCut()
		d.Start()
		// unless-stopped: the running release comes back by itself…
		testutil.WaitFor(t, 90*time.Second, func() error {
			st, err := rt.Inspect(ctx, insts["v2"])
			if err != nil {
				return err
			}
			if st.State != "running" {
				return fmt.Errorf("v2 is %s", st.State)
			}
			return nil
		})
		st, _ := rt.Inspect(ctx, insts["v2"])
		if err := rt.WaitHealthy(ctx, st, "/healthz", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		if got, want := get(t, st, "/"), nodeID+" v2\n"; got != want {
			t.Errorf("v2 GET / after the power cycle = %q, want %q", got, want)
		}
		// …and the release dynia stopped stays stopped.
		old, err := rt.Inspect(ctx, insts["v1"])
		if err != nil {
			t.Fatal(err)
		}
		if old.State != "exited" {
			t.Errorf("stopped v1 is %s after the power cycle, want exited", old.State)
		}
		insts["v2"] = st
	})

	step("metadata blocked", func(t *testing.T) {
		// DigitalOcean's metadata service is off the droplet: here, in the
		// router namespace, reached through the node's default route.
		mustCmd(t, "ip", "-n", lab.Router, "addr", "add", MetadataIP+"/32", "dev", "lo")
		listenIn(t, lab.Router, MetadataIP+":80", "metadata: user-data with secrets\n")
		// Idempotent, also after dockerd added its own rules.
		for i := 0; i < 2; i++ {
			if err := BlockMetadata(ctx, ipt); err != nil {
				t.Fatal(err)
			}
		}
		out, err := ipt(ctx, "-S", DockerUserChain)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out), MetadataIP); n != 1 {
			t.Errorf("DOCKER-USER holds %d rules for %s, want 1:\n%s", n, MetadataIP, out)
		}
		// The node itself reaches it (dynia-pull reads its metadata).
		body, err := node.Command("curl", "-sS", "-m", "10", "http://"+MetadataIP+"/").CombinedOutput()
		if err != nil || !strings.Contains(string(body), "user-data") {
			t.Fatalf("node → metadata: %v %s; want the answer", err, body)
		}
		// A container reaches the network (the registry, off the node)…
		if code, out := fetchFromContainer(t, ctx, rt, ref("v1"), "http://"+reg.Addr+"/v2/"); code != 0 || !strings.Contains(out, "401") {
			t.Errorf("container → registry: exit %d %q; want an answer (401)", code, out)
		}
		// …but not the metadata service.
		if code, out := fetchFromContainer(t, ctx, rt, ref("v1"), "http://"+MetadataIP+"/"); code != 1 || !strings.Contains(out, "error") {
			t.Errorf("container → metadata: exit %d %q; want no answer", code, out)
		}
	})

	step("gc keeps current and previous", func(t *testing.T) {
		res, err := rt.GC(ctx, []string{ref("v2"), digests["v1"]})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{insts["v1"].Name}; !slices.Equal(res.Containers, want) {
			t.Errorf("GC removed containers %v, want %v (the stopped v1; v2 runs)", res.Containers, want)
		}
		if want := []string{ref(demoimage.Broken)}; !slices.Equal(res.Images, want) {
			t.Errorf("GC removed images %v, want %v", res.Images, want)
		}
		for v, want := range map[string]bool{"v1": true, "v2": true, demoimage.Broken: false} {
			if got, err := rt.imagePresent(ctx, ref(v)); err != nil || got != want {
				t.Errorf("image %s present = %v (%v), want %v", v, got, err, want)
			}
		}
		list, err := rt.List(ctx, "")
		if err != nil || len(list) != 1 || list[0].ID != insts["v2"].ID {
			t.Errorf("after GC List = %+v, %v; want only v2", list, err)
		}
		if err := rt.WaitHealthy(ctx, insts["v2"], "/healthz", 30*time.Second); err != nil {
			t.Errorf("v2 after GC: %v", err)
		}
	})

	step("a moved tag does not change a digest pull", func(t *testing.T) {
		// Someone pushes v2 under the tag v1.
		img, err := demoimage.Build("v2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := demoimage.Push(ctx, reg.Addr, demoimage.Repo, "v1", img, pushAuth); err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(mustTag(t, reg.Addr+"/"+demoimage.Repo+":v1"), pushAuth, remote.WithContext(ctx))
		if err != nil || desc.Digest.String() != digests["v2"] {
			t.Fatalf("tag v1 now = %v (%v), want v2's %s", desc, err, digests["v2"])
		}
		if _, err := rt.cli.ImageRemove(ctx, ref("v1"), client.ImageRemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if pulled, err := rt.Pull(ctx, ref("v1"), goodAuth); err != nil || !pulled {
			t.Fatalf("Pull v1 by digest = %v, %v", pulled, err)
		}
		ins, err := rt.cli.ImageInspect(ctx, ref("v1"))
		if err != nil {
			t.Fatal(err)
		}
		if ins.Config == nil || !slices.Contains(ins.Config.Env, "DEMO_APP_VERSION=v1") {
			t.Errorf("image pulled by v1's digest has env %v, want DEMO_APP_VERSION=v1", ins.Config)
		}
	})
}

// checkHostConfig asserts the container runs with the runtime's choices,
// and that the secret env value is in no label.
func checkHostConfig(t *testing.T, rt *Runtime, inst Instance, memory int64, readOnly bool) {
	t.Helper()
	res, err := rt.cli.ContainerInspect(context.Background(), inst.ID, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	hc := c.HostConfig
	if hc.RestartPolicy.Name != container.RestartPolicyUnlessStopped {
		t.Errorf("restart policy %q, want unless-stopped", hc.RestartPolicy.Name)
	}
	if hc.Memory != memory || hc.MemorySwap != memory {
		t.Errorf("memory %d swap %d, want %d both", hc.Memory, hc.MemorySwap, memory)
	}
	if hc.ReadonlyRootfs != readOnly || (readOnly && hc.Tmpfs["/tmp"] == "") {
		t.Errorf("read-only root %v, tmpfs %v; want read-only %v with a /tmp tmpfs", hc.ReadonlyRootfs, hc.Tmpfs, readOnly)
	}
	if hc.PidsLimit == nil || *hc.PidsLimit != DefaultPidsLimit {
		t.Errorf("pids limit %v, want %d", hc.PidsLimit, DefaultPidsLimit)
	}
	if hc.LogConfig.Type != LogDriver || hc.LogConfig.Config["max-size"] != LogMaxSize || hc.LogConfig.Config["max-file"] != LogMaxFile {
		t.Errorf("log config %+v, want %s %s×%s", hc.LogConfig, LogDriver, LogMaxFile, LogMaxSize)
	}
	if hc.Privileged || hc.NetworkMode != "bridge" || hc.Init == nil || !*hc.Init || !slices.Contains(hc.SecurityOpt, "no-new-privileges:true") {
		t.Errorf("privileged %v, network %q, init %v, security %v: want unprivileged, bridge, init, no-new-privileges",
			hc.Privileged, hc.NetworkMode, hc.Init, hc.SecurityOpt)
	}
	for k, v := range c.Config.Labels {
		if strings.Contains(v, appSecret) {
			t.Errorf("label %s holds the secret env value", k)
		}
	}
	// Documented: the env, secrets included, is in the container's config.
	if !slices.Contains(c.Config.Env, "APP_SECRET="+appSecret) {
		t.Errorf("env %v misses APP_SECRET", c.Config.Env)
	}
}

// fetchFromContainer runs the demo binary's one-shot `fetch URL` in a
// container on the default bridge (no restart policy) and returns its exit
// code and output.
func fetchFromContainer(t *testing.T, ctx context.Context, rt *Runtime, image, url string) (int, string) {
	t.Helper()
	res, err := rt.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Cmd: []string{"fetch", url}},
		HostConfig: &container.HostConfig{NetworkMode: "bridge"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = rt.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
	}()
	wait := rt.cli.ContainerWait(ctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if _, err := rt.cli.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	var code int
	select {
	case r := <-wait.Result:
		code = int(r.StatusCode)
	case err := <-wait.Error:
		t.Fatalf("wait for the fetch container: %v", err)
	}
	logs, err := rt.Logs(ctx, Instance{ID: res.ID, Name: "fetch"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	return code, strings.Join(logs, "\n")
}

// listenIn serves body on addr inside network namespace ns: the socket is
// made on a thread switched into ns, and a socket stays in the namespace it
// was made in.
func listenIn(t *testing.T, ns, addr, body string) {
	t.Helper()
	ln := func() net.Listener {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			t.Fatal(err)
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
				panic(fmt.Sprintf("cannot return to the test's network namespace: %v", err))
			}
		}()
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends at Close
	t.Cleanup(func() { _ = srv.Close() })
}

func get(t *testing.T, inst Instance, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + inst.HostAddr.String() + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", inst.HostAddr, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nsIptables(ns string) Iptables {
	return func(ctx context.Context, args ...string) ([]byte, error) {
		full := append([]string{"--net=/run/netns/" + ns, "iptables", "-w"}, args...)
		out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
		if err != nil {
			return out, fmt.Errorf("iptables %v in %s: %w: %s", args, ns, err, strings.TrimSpace(string(out)))
		}
		return out, nil
	}
}

// daemonRSS is the resident memory in KiB of dockerd, containerd, and
// summed over the running containers: their shims, docker-proxy processes
// and the containers' own processes.
func daemonRSS(t *testing.T, d *testutil.Dockerd) map[string]int {
	t.Helper()
	out := map[string]int{"dockerd": rssKiB(d.PID()), "containerd": rssKiB(d.ContainerdPID())}
	for _, pid := range procChildren(d.PID()) {
		out["docker-proxy"] += rssKiB(pid)
	}
	// A container's init (docker-init) is a child of its shim.
	for _, pid := range procChildren(1) {
		if comm(pid) != "containerd-shim" || !strings.Contains(cmdline(pid), d.Dir) {
			continue
		}
		out["shim"] += rssKiB(pid)
		for _, c := range procChildren(pid) {
			out["app"] += rssKiB(c)
			for _, gc := range procChildren(c) {
				out["app"] += rssKiB(gc)
			}
		}
	}
	return out
}

func procField(pid int, file, key string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func rssKiB(pid int) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(procField(pid, "status", "VmRSS"), " kB"))
	return n
}

func comm(pid int) string { return procField(pid, "status", "Name") }

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.ReplaceAll(string(b), "\x00", " ")
}

func procChildren(ppid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if procField(pid, "status", "PPid") == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}

func mustCmd(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v %s", name, args, err, out)
	}
}

// testWriter sends the runtime's log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
