package pull_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/pull"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

// These tests run the real pull.Run in-process against a real S3 gateway
// (versitygw) and change its node config and credentials files the way
// cloud-init or an operator does, checking that the daemon follows without
// a restart. supervise is off and haproxy/keepalived are /bin/true, so no
// daemons are needed and nothing is reloaded: the subject is the config
// reload path (fsnotify, the Reload channel, the store swap); real tool
// validation and reloads are TestCluster's.

const reloadCluster = "rl"

// reloadEnv is one in-process dynia-pull with its files and a versitygw.
type reloadEnv struct {
	t       *testing.T
	s3      *testutil.S3Server
	lab     *testutil.NetLab // only for its addresses: the state's private IPs
	dir     string
	cfgPath string // what Run is given (may be a symlink)
	creds   string
	metrics string // host:port of /status
	tool    string // /bin/true: validates everything, runs nothing
	logs    *testutil.Buffer
	reload  chan struct{}
	haproxy string // the rendered haproxy.cfg
	poll    string // poll_interval written by config
	gens    map[string]int64
}

func newReloadEnv(t *testing.T) *reloadEnv {
	t.Helper()
	testutil.Integration(t)
	lab := testutil.NewNetLab(t, 0)
	s3 := testutil.StartVersityGW(t)
	tool, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("true not on PATH: %v", err)
	}
	dir := t.TempDir()
	e := &reloadEnv{t: t, s3: s3, lab: lab, dir: dir, tool: tool, logs: &testutil.Buffer{},
		cfgPath: filepath.Join(dir, "pull.json"), creds: filepath.Join(dir, "creds.json"),
		reload: make(chan struct{}), haproxy: filepath.Join(dir, "haproxy.cfg"),
		gens: map[string]int64{}, poll: "200ms"}
	return e
}

// config is a valid pull.json reading the state under prefix.
func (e *reloadEnv) config(prefix string) map[string]any {
	return map[string]any{
		"cluster": reloadCluster, "node_id": "amber-fox", "state_url": e.s3.URL(prefix),
		"endpoint": e.s3.Endpoint, "region": e.s3.Region, "path_style": true,
		"credentials_file": e.creds, "poll_interval": e.poll,
		"haproxy_config": e.haproxy, "keepalived_config": filepath.Join(e.dir, "keepalived.conf"),
		"run_dir": filepath.Join(e.dir, "run"), "supervise": false,
		"haproxy_bin": e.tool, "keepalived_bin": e.tool, "metrics_addr": e.metrics,
		// No WireGuard interface in the test's own namespace.
		"mesh_disabled": true,
	}
}

// putState writes a state under prefix whose nodes are amber-fox (this
// node) and peers. The state refuses loopback private IPs, and the daemon
// probes its own app's health URL, which must not leave the machine: this
// node's private IP is the lab's root address (local), the peers' are in
// the lab's node range (routed into the lab's router namespace; nothing
// sends to them, haproxy being /bin/true).
func (e *reloadEnv) putState(prefix string, peers ...string) int64 {
	e.t.Helper()
	e.gens[prefix]++
	st := cluster.New(reloadCluster, "sgp1", "s-1vcpu-1gb", "img", time.Now())
	st.Generation = e.gens[prefix]
	for i, id := range append([]string{"amber-fox"}, peers...) {
		role := cluster.RoleStandby
		if i == 0 {
			role = cluster.RoleActive
		}
		ip := e.lab.RootAddr.String()
		if i > 0 {
			a := e.lab.Prefix.Addr().As4()
			a[3] = byte(10 + i)
			ip = netip.AddrFrom4(a).String()
		}
		st.Nodes = append(st.Nodes, cluster.Node{ID: id, PrivateIP: ip,
			Priority: 200 - 10*i, Role: role, Lifecycle: cluster.Ready})
	}
	b, err := st.Encode()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.admin(prefix).Put(context.Background(), cluster.StateKey(reloadCluster), b, bucket.Cond{}); err != nil {
		e.t.Fatal(err)
	}
	return st.Generation
}

// admin opens the prefix with the gateway's own (right) key.
func (e *reloadEnv) admin(prefix string) bucket.Store {
	e.t.Helper()
	s, err := bucket.Open(context.Background(), e.s3.URL(prefix), bucket.Options{Endpoint: e.s3.Endpoint,
		Region: e.s3.Region, PathStyle: true, AccessKeyID: e.s3.AccessKeyID, SecretAccessKey: e.s3.SecretAccessKey})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *reloadEnv) writeCreds(path, secret string) {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"access_key_id": e.s3.AccessKeyID, "secret_access_key": secret})
	writeAtomic(e.t, path, b, 0o600)
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, b, 0o644)
}

// writeAtomic replaces path as cloud-init and careful operators do: a temp
// file in the same directory, fsynced, renamed over the target.
func writeAtomic(t *testing.T, path string, b []byte, mode os.FileMode) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name()) // a no-op once renamed
	if err := f.Chmod(mode); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// start writes a config reading prefix to file and runs pull.Run on
// e.cfgPath until the test ends; Run must return nil on cancel. The metrics
// port is picked free, and picked again if another process took it first.
func (e *reloadEnv) start(file, prefix string) {
	t := e.t
	t.Helper()
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for attempt := 1; ; attempt++ {
		e.metrics = freeAddr(t)
		writeJSON(t, file, e.config(prefix))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- pull.Run(ctx, pull.RunOptions{ConfigPath: e.cfgPath, Logger: log, Version: "test", Reload: e.reload})
		}()
		// Run returns at once on a startup error, or serves /status.
		var early error
		stopped := false
		testutil.WaitFor(t, 30*time.Second, func() error {
			select {
			case early = <-done:
				stopped = true
				return nil
			default:
			}
			_, err := e.status()
			return err
		})
		if stopped {
			cancel()
			if strings.Contains(fmt.Sprint(early), "listen for metrics") && attempt < 3 {
				continue
			}
			t.Fatalf("Run stopped at startup: %v", early)
		}
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return 30s after cancel")
			}
			if t.Failed() {
				t.Logf("dynia-pull log (tail):\n%s", tail(e.logs.String(), 40))
			}
		})
		return
	}
}

func (e *reloadEnv) status() (*report.Status, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + e.metrics + "/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s report.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("decode /status: %w", err)
	}
	return &s, nil
}

// waitApplied waits until the node applied generation gen whose
// haproxy.cfg has a server line for every id in want and none in absent,
// with no error reported.
func (e *reloadEnv) waitApplied(gen int64, want, absent []string) {
	e.t.Helper()
	testutil.WaitFor(e.t, 60*time.Second, func() error {
		s, err := e.status()
		if err != nil {
			return err
		}
		if s.AppliedGeneration != gen || s.LastError != "" {
			return fmt.Errorf("applied generation %d (want %d), last error %q", s.AppliedGeneration, gen, s.LastError)
		}
		b, err := os.ReadFile(e.haproxy)
		if err != nil {
			return err
		}
		for _, id := range want {
			if !strings.Contains(string(b), "server "+id+" ") {
				return fmt.Errorf("haproxy.cfg has no server %s:\n%s", id, b)
			}
		}
		for _, id := range absent {
			if strings.Contains(string(b), "server "+id+" ") {
				return fmt.Errorf("haproxy.cfg has server %s:\n%s", id, b)
			}
		}
		return nil
	})
}

// TestReloadRotatedCredentials: a node started with a wrong secret reports
// its poll failures; once the credentials file is atomically replaced with
// the right key the daemon converges without a restart, and reports
// through the new key too.
func TestReloadRotatedCredentials(t *testing.T) {
	e := newReloadEnv(t)
	gen := e.putState("p", "brisk-owl")
	wrong := "wrong" + e.s3.SecretAccessKey[5:]
	e.writeCreds(e.creds, wrong)
	e.start(e.cfgPath, "p")

	testutil.WaitFor(t, 30*time.Second, func() error {
		s, err := e.status()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(s.LastError, "poll: ") {
			return fmt.Errorf("last_error %q, want a poll error", s.LastError)
		}
		return nil
	})
	if _, err := os.Stat(e.haproxy); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("haproxy.cfg rendered although every poll was denied: %v", err)
	}

	e.writeCreds(e.creds, e.s3.SecretAccessKey)
	e.waitApplied(gen, []string{"amber-fox", "brisk-owl"}, nil)

	// The status reporter writes with the new key as well.
	testutil.WaitFor(t, 60*time.Second, func() error {
		obj, err := e.admin("p").Get(context.Background(), cluster.StatusKey(reloadCluster, "amber-fox"), "")
		if err != nil {
			return err
		}
		s, err := report.DecodeStatus(obj.Body)
		if err != nil {
			return err
		}
		if s.AppliedGeneration != gen {
			return fmt.Errorf("status.json reports generation %d, want %d", s.AppliedGeneration, gen)
		}
		return nil
	})
	if logs := e.logs.String(); strings.Contains(logs, wrong) || strings.Contains(logs, e.s3.SecretAccessKey) {
		t.Error("a secret access key appears in the log")
	}
}

// TestReloadConfigChange: a rewritten pull.json pointing at another state
// prefix is followed without a restart; a rewrite with a typo is reported
// and the old config keeps working; fixing it is followed again, also when
// the file is rewritten in place rather than renamed.
func TestReloadConfigChange(t *testing.T) {
	e := newReloadEnv(t)
	genA := e.putState("a", "brisk-owl")
	e.putState("b", "calm-heron")
	genB := e.putState("b", "calm-heron") // generations differ between prefixes
	genC := e.putState("c", "dusty-lynx")
	e.writeCreds(e.creds, e.s3.SecretAccessKey)
	e.start(e.cfgPath, "a")
	e.waitApplied(genA, []string{"amber-fox", "brisk-owl"}, nil)

	writeJSON(t, e.cfgPath, e.config("b"))
	e.waitApplied(genB, []string{"amber-fox", "calm-heron"}, []string{"brisk-owl"})

	// A typo in a key: strict decoding refuses the whole file.
	bad := e.config("c")
	bad["poll_intervall"] = "1s"
	writeJSON(t, e.cfgPath, bad)
	testutil.WaitFor(t, 30*time.Second, func() error {
		if !logHas(e.logs.String(), "node config not reloaded; keeping the old one") {
			return errors.New("no log line for the bad config")
		}
		s, err := e.status()
		if err != nil {
			return err
		}
		if !strings.HasPrefix(s.LastError, "node config: ") || !strings.Contains(s.LastError, "poll_intervall") {
			return fmt.Errorf("last_error %q, want the bad config named", s.LastError)
		}
		return nil
	})
	// The old config (prefix b) keeps working: a new state there is applied.
	genB = e.putState("b", "calm-heron", "eager-mole")
	e.waitApplied(genB, []string{"amber-fox", "calm-heron", "eager-mole"}, []string{"dusty-lynx"})

	// Fixed in place (truncate and write, as `cat > pull.json` does): the
	// daemon may read it half-written, but the last event re-reads it whole.
	b, err := json.Marshal(e.config("c"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.cfgPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitApplied(genC, []string{"amber-fox", "dusty-lynx"}, []string{"calm-heron", "eager-mole"})
}

// TestReloadChannel: the Reload channel (SIGHUP in cmd/dynia-pull) re-reads
// the config. The config is a symlink into another directory (as a
// Kubernetes-style config mount is), so rewriting its target raises no
// fsnotify event: only Reload can pick the change up.
func TestReloadChannel(t *testing.T) {
	e := newReloadEnv(t)
	genA := e.putState("a", "brisk-owl")
	genB := e.putState("b", "calm-heron")
	e.writeCreds(e.creds, e.s3.SecretAccessKey)
	live := filepath.Join(e.dir, "live")
	if err := os.Mkdir(live, 0o755); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(live, "pull.json")
	if err := os.Symlink(target, e.cfgPath); err != nil {
		t.Fatal(err)
	}
	e.start(target, "a")
	e.waitApplied(genA, []string{"amber-fox", "brisk-owl"}, nil)

	writeJSON(t, target, e.config("b"))
	if logHas(e.logs.String(), "node config reloaded") {
		t.Fatal("the config was reloaded by fsnotify: this test would not exercise Reload")
	}
	select {
	case e.reload <- struct{}{}:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not take the reload request within 30s")
	}
	e.waitApplied(genB, []string{"amber-fox", "calm-heron"}, []string{"brisk-owl"})
	if !logHas(e.logs.String(), "node config reloaded") {
		t.Error("no log line for the reload")
	}
}

// has reports whether a log line has exactly this message.
// freeAddr is a loopback address that was free a moment ago, for the
// metrics listener (Run does not report the port it got for ":0").
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestReloadWakesThePoller: a reload takes effect at once, not after the
// wait the old config scheduled: here a one-hour poll interval is replaced
// by a short one and another state prefix.
func TestReloadWakesThePoller(t *testing.T) {
	e := newReloadEnv(t)
	genA := e.putState("a", "brisk-owl")
	genB := e.putState("b", "calm-heron")
	e.writeCreds(e.creds, e.s3.SecretAccessKey)
	e.poll = "1h"
	e.start(e.cfgPath, "a")
	e.waitApplied(genA, []string{"amber-fox", "brisk-owl"}, nil)

	e.poll = "200ms"
	writeJSON(t, e.cfgPath, e.config("b"))
	e.waitApplied(genB, []string{"amber-fox", "calm-heron"}, []string{"brisk-owl"})
}

// logHas says whether the daemon's JSON log lines hold one with msg.
func logHas(logs, msg string) bool {
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg {
			return true
		}
	}
	return false
}
