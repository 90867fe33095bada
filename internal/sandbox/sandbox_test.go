package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/testutil"
)

// api calls the sandbox's DO API with the CLI token; an error status fails
// the test.
func api(t *testing.T, info *Info, method, path string, body any, out any) int {
	t.Helper()
	code, b := apiTry(t, info, method, path, body)
	if code >= 300 {
		t.Fatalf("%s %s: %d: %s", method, path, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return code
}

// apiTry calls the API and returns the status and body.
func apiTry(t *testing.T, info *Info, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, info.APIURL+path, r)
	req.Header.Set("Authorization", "Bearer "+info.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// createDroplet creates a droplet in nyc3 (its default VPC) tagged with
// tags, "dynia" when none are given.
func createDroplet(t *testing.T, info *Info, name, userData string, tags ...string) int {
	t.Helper()
	if len(tags) == 0 {
		tags = []string{"dynia"}
	}
	var resp struct {
		Droplet struct {
			ID int `json:"id"`
		} `json:"droplet"`
	}
	api(t, info, "POST", "/v2/droplets", map[string]any{
		"name": name, "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64",
		"user_data": userData, "tags": tags,
	}, &resp)
	return resp.Droplet.ID
}

func dropletStatus(t *testing.T, dir string, id int) (Droplet, bool) {
	t.Helper()
	info, err := Status(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range info.Droplets {
		if d.ID == id {
			return d, true
		}
	}
	return Droplet{}, false
}

// buildPull builds cmd/dynia-pull for the boot test.
func buildPull(t *testing.T) string {
	t.Helper()
	gobin := testutil.NeedBinary(t, "go")
	out := filepath.Join(t.TempDir(), "dynia-pull")
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/dynia/dynia/cmd/dynia-pull")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build dynia-pull: %v\n%s", err, b)
	}
	return out
}

// TestSandbox brings a whole sandbox up through Up (the test binary stands
// in for `dynia sandbox serve`), drives it through the DO API like the CLI
// would, boots a dynia node from real user-data, and takes it down again.
func TestSandbox(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "curl")
	testutil.NeedBinary(t, "versitygw")
	testutil.NeedBinary(t, "haproxy")
	testutil.NeedBinary(t, "keepalived")
	pullBin := buildPull(t)
	ctx := context.Background()
	start := time.Now()
	p, opts, info := upLab(t, pullBin, func(o *Options) {
		o.Version = "v0.0.0-test"
		// Registered before upLab's cleanup, so it runs after it: Down
		// again over the sandbox taken down.
		t.Cleanup(func() {
			if err := Down(ctx, o.Dir); err != nil {
				t.Errorf("second Down: %v", err)
			}
		})
	})
	dir := opts.Dir
	t.Logf("sandbox up in %v: api %s s3 %s", time.Since(start), info.APIURL, info.S3Endpoint)
	if !info.Running || info.Token == "" || info.NodeToken == "" || info.Bucket == "" || info.SecretAccessKey == "" {
		t.Fatalf("incomplete info: running=%v", info.Running)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, statusPath(dir): 0o600, configPath(dir): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", path, st.Mode().Perm(), want, err)
		}
	}
	// The same sandbox again: idempotent.
	again, err := Up(ctx, opts)
	if err != nil || again.Token != info.Token {
		t.Fatalf("second Up: %v (same token: %v)", err, err == nil && again.Token == info.Token)
	}
	// The snapshot image the CLI looks up by name.
	var imgs struct {
		Images []struct{ Name string } `json:"images"`
	}
	api(t, info, "GET", "/v2/images?private=true", nil, &imgs)
	if !strings.Contains(fmt.Sprint(imgs.Images), info.Image) {
		t.Errorf("image %s not registered: %v", info.Image, imgs.Images)
	}

	// A dynia node booted from real user-data.
	node := "misty-owl"
	ud, err := cloudinit.Render(cloudinit.Params{
		Cluster: "demo", NodeID: node, Hostname: "demo-" + node,
		Node:              nodeconfig.Config{StateURL: info.StateURL, Endpoint: info.S3Endpoint, Region: info.S3Region, PathStyle: true},
		SpacesAccessKeyID: info.AccessKeyID, SpacesSecretAccessKey: info.SecretAccessKey, DOToken: info.NodeToken,
	})
	if err != nil {
		t.Fatal(err)
	}
	id := createDroplet(t, info, "demo-"+node, string(ud))
	testutil.WaitFor(t, 15*time.Second, func() error {
		if d, ok := dropletStatus(t, dir, id); !ok || d.PublicIP == "" {
			return fmt.Errorf("droplet %d not in status yet", id)
		}
		return nil
	})
	d, _ := dropletStatus(t, dir, id)
	// No cluster state names this node, so dynia-pull runs no app: the
	// test runs one in the droplet, to follow traffic to it.
	startNSApp(t, p.DropletNS(id), node)
	appURL := "http://" + d.PublicIP + ":8080/"
	testutil.WaitFor(t, 20*time.Second, func() error {
		got, err := httpGet(appURL, time.Second)
		if err != nil || got != node+"\n" {
			return fmt.Errorf("demo app: %q %v", got, err)
		}
		return nil
	})
	ddir := dropletDir(dir, id)
	if st, err := os.Stat(filepath.Join(ddir, "root", cloudinit.DOTokenPath)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("do-token written with %v, want 0600 (%v)", st.Mode().Perm(), err)
	}
	cfg, err := nodeconfig.Load(filepath.Join(ddir, "pull.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Supervise || cfg.DOAPIURL != info.APIURL || !strings.HasPrefix(cfg.HAProxyConfig, ddir) || !strings.HasPrefix(cfg.DOTokenFile, ddir) {
		t.Errorf("pull.json not rewritten for the sandbox: %+v", cfg)
	}
	// The process runtime: dynia-pull is told to run the sandbox's demo app.
	if want := []string{opts.Binary, "sandbox", "demo-app"}; cfg.Runtime != RuntimeProcess || !slices.Equal(cfg.AppCommand, want) || cfg.DockerHost != "" {
		t.Errorf("pull.json runtime %q app_command %q docker_host %q; want process, %q, none", cfg.Runtime, cfg.AppCommand, cfg.DockerHost, want)
	}
	if _, err := os.Stat(filepath.Join(ddir, "docker")); !os.IsNotExist(err) {
		t.Errorf("a process-runtime droplet has a docker directory (%v)", err)
	}
	testutil.WaitFor(t, 15*time.Second, func() error {
		pid, _ := readPidFile(filepath.Join(ddir, "pids", "pull.pid"))
		if pid == 0 {
			return fmt.Errorf("dynia-pull not running")
		}
		b, _ := os.ReadFile(filepath.Join(ddir, "logs", "pull.log"))
		if len(b) == 0 {
			return fmt.Errorf("dynia-pull wrote no log yet")
		}
		return nil
	})
	// The metadata service, from inside the droplet, knows it.
	out, err := inNS(p.DropletNS(id), "curl", "-sf", "-m", "3", "http://169.254.169.254/metadata/v1/id")
	if err != nil || strings.TrimSpace(out) != strconv.Itoa(id) {
		t.Errorf("metadata id from inside the droplet = %q, %v; want %d", out, err, id)
	}
	// So does the DO API, with the node token, from inside.
	out, err = inNS(p.DropletNS(id), "curl", "-sf", "-m", "3", "-H", "Authorization: Bearer "+info.NodeToken, info.APIURL+"/v2/droplets/"+strconv.Itoa(id))
	if err != nil || !strings.Contains(out, node) {
		t.Errorf("DO API from inside the droplet: %v", err)
	}
	if rc, err := Logs(dir, strconv.Itoa(id), "pull"); err != nil {
		t.Errorf("Logs pull: %v", err)
	} else {
		b, _ := io.ReadAll(io.LimitReader(rc, 4000))
		rc.Close()
		t.Logf("dynia-pull log (start):\n%s", b)
	}

	// A Reserved IP created on the droplet answers with its app.
	var rip struct {
		ReservedIP struct {
			IP string `json:"ip"`
		} `json:"reserved_ip"`
	}
	api(t, info, "POST", "/v2/reserved_ips", map[string]any{"droplet_id": id}, &rip)
	ripURL := "http://" + rip.ReservedIP.IP + ":8080/"
	testutil.WaitFor(t, 10*time.Second, func() error {
		got, err := httpGet(ripURL, time.Second)
		if err != nil || got != node+"\n" {
			return fmt.Errorf("reserved IP: %q %v", got, err)
		}
		return nil
	})

	// Power off through the API: silence. Power on: answers again.
	api(t, info, "POST", fmt.Sprintf("/v2/droplets/%d/actions", id), map[string]string{"type": "power_off"}, nil)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if d, _ := dropletStatus(t, dir, id); d.Status != "off" {
			return fmt.Errorf("status %q, want off", d.Status)
		}
		return nil
	})
	wantSilence(t, appURL)
	wantSilence(t, ripURL)
	api(t, info, "POST", fmt.Sprintf("/v2/droplets/%d/actions", id), map[string]string{"type": "power_on"}, nil)
	startNSApp(t, p.DropletNS(id), node) // the power cut killed it
	testutil.WaitFor(t, 20*time.Second, func() error {
		got, err := httpGet(appURL, time.Second)
		if err != nil || got != node+"\n" {
			return fmt.Errorf("after power on: %q %v", got, err)
		}
		return nil
	})

	// Delete: namespace gone.
	api(t, info, "DELETE", fmt.Sprintf("/v2/droplets/%d", id), nil, nil)
	testutil.WaitFor(t, 10*time.Second, func() error {
		if netnsExists(p.DropletNS(id)) {
			return fmt.Errorf("namespace %s still exists", p.DropletNS(id))
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(ddir, "root")); !os.IsNotExist(err) {
		t.Errorf("deleted droplet's root (with secrets) left: %v", err)
	}
}

// TestDownAfterCrash kills the serve process outright and checks that Down
// still removes everything, from the manifest and droplet records alone.
func TestDownAfterCrash(t *testing.T) {
	ctx := context.Background()
	// The test binary stands in for dynia-pull too: no droplet boots here.
	p, opts, info := upLab(t, testBinary(t), nil)
	dir := opts.Dir
	id := createDroplet(t, info, "bare", "")
	testutil.WaitFor(t, 10*time.Second, func() error {
		if !netnsExists(p.DropletNS(id)) {
			return fmt.Errorf("no namespace for droplet %d yet", id)
		}
		return nil
	})
	// Pebble, which serve supervised, goes too (found by its pid file).
	pebble, _ := readPidFile(pebblePidPath(dir))
	pebbleStart, err := procstat.StartTime(pebble)
	if pebble == 0 || err != nil {
		t.Fatalf("pebble not running: pid %d, %v", pebble, err)
	}
	stopPid(info.ServePID, 0) // SIGKILL: no graceful shutdown
	testutil.WaitFor(t, 10*time.Second, func() error {
		if st, _ := Status(dir); st != nil && st.Running {
			return fmt.Errorf("serve still running")
		}
		return nil
	})
	// Up over the wreck cleans it and starts afresh.
	info2, err := Up(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if info2.Token == info.Token || netnsExists(p.DropletNS(id)) {
		t.Errorf("Up after a crash reused the old sandbox")
	}
	if procstat.Alive(pebble, pebbleStart) {
		t.Errorf("the crashed sandbox's pebble (pid %d) still runs", pebble)
	}
	stopPid(info2.ServePID, 0)
}

// startNSApp runs the demo app on :8080 in a droplet's namespace. It dies
// with the droplet (a power cut or delete kills everything in the
// namespace) or at the end of the test.
func startNSApp(t *testing.T, ns, id string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, testBinary(t), "sandbox", "demo-app", "--listen", ":8080", "--id", id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
}
