package pull

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/secrets"
	"github.com/dynia/dynia/internal/testutil"
)

// TestChildrenDoNotInheritNotifySocket: every kind of process dynia-pull
// starts — a supervised daemon (haproxy, keepalived; wireguard-go with its
// extra variable), a validator, a reload command and an app instance —
// gets dynia-pull's environment without NOTIFY_SOCKET, so none can speak
// for the unit. Each is a stub that writes `env` to a file. Not parallel:
// it sets the process's environment.
func TestChildrenDoNotInheritNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("DYNIA_PULL_ENV_KEPT", "kept")
	dir := t.TempDir()
	ctx := context.Background()
	script := func(out string) string { return `env > "` + out + `"` }
	check := func(what, path string, want ...string) {
		t.Helper()
		var b []byte
		testutil.WaitFor(t, longWait, func() error {
			var err error
			if b, err = os.ReadFile(path); err != nil || !strings.HasSuffix(string(b), "\n") {
				return errors.New(what + ": no env written yet")
			}
			return nil
		})
		lines := strings.Split(string(b), "\n")
		if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "NOTIFY_SOCKET=") }) {
			t.Errorf("%s inherited NOTIFY_SOCKET:\n%s", what, b)
		}
		for _, w := range append(want, "DYNIA_PULL_ENV_KEPT=kept") {
			if !slices.Contains(lines, w) {
				t.Errorf("%s: %s missing from its environment:\n%s", what, w, b)
			}
		}
	}

	sup := newSupervisor(slog.New(slog.DiscardHandler), "")
	for _, spec := range []daemonSpec{
		{name: "keepalived", bin: "sh", args: []string{"-c", script(filepath.Join(dir, "keepalived.env"))}},
		{name: "wireguard-go", bin: "sh", args: []string{"-c", script(filepath.Join(dir, "wireguard-go.env"))},
			env: []string{"WG_PROCESS_FOREGROUND=1"}},
	} {
		// runOnce returns when the stub exits.
		if err := sup.runOnce(ctx, slog.New(slog.DiscardHandler), spec); err != nil {
			t.Fatalf("%s: %v", spec.name, err)
		}
	}
	check("a supervised daemon", filepath.Join(dir, "keepalived.env"))
	check("wireguard-go", filepath.Join(dir, "wireguard-go.env"), "WG_PROCESS_FOREGROUND=1")

	if err := runTool(ctx, "sh", "-c", script(filepath.Join(dir, "validate.env"))); err != nil {
		t.Fatal(err)
	}
	check("a validator", filepath.Join(dir, "validate.env"))
	if err := runReloadCommand(ctx, []string{"sh", "-c", script(filepath.Join(dir, "reload.env"))}); err != nil {
		t.Fatal(err)
	}
	check("a reload command", filepath.Join(dir, "reload.env"))

	// An app instance that writes its environment and exits: Start fails
	// (it never answered its health path), the file is what counts.
	app := newProcessApp([]string{"sh", "-c", script(filepath.Join(dir, "app.env"))}, filepath.Join(dir, "run"), "", "amber-fox", slog.New(slog.DiscardHandler))
	rel := cluster.Release{Number: 1, Image: "img", HealthPath: "/", Env: map[string]string{"RELEASE_VAR": "1"}}
	if _, err := app.Start(ctx, rel, secrets.Release{}, netip.MustParseAddr("127.0.0.1")); err == nil {
		t.Fatal("an app that exited at once started")
	}
	check("an app instance", filepath.Join(dir, "app.env"), "RELEASE_VAR=1")
}
