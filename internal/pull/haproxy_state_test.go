package pull

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

// A `show servers state` dump as HAProxy 2.6 writes it (two servers).
const stateDump = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 app 1 amber-fox 10.9.0.1 2 0 100 100 12 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 app 2 brisk-owl 10.9.0.2 2 1 0 100 12 15 3 4 6 0 0 0 - 8080 - 0 0 - - 0
`

// TestFilterServerState: only servers the new config has in the same
// backend with the same address and port are carried; a dump without the
// columns to tell carries none.
func TestFilterServerState(t *testing.T) {
	t.Parallel()
	lines := strings.Split(stateDump, "\n")
	head, fox, owl := lines[0]+"\n"+lines[1]+"\n", lines[2]+"\n", lines[3]+"\n"
	cfg := func(fox, owl string) []byte {
		return []byte("global\n    server-state-file /run/x/haproxy.state\n\nbackend app\n    balance roundrobin\n" +
			"    server amber-fox " + fox + " check weight 100\n    # server brisk-owl 1.2.3.4:1\n" +
			"    server brisk-owl " + owl + " check weight 0\n")
	}
	tests := []struct {
		name string
		cfg  []byte
		dump string
		want string
	}{
		{"unchanged", cfg("10.9.0.1:8080", "10.9.0.2:8080"), stateDump, head + fox + owl},
		{"port changed", cfg("10.9.0.1:9090", "10.9.0.2:8080"), stateDump, head + owl},
		{"address changed", cfg("10.9.0.1:8080", "10.9.0.7:8080"), stateDump, head + fox},
		{"server gone", []byte("backend app\n    server amber-fox 10.9.0.1:8080 check\n"), stateDump, head + fox},
		{"other backend", []byte("backend web\n    server amber-fox 10.9.0.1:8080 check\n"), stateDump, head},
		{"no header", cfg("10.9.0.1:8080", "10.9.0.2:8080"), "1\n" + fox, "1\n"},
		{"empty", cfg("10.9.0.1:8080", "10.9.0.2:8080"), "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, servers := configServers(tc.cfg)
			if diff := cmp.Diff(tc.want, string(filterServerState([]byte(tc.dump), servers))); diff != "" {
				t.Errorf("filtered dump (-want +got):\n%s", diff)
			}
		})
	}
	if path, _ := configServers(cfg("a:1", "b:2")); path != "/run/x/haproxy.state" {
		t.Errorf("server-state-file %q", path)
	}

	// pruneServerState rewrites the file the config names, before a cold start.
	dir := t.TempDir()
	state := filepath.Join(dir, "haproxy.state")
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	c := strings.Replace(string(cfg("10.9.0.1:9090", "10.9.0.2:8080")), "/run/x/haproxy.state", state, 1)
	if err := os.WriteFile(cfgPath, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := pruneServerState(cfgPath); err != nil { // no state file yet: nothing to do
		t.Fatal(err)
	}
	if err := os.WriteFile(state, []byte(stateDump), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pruneServerState(cfgPath); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(state); string(b) != head+owl {
		t.Errorf("pruned state file:\n%s\nwant:\n%s", b, head+owl)
	}
}

// app is one app port on the test's side of the lab: it counts the
// requests it serves (health checks apart) and streams on /stream.
type app struct {
	port int
	hits atomic.Int64
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case cluster.DefaultHealthPath:
		fmt.Fprintln(w, "ok")
	case "/stream":
		// A response that never ends on its own: a chunk every 100 ms.
		for {
			if _, err := fmt.Fprintf(w, "chunk from %d\n", a.port); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	default:
		a.hits.Add(1)
		fmt.Fprintf(w, "port %d\n", a.port)
	}
}

// haproxyLab is a real HAProxy in a node namespace, started the way systemd
// would (not supervised), configured by a Daemon's Apply from states of two
// nodes: amber-fox, the node HAProxy runs on (draining, so its own app
// frontend, which forwards to nothing here, takes no requests), and
// brisk-owl, an app-only peer whose app is a listener of this test on the
// lab's root address.
type haproxyLab struct {
	t      *testing.T
	lab    *testutil.NetLab
	d      *Daemon
	set    Settings
	st     *cluster.State
	client *http.Client
	pid    int
	done   chan struct{}
}

func newHAProxyLab(t *testing.T) *haproxyLab {
	t.Helper()
	testutil.Integration(t)
	testutil.NeedRoot(t)
	haproxy := testutil.NeedBinary(t, "haproxy")
	tool, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	set := Settings{Cluster: "shop", NodeID: "amber-fox", PollInterval: time.Second,
		HAProxyConfig: filepath.Join(dir, "haproxy.cfg"), KeepalivedConfig: filepath.Join(dir, "keepalived.conf"),
		RunDir: filepath.Join(dir, "run"), HAProxyBin: haproxy, KeepalivedBin: tool}
	if err := os.MkdirAll(set.RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &haproxyLab{t: t, lab: testutil.NewNetLab(t, 1), set: set, d: New(set, newMemStore(), Options{Version: "test"}),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	l.st = cluster.New("shop", "sgp1", "s-1vcpu-1gb", "img", time.Now())
	l.st.Nodes = []cluster.Node{
		{ID: "amber-fox", PrivateIP: l.lab.Nodes[0].Addr.String(), Priority: 150, Role: cluster.RoleActive, Lifecycle: cluster.Draining},
		{ID: "brisk-owl", PrivateIP: l.lab.RootAddr.String(), Priority: 140, Role: cluster.RoleStandby, Lifecycle: cluster.Ready},
	}
	t.Cleanup(l.stop)
	return l
}

// newApp serves an app on a free port of the lab's root address.
func (l *haproxyLab) newApp() *app {
	l.t.Helper()
	ln, err := net.Listen("tcp", l.lab.RootAddr.String()+":0")
	if err != nil {
		l.t.Fatal(err)
	}
	a := &app{port: ln.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	l.t.Cleanup(func() { _ = srv.Close() })
	return a
}

// apply applies the next generation of the state, with brisk-owl's app on port.
func (l *haproxyLab) apply(port int) {
	l.t.Helper()
	l.st.Generation++
	l.st.Nodes[1].AppPort = port
	if _, err := l.d.Apply(context.Background(), l.st.Clone()); err != nil {
		l.t.Fatalf("apply generation %d: %v", l.st.Generation, err)
	}
}

// start starts HAProxy cold in the node's namespace, in its own process
// group (master and workers die together in stop).
func (l *haproxyLab) start() {
	l.t.Helper()
	cmd := l.lab.Nodes[0].Command(l.set.HAProxyBin, "-W", "-db", "-S", l.d.paths.MasterSocket+",mode,600",
		"-f", l.set.HAProxyConfig, "-p", l.d.paths.HAProxyPid)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	log, err := os.Create(filepath.Join(l.t.TempDir(), "haproxy.log"))
	if err != nil {
		l.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.pid, l.done = cmd.Process.Pid, make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(l.done) }()
	testutil.WaitFor(l.t, 30*time.Second, func() error {
		_, err := masterReloads(context.Background(), l.d.paths.MasterSocket)
		return err
	})
}

// stop kills HAProxy's process group (master and every worker) and waits.
func (l *haproxyLab) stop() {
	if l.pid == 0 {
		return
	}
	_ = syscall.Kill(-l.pid, syscall.SIGKILL) // ESRCH: already gone
	<-l.done
	l.pid = 0
}

// get sends one request through HAProxy on a new connection.
func (l *haproxyLab) get(path string) (string, error) {
	resp, err := l.client.Get("http://" + l.lab.Nodes[0].Addr.String() + ":80" + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return strings.TrimSpace(string(b)), nil
}

// servesOnly waits until requests through HAProxy reach want, then checks
// that n more all do and that not one reaches other.
func (l *haproxyLab) servesOnly(want, other *app, n int) {
	l.t.Helper()
	wantBody := fmt.Sprintf("port %d", want.port)
	testutil.WaitFor(l.t, 30*time.Second, func() error {
		got, err := l.get("/")
		if err == nil && got != wantBody {
			err = fmt.Errorf("answered %q, want %q", got, wantBody)
		}
		return err
	})
	before := other.hits.Load()
	for range n {
		if got, err := l.get("/"); err != nil || got != wantBody {
			l.t.Fatalf("request through HAProxy: %q, %v; want %q", got, err, wantBody)
		}
	}
	if hits := other.hits.Load() - before; hits != 0 {
		l.t.Fatalf("the app on port %d got %d of %d requests; it is no longer in the config", other.port, hits, n)
	}
}

// serverPort is brisk-owl's port in the running worker (`show servers state`).
func (l *haproxyLab) serverPort() string {
	l.t.Helper()
	out, err := socketCmd(context.Background(), l.d.paths.StatsSocket, "show servers state app")
	if err != nil {
		l.t.Fatal(err)
	}
	col := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(strings.TrimPrefix(line, "#"))
		switch {
		case strings.HasPrefix(line, "#"):
			for i, name := range f {
				col[name] = i
			}
		case len(col) > 0 && len(f) > col["srv_port"] && f[col["srv_name"]] == "brisk-owl":
			return f[col["srv_port"]]
		}
	}
	l.t.Fatalf("no brisk-owl in show servers state:\n%s", out)
	return ""
}

// TestAppPortChangeFollowsTheState is issue 11's reproduction: a node's
// app_port changes in the state; after the reload HAProxy's running worker
// has the new port (show servers state), the listener on the new port
// serves every request and the old one gets none, and so after a cold
// restart of HAProxy from the files on disk.
func TestAppPortChangeFollowsTheState(t *testing.T) {
	l := newHAProxyLab(t)
	oldApp, newApp := l.newApp(), l.newApp()
	l.apply(oldApp.port)
	l.start()
	l.servesOnly(oldApp, newApp, 5)

	l.apply(newApp.port) // a reload through the master socket
	if got := l.serverPort(); got != strconv.Itoa(newApp.port) {
		t.Fatalf("after the reload the worker has brisk-owl on port %s, want %d", got, newApp.port)
	}
	l.servesOnly(newApp, oldApp, 20)

	l.stop()
	l.start() // cold: loads the server-state-file left on disk
	if got := l.serverPort(); got != strconv.Itoa(newApp.port) {
		t.Fatalf("after a cold restart the worker has brisk-owl on port %s, want %d", got, newApp.port)
	}
	l.servesOnly(newApp, oldApp, 20)
}

// stream is a streaming response through HAProxy, read until it ends.
type stream struct {
	done chan struct{}
	err  error // why it ended
}

// openStream starts GET /stream through HAProxy on a new connection and
// returns once the first chunk arrived.
func (l *haproxyLab) openStream() *stream {
	l.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	l.t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.lab.Nodes[0].Addr.String()+":80/stream", nil)
	if err != nil {
		l.t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} // no timeout: it streams
	resp, err := c.Do(req)
	if err != nil {
		l.t.Fatal(err)
	}
	// read closes it when the stream ends; a stream still open when the
	// test ends (it failed) is closed here.
	l.t.Cleanup(func() { _ = resp.Body.Close() })
	s := &stream{done: make(chan struct{})}
	first := make(chan error, 1)
	go s.read(resp.Body, first)
	if err := <-first; err != nil {
		l.t.Fatalf("first chunk of the stream: %v", err)
	}
	return s
}

// read reports the first chunk on first, then reads body until it ends.
func (s *stream) read(body io.ReadCloser, first chan<- error) {
	defer close(s.done)
	defer body.Close()
	buf := make([]byte, 64)
	_, err := body.Read(buf)
	first <- err
	if err != nil {
		s.err = err
		return
	}
	_, s.err = io.Copy(io.Discard, body)
	if s.err == nil {
		s.err = io.EOF
	}
}

// oldWorkers returns the pids the master lists under "# old workers".
func (l *haproxyLab) oldWorkers() []int {
	l.t.Helper()
	pids, err := oldWorkerPIDs(context.Background(), l.d.paths.MasterSocket)
	if err != nil {
		l.t.Fatal(err)
	}
	return pids
}

// rssKiB is a process's resident set size (VmRSS), 0 if it is gone.
func rssKiB(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// TestOldWorkersEndAtHardStopAfter: six reloads, each leaving a streaming
// response open on the worker it replaces, leave old workers serving (the
// master's `show proc`); once hard-stop-after has passed they are all gone,
// their streams cut, and the current worker still serves.
func TestOldWorkersEndAtHardStopAfter(t *testing.T) {
	l := newHAProxyLab(t)
	a, none := l.newApp(), l.newApp()
	l.apply(a.port)
	if b, err := os.ReadFile(l.set.HAProxyConfig); err != nil || !strings.Contains(string(b), "hard-stop-after 30s") {
		t.Fatalf("the rendered haproxy.cfg has no hard-stop-after 30s (%v)", err)
	}
	l.start()
	l.servesOnly(a, none, 1)
	ctx := context.Background()
	var streams []*stream
	for range 6 {
		streams = append(streams, l.openStream())
		if err := reloadHAProxy(ctx, l.d.paths.MasterSocket); err != nil {
			t.Fatal(err)
		}
	}
	old := l.oldWorkers()
	rss := 0
	for _, pid := range old {
		rss += rssKiB(pid)
	}
	t.Logf("after 6 reloads with open streams: %d old workers, RSS %d KiB in all (%d KiB each)", len(old), rss, rss/max(len(old), 1))
	if len(old) == 0 {
		t.Fatal("no old worker after reloads with open streams: the test tested nothing")
	}
	testutil.WaitFor(t, 2*time.Minute, func() error {
		if old := l.oldWorkers(); len(old) != 0 {
			return fmt.Errorf("old workers still running: %v", old)
		}
		return nil
	})
	for _, pid := range old {
		if n := rssKiB(pid); n != 0 {
			t.Errorf("old worker %d still holds %d KiB", pid, n)
		}
	}
	t.Logf("after hard-stop-after: 0 old workers, 0 KiB")
	for i, s := range streams {
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Fatalf("stream %d still flowing after its worker was stopped", i)
		}
	}
	l.servesOnly(a, none, 5)
}

// TestSupervisedStartPrunesServerState: supervise mode prunes the
// server-state-file against the config before it starts HAProxy cold, so a
// stale file (left by an older dynia-pull) pins nothing. The stand-in
// haproxy records the file as it finds it at its start.
func TestSupervisedStartPrunesServerState(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	set := Settings{Cluster: "shop", NodeID: "amber-fox", PollInterval: time.Second, Supervise: true,
		HAProxyConfig: filepath.Join(dir, "haproxy.cfg"), KeepalivedConfig: filepath.Join(dir, "keepalived.conf"),
		RunDir: filepath.Join(dir, "run"), HAProxyBin: filepath.Join(dir, "haproxy"), KeepalivedBin: "keepalived"}
	d := New(set, newMemStore(), Options{Version: "test"})
	seen := filepath.Join(dir, "seen")
	script := "#!/bin/sh\ncat " + d.paths.ServerStateFile + " > " + seen + ".tmp && mv " + seen + ".tmp " + seen + "\nexec sleep 60\n"
	if err := os.WriteFile(set.HAProxyBin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := "global\n    server-state-file " + d.paths.ServerStateFile + "\n\nbackend app\n" +
		"    server amber-fox 10.9.0.1:9090 check weight 100\n    server brisk-owl 10.9.0.2:8080 check weight 100\n"
	if err := os.WriteFile(set.HAProxyConfig, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(set.RunDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.paths.ServerStateFile, []byte(stateDump), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		pid := d.sup.pid("haproxy")
		cancel()
		d.sup.wait()
		if pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL) // the daemon outlives dynia-pull
		}
	})
	if err := d.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	var got []byte
	testutil.WaitFor(t, 30*time.Second, func() error {
		var err error
		got, err = os.ReadFile(seen)
		return err
	})
	lines := strings.Split(stateDump, "\n")
	if want := lines[0] + "\n" + lines[1] + "\n" + lines[3] + "\n"; string(got) != want {
		t.Fatalf("haproxy started with the server state:\n%s\nwant (amber-fox's port changed, so dropped):\n%s", got, want)
	}
}
