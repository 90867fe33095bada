package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/loadloop"
	"github.com/dynia/dynia/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse() // for testing.Short
	binDir = os.Getenv("DYNIA_BIN_DIR")
	// Under -short every test here skips (each needs root and a sandbox:
	// testutil.NeedRoot), so nothing is built.
	if binDir == "" && !testing.Short() {
		dir, err := os.MkdirTemp("", "dynia-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		for c, pkg := range map[string]string{"dynia": "../cmd/dynia", "dynia-pull": "../cmd/dynia-pull", "dynia-demo-app": "../internal/demoimage/app"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, c), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", c, err, out)
				return 1
			}
		}
		binDir = dir
	}
	return m.Run()
}

// dyniaBin is the dynia binary the tests run: DYNIA_BIN_DIR's, else the one
// TestMain built. Under -short TestMain builds none and a test that runs
// the binary skips (the CLI's own tests, internal/cli, cover its bad
// input in-process).
func dyniaBin(t testing.TB) string {
	t.Helper()
	if binDir == "" {
		testutil.Integration(t) // under -short: skipped, or a failure when CI requires it
		testutil.Missing(t, "no dynia binary (set DYNIA_BIN_DIR=$PWD/bin after `make build`)")
	}
	return filepath.Join(binDir, "dynia")
}

// sandboxEnv is one sandbox of the test's own: its own dir, name prefix,
// public range and config file, so it never touches a user's sandbox.
type sandboxEnv struct {
	t      testing.TB
	dir    string
	config string
	info   sandboxInfo
	// secrets watches every secret the run uses (secrets_test.go);
	// checked is set once it looked, before the first `sandbox down`.
	secrets secretWatch
	checked bool
}

type sandboxInfo struct {
	APIURL     string `json:"api_url"`
	Token      string `json:"token"`
	NodeToken  string `json:"node_token"`
	S3Endpoint string `json:"s3_endpoint"`
	S3Region   string `json:"s3_region"`
	Bucket     string `json:"bucket"`
	StateURL   string `json:"state_url"`
	// The operator's Spaces key (versitygw's root account).
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	Droplets        []struct {
		ID        int    `json:"id"`
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		PrivateIP string `json:"private_ip"`
		PublicIP  string `json:"public_ip"`
		Status    string `json:"status"`
	} `json:"droplets"`
	ReservedIPs []struct {
		IP        string `json:"ip"`
		DropletID int    `json:"droplet_id"`
	} `json:"reserved_ips"`
	Prefix      string `json:"prefix"`
	PublicRange string `json:"public_range"`
	Runtime     string `json:"runtime"`
	Registry    string `json:"registry"`
	Images      []struct {
		Name   string `json:"name"`
		Tag    string `json:"tag"`
		Digest string `json:"digest"`
	} `json:"images"`
}

// upSandbox starts a sandbox of the test's own: a random name prefix and a
// random /24 of 198.18.0.0/15 (the benchmarking range), so tests running at
// the same time (two checkouts, -count) never share one. `sandbox up` checks
// the range against the machine's routes; a range another run took is
// retried with a new pick.
//
// The runtime is the sandbox's default (docker: a dockerd per droplet and
// the demo images in the sandbox's registry) unless extra names one.
func upSandbox(t testing.TB, extra ...string) *sandboxEnv {
	t.Helper()
	testutil.NeedRoot(t)
	for _, b := range []string{"haproxy", "keepalived", "versitygw", "pebble", "ip", "iptables", "nft", "wireguard-go"} {
		testutil.NeedBinary(t, b)
	}
	if i := slices.Index(extra, "--runtime"); i < 0 || (i+1 < len(extra) && extra[i+1] == "docker") {
		for _, b := range append([]string{"docker-registry"}, dockerd.Binaries...) {
			testutil.NeedBinary(t, b)
		}
	}
	// A short directory: HAProxy binds its master socket at a temporary
	// name <path>.<pid>.tmp, which must fit a unix socket's 108 bytes, and
	// t.TempDir() embeds the test's (long) name.
	dir, err := os.MkdirTemp("", "dy")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &sandboxEnv{t: t, dir: filepath.Join(dir, "sandbox"), config: filepath.Join(dir, "config.yaml")}
	t.Cleanup(func() {
		if t.Failed() {
			e.dumpLogs()
		}
		if r := e.run("sandbox", "down"); r.code != 0 {
			t.Errorf("sandbox down: exit %d: %s", r.code, r.stderr)
		}
	})
	var r result
	for try := 0; try < 10; try++ {
		n := rand.Uint32()
		prefix := fmt.Sprintf("e%05x", n&0xfffff)
		rng := fmt.Sprintf("198.%d.%d.0/24", 18+(n>>20)&1, (n>>21)&0xff)
		args := append([]string{"sandbox", "up", "--prefix", prefix, "--public-range", rng}, extra...)
		start := time.Now()
		if r = e.run(args...); r.code == 0 {
			t.Logf("dynia %s (%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
			e.refresh()
			return e
		}
		if !strings.Contains(r.stderr, "in use") && !strings.Contains(r.stderr, "already exists") {
			break
		}
	}
	t.Fatalf("dynia sandbox up: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	return nil
}

func (e *sandboxEnv) refresh() sandboxInfo {
	e.t.Helper()
	r := e.mustRun("sandbox", "status", "-o", "json")
	var info sandboxInfo
	if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
		e.t.Fatalf("sandbox status -o json: %v\n%s", err, r.stdout)
	}
	e.info = info
	return info
}

type result struct {
	code           int
	stdout, stderr string
}

func (e *sandboxEnv) run(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if len(args) >= 2 && args[0] == "sandbox" && args[1] == "down" && !e.checked {
		// While everything the run made is still there: the test's own
		// `sandbox down`, or the cleanup's after the test's cleanups.
		e.checked = true
		e.checkSecrets()
	}
	full := append([]string{"--config", e.config}, args...)
	if args[0] == "sandbox" {
		full = append([]string{"--config", e.config, "sandbox", "--dir", e.dir}, args[1:]...)
	}
	cmd := exec.CommandContext(ctx, dyniaBin(e.t), full...)
	cmd.Env = append(os.Environ(), "PATH="+binDir+":"+os.Getenv("PATH")+":/root/go/bin:/usr/sbin:/sbin")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run dynia: %v", err)
	}
	r := result{code, out.String(), errOut.String()}
	e.secrets.output(args, r)
	e.secrets.collect(filepath.Dir(e.config), e.dir)
	return r
}

// checkSecrets looks for every secret the run used where none may be
// (secrets_test.go), while the sandbox still runs.
func (e *sandboxEnv) checkSecrets() {
	var st struct {
		Prefix   string `json:"prefix"`
		Droplets []struct {
			Namespace string `json:"namespace"`
		} `json:"droplets"`
	}
	b, err := os.ReadFile(filepath.Join(e.dir, "status.json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		e.t.Errorf("secret check: read the sandbox's status.json: %v", err)
		return
	}
	namespaces := []string{st.Prefix + "-rt"}
	for _, d := range st.Droplets {
		namespaces = append(namespaces, d.Namespace)
	}
	e.secrets.check(e.t, filepath.Dir(e.config), e.dir, namespaces)
}

func (e *sandboxEnv) mustRun(args ...string) result {
	e.t.Helper()
	start := time.Now()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("dynia %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	e.t.Logf("dynia %s (%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return r
}

func (e *sandboxEnv) dumpLogs() {
	info := e.info
	if r := e.run("sandbox", "status", "-o", "json"); r.code == 0 {
		_ = json.Unmarshal([]byte(r.stdout), &info)
	}
	for _, d := range info.Droplets {
		for _, c := range []string{"pull", "haproxy", "keepalived"} {
			r := e.run("sandbox", "logs", fmt.Sprint(d.ID), "--component", c)
			out := r.stdout
			if len(out) > 6000 {
				out = out[len(out)-6000:]
			}
			e.t.Logf("=== %s log of droplet %d (%s):\n%s", c, d.ID, d.Name, out)
		}
	}
	// The simulated cloud's own lines: API calls, Reserved IP routes,
	// firewall applies, droplets made and destroyed.
	r := e.run("sandbox", "logs", "sandbox")
	out := r.stdout
	if len(out) > 12000 {
		out = out[len(out)-12000:]
	}
	e.t.Logf("=== the sandbox's log:\n%s", out)
}

// get does one request with a short timeout; it returns the body's first line.
func get(url string) (string, error) { return getWithin(url, 2*time.Second) }

// getWithin is get with the given timeout.
func getWithin(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return strings.TrimSpace(b.String()), nil
}

// loadLoop is a loadloop.Loop (a request every interval until stopped or
// its bound, at most loadloop.MaxInFlight in flight, each outcome recorded
// by its start time) with the tests' readings of it.
type loadLoop struct{ *loadloop.Loop }

func startLoad(url string, interval time.Duration, max time.Duration) *loadLoop {
	return startLoadWith(func() (string, error) { return get(url) }, interval, max)
}

// startPosts is startLoad with POSTs on kept-alive connections: Go's client
// never retries a POST, so a connection a reload closes under a request
// shows as a failure (a GET on a new connection would not see that).
func startPosts(url string, interval time.Duration, max time.Duration) *loadLoop {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	return startLoadWith(func() (string, error) {
		resp, err := c.Post(url, "text/plain", strings.NewReader("dynia e2e keep-alive POST"))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		line, _, _ := strings.Cut(strings.TrimSpace(b.String()), "\n")
		return line, nil
	}, interval, max)
}

func startLoadWith(do func() (string, error), interval time.Duration, max time.Duration) *loadLoop {
	return &loadLoop{loadloop.Start(func(context.Context) (string, error) { return do() }, interval, max)}
}

// sorted returns the samples by start time (they finish out of order).
func (l *loadLoop) sorted() []loadloop.Sample { return l.Samples() }

// failures describes up to n failed requests (when, how long, why), for a
// test's log; call after finish.
func (l *loadLoop) failures(n int) []string {
	var out []string
	for _, s := range l.sorted() {
		if !s.OK && len(out) < n {
			out = append(out, fmt.Sprintf("%s (+%v): %s", s.At.Format("15:04:05.000"), s.Took.Round(time.Millisecond), s.Body))
		}
	}
	return out
}

// finish stops the loop and returns the request counts, the longest outage
// (loadloop.Outcome's, with failures only as hit: -1 if the last request
// failed) and the answers by node.
func (l *loadLoop) finish() (total, failed int, outage time.Duration, answered map[string]int) {
	o := loadloop.Analyze(l.Stop(), 0)
	return o.Total, o.Failed, o.Outage, o.Answered
}

// healthyFor reports nil once the last n finished samples all succeeded.
func (l *loadLoop) healthyFor(n int) error {
	samples := l.sorted()
	if len(samples) < n {
		return fmt.Errorf("only %d samples", len(samples))
	}
	for _, s := range samples[len(samples)-n:] {
		if !s.OK {
			return fmt.Errorf("a failure among the last %d requests", n)
		}
	}
	return nil
}

// waitAnswered waits until n requests started at or after since (the
// zero time: any) were answered: a phase is observed for n answers, not
// for a fixed time a loaded machine fills with fewer. The deadline is
// generous; a service that does not answer fails the test here.
func (l *loadLoop) waitAnswered(t testing.TB, since time.Time, n int) {
	t.Helper()
	testutil.WaitFor(t, 2*time.Minute, func() error {
		ok := 0
		for _, s := range l.Samples() {
			if s.OK && !s.At.Before(since) {
				ok++
			}
		}
		if ok < n {
			return fmt.Errorf("%d requests answered since %s, want %d", ok, since.Format("15:04:05.000"), n)
		}
		return nil
	})
}

// slowest is the longest a successful request took: a failover that no
// request failed through still shows up here.
func (l *loadLoop) slowest() time.Duration {
	var m time.Duration
	for _, s := range l.Samples() {
		if s.OK && s.Took > m {
			m = s.Took
		}
	}
	return m
}

// demo is the sandbox registry's demo image of a version (v1, v2, broken),
// by tag: the CLI resolves it to its digest. The process runtime runs its
// built-in demo app whatever the image.
func (e *sandboxEnv) demo(version string) string {
	return e.info.Registry + "/demo-app:" + version
}

// nodeOf is the node an app answer names ("<node id> <version>").
func nodeOf(body string) string {
	node, _, _ := strings.Cut(body, " ")
	return node
}

// versionOf is the release version an app answer names ("" if none).
func versionOf(body string) string {
	_, v, _ := strings.Cut(body, " ")
	return v
}
