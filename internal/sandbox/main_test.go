package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/sandbox/demoapp"
	"github.com/dynia/dynia/internal/testutil"
)

// TestMain lets the test binary stand in for the dynia binary: the sandbox
// starts `<binary> sandbox serve|demo-app ...`, and tests pass the test
// binary itself as Options.Binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "sandbox" {
		os.Exit(fakeDynia(os.Args[2], os.Args[3:]))
	}
	os.Exit(m.Run())
}

func fakeDynia(cmd string, args []string) int {
	if run, ok := testCommands[cmd]; ok {
		return run(args)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	// As `dynia sandbox demo-app`: dynia-pull's process runtime passes the
	// address and the node in the environment.
	defListen := ":8080"
	if v := os.Getenv("DYNIA_APP_ADDR"); v != "" {
		defListen = v
	}
	listen := fs.String("listen", defListen, "")
	id := fs.String("id", os.Getenv("DYNIA_NODE_ID"), "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var err error
	switch cmd {
	case "serve":
		err = Serve(context.Background(), ServeOptions{Dir: *dir, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	case "demo-app":
		err = demoapp.Run(context.Background(), *listen, *id)
	default:
		err = fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func testBinary(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// upLab brings up a sandbox for the test with Up: the options of
// testOptions (pullBin runs as dynia-pull; testBinary(t) for bare
// droplets), changed first by edit when it is not nil. It needs root and
// versitygw (skipping, or failing under DYNIA_REQUIRE_INTEGRATION=1). When
// the test ends it logs serve.log if the test failed, takes the sandbox
// down and checks that nothing of it is left (assertClean). Cleanups the
// test registers afterwards run before that one (last registered, first
// run); one registered in edit runs after it.
func upLab(t *testing.T, pullBin string, edit func(*Options)) (plan, Options, *Info) {
	t.Helper()
	testutil.NeedRoot(t)
	vgw := testutil.NeedBinary(t, "versitygw")
	p, opts := testOptions(t, pullBin, vgw)
	if edit != nil {
		edit(&opts)
	}
	dir := opts.Dir
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "logs", "serve.log")); err == nil {
				t.Logf("serve.log:\n%s", b)
			}
		}
		if err := Down(context.Background(), dir); err != nil {
			t.Errorf("Down: %v", err)
		}
		assertClean(t, p, dir)
	})
	info, err := Up(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, opts, info
}

// testPlan picks a unique prefix and a free /24 in 198.18.0.0/15 (the
// benchmarking range), so tests never touch a user's sandbox.
// testOptions is a sandbox in a fresh directory on a free test range (from
// testPlan), running pullBin as dynia-pull and vgw as versitygw, with the
// process runtime (the sandbox starts the demo app itself; no Docker).
// TestSandboxDocker asks for the docker runtime.
func testOptions(t *testing.T, pullBin, vgw string) (plan, Options) {
	t.Helper()
	p := testPlan(t)
	testutil.NeedBinary(t, "pebble") // every sandbox runs the ACME CA (Up finds it)
	return p, Options{Dir: filepath.Join(t.TempDir(), "sandbox"), Prefix: p.Prefix, PublicRange: p.Public.String(),
		Binary: testBinary(t), PullBinary: pullBin, VersitygwBinary: vgw, Runtime: RuntimeProcess, Logger: testLogger(t)}
}

func testPlan(t *testing.T) plan {
	t.Helper()
	for i := 0; i < 20; i++ {
		n, _ := rand.Int(rand.Reader, big.NewInt(1<<20))
		prefix := fmt.Sprintf("t%05x", n.Int64()&0xfffff)
		rng := fmt.Sprintf("198.%d.%d.0/24", 18+n.Int64()>>19&1, n.Int64()&0xff)
		p, err := newPlan(prefix, rng)
		if err != nil {
			t.Fatal(err)
		}
		if netnsExists(p.RouterNS()) {
			continue
		}
		if err := checkMachineRange(context.Background(), p); err != nil {
			continue
		}
		return p
	}
	t.Fatal("no free test range in 198.18.0.0/15")
	return plan{}
}

// assertClean checks that nothing of the sandbox is left on the machine.
func assertClean(t *testing.T, p plan, dir string) {
	t.Helper()
	out, _ := run(context.Background(), "ip", "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		name := strings.Fields(line + " x")[0]
		if name == p.RouterNS() || strings.HasPrefix(name, p.Prefix+"-d") {
			t.Errorf("namespace %s left behind", name)
		}
	}
	if linkExists(context.Background(), p.HostVeth()) {
		t.Errorf("link %s left behind", p.HostVeth())
	}
	routes, _ := run(context.Background(), "ip", "-4", "route", "show", "table", "all")
	rangeNet := strings.TrimSuffix(p.Public.Addr().String(), ".0")
	for _, line := range strings.Split(routes, "\n") {
		if strings.Contains(line, rangeNet+".") {
			t.Errorf("route left behind: %s", line)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		entries, _ := os.ReadDir(dir)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("sandbox dir %s left behind: %v (%v)", dir, names, err)
	}
}

// httpGet does one bounded GET and returns the body.
func httpGet(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// wantSilence asserts that a connection times out: not refused, not
// unreachable, the way a powered-off machine behaves.
func wantSilence(t *testing.T, url string) {
	t.Helper()
	_, err := httpGet(url, 1500*time.Millisecond)
	var nerr net.Error
	switch {
	case err == nil:
		t.Errorf("GET %s answered, want silence", url)
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		t.Errorf("GET %s: %v, want a timeout (silence)", url, err)
	case !errors.As(err, &nerr) || !nerr.Timeout():
		t.Errorf("GET %s: %v, want a timeout", url, err)
	}
}

// inNS runs a command inside a namespace and returns its stdout.
func inNS(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).Output()
	return string(out), err
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
