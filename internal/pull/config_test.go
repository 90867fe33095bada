package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(body string) string {
		t.Helper()
		p := filepath.Join(dir, "pull.json")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const base = `"cluster": "shop", "node_id": "amber-fox", "state_url": "file:///tmp/x"`

	// Clean: no warning.
	cfg, warn, err := LoadConfig(write(`{` + base + `, "poll_interval": "3s", "supervise": true}`))
	if err != nil || warn != "" || cfg.PollInterval.Duration != 3*time.Second || !cfg.Supervise {
		t.Fatalf("clean config: %+v %q %v", cfg, warn, err)
	}
	// A typo: runs with the rest of the file, and says which keys it ignored.
	p := write(`{` + base + `, "poll_intervall": "3s", "supervise": true, "zzz": 1}`)
	cfg, warn, err = LoadConfig(p)
	if err != nil {
		t.Fatalf("typo: %v", err)
	}
	if cfg.NodeID != "amber-fox" || !cfg.Supervise || cfg.PollInterval.Duration != 0 {
		t.Errorf("typo: config %+v", cfg)
	}
	if want := `config ` + p + `: unknown fields "poll_intervall", "zzz" (ignored)`; warn != want {
		t.Errorf("typo: warning %q, want %q", warn, want)
	}
	// encoding/json would match "Supervise" to supervise; a key spelled
	// another way than its field is refused, not guessed (jsonstrict), even
	// next to an unknown key that alone would only be ignored.
	for _, body := range []string{`{` + base + `, "Supervise": true}`, `{` + base + `, "Supervise": true, "zzz": 1}`} {
		if cfg, _, err := LoadConfig(write(body)); err == nil || cfg != nil || !strings.Contains(err.Error(), `key "Supervise" must be spelled "supervise"`) {
			t.Errorf("case-folded key in %s: %+v %v", body, cfg, err)
		}
	}
	// So is a key given twice (encoding/json would keep the last).
	if cfg, _, err := LoadConfig(write(`{` + base + `, "supervise": true, "supervise": false, "zzz": 1}`)); err == nil || cfg != nil || !strings.Contains(err.Error(), `duplicate key "supervise"`) {
		t.Errorf("duplicate key: %+v %v", cfg, err)
	}
	// Not usable: an error, and no config.
	for name, body := range map[string]string{
		"corrupt JSON":            `{` + base + `, "poll_intervall": `,
		"required field missing":  `{"cluster": "shop", "state_url": "file:///x", "nodeid": "amber-fox"}`,
		"bad value with a typo":   `{` + base + `, "poll_interval": 5, "zzz": 1}`,
		"bad value":               `{` + base + `, "poll_interval": "soon"}`,
		"not an object":           `[1, 2]`,
		"trailing garbage + typo": `{` + base + `, "zzz": 1} x`,
	} {
		if cfg, warn, err := LoadConfig(write(body)); err == nil || cfg != nil || warn != "" {
			t.Errorf("%s: %+v %q %v; want an error", name, cfg, warn, err)
		}
	}
	if _, _, err := LoadConfig(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestConfigWarningIsSticky: the ignored-keys warning is reported as
// last_error through good applies and failed ones, until cleared.
func TestConfigWarningIsSticky(t *testing.T) {
	t.Parallel()
	d, m, _ := newTestDaemon(t, "true")
	ctx := context.Background()
	const warn = `config /etc/dynia/pull.json: unknown field "poll_intervall" (ignored)`
	d.rep.setConfigWarning(warn)
	if s := d.rep.snapshot(); s.LastError != warn || s.LastErrorAt == nil {
		t.Fatalf("after setConfigWarning: %q %v", s.LastError, s.LastErrorAt)
	}
	putState(t, m, testState(1, 2))
	if _, err := d.Step(ctx, false); err != nil {
		t.Fatal(err)
	}
	if s := d.rep.snapshot(); s.LastError != warn {
		t.Errorf("after a good apply: last_error %q, want the config warning", s.LastError)
	}
	// A failed poll takes its place, and gives it back once polls work.
	m.err = errors.New("boom")
	d.Step(ctx, true)
	if s := d.rep.snapshot(); !strings.HasPrefix(s.LastError, "poll") {
		t.Errorf("after a failed poll: last_error %q", s.LastError)
	}
	m.err = nil
	if _, err := d.Step(ctx, true); err != nil {
		t.Fatal(err)
	}
	if s := d.rep.snapshot(); s.LastError != warn {
		t.Errorf("after polls recover: last_error %q, want the config warning", s.LastError)
	}
	d.rep.setConfigWarning("")
	if s := d.rep.snapshot(); s.LastError != "" || s.LastErrorAt != nil {
		t.Errorf("after the fix: last_error %q at %v", s.LastError, s.LastErrorAt)
	}
}

// TestRunWithTypoInConfig: `dynia-pull run` with a typo in pull.json runs,
// reports the ignored key in status.json until the file is fixed and
// reloaded; a config that cannot be used at all stops Run with an error.
func TestRunWithTypoInConfig(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("true")
	if err != nil {
		t.Skip("true not found")
	}
	dir := t.TempDir()
	store, stateDir := fileStoreWithState(t, dir)
	cfgPath := filepath.Join(dir, "pull.json")
	cfg := func(pollKey string) []byte {
		return []byte(`{"cluster": "shop", "node_id": "amber-fox", "state_url": "file://` + stateDir + `",
			"` + pollKey + `": "100ms", "haproxy_config": "` + filepath.Join(dir, "haproxy.cfg") + `",
			"keepalived_config": "` + filepath.Join(dir, "keepalived.conf") + `", "run_dir": "` + filepath.Join(dir, "run") + `",
			"haproxy_bin": "` + tool + `", "keepalived_bin": "` + tool + `", "metrics_addr": "127.0.0.1:0",
			"mesh_disabled": true}`)
	}
	os.WriteFile(cfgPath, cfg("poll_intervall"), 0o644)
	waitStatus := func(what string, ok func(*report.Status) bool) {
		t.Helper()
		waitReport(t, store, "shop", "amber-fox", what, ok)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{ConfigPath: cfgPath, Logger: slog.New(slog.DiscardHandler), Version: "test", Reload: reload})
	}()
	waitStatus("running with a typo", func(s *report.Status) bool {
		return s.AppliedGeneration == 1 && strings.Contains(s.LastError, `unknown field "poll_intervall" (ignored)`)
	})
	// A new typo in a reloaded file is refused whole...
	os.WriteFile(cfgPath, cfg("poll_intervalll"), 0o644)
	reload <- struct{}{}
	waitStatus("a new typo reloaded", func(s *report.Status) bool {
		return strings.HasPrefix(s.LastError, "node config: ") && strings.Contains(s.LastError, "poll_intervalll")
	})
	// ...but the typo the node already runs with is accepted again (a
	// Spaces key rotation reloads the unchanged file), still reported.
	os.WriteFile(cfgPath, cfg("poll_intervall"), 0o644)
	reload <- struct{}{}
	waitStatus("the known typo reloaded", func(s *report.Status) bool {
		return strings.HasPrefix(s.LastError, "config ") && strings.Contains(s.LastError, `unknown field "poll_intervall" (ignored)`)
	})
	os.WriteFile(cfgPath, cfg("poll_interval"), 0o644)
	reload <- struct{}{}
	waitStatus("after the fix", func(s *report.Status) bool { return s.LastError == "" && s.AppliedGeneration == 1 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	// Unusable: Run stops at once with the reason.
	os.WriteFile(cfgPath, []byte(`{"cluster": "shop", "poll_intervall": `), 0o644)
	err = Run(context.Background(), RunOptions{ConfigPath: cfgPath, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "node config") {
		t.Errorf("corrupt config: Run returned %v, want a node config error", err)
	}
}

// waitReport waits until the node's status.json in store satisfies ok.
func waitReport(t *testing.T, store bucket.Store, clusterName, nodeID, what string, ok func(*report.Status) bool) {
	t.Helper()
	var s *report.Status
	var err error
	testutil.WaitFor(t, 30*time.Second, func() error {
		var obj *bucket.Object
		if obj, err = store.Get(context.Background(), cluster.StatusKey(clusterName, nodeID), ""); err != nil {
			return err
		}
		if s, err = report.DecodeStatus(obj.Body); err != nil {
			return err
		}
		if !ok(s) {
			return fmt.Errorf("%s: last status %+v", what, *s)
		}
		return nil
	})
}
