package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/testutil"
)

// runnerFor is a Runner logging to t whose Fatalf fails the test.
func runnerFor(t *testing.T) *Runner {
	t.Helper()
	testutil.NeedRoot(t)
	for _, b := range append([]string{"haproxy", "keepalived", "versitygw", "pebble", "ip", "iptables", "nft", "wireguard-go", "docker-registry"}, dockerd.Binaries...) {
		testutil.NeedBinary(t, b)
	}
	bin := os.Getenv("DYNIA_BIN_DIR")
	if bin == "" {
		bin = t.TempDir()
		for name, pkg := range map[string]string{"dynia": "../cmd/dynia", "dynia-pull": "../cmd/dynia-pull", "dynia-demo-app": "../internal/demoimage/app"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build %s: %v\n%s", name, err, out)
			}
		}
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return &Runner{cfg: Config{BinDir: abs}, out: testWriter{t}, dir: t.TempDir()}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// catch turns a Runner's Fatalf into a test failure.
func catch(t *testing.T) {
	if p := recover(); p != nil {
		if f, ok := p.(fatal); ok {
			t.Fatal(f.msg)
		}
		panic(p)
	}
}

// TestSmoke keeps the harness from rotting: one sandbox, a two-node
// cluster, one convergence change each way and one power-off, checked for
// shape (the change converged on every node, the failover recovered and
// counted its requests), never for speed.
func TestSmoke(t *testing.T) {
	r := runnerFor(t)
	defer catch(t)
	sb := r.UpSandbox()
	defer sb.Down()
	rip := sb.NewCluster("smoke", 2)
	nodes := sb.Nodes("smoke")
	for _, drain := range []bool{true, false} {
		if d := r.toggle(sb, "smoke", nodes[1].ID, drain, nodes); d <= 0 {
			t.Errorf("toggle drain=%v: converged after %v", drain, d)
		}
		drained := ""
		if drain {
			drained = nodes[1].ID
		}
		// Polled: a worker of the previous configuration can still take a
		// new connection for a moment after the reload.
		testutil.WaitFor(t, time.Minute, func() error {
			if err := confirm(nodes, drained); err != nil {
				return fmt.Errorf("after the change (drain=%v): %w", drain, err)
			}
			return nil
		})
	}
	runs := r.powerOffRuns(sb, dyniaSetup(sb, "smoke", "advert 1 s", rip), 0, 1)
	if len(runs) != 1 || runs[0].Outage < 0 || runs[0].Total == 0 {
		t.Fatalf("failover runs: %+v, want one that recovered", runs)
	}
	t.Logf("smoke: %s", fmt.Sprint(runs[0]))
}
