package pull

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/failover"
	"github.com/dynia/dynia/internal/report"
)

// memStore is an in-memory bucket.Store with ETags.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	tags map[string]string
	n    int
	err  error // returned by every call when set
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}, tags: map[string]string{}} }

func (m *memStore) Get(_ context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return nil, m.err
	}
	b, ok := m.objs[key]
	if !ok {
		return nil, bucket.ErrNotFound
	}
	if ifNoneMatch != "" && ifNoneMatch == m.tags[key] {
		return nil, bucket.ErrNotModified
	}
	return &bucket.Object{Body: b, ETag: m.tags[key]}, nil
}

func (m *memStore) Put(_ context.Context, key string, body []byte, _ bucket.Cond) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return "", m.err
	}
	m.n++
	m.objs[key] = append([]byte(nil), body...)
	m.tags[key] = strings.Repeat("e", m.n)
	return m.tags[key], nil
}
func (m *memStore) Delete(context.Context, string) error                { return nil }
func (m *memStore) List(context.Context, string) ([]bucket.Info, error) { return nil, nil }
func (m *memStore) String() string                                      { return "mem://" }

func testState(gen int64, n int) *cluster.State {
	s := cluster.New("shop", "sgp1", "s-1vcpu-1gb", "img", time.Unix(0, 0))
	s.Generation = gen
	ids := []string{"amber-fox", "brisk-owl", "calm-heron"}
	for i := 0; i < n; i++ {
		role := cluster.RoleStandby
		if i == 0 {
			role = cluster.RoleActive
		}
		s.Nodes = append(s.Nodes, cluster.Node{ID: ids[i], PrivateIP: "10.9.0." + string(rune('1'+i)),
			Priority: 150 - 10*i, Role: role, Lifecycle: cluster.Ready})
	}
	return s
}

func putState(t *testing.T, m *memStore, s *cluster.State) {
	t.Helper()
	b, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	m.Put(context.Background(), cluster.StateKey(s.Name), b, bucket.Cond{})
}

// newTestDaemon uses /bin/true (or /bin/false) as haproxy and keepalived:
// validation passes (or fails) and nothing is running to reload.
func newTestDaemon(t *testing.T, tool string) (*Daemon, *memStore, Settings) {
	t.Helper()
	bin, err := exec.LookPath(tool)
	if err != nil {
		t.Skip(tool, "not found")
	}
	dir := t.TempDir()
	set := Settings{Cluster: "shop", NodeID: "amber-fox", PollInterval: time.Second,
		HAProxyConfig: filepath.Join(dir, "etc/haproxy.cfg"), KeepalivedConfig: filepath.Join(dir, "etc/keepalived.conf"),
		RunDir: filepath.Join(dir, "run"), HAProxyBin: bin, KeepalivedBin: bin}
	m := newMemStore()
	return New(set, m, Options{Version: "test"}), m, set
}

func TestStepAppliesAndSkips(t *testing.T) {
	t.Parallel()
	d, m, set := newTestDaemon(t, "true")
	ctx := context.Background()
	putState(t, m, testState(1, 2))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("first step = %v, %v; want Changed", res, err)
	}
	hp, _ := os.ReadFile(set.HAProxyConfig)
	if !strings.Contains(string(hp), "server brisk-owl 10.9.0.2:8080 check weight 100") {
		t.Errorf("haproxy.cfg lacks brisk-owl:\n%s", hp)
	}
	if res, err := d.Step(ctx, false); err != nil || res != Unchanged {
		t.Fatalf("not-modified step = %v, %v", res, err)
	}
	// A new generation with the same content is applied without rewriting,
	// and reported at once (the CLI waits for it).
	select {
	case <-d.rep.kickc:
	default:
	}
	putState(t, m, testState(2, 2))
	if res, err := d.Step(ctx, false); err != nil || res != Unchanged {
		t.Fatalf("same-content step = %v, %v", res, err)
	}
	select {
	case <-d.rep.kickc:
	default:
		t.Error("a new generation that changed no file asked for no status report")
	}
	if g := d.rep.snapshot().AppliedGeneration; g != 2 {
		t.Errorf("applied generation = %d, want 2", g)
	}
	// A hand edit is repaired by a forced step.
	os.WriteFile(set.HAProxyConfig, append(hp, "# edit\n"...), 0o644)
	if res, err := d.Step(ctx, true); err != nil || res != Changed {
		t.Fatalf("forced step = %v, %v", res, err)
	}
	// Draining renders weight 0.
	s := testState(3, 2)
	s.Node("brisk-owl").Lifecycle = cluster.Draining
	putState(t, m, s)
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("drain step = %v, %v", res, err)
	}
	hp, _ = os.ReadFile(set.HAProxyConfig)
	if !strings.Contains(string(hp), "server brisk-owl 10.9.0.2:8080 check weight 0") {
		t.Errorf("draining node not at weight 0:\n%s", hp)
	}
	entries, _ := os.ReadDir(filepath.Dir(set.HAProxyConfig))
	if len(entries) != 2 {
		t.Errorf("leftover staged files: %v", entries)
	}
}

func TestBadInputKeepsLastGood(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name, reason string
		body         string
	}{
		{"corrupt json", "decode", `{"schema_version": 1, "nodes": [`},
		{"unknown schema", "decode", `{"schema_version": 0}`},
		{"newer schema", "upgrade_required", `{"schema_version": 99}`},
		{"wrong cluster", "wrong_cluster", ""},
		{"node missing", "removed", ""},
		{"duplicate ip", "decode", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d, m, set := newTestDaemon(t, "true")
			putState(t, m, testState(1, 2))
			if _, err := d.Step(ctx, false); err != nil {
				t.Fatal(err)
			}
			good, _ := os.ReadFile(set.HAProxyConfig)
			body := []byte(tc.body)
			switch tc.name {
			case "wrong cluster":
				s := testState(2, 2)
				s.Name = "other"
				body, _ = s.Encode()
			case "node missing":
				s := testState(2, 2)
				s.Nodes = s.Nodes[1:]
				body, _ = s.Encode()
			case "duplicate ip":
				s := testState(2, 2)
				b, _ := s.Encode()
				body = []byte(strings.Replace(string(b), "10.9.0.2", "10.9.0.1", 1))
			}
			m.Put(ctx, cluster.StateKey("shop"), body, bucket.Cond{})
			_, err := d.Step(ctx, false)
			var ae *ApplyError
			if !errors.As(err, &ae) || ae.Reason != tc.reason {
				t.Fatalf("err = %v; want reason %s", err, tc.reason)
			}
			now, _ := os.ReadFile(set.HAProxyConfig)
			if string(now) != string(good) {
				t.Error("config on disk changed")
			}
			if st := d.rep.snapshot(); st.LastError == "" || st.AppliedGeneration != 1 {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestToolRejectsRender(t *testing.T) {
	t.Parallel()
	d, m, set := newTestDaemon(t, "false")
	putState(t, m, testState(1, 1))
	_, err := d.Step(context.Background(), false)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != "validate_haproxy" {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(set.HAProxyConfig); !os.IsNotExist(err) {
		t.Error("rejected config was installed")
	}
	entries, _ := os.ReadDir(filepath.Dir(set.HAProxyConfig))
	if len(entries) != 0 {
		t.Errorf("staged files left: %v", entries)
	}
}

func TestPollErrorAndStatus(t *testing.T) {
	t.Parallel()
	d, m, _ := newTestDaemon(t, "true")
	ctx := context.Background()
	m.err = bucket.ErrAccessDenied
	_, err := d.Step(ctx, false)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != "poll" {
		t.Fatalf("err = %v", err)
	}
	m.err = nil
	putState(t, m, testState(1, 1))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatal(err)
	}
	if d.rep.snapshot().LastError != "" {
		t.Error("error not cleared after a good apply")
	}
	d.rep.write(ctx)
	obj, err := m.Get(ctx, cluster.StatusKey("shop", "amber-fox"), "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := report.DecodeStatus(obj.Body)
	if err != nil || st.AppliedGeneration != 1 || st.NodeID != "amber-fox" || st.VRRPState != report.VRRPUnknown {
		t.Errorf("status = %+v, %v", st, err)
	}
	if err := d.healthy(); err != nil {
		t.Errorf("healthy: %v", err)
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	out := "# pxname,svname,qcur,status,weight\nhttp,FRONTEND,,OPEN,\napp,a-b,,UP,100\napp,c-d,,DOWN 1/2,100\napp,e-f,,DRAIN,0\napp,g-h,,UP,0\napp,i-j,,MAINT,100\napp,BACKEND,,UP,100\n"
	got, err := parseStat(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "a-b=UP c-d=DOWN e-f=DRAIN g-h=DRAIN i-j=MAINT"
	var parts []string
	for _, b := range got {
		parts = append(parts, b.ID+"="+b.Status)
	}
	if s := strings.Join(parts, " "); s != want {
		t.Errorf("got %s, want %s", s, want)
	}
}

func TestParseNotify(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]string{
		`INSTANCE "dynia" MASTER 150`: report.VRRPMaster, `INSTANCE "dynia" BACKUP 140`: report.VRRPBackup,
		`INSTANCE "dynia" FAULT 0`: report.VRRPFault, `INSTANCE "dynia" STOP 0`: report.VRRPUnknown, `GROUP "g" MASTER`: "",
	} {
		if got, _ := parseNotify(line); got != want {
			t.Errorf("parseNotify(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	for n := 1; n < 12; n++ {
		d := backoff(2*time.Second, n)
		if d <= 0 || d > maxBackoff {
			t.Errorf("backoff(%d) = %v", n, d)
		}
	}
	if d := backoff(2*time.Second, 10); d < maxBackoff/2 {
		t.Errorf("backoff(10) = %v, want near the cap", d)
	}
}

type fakeClaimer struct{ calls chan string }

func (f fakeClaimer) Claim(_ context.Context, _ *cluster.State, reason string) (failover.Result, error) {
	f.calls <- reason
	return failover.Result{Outcome: failover.Assigned, Reason: reason}, nil
}

func (f fakeClaimer) Check(context.Context, *cluster.State) (failover.Result, error) {
	return failover.Result{Outcome: failover.AlreadyHere, Reason: "already here"}, nil
}

func (f fakeClaimer) Verify(context.Context) error { return nil }

func TestMasterClaims(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := fakeClaimer{make(chan string, 4)}
	d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: dir, PollInterval: time.Second}, newMemStore(), Options{Claimer: c})
	if err := ensureFIFO(d.paths.NotifyFIFO); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go readFIFO(ctx, d.paths.NotifyFIFO, d.onVRRP)
	go d.claim.run(ctx)
	f, err := os.OpenFile(d.paths.NotifyFIFO, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("INSTANCE \"dynia\" BACKUP 150\nINSTANCE \"dynia\" MASTER 150\n")
	f.Close()
	select {
	case r := <-c.calls:
		if !strings.Contains(r, "MASTER") {
			t.Errorf("reason %q", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no claim")
	}
}

// stateClaimer records each call with the VRRP state the daemon had when
// the call was made.
type stateClaimer struct {
	d     *Daemon
	calls chan string
}

func (c *stateClaimer) Claim(_ context.Context, _ *cluster.State, reason string) (failover.Result, error) {
	c.calls <- c.d.rep.snapshot().VRRPState + ": " + reason
	return failover.Result{Outcome: failover.Assigned, Reason: reason}, nil
}

func (c *stateClaimer) Check(context.Context, *cluster.State) (failover.Result, error) {
	c.calls <- c.d.rep.snapshot().VRRPState + ": check"
	return failover.Result{Outcome: failover.AlreadyHere, Reason: "already here"}, nil
}

func (c *stateClaimer) Verify(context.Context) error { return nil }

// msgHandler is a slog.Handler passing each record's message to a channel.
type msgHandler chan string

func (h msgHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h msgHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h <- r.Message:
	default: // the test reads only the lines it waits for
	}
	return nil
}
func (h msgHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h msgHandler) WithGroup(string) slog.Handler      { return h }

// TestNoClaimAfterMaster: a claim queued while MASTER is dropped when the
// node is BACKUP or FAULT by the time the claim loop reads it; becoming
// MASTER again claims.
func TestNoClaimAfterMaster(t *testing.T) {
	t.Parallel()
	for _, next := range []string{report.VRRPBackup, report.VRRPFault} {
		t.Run(next, func(t *testing.T) {
			t.Parallel()
			logs := make(msgHandler, 64)
			c := &stateClaimer{calls: make(chan string, 4)}
			d := New(Settings{Cluster: "shop", NodeID: "amber-fox", RunDir: t.TempDir(), PollInterval: time.Second},
				newMemStore(), Options{Claimer: c, Logger: slog.New(logs)})
			c.d = d
			// What the fifo reader does for "MASTER" then "BACKUP" arriving
			// before the claim loop gets to run.
			d.onVRRP(report.VRRPMaster)
			d.onVRRP(next)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go d.claim.run(ctx)
			timeout := time.After(10 * time.Second)
		wait:
			for {
				select {
				case call := <-c.calls:
					t.Fatalf("claimer called after the %s transition (%s)", next, call)
				case msg := <-logs:
					if strings.Contains(msg, "claim dropped") {
						break wait
					}
				case <-timeout:
					t.Fatal("the queued claim was neither dropped nor made")
				}
			}
			d.onVRRP(report.VRRPMaster)
			select {
			case call := <-c.calls:
				if !strings.HasPrefix(call, report.VRRPMaster+": vrrp "+next+" -> MASTER") {
					t.Errorf("call %q; want a claim made as MASTER for the %s -> MASTER transition", call, next)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no claim after becoming MASTER again")
			}
		})
	}
}

// newRecordingDaemon is newTestDaemon with reload commands that append the
// daemon's name to the file log names, one line per reload.
func newRecordingDaemon(t *testing.T) (d *Daemon, m *memStore, set Settings, log string) {
	t.Helper()
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("true not found")
	}
	dir := t.TempDir()
	log = filepath.Join(dir, "reloads")
	set = Settings{Cluster: "shop", NodeID: "amber-fox", PollInterval: time.Second,
		HAProxyConfig: filepath.Join(dir, "etc/haproxy.cfg"), KeepalivedConfig: filepath.Join(dir, "etc/keepalived.conf"),
		RunDir: filepath.Join(dir, "run"), HAProxyBin: bin, KeepalivedBin: bin,
		HAProxyReload:    []string{"sh", "-c", `echo haproxy >> "$0"`, log},
		KeepalivedReload: []string{"sh", "-c", `echo keepalived >> "$0"`, log}}
	m = newMemStore()
	return New(set, m, Options{Version: "test"}), m, set, log
}

// TestReloadCommands: reload commands from pull.json replace the built-in
// reloads, run once per changed file, and a failing one is an apply error
// naming the command (the new files stay installed: they passed validation).
func TestReloadCommands(t *testing.T) {
	t.Parallel()
	d, m, set, log := newRecordingDaemon(t)
	ctx := context.Background()
	putState(t, m, testState(1, 2))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("first step = %v, %v", res, err)
	}
	// Draining a peer changes haproxy.cfg only.
	s := testState(2, 2)
	s.Node("brisk-owl").Lifecycle = cluster.Draining
	putState(t, m, s)
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("drain step = %v, %v", res, err)
	}
	got, _ := os.ReadFile(log)
	if want := "haproxy\nkeepalived\nhaproxy\n"; string(got) != want {
		t.Fatalf("reload commands run:\n%s\nwant:\n%s", got, want)
	}

	set.HAProxyReload = []string{"sh", "-c", "echo refused >&2; exit 3"}
	d.Reconfigure(set, m)
	putState(t, m, testState(3, 2))
	_, err := d.Step(ctx, false)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != "reload_haproxy" || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("failing reload command: %v", err)
	}
}

// TestPartialInstallReloads: when keepalived.conf cannot be renamed into
// place after haproxy.cfg was, the next apply finds haproxy.cfg already
// current and must still reload HAProxy, which is running the old config.
func TestPartialInstallReloads(t *testing.T) {
	t.Parallel()
	d, m, set, log := newRecordingDaemon(t)
	ctx := context.Background()
	putState(t, m, testState(1, 2))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatal(err)
	}
	// A third node changes both files; a directory where keepalived.conf
	// goes makes its rename fail after haproxy.cfg was renamed.
	if err := os.Remove(set.KeepalivedConfig); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(set.KeepalivedConfig, 0o755); err != nil {
		t.Fatal(err)
	}
	putState(t, m, testState(2, 3))
	_, err := d.Step(ctx, false)
	var ae *ApplyError
	if !errors.As(err, &ae) || ae.Reason != "install" {
		t.Fatalf("step with keepalived.conf a directory: %v; want an install error", err)
	}
	if hp, _ := os.ReadFile(set.HAProxyConfig); !strings.Contains(string(hp), "server calm-heron") {
		t.Fatal("haproxy.cfg was not installed before the failing rename; the test does not exercise a partial install")
	}
	if err := os.Remove(set.KeepalivedConfig); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("step after the fix = %v, %v", res, err)
	}
	got, _ := os.ReadFile(log)
	if want := "haproxy\nkeepalived\nhaproxy\nkeepalived\n"; string(got) != want {
		t.Errorf("reloads run:\n%s\nwant:\n%s", got, want)
	}
	if st := d.rep.snapshot(); st.LastError != "" || st.AppliedGeneration != 2 {
		t.Errorf("status after the fix: %+v", st)
	}
}

// TestHandler: /healthz is 503 until a first apply and 200 after it;
// /metrics exports exactly the dynia_pull_* metrics docs/pull.md lists.
func TestHandler(t *testing.T) {
	t.Parallel()
	d, m, set := newTestDaemon(t, "true")
	// A reload command makes the reload histogram observe something (nothing
	// runs to reload otherwise), so every documented metric is exported.
	set.HAProxyReload, set.KeepalivedReload = []string{set.HAProxyBin}, []string{set.KeepalivedBin}
	d.Reconfigure(set, m)
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	ctx := context.Background()

	if code, body := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz before any apply = %d %q; want 503", code, body)
	}
	m.err = bucket.ErrAccessDenied // a failed poll: apply_failures gets a label
	if _, err := d.Step(ctx, false); err == nil {
		t.Fatal("step with a failing store succeeded")
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz after a failed poll = %d %q; want 503", code, body)
	}
	m.err = nil
	putState(t, m, testState(1, 2))
	if res, err := d.Step(ctx, false); err != nil || res != Changed {
		t.Fatalf("step = %v, %v", res, err)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after a good apply = %d %q; want 200", code, body)
	}
	if code, body := get("/status"); code != http.StatusOK || !strings.Contains(body, `"applied_generation":1`) {
		t.Errorf("/status = %d %s", code, body)
	}

	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	exported := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "dynia_pull_") {
			exported[f[2]] = true
		}
	}
	doc, err := os.ReadFile("../../docs/pull.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, name := range regexp.MustCompile(`dynia_pull_[a-z_]+[a-z]`).FindAllString(string(doc), -1) {
		documented[name] = true
	}
	if len(documented) == 0 {
		t.Fatal("docs/pull.md names no dynia_pull_ metric")
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("docs/pull.md lists %s; /metrics does not export it", name)
		}
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("/metrics exports %s; docs/pull.md does not list it", name)
		}
	}
	for _, want := range []string{
		`dynia_pull_applied_generation 1`,
		`dynia_pull_apply_failures_total{reason="poll"} 1`,
		`dynia_pull_applies_total 1`,
		`dynia_pull_vrrp_state{state="UNKNOWN"} 1`,
		`dynia_pull_reload_duration_seconds_count{daemon="haproxy"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
