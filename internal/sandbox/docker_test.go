package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/container"
	"github.com/dynia/dynia/internal/demoimage"
	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/testutil"
)

// buildDemoApp writes the demo app binary (compiled by internal/demoimage
// with the go command: tests may, the sandbox may not) for the sandbox to
// build its demo images around.
func buildDemoApp(t *testing.T) string {
	t.Helper()
	testutil.NeedBinary(t, "go")
	bin, err := demoimage.Binary()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "dynia-demo-app")
	if err := os.WriteFile(p, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSandboxDocker boots two dynia nodes from user-data with the docker
// runtime and checks that each droplet is a place where the app runtime
// works, as a droplet from the node image is: its own dockerd (in its
// namespace, answering on the socket pull.json names), the sandbox
// registry with the demo images reachable from the root namespace and
// from droplets, a demo image pulled by digest and run by
// internal/container answering on the droplet's private IP, a power cut
// that leaves nothing of the droplet running and a power-on that brings
// the container back, and Down (after serve crashed) leaving nothing.
func TestSandboxDocker(t *testing.T) {
	testutil.NeedRoot(t)
	for _, b := range append([]string{"curl", "haproxy", "keepalived", "docker-registry", "iptables"}, dockerd.Binaries...) {
		testutil.NeedBinary(t, b)
	}
	vgw := testutil.NeedBinary(t, "versitygw")
	pullBin := buildPull(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	p, opts := testOptions(t, pullBin, vgw)
	opts.Runtime = RuntimeDocker
	opts.DemoAppBinary = buildDemoApp(t)
	dir := opts.Dir
	var ids []int
	var containerIDs []string
	t.Cleanup(func() {
		if t.Failed() {
			for _, id := range ids {
				for _, c := range []string{"dockerd", "containerd", "pull"} {
					if b, err := os.ReadFile(filepath.Join(dropletDir(dir, id), "logs", c+".log")); err == nil {
						t.Logf("droplet %d %s.log (tail):\n%s", id, c, tail(b, 3000))
					}
				}
			}
			if b, err := os.ReadFile(filepath.Join(dir, "logs", "serve.log")); err == nil {
				t.Logf("serve.log (tail):\n%s", tail(b, 4000))
			}
		}
		if err := Down(context.Background(), dir); err != nil {
			t.Errorf("Down: %v", err)
		}
		assertClean(t, p, dir)
		assertNoDocker(t, p, dir, containerIDs)
	})
	rootIptables := iptablesSave(t, "")

	start := time.Now()
	info, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("MEASURE sandbox up (docker runtime, registry and demo images) in %v", time.Since(start).Round(time.Millisecond))

	// status: the runtime, the registry and the three images by digest,
	// each the digest the registry resolves its tag to.
	if info.Runtime != RuntimeDocker || info.Registry != p.RegistryAddr() {
		t.Fatalf("status runtime %q registry %q, want %q %q", info.Runtime, info.Registry, RuntimeDocker, p.RegistryAddr())
	}
	var tags []string
	digest := map[string]string{}
	for _, img := range info.Images {
		tags = append(tags, img.Tag)
		digest[img.Tag] = img.Digest
		ref, err := name.NewTag(info.Registry+"/"+img.Name+":"+img.Tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		desc, err := remote.Head(ref, remote.WithContext(ctx))
		if err != nil {
			t.Fatalf("resolve %s: %v", ref, err)
		}
		if img.Name != demoimage.Repo || desc.Digest.String() != img.Digest {
			t.Errorf("status lists %s:%s@%s; the registry has %s", img.Name, img.Tag, img.Digest, desc.Digest)
		}
	}
	if diff := cmp.Diff([]string{"v1", "v2", "broken"}, tags); diff != "" {
		t.Errorf("status images (-want +got):\n%s", diff)
	}
	var raw map[string]any
	if b, err := os.ReadFile(statusPath(dir)); err != nil || json.Unmarshal(b, &raw) != nil {
		t.Fatalf("status.json: %v", err)
	}
	if raw["registry"] != p.RegistryAddr() || raw["runtime"] != "docker" {
		t.Errorf("status.json registry %v runtime %v", raw["registry"], raw["runtime"])
	}
	if imgs, _ := raw["images"].([]any); len(imgs) != 3 || !strings.HasPrefix(fmt.Sprint(imgs[0]), "map[digest:sha256:") {
		t.Errorf("status.json images: %v", raw["images"])
	}
	// The registry from the root namespace.
	if body, err := httpGet("http://"+info.Registry+"/v2/", 3*time.Second); err != nil {
		t.Errorf("registry /v2/ from the root namespace: %q %v", body, err)
	}

	nodes := []string{"misty-owl", "brave-panda"}
	created := map[int]time.Time{}
	for _, n := range nodes {
		ud, err := cloudinit.Render(cloudinit.Params{
			Cluster: "demo", NodeID: n, Hostname: "demo-" + n,
			Node:              nodeconfig.Config{StateURL: info.StateURL, Endpoint: info.S3Endpoint, Region: info.S3Region, PathStyle: true},
			SpacesAccessKeyID: info.AccessKeyID, SpacesSecretAccessKey: info.SecretAccessKey, DOToken: info.NodeToken,
		})
		if err != nil {
			t.Fatal(err)
		}
		id := createDroplet(t, info, "demo-"+n, string(ud))
		created[id] = time.Now()
		ids = append(ids, id)
	}
	ds := make([]Droplet, len(ids))
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i, id := range ids {
			d, ok := dropletStatus(t, dir, id)
			if !ok || d.PrivateIP == "" {
				return fmt.Errorf("droplet %d not up yet", id)
			}
			ds[i] = d
		}
		return nil
	})

	for _, id := range ids {
		ns, ddir := p.DropletNS(id), dropletDir(dir, id)
		sock := filepath.Join(ddir, "docker", "docker.sock")
		// pull.json tells dynia-pull where its dockerd is.
		cfg, err := nodeconfig.Load(filepath.Join(ddir, "pull.json"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Runtime != "docker" || cfg.DockerHost != "unix://"+sock || len(cfg.AppCommand) != 0 {
			t.Errorf("droplet %d pull.json runtime %q docker_host %q app_command %q; want docker, unix://%s, none", id, cfg.Runtime, cfg.DockerHost, cfg.AppCommand, sock)
		}
		// dockerd answers /_ping on that socket from inside the namespace.
		testutil.WaitFor(t, 90*time.Second, func() error {
			out, err := inNS(ns, "curl", "-sf", "-m", "2", "--unix-socket", sock, "http://docker/_ping")
			if err != nil || out != "OK" {
				return fmt.Errorf("dockerd of droplet %d: /_ping = %q, %v", id, out, err)
			}
			return nil
		})
		t.Logf("MEASURE droplet %d: create to a pingable dockerd in %v", id, time.Since(created[id]).Round(time.Millisecond))
		// dockerd and containerd run in the droplet's namespace, recorded in
		// the sandbox's pid files.
		nsPids := nsPidSet(t, ns)
		for _, c := range []string{"dockerd", "containerd"} {
			pid, _, err := procstat.ReadPidFile(filepath.Join(ddir, "pids", c+".pid"))
			if err != nil || pid == 0 {
				t.Fatalf("droplet %d: no running %s in its pid file (%v)", id, c, err)
			}
			if !nsPids[pid] {
				t.Errorf("droplet %d: %s (pid %d) is not in namespace %s", id, c, pid, ns)
			}
		}
		t.Logf("MEASURE droplet %d: dockerd+containerd %s (idle, no container)", id, daemonMemory(ddir))
		// dockerd's FORWARD DROP is the droplet's own business.
		if out, err := inNS(ns, "iptables", "-w", "-S", "FORWARD"); err != nil || !strings.Contains(out, "-P FORWARD DROP") {
			t.Errorf("droplet %d: iptables -S FORWARD = %v %q, want dockerd's DROP policy", id, err, out)
		}
		// The registry from inside the droplet (its default route).
		if out, err := inNS(ns, "curl", "-sf", "-m", "3", "http://"+info.Registry+"/v2/"); err != nil {
			t.Errorf("registry /v2/ from droplet %d: %q %v", id, out, err)
		}
	}
	// dockerd never touched the root namespace's rules.
	if got := iptablesSave(t, ""); got != rootIptables {
		t.Errorf("the root namespace's iptables changed:\nbefore:\n%s\nafter:\n%s", rootIptables, got)
	}

	// The app runtime against each droplet's dockerd: demo-app v1 pulled by
	// digest from the sandbox registry, started on the private IP.
	ref := info.Registry + "/" + demoimage.Repo + "@" + digest["v1"]
	rts := make([]*container.Runtime, len(ids))
	insts := make([]container.Instance, len(ids))
	for i, id := range ids {
		ns := p.DropletNS(id)
		rt, err := container.New(container.Options{
			Host:         "unix://" + filepath.Join(dropletDir(dir, id), "docker", "docker.sock"),
			Logger:       slog.New(slog.NewTextHandler(tWriter{t}, nil)),
			HealthClient: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: dialIn(ns), DisableKeepAlives: true}},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Close() })
		rts[i] = rt
		pulled, err := rt.Pull(ctx, ref, container.Auth{})
		if err != nil || !pulled {
			t.Fatalf("droplet %d: pull %s: pulled=%v %v", id, ref, pulled, err)
		}
		inst, err := rt.Start(ctx, container.Spec{
			Cluster: "demo", Node: nodes[i], Release: 1, Image: ref,
			BindIP: netip.MustParseAddr(ds[i].PrivateIP), ContainerPort: demoimage.AppPort,
			Env: map[string]string{"DYNIA_NODE_ID": nodes[i]},
		})
		if err != nil {
			t.Fatalf("droplet %d: start: %v", id, err)
		}
		if err := rt.WaitHealthy(ctx, inst, "/healthz", 60*time.Second); err != nil {
			t.Fatalf("droplet %d: %v", id, err)
		}
		insts[i] = inst
		containerIDs = append(containerIDs, inst.ID)
		url := "http://" + inst.HostAddr.String() + "/"
		// On the droplet itself (as HAProxy on the node reaches it) and
		// from the other droplet over the VPC.
		for _, from := range []string{ns, p.DropletNS(ids[1-i])} {
			out, err := inNS(from, "curl", "-sf", "-m", "3", url)
			if err != nil || out != nodes[i]+" v1\n" {
				t.Errorf("GET %s from %s = %q, %v; want %q", url, from, out, err, nodes[i]+" v1\n")
			}
		}
	}
	if pids := containerPids(insts[0].ID); len(pids) == 0 {
		t.Fatalf("no process of container %s found in /proc", insts[0].ID)
	}

	// Power cut: nothing of droplet 0 keeps running, its container included
	// (in a network namespace of its own, not the droplet's).
	id0, ns0 := ids[0], p.DropletNS(ids[0])
	api(t, info, "POST", fmt.Sprintf("/v2/droplets/%d/actions", id0), map[string]string{"type": "power_off"}, nil)
	testutil.WaitFor(t, 30*time.Second, func() error {
		if d, _ := dropletStatus(t, dir, id0); d.Status != "off" {
			return fmt.Errorf("status %q, want off", d.Status)
		}
		if left := nsComms(t, ns0); len(left) > 0 {
			return fmt.Errorf("processes left in powered-off %s: %v", ns0, left)
		}
		if pids := containerPids(insts[0].ID); len(pids) > 0 {
			return fmt.Errorf("container %s still has processes %v", insts[0].ID[:12], pids)
		}
		return nil
	})
	if mounts := mountsUnder(t, dropletDir(dir, id0)); len(mounts) > 0 {
		t.Errorf("mounts left under the powered-off droplet: %v", mounts)
	}
	// The other droplet's container is untouched.
	if out, err := inNS(p.DropletNS(ids[1]), "curl", "-sf", "-m", "3", "http://"+insts[1].HostAddr.String()+"/"); err != nil || out != nodes[1]+" v1\n" {
		t.Errorf("droplet %d's container after droplet %d's power cut: %q %v", ids[1], id0, out, err)
	}

	// Power on: dockerd starts again and brings the unless-stopped
	// container back on its address.
	on := time.Now()
	api(t, info, "POST", fmt.Sprintf("/v2/droplets/%d/actions", id0), map[string]string{"type": "power_on"}, nil)
	sock0 := filepath.Join(dropletDir(dir, id0), "docker", "docker.sock")
	testutil.WaitFor(t, 90*time.Second, func() error {
		out, err := inNS(ns0, "curl", "-sf", "-m", "2", "--unix-socket", sock0, "http://docker/_ping")
		if err != nil || out != "OK" {
			return fmt.Errorf("dockerd after power on: %q %v", out, err)
		}
		return nil
	})
	t.Logf("MEASURE droplet %d: power on to a pingable dockerd in %v", id0, time.Since(on).Round(time.Millisecond))
	testutil.WaitFor(t, 90*time.Second, func() error {
		out, err := inNS(ns0, "curl", "-sf", "-m", "2", "http://"+insts[0].HostAddr.String()+"/")
		if err != nil || out != nodes[0]+" v1\n" {
			return fmt.Errorf("container after power on: %q %v", out, err)
		}
		return nil
	})
	if got, err := rts[0].Inspect(ctx, insts[0]); err != nil || !got.Running() || got.ID != insts[0].ID {
		t.Errorf("after power on: %+v %v, want the same container running", got, err)
	}
	t.Logf("MEASURE droplet %d: dockerd+containerd %s with one container", id0, daemonMemory(dropletDir(dir, id0)))

	// A crashed serve: its daemons die with it (parent-death signal), the
	// containers do not; Down (in Cleanup) must find and stop them, and
	// detach every mount, from the files alone.
	stopPid(info.ServePID, 0)
	testutil.WaitFor(t, 15*time.Second, func() error {
		if st, _ := Status(dir); st != nil && st.Running {
			return fmt.Errorf("serve still running")
		}
		return nil
	})
	if pids := containerPids(insts[1].ID); len(pids) == 0 {
		t.Errorf("container %s died with serve; want it running until Down (its shim is not serve's child)", insts[1].ID[:12])
	}
}

// assertNoDocker checks that no container process, mount or cgroup of the
// sandbox remains.
func assertNoDocker(t *testing.T, p plan, dir string, containerIDs []string) {
	t.Helper()
	for _, id := range containerIDs {
		if pids := containerPids(id); len(pids) > 0 {
			t.Errorf("container %s still has processes %v", id[:12], pids)
		}
	}
	if mounts := mountsUnder(t, dir); len(mounts) > 0 {
		t.Errorf("mounts left under %s: %v", dir, mounts)
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/" + p.Prefix + "-d*-docker")
	cg2, _ := filepath.Glob("/sys/fs/cgroup/" + p.Prefix + "-d*-docker")
	if left := append(cg, cg2...); len(left) > 0 {
		t.Errorf("cgroups left: %v", left)
	}
}

// containerPids finds a container's processes by its id in their cgroup
// path (/proc/PID/cgroup), independently of the sandbox's bookkeeping.
func containerPids(id string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cgroup")
		if err == nil && strings.Contains(string(b), id) {
			if st := procstat.State(pid); st != "" && st != "Z" {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// mountsUnder lists the mount points at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// nsPidSet is the set of pids in a network namespace.
func nsPidSet(t *testing.T, ns string) map[int]bool {
	t.Helper()
	out, err := run(context.Background(), "ip", "netns", "pids", ns)
	if err != nil {
		t.Fatalf("ip netns pids %s: %v", ns, err)
	}
	set := map[int]bool{}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil {
			set[pid] = true
		}
	}
	return set
}

// daemonMemory sums the droplet's dockerd and containerd memory: resident
// (VmRSS, shared binary pages included), anonymous (RssAnon, what a
// droplet really pays) and proportional (Pss, shared pages split between
// the droplets' daemons).
func daemonMemory(ddir string) string {
	var rss, anon, pss int
	for _, c := range []string{"dockerd", "containerd"} {
		pid, _, _ := procstat.ReadPidFile(filepath.Join(ddir, "pids", c+".pid"))
		rss += procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		anon += procKiB(fmt.Sprintf("/proc/%d/status", pid), "RssAnon:")
		pss += procKiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	}
	return fmt.Sprintf("RSS %d KiB, anonymous %d KiB, PSS %d KiB", rss, anon, pss)
}

// procKiB reads one "Key: N kB" line of a /proc file, 0 when absent.
func procKiB(path, key string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// iptablesSave is `iptables-save` of a namespace ("" = the test's own)
// without its comments and counters.
func iptablesSave(t *testing.T, ns string) string {
	t.Helper()
	args := []string{"iptables-save"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).Output()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, ":") { // chain policy [packets:bytes]
			line, _, _ = strings.Cut(line, " [")
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// dialIn dials from inside network namespace ns: the socket is made on a
// thread switched into ns, and a socket stays in the namespace it was made
// in (the root namespace has no route to the VPC, as the internet has none).
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread()
			// The thread is left locked when it cannot return to its own
			// namespace: the goroutine ends and the thread with it.
			self, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				ch <- res{nil, err}
				return
			}
			defer self.Close()
			target, err := os.Open("/run/netns/" + ns)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- res{nil, err}
				return
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				ch <- res{nil, err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// tail is the end of a log, at most n bytes.
func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
