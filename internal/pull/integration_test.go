package pull_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

// TestMain doubles as the demo app: with DYNIA_TEST_APP=<id> the test
// binary answers every method and path (GET /healthz, the load client's
// POSTs) with 200 "<id>\n" on :8080, inside a namespace. Run by
// dynia-pull's process runtime, it listens on DYNIA_APP_ADDR and answers
// with DYNIA_NODE_ID.
func TestMain(m *testing.M) {
	if id := os.Getenv("DYNIA_TEST_APP"); id != "" {
		addr := ":8080"
		if a := os.Getenv("DYNIA_APP_ADDR"); a != "" {
			addr, id = a, os.Getenv("DYNIA_NODE_ID")
		}
		http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Read the whole body so the connection stays reusable.
			_, _ = io.Copy(io.Discard, r.Body)
			fmt.Fprintln(w, id)
		}))
		os.Exit(1)
	}
	code := m.Run()
	if pullBinDir != "" {
		os.RemoveAll(pullBinDir)
	}
	os.Exit(code)
}

var (
	buildOnce  sync.Once
	pullBinDir string
	pullBin    string
	buildErr   error
)

// buildPull builds cmd/dynia-pull once per test binary.
func buildPull(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		pullBinDir, buildErr = os.MkdirTemp("", "dynia-pull-bin-")
		if buildErr != nil {
			return
		}
		pullBin = filepath.Join(pullBinDir, "dynia-pull")
		out, err := exec.Command("go", "build", "-o", pullBin, "github.com/dynia/dynia/cmd/dynia-pull").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build dynia-pull: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pullBin
}

// env is a running cluster: namespaces, versitygw, apps and dynia-pulls.
type env struct {
	t      *testing.T
	lab    *testutil.NetLab
	store  bucket.Store
	state  *cluster.State
	ids    []string
	pulled int // nodes 0..pulled-1 run dynia-pull
	client *http.Client
	dir    string
	pids   []int                 // dynia-pull processes
	done   map[int]chan struct{} // closed when the process start ran exits
	opts   envOptions
	// started is when the dynia-pulls were started.
	started time.Time
}

// envOptions shape a cluster beyond its size.
type envOptions struct {
	// noMesh runs VRRP over the VPC interface between private IPs
	// (mesh_disabled), as before the mesh; otherwise over wireguard-go.
	noMesh bool
	// firewall makes each node's namespace drop every packet on eth1 that
	// is not TCP, UDP or ICMP, both ways: a DigitalOcean Cloud Firewall's
	// protocol limit (DO docs, Firewalls → Details → Limits).
	firewall bool
}

var nodeIDs = []string{"amber-fox", "brisk-owl", "calm-heron", "dusty-lynx", "eager-mole", "fuzzy-newt",
	"gentle-orca", "happy-puma", "icy-quail", "jolly-raven", "keen-seal"}

// newEnv starts nodes namespaces; the first pulled run dynia-pull in
// supervise mode with every node ready, the rest only the app. VRRP runs
// over the WireGuard mesh (wireguard-go).
func newEnv(t *testing.T, nodes, pulled int, poll time.Duration) *env {
	return newEnvWith(t, nodes, pulled, poll, envOptions{})
}

func newEnvWith(t *testing.T, nodes, pulled int, poll time.Duration, opts envOptions) *env {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "haproxy")
	testutil.NeedBinary(t, "keepalived")
	testutil.NeedBinary(t, "curl")
	var wgGo string
	if !opts.noMesh {
		wgGo = testutil.NeedBinary(t, "wireguard-go")
	}
	if opts.firewall {
		testutil.NeedBinary(t, "nft")
	}
	bin := buildPull(t)
	s3 := testutil.StartVersityGW(t)
	lab := testutil.NewNetLab(t, nodes)
	e := &env{t: t, lab: lab, pulled: pulled, dir: t.TempDir(), opts: opts,
		client: &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if opts.firewall {
		for _, n := range lab.Nodes {
			cloudFirewall(t, n)
		}
	}
	// dynia-pull leaves haproxy and keepalived running when it stops (the
	// next one adopts them): stop them after every dynia-pull (cleanups run
	// last-registered first) and before the temp dir goes.
	t.Cleanup(func() {
		for i := 0; i < pulled; i++ {
			e.killDaemons(i)
			// A killed wireguard-go leaves its UAPI socket in the shared dir.
			_ = os.Remove("/var/run/wireguard/" + e.meshInterface(i) + ".sock")
		}
	})

	// versitygw listens on 127.0.0.1; nodes reach it through a forwarder on
	// the root namespace's lab address.
	fwd := forward(t, lab.RootAddr.String()+":0", strings.TrimPrefix(s3.Endpoint, "http://"))
	var err error
	e.store, err = bucket.Open(t.Context(), s3.URL("dynia"), bucket.Options{Endpoint: s3.Endpoint, Region: s3.Region,
		PathStyle: true, AccessKeyID: s3.AccessKeyID, SecretAccessKey: s3.SecretAccessKey})
	if err != nil {
		t.Fatal(err)
	}
	e.state = cluster.New("it", "sgp1", "s-1vcpu-1gb", "img", time.Now())
	for i, n := range lab.Nodes {
		id := nodeIDs[i]
		e.ids = append(e.ids, id)
		e.state.Nodes = append(e.state.Nodes, cluster.Node{ID: id, PrivateIP: n.Addr.String(),
			Priority: 200 - 10*i, Role: cluster.RoleStandby, Lifecycle: cluster.Ready})
		if i >= pulled {
			// An app-only node: its app on the app port, no HAProxy.
			e.start(id, n.Command(os.Args[0]), "DYNIA_TEST_APP="+id)
		}
	}
	e.state.Nodes[0].Role = cluster.RoleActive
	// The release every dynia-pull runs (process runtime: this binary).
	e.state, _, err = cluster.AddRelease(e.state, cluster.Release{Image: "test-app@sha256:" + strings.Repeat("0", 64), Port: 8080,
		Env: map[string]string{"DYNIA_TEST_APP": "1"}}, nil, 0, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.put()

	creds := filepath.Join(e.dir, "creds.json")
	b, _ := json.Marshal(map[string]string{"access_key_id": s3.AccessKeyID, "secret_access_key": s3.SecretAccessKey})
	os.WriteFile(creds, b, 0o600)
	for i := 0; i < pulled; i++ {
		id, n := e.ids[i], lab.Nodes[i]
		d := filepath.Join(e.dir, id)
		os.MkdirAll(d, 0o755)
		// haproxy through a wrapper that refuses to start while d/haproxy.down
		// exists: the failover check keeps a killed haproxy dead although
		// dynia-pull restarts it.
		haproxy, _ := exec.LookPath("haproxy")
		wrapper := filepath.Join(d, "haproxy")
		os.WriteFile(wrapper, []byte("#!/bin/sh\n[ -e "+filepath.Join(d, "haproxy.down")+" ] && exit 1\nexec "+haproxy+" \"$@\"\n"), 0o755)
		cfg := map[string]any{
			"cluster": "it", "node_id": id, "state_url": s3.URL("dynia"), "endpoint": "http://" + fwd,
			"region": s3.Region, "path_style": true, "credentials_file": creds, "poll_interval": poll.String(),
			"haproxy_config": filepath.Join(d, "haproxy.cfg"), "keepalived_config": filepath.Join(d, "keepalived.conf"),
			"run_dir": filepath.Join(d, "run"), "supervise": true, "haproxy_bin": wrapper, "metrics_addr": "127.0.0.1:9321",
			"runtime": "process", "app_command": []string{os.Args[0]},
		}
		if opts.noMesh {
			cfg["mesh_disabled"] = true
		} else {
			// Unique per node: wireguard-go's UAPI socket dir is shared.
			cfg["mesh_interface"] = e.meshInterface(i)
			cfg["mesh_key_file"] = filepath.Join(d, "wireguard.key")
			cfg["wireguard_go_bin"] = wgGo
		}
		b, _ := json.Marshal(cfg)
		os.WriteFile(filepath.Join(d, "pull.json"), b, 0o644)
		if i == 0 {
			e.started = time.Now()
		}
		e.pids = append(e.pids, e.start("pull-"+id, n.Command(bin, "run", "--config", filepath.Join(d, "pull.json"))))
	}
	return e
}

// meshInterface is node i's WireGuard interface: the lab's random id makes
// it unique on the machine (wireguard-go's sockets share one directory).
func (e *env) meshInterface(i int) string { return fmt.Sprintf("%sw%d", e.lab.ID, i) }

// cloudFirewall models a DigitalOcean Cloud Firewall in node n's namespace:
// only TCP, UDP and ICMP pass eth1, in and out; everything else (VRRP, IP
// protocol 112, counted on its own) is counted and dropped.
func cloudFirewall(t *testing.T, n *testutil.NetNode) {
	t.Helper()
	rules := `table inet dofw {
	chain in {
		type filter hook input priority 0; policy accept;
		iifname "eth1" meta l4proto 112 counter drop
		iifname "eth1" meta l4proto != { tcp, udp, icmp, ipv6-icmp } counter drop
	}
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "eth1" meta l4proto 112 counter drop
		oifname "eth1" meta l4proto != { tcp, udp, icmp, ipv6-icmp } counter drop
	}
}
`
	cmd := n.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", n.NS, err, out)
	}
}

// start runs cmd until the test ends, logging its output to a file that is
// printed when the test fails.
func (e *env) start(name string, cmd *exec.Cmd, env ...string) int {
	t := e.t
	logPath := filepath.Join(e.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	if e.done == nil {
		e.done = map[int]chan struct{}{}
	}
	e.done[cmd.Process.Pid] = done
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		f.Close()
		if t.Failed() && strings.HasPrefix(name, "pull-") {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log (tail):\n%s", name, tail(string(b), 40))
		}
	})
	return cmd.Process.Pid
}

// stop sends SIGTERM to a process start ran and waits until it exited.
func (e *env) stop(pid int) {
	e.t.Helper()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		e.t.Fatalf("SIGTERM %d: %v", pid, err)
	}
	select {
	case <-e.done[pid]:
	case <-time.After(30 * time.Second):
		e.t.Fatalf("pid %d still running 30 s after SIGTERM", pid)
	}
}

// daemonPid reads node i's haproxy.pid, keepalived.pid or wireguard-go.pid
// (0 if none).
func (e *env) daemonPid(i int, name string) int {
	b, err := os.ReadFile(filepath.Join(e.dir, e.ids[i], "run", name+".pid"))
	if err != nil {
		return 0
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	return pid
}

// killDaemons kills node i's haproxy, keepalived and wireguard-go, each
// with its process group (dynia-pull starts each in its own): master and
// workers, keepalived and its vrrp and checker children.
func (e *env) killDaemons(i int) {
	for _, name := range []string{"keepalived", "haproxy", "wireguard-go"} {
		if pid := e.daemonPid(i, name); pid > 1 {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // ESRCH: already gone
		}
	}
	// The process runtime's app instances outlive dynia-pull too: their
	// records name their pids (and start times, checked by Alive).
	recs, _ := filepath.Glob(filepath.Join(e.dir, e.ids[i], "run", "app", "r*.json"))
	for _, f := range recs {
		var r struct {
			PID  int    `json:"pid"`
			Tick uint64 `json:"start_tick"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &r) == nil && r.PID > 1 && procstat.Alive(r.PID, r.Tick) {
			_ = syscall.Kill(-r.PID, syscall.SIGKILL)
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (e *env) put() time.Time {
	e.t.Helper()
	e.state.Generation++
	b, err := e.state.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Put(context.Background(), cluster.StateKey("it"), b, bucket.Cond{}); err != nil {
		e.t.Fatal(err)
	}
	return time.Now()
}

// serves returns the app ids node i's HAProxy answered in rounds requests.
func (e *env) serves(i, rounds int) (map[string]int, error) {
	got := map[string]int{}
	for r := 0; r < rounds; r++ {
		resp, err := e.client.Get("http://" + e.lab.Nodes[i].Addr.String() + ":80/")
		if err != nil {
			return got, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return got, fmt.Errorf("node %s: status %d", e.ids[i], resp.StatusCode)
		}
		got[strings.TrimSpace(string(b))]++
	}
	return got, nil
}

// serving checks that every pulled node answers and routes to exactly want
// (ids).
func (e *env) serving(want ...string) error {
	want = append([]string(nil), want...)
	sort.Strings(want)
	for i := 0; i < e.pulled; i++ {
		got, err := e.serves(i, 3*len(want))
		if err != nil {
			return err
		}
		var ids []string
		for id := range got {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if strings.Join(ids, ",") != strings.Join(want, ",") {
			return fmt.Errorf("node %s serves %v, want %v", e.ids[i], ids, want)
		}
	}
	return nil
}

// converge waits until every pulled node serves exactly want (ids) and
// returns how long it took since `since`.
func (e *env) converge(since time.Time, want ...string) time.Duration {
	e.t.Helper()
	testutil.WaitFor(e.t, 60*time.Second, func() error { return e.serving(want...) })
	return time.Since(since)
}

// post sends one POST through node i's HAProxy on client, which keeps
// connections alive. The Transport silently re-sends a request that failed
// on a reused connection when the request is idempotent (GET, HEAD, an
// Idempotency-Key header) or, if nothing was written yet, when its body can
// be rewound through GetBody; a POST without GetBody is never re-sent, so
// every connection HAProxy drops during a reload is counted here.
func (e *env) post(client *http.Client, i int, reused *atomic.Int64) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+e.lab.Nodes[i].Addr.String()+":80/", bytes.NewReader([]byte("ping\n")))
	if err != nil {
		return err
	}
	req.GetBody = nil // NewRequest sets it for a bytes.Reader
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(c httptrace.GotConnInfo) {
			if c.Reused {
				reused.Add(1)
			}
		},
	}))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("node %s: read response: %w", e.ids[i], err)
	}
	if resp.StatusCode != 200 || !strings.HasSuffix(string(b), "\n") {
		return fmt.Errorf("node %s: status %d body %q", e.ids[i], resp.StatusCode, b)
	}
	return nil
}

// reported reads node i's status.json from the bucket.
func (e *env) reported(i int) (*report.Status, error) {
	obj, err := e.store.Get(context.Background(), cluster.StatusKey("it", e.ids[i]), "")
	if err != nil {
		return nil, err
	}
	return report.DecodeStatus(obj.Body)
}

// status asks node i's dynia-pull for its status on its loopback (metrics
// and status never listen beyond it), from inside the node's namespace.
func (e *env) status(i int) (*report.Status, error) {
	node := e.lab.Nodes[i]
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return node.Dial(ctx, network, addr)
		}}}
	resp, err := client.Get("http://127.0.0.1:9321/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return report.DecodeStatus(b)
}

func (e *env) setLifecycle(id string, lc cluster.Lifecycle) {
	for i := range e.state.Nodes {
		if e.state.Nodes[i].ID == id {
			e.state.Nodes[i].Lifecycle = lc
		}
	}
}

func p95(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)*95+99)/100-1]
}

// TestCluster runs three nodes with real dynia-pull, haproxy and keepalived
// in namespaces and a fourth app-only node that is added, drained and
// removed.
func TestCluster(t *testing.T) {
	testutil.Integration(t)
	const poll = time.Second
	e := newEnv(t, 4, 3, poll)
	a, b, c, d := e.ids[0], e.ids[1], e.ids[2], e.ids[3]

	// Start: the fourth node is still provisioning.
	e.setLifecycle(d, cluster.Provisioning)
	took := e.converge(e.put(), a, b, c)
	t.Logf("first convergence (daemons started from nothing): %v", took)

	// Add, drain, remove.
	e.setLifecycle(d, cluster.Ready)
	t.Logf("add %s: every node routes to it after %v", d, e.converge(e.put(), a, b, c, d))
	e.setLifecycle(d, cluster.Draining)
	t.Logf("drain %s: no node routes new requests to it after %v", d, e.converge(e.put(), a, b, c))
	e.setLifecycle(d, cluster.Ready)
	e.converge(e.put(), a, b, c, d)
	e.setLifecycle(d, cluster.Removing)
	t.Logf("remove %s: no node routes to it after %v", d, e.converge(e.put(), a, b, c))

	// 20 changes under bounded request loops, one per node on new
	// connections (GET) and one per node on keep-alive connections (POST,
	// never retried by the client): 0 failed requests. Keep-alive
	// connections are where a reload drops requests unless HAProxy has
	// `option idle-close-on-response` (docs/pull.md).
	var ok, failed, okKA, failedKA, reusedKA atomic.Int64
	keepAlive := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
	defer keepAlive.CloseIdleConnections()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load := func(i int, what string, req func() error, ok, failed *atomic.Int64) {
		defer wg.Done()
		for n := 0; n < 100000; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := req(); err != nil {
				failed.Add(1)
				t.Logf("%s request to %s failed: %v", what, e.ids[i], err)
			} else {
				ok.Add(1)
			}
		}
	}
	for w := 0; w < 3; w++ {
		wg.Add(2)
		go load(w, "new-connection GET", func() error { _, err := e.serves(w, 1); return err }, &ok, &failed)
		go load(w, "keep-alive POST", func() error { return e.post(keepAlive, w, &reusedKA) }, &okKA, &failedKA)
	}
	var times []time.Duration
	var want []string // what the last change routes to
	for i := 0; i < 20; i++ {
		want = []string{a, b, c}
		switch i % 3 {
		case 0:
			e.setLifecycle(d, cluster.Ready)
			want = append(want, d)
		case 1:
			e.setLifecycle(d, cluster.Draining)
		case 2:
			e.setLifecycle(d, cluster.Removing)
		}
		times = append(times, e.converge(e.put(), want...))
	}
	close(stop)
	wg.Wait()
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("20 changes: %d new-connection GETs, %d failed; %d keep-alive POSTs (%d on a reused connection), %d failed; convergence p50 %v p95 %v max %v (poll %v)",
		ok.Load()+failed.Load(), failed.Load(), okKA.Load()+failedKA.Load(), reusedKA.Load(), failedKA.Load(),
		times[len(times)/2], p95(times), times[len(times)-1], poll)
	if failed.Load() != 0 {
		t.Errorf("%d new-connection requests failed during 20 state changes", failed.Load())
	}
	if failedKA.Load() != 0 {
		t.Errorf("%d keep-alive requests failed during 20 state changes", failedKA.Load())
	}
	if reusedKA.Load() == 0 {
		t.Error("the keep-alive client never reused a connection: it tested nothing")
	}

	// A corrupt state: every node keeps serving the last good config and
	// reports the decode error in its status.json in the bucket.
	good := e.state.Generation
	e.store.Put(t.Context(), cluster.StateKey("it"), []byte(`{"schema_version": 1, "nodes": [`), bucket.Cond{})
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i := 0; i < e.pulled; i++ {
			st, err := e.reported(i)
			if err != nil {
				return fmt.Errorf("node %s status.json: %w", e.ids[i], err)
			}
			if !strings.HasPrefix(st.LastError, "decode") || st.AppliedGeneration != good {
				return fmt.Errorf("node %s status.json: last_error %q applied_generation %d, want a decode error and %d",
					e.ids[i], st.LastError, st.AppliedGeneration, good)
			}
		}
		return nil
	})
	if err := e.serving(want...); err != nil {
		t.Errorf("a node stopped serving the last good config after a corrupt state: %v", err)
	}
	e.setLifecycle(d, cluster.Ready)
	e.converge(e.put(), a, b, c, d)
	for i := 0; i < e.pulled; i++ {
		if st, err := e.status(i); err != nil || st.LastError != "" || st.AppliedGeneration != e.state.Generation {
			t.Errorf("node %s after the fix: %+v %v", e.ids[i], st, err)
		}
	}
	// Every node's report in the bucket converges too.
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i := 0; i < e.pulled; i++ {
			st, err := e.reported(i)
			if err != nil {
				return fmt.Errorf("node %s status.json: %w", e.ids[i], err)
			}
			if st.LastError != "" || st.AppliedGeneration != e.state.Generation {
				return fmt.Errorf("node %s status.json: last_error %q applied_generation %d, want none and %d",
					e.ids[i], st.LastError, st.AppliedGeneration, e.state.Generation)
			}
		}
		return nil
	})

	// Kill the MASTER's haproxy: another node becomes MASTER.
	master := -1
	testutil.WaitFor(t, 30*time.Second, func() error {
		n := 0
		for i := 0; i < e.pulled; i++ {
			if st, err := e.status(i); err == nil && st.VRRPState == report.VRRPMaster {
				master = i
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d MASTERs", n)
		}
		return nil
	})
	pidb, err := os.ReadFile(filepath.Join(e.dir, e.ids[master], "run", "haproxy.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(pidb), &pid)
	os.WriteFile(filepath.Join(e.dir, e.ids[master], "haproxy.down"), nil, 0o644)
	killed := time.Now()
	// dynia-pull runs haproxy in its own process group: kill master and workers.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill haproxy group %d: %v", pid, err)
	}
	testutil.WaitFor(t, 30*time.Second, func() error {
		for i := 0; i < e.pulled; i++ {
			if st, err := e.status(i); err == nil && i != master && st.VRRPState == report.VRRPMaster {
				return nil
			}
		}
		return fmt.Errorf("no new MASTER yet")
	})
	t.Logf("haproxy of MASTER %s killed: another node MASTER after %v (advert_int 1 s, bound 3x1+2 = 5 s)",
		e.ids[master], time.Since(killed))
}

// forward accepts on listen and copies each connection to target.
func forward(t *testing.T, listen, target string) string {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	return ln.Addr().String()
}
