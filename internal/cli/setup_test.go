package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/testutil"
)

// setupEnv is a config directory and the in-process DO simulator: enough
// for `auth init` and `context …`, which touch no bucket.
type setupEnv struct {
	t   *testing.T
	dir string
	cfg string
	sim *dosim.Server
	api string
	// env is the environment beyond DIGITALOCEAN_API_URL (none by default).
	env map[string]string
}

func newSetupEnv(t *testing.T) *setupEnv {
	t.Helper()
	sim := dosim.New(dosim.Options{})
	sim.AddToken(fullToken, dosim.FullScopes()...)
	api := httptest.NewServer(sim)
	t.Cleanup(api.Close)
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	return &setupEnv{t: t, dir: dir, cfg: filepath.Join(dir, "dynia", "config.yaml"), sim: sim, api: api.URL}
}

// run runs dynia in-process with stdin (not a terminal) and no DO token in
// the environment.
func (e *setupEnv) run(stdin string, args ...string) result {
	e.t.Helper()
	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut})
	f.Getenv = func(k string) string {
		if k == "DIGITALOCEAN_API_URL" {
			return e.api
		}
		return e.env[k]
	}
	f.CloudOptions = cloud.Options{RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 50 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code := Run(ctx, f, append([]string{"--config", e.cfg}, args...))
	return result{code, out.String(), errOut.String()}
}

func (e *setupEnv) mustRun(stdin string, args ...string) result {
	e.t.Helper()
	r := e.run(stdin, args...)
	if r.code != 0 {
		e.t.Fatalf("dynia %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// config reads the config file's bytes ("" when there is none).
func (e *setupEnv) config() string {
	e.t.Helper()
	b, err := os.ReadFile(e.cfg)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func (e *setupEnv) accountCalls() int {
	n := 0
	for _, c := range e.sim.Calls() {
		if strings.HasPrefix(c.Path, "/v2/account") {
			n++
		}
	}
	return n
}

func wantMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != want {
		t.Errorf("%s: mode %04o, want %04o", path, st.Mode().Perm(), want)
	}
}

// TestAuthInit: a token piped on stdin is checked with one GET /v2/account,
// stored 0600 beside the config, named by a new current context "default"
// in a 0600 config, and is the token later commands use; it is printed
// nowhere.
func TestAuthInit(t *testing.T) {
	t.Parallel()
	e := newSetupEnv(t)
	r := e.mustRun(fullToken+"\n", "auth", "init")
	if strings.Contains(r.stdout+r.stderr, fullToken) {
		t.Fatalf("token printed: %q %q", r.stdout, r.stderr)
	}
	if n := e.accountCalls(); n != 1 {
		t.Errorf("%d GET /v2/account calls, want 1", n)
	}
	cfg, err := LoadConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	tokPath := filepath.Join(filepath.Dir(e.cfg), "tokens", "default.token")
	want := &Config{CurrentContext: "default", Contexts: map[string]*Context{"default": {TokenFile: tokPath}}}
	if d := cmp.Diff(want, cfg, cmp.AllowUnexported(Config{}), cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "path" }, cmp.Ignore())); d != "" {
		t.Fatalf("config (-want +got):\n%s", d)
	}
	if strings.Contains(e.config(), fullToken) {
		t.Fatal("token in the config file")
	}
	wantMode(t, e.cfg, 0o600)
	wantMode(t, tokPath, 0o600)
	wantMode(t, filepath.Dir(tokPath), 0o700)

	// Later commands read it through the context.
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Getenv = func(string) string { return "" }
	f.Global.ConfigPath = e.cfg
	if tok, err := f.Token(); err != nil || tok != fullToken {
		t.Fatalf("Token() = %q, %v; want the stored token", tok, err)
	}

	// Again for a named context, from --token-file: the existing context
	// stays current, the new one gets its own file.
	tf := writeSecret(t, e.dir, "tok", fullToken+"\n", 0o600)
	e.mustRun("", "--context", "work", "auth", "init", "--token-file", tf)
	cfg, _ = LoadConfig(e.cfg)
	if cfg.CurrentContext != "default" || cfg.Contexts["work"] == nil ||
		cfg.Contexts["work"].TokenFile != filepath.Join(filepath.Dir(e.cfg), "tokens", "work.token") {
		t.Fatalf("after auth init --context work: %+v, work=%+v", cfg, cfg.Contexts["work"])
	}
}

// TestAuthInitRejected: a token DigitalOcean answers 401 exits 4 and
// writes nothing; bad input exits 2 with no API call and no write.
func TestAuthInitRejected(t *testing.T) {
	t.Parallel()
	e := newSetupEnv(t)
	const bad = "dop_v1_not_a_real_token_value"
	r := e.run(bad+"\n", "auth", "init")
	if r.code != ExitAuth {
		t.Fatalf("rejected token: exit %d, want %d\nstderr: %s", r.code, ExitAuth, r.stderr)
	}
	if !strings.Contains(r.stderr, "rejected the token") || strings.Contains(r.stdout+r.stderr, bad) {
		t.Errorf("stderr %q: want it to say the token was rejected, without the token", r.stderr)
	}
	if e.config() != "" {
		t.Error("a rejected token wrote the config")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(e.cfg), "tokens")); err == nil {
		t.Error("a rejected token made the token directory")
	}

	readable := writeSecret(t, e.dir, "open-token", fullToken, 0o644)
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        []string
	}{
		{"empty stdin", "", nil, []string{"token: empty"}},
		{"two words", "a b\n", nil, []string{"token: contains whitespace"}},
		{"readable file", "", []string{"--token-file", readable}, []string{"--token-file", readable, "chmod 600"}},
		{"missing file", "", []string{"--token-file", filepath.Join(e.dir, "nope")}, []string{"--token-file", "nope"}},
		{"bad context", fullToken, []string{"--context", "a/b"}, []string{`--context "a/b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.accountCalls()
			r := e.run(tc.stdin, append([]string{"auth", "init"}, tc.args...)...)
			wantUsage(t, r, tc.want...)
			if e.accountCalls() != before {
				t.Error("bad input called the API")
			}
			if e.config() != "" {
				t.Error("bad input wrote the config")
			}
		})
	}
}

// TestContexts: create, use, list and delete, with the current context
// marked, and every bad input refused with exit 2 before the config
// changes.
func TestContexts(t *testing.T) {
	t.Parallel()
	e := newSetupEnv(t)
	nodeTok := writeSecret(t, e.dir, "node-token", "n", 0o600)
	openTok := writeSecret(t, e.dir, "open-node-token", "n", 0o644)
	spaces := writeSecret(t, e.dir, "spaces.json", `{"access_key_id":"a","secret_access_key":"s"}`, 0o600)

	e.mustRun("", "context", "create", "prod", "--state", "s3://shop/dynia",
		"--spaces-endpoint", "https://sgp1.digitaloceanspaces.com", "--spaces-region", "sgp1", "--node-token-file", nodeTok,
		"--spaces-credentials-file", spaces)
	e.mustRun("", "context", "create", "lab", "--state", "file://"+e.dir+"/state", "--use")
	wantMode(t, e.cfg, 0o600)

	cfg, err := LoadConfig(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*Context{
		"prod": {State: "s3://shop/dynia", SpacesEndpoint: "https://sgp1.digitaloceanspaces.com", SpacesRegion: "sgp1",
			NodeTokenFile: nodeTok, SpacesCredentialsFile: spaces},
		"lab": {State: "file://" + e.dir + "/state"},
	}
	if d := cmp.Diff(want, cfg.Contexts); d != "" || cfg.CurrentContext != "lab" {
		t.Fatalf("current %q (want lab, --use); contexts (-want +got):\n%s", cfg.CurrentContext, d)
	}
	e.mustRun("", "context", "use", "prod")

	before := e.config()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"exists", []string{"context", "create", "prod", "--state", "s3://x/y"}, []string{`NAME "prod"`, "exists"}},
		{"bad name", []string{"context", "create", "my prod", "--state", "s3://x/y"}, []string{`NAME "my prod"`}},
		{"no state", []string{"context", "create", "x"}, []string{"--state: required"}},
		{"bad state", []string{"context", "create", "x", "--state", "https://x/y"}, []string{`--state "https://x/y"`}},
		{"bad endpoint", []string{"context", "create", "x", "--state", "s3://x/y", "--spaces-endpoint", "sgp1"}, []string{`--spaces-endpoint "sgp1"`}},
		{"bad region", []string{"context", "create", "x", "--state", "s3://x/y", "--spaces-region", "SGP 1"}, []string{`--spaces-region "SGP 1"`}},
		{"readable node token", []string{"context", "create", "x", "--state", "s3://x/y", "--node-token-file", openTok}, []string{"--node-token-file", "chmod 600"}},
		{"readable spaces key", []string{"context", "create", "x", "--state", "s3://x/y", "--spaces-credentials-file", openTok}, []string{"--spaces-credentials-file", "chmod 600"}},
		{"missing node token", []string{"context", "create", "x", "--state", "s3://x/y", "--node-token-file", "nope"}, []string{"--node-token-file", "nope"}},
		{"use unknown", []string{"context", "use", "nope"}, []string{`NAME "nope"`, "have: lab, prod"}},
		{"delete unknown", []string{"context", "delete", "nope"}, []string{`NAME "nope"`}},
		{"delete current", []string{"context", "delete", "prod"}, []string{`NAME "prod"`, "current context"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantUsage(t, e.run("", tc.args...), tc.want...)
			if e.config() != before {
				t.Error("bad input changed the config")
			}
		})
	}

	r := e.mustRun("", "context", "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], "*") || !strings.Contains(lines[2], "prod") || strings.HasPrefix(lines[1], "*") {
		t.Fatalf("context list:\n%s", r.stdout)
	}

	e.mustRun("", "context", "use", "lab")
	r = e.mustRun("", "context", "list", "-o", "json")
	var rows []ContextRow
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("context list -o json: %v\n%s", err, r.stdout)
	}
	wantRows := []ContextRow{
		{Name: "lab", Current: true, State: "file://" + e.dir + "/state"},
		{Name: "prod", State: "s3://shop/dynia", SpacesEndpoint: "https://sgp1.digitaloceanspaces.com", SpacesRegion: "sgp1", NodeTokenFile: nodeTok},
	}
	if d := cmp.Diff(wantRows, rows); d != "" {
		t.Fatalf("context list -o json (-want +got):\n%s", d)
	}

	// A context's token stored by auth init goes with it.
	e.mustRun(fullToken, "--context", "prod", "auth", "init")
	tokPath := filepath.Join(filepath.Dir(e.cfg), "tokens", "prod.token")
	e.mustRun("", "context", "delete", "prod")
	if _, err := os.Stat(tokPath); !os.IsNotExist(err) {
		t.Errorf("token file of the deleted context: %v, want it gone", err)
	}
	e.mustRun("", "context", "delete", "lab", "--force")
	cfg, _ = LoadConfig(e.cfg)
	if len(cfg.Contexts) != 0 || cfg.CurrentContext != "" {
		t.Fatalf("after deleting both: %+v", cfg)
	}
}

// openPTY opens a pseudo-terminal pair: the controlling side (what a
// terminal emulator holds) and the terminal a program reads.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		testutil.Missing(t, "no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	n, err := unix.IoctlGetUint32(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptm, pts
}

// TestAuthInitTerminal: on a terminal the token is typed with echo off
// (it never reaches the screen), after a prompt on stderr, and the
// terminal's echo is back afterwards.
func TestAuthInitTerminal(t *testing.T) {
	t.Parallel()
	e := newSetupEnv(t)
	ptm, pts := openPTY(t)

	// What the terminal shows: everything the line discipline echoes.
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := ptm.Read(buf)
			mu.Lock()
			screen.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	// Type the token once echo is off (typed earlier, the terminal would
	// echo it before dynia could stop it, as it would for a person); if
	// echo never goes off, type it anyway, and the check below fails.
	go func() {
		waitEchoOff(pts)
		_, _ = ptm.Write([]byte(fullToken + "\n"))
	}()

	var out, errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: pts, InTTY: true, Out: &out, ErrOut: &errOut})
	f.Getenv = func(k string) string {
		if k == "DIGITALOCEAN_API_URL" {
			return e.api
		}
		return ""
	}
	if code := Run(t.Context(), f, []string{"--config", e.cfg, "auth", "init"}); code != 0 {
		t.Fatalf("auth init on a terminal: exit %d\nstderr: %s", code, errOut.String())
	}
	if !strings.HasPrefix(errOut.String(), "DigitalOcean API token: ") {
		t.Errorf("stderr %q: want the prompt first", errOut.String())
	}
	tok, err := os.ReadFile(filepath.Join(filepath.Dir(e.cfg), "tokens", "default.token"))
	if err != nil || strings.TrimSpace(string(tok)) != fullToken {
		t.Fatalf("stored token %q, %v; want the typed one", tok, err)
	}

	// Echo is back: a line typed now shows on the screen, and nothing
	// before it did.
	_, _ = ptm.Write([]byte("after\n"))
	testutil.WaitFor(t, time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(screen.String(), "after") {
			return fmt.Errorf("screen %q: echo not restored", screen.String())
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(screen.String(), fullToken) {
		t.Fatalf("the token was echoed: screen %q", screen.String())
	}
}

// TestAuthInitTerminalInterrupted: Ctrl-C (main cancels the context) while
// the token is being typed ends auth init at once, with the terminal's echo
// back on and nothing written.
func TestAuthInitTerminalInterrupted(t *testing.T) {
	t.Parallel()
	e := newSetupEnv(t)
	_, pts := openPTY(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		// Interrupt once dynia is waiting with echo off (or after 30 s,
		// and the check of the echo below fails).
		waitEchoOff(pts)
		cancel()
	}()
	var errOut bytes.Buffer
	f := NewFactory(&IOStreams{In: pts, InTTY: true, Out: &bytes.Buffer{}, ErrOut: &errOut})
	f.Getenv = func(k string) string { return "" }
	if code := Run(ctx, f, []string{"--config", e.cfg, "auth", "init"}); code != ExitFailure {
		t.Fatalf("interrupted auth init: exit %d, want %d\nstderr: %s", code, ExitFailure, errOut.String())
	}
	tio, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 {
		t.Error("the terminal's echo is still off")
	}
	if e.config() != "" {
		t.Error("an interrupted auth init wrote the config")
	}
}

// waitEchoOff waits, at most 30 s, until the terminal's echo is off (dynia
// is reading a secret); the caller's checks fail if it never goes off.
func waitEchoOff(pts *os.File) {
	_ = poll.Within(30*time.Second, func() error {
		tio, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
		if err == nil && tio.Lflag&unix.ECHO != 0 {
			return errors.New("echo on")
		}
		return nil
	})
}
