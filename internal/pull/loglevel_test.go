package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

// TestRunLogLevel: log_level in pull.json sets the level of dynia-pull's
// own log at start and on a reload; a bad value on reload is refused (the
// refusal logged) and the old level kept.
func TestRunLogLevel(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("true")
	if err != nil {
		t.Fatalf("true not found: %v", err)
	}
	dir := t.TempDir()
	store, stateDir := fileStoreWithState(t, dir)
	cfgPath := filepath.Join(dir, "pull.json")
	writeCfg := func(level string) {
		t.Helper()
		b := []byte(`{"cluster": "shop", "node_id": "amber-fox", "state_url": "file://` + stateDir + `",
			"poll_interval": "100ms", "haproxy_config": "` + filepath.Join(dir, "haproxy.cfg") + `",
			"keepalived_config": "` + filepath.Join(dir, "keepalived.conf") + `", "run_dir": "` + filepath.Join(dir, "run") + `",
			"haproxy_bin": "` + tool + `", "keepalived_bin": "` + tool + `", "metrics_addr": "127.0.0.1:0",
			"mesh_disabled": true, "log_level": "` + level + `"}`)
		if err := os.WriteFile(cfgPath, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	waitLevel := func(want slog.Level, lv *slog.LevelVar) {
		t.Helper()
		testutil.WaitFor(t, 30*time.Second, func() error {
			if got := lv.Level(); got != want {
				return errors.New("level " + got.String() + ", want " + want.String())
			}
			return nil
		})
	}
	writeCfg("error")
	lv := new(slog.LevelVar) // info, as dynia-pull's main starts it
	h := &lineLog{level: lv}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reload := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{ConfigPath: cfgPath, Logger: slog.New(h), Level: lv, Version: "test", Reload: reload})
	}()
	waitReport(t, store, "shop", "amber-fox", "applied", func(s *report.Status) bool { return s.AppliedGeneration == 1 })
	if got := lv.Level(); got != slog.LevelError {
		t.Errorf("log_level error: level %v", got)
	}
	if i := slices.IndexFunc(h.all(), func(l string) bool { return strings.HasPrefix(l, "dynia-pull running") }); i >= 0 {
		t.Errorf("log_level error: info line logged: %q", h.line(i))
	}

	writeCfg("debug")
	reload <- struct{}{}
	waitLevel(slog.LevelDebug, lv)

	writeCfg("loud")
	reload <- struct{}{}
	testutil.WaitFor(t, 30*time.Second, func() error {
		for _, l := range h.all() {
			if strings.HasPrefix(l, "node config not reloaded; keeping the old one") &&
				strings.Contains(l, `log_level "loud": must be debug, info, warn or error`) {
				return nil
			}
		}
		return fmt.Errorf("the bad log_level was not refused; log: %q", h.all())
	})
	if got := lv.Level(); got != slog.LevelDebug {
		t.Errorf("after a refused reload: level %v, want the old DEBUG", got)
	}
	cancel()
	testutil.WaitFor(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
			return nil
		default:
			return errors.New("Run did not return after cancel")
		}
	})
}
