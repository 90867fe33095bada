package extcmd

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRunAndCombined(t *testing.T) {
	script := `echo out; echo err >&2; [ "$1" = ok ]`
	tests := []struct {
		name     string
		combined bool
		arg      string
		wantOut  string
		wantErr  string // "" for success
		wantTail string // Error.Output
	}{
		{"run ok", false, "ok", "out\n", "", ""},
		{"run fails: stderr in the error", false, "no", "out\n", "sh -c " + script + " x no: exit status 1: err", "err\n"},
		{"combined ok", true, "ok", "out\nerr\n", "", ""},
		{"combined fails: both in the error", true, "no", "out\nerr\n", "sh -c " + script + " x no: exit status 1: out | err", "out\nerr\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", script, "x", tc.arg)
			run := Run
			if tc.combined {
				run = Combined
			}
			out, err := run(cmd)
			if out != tc.wantOut {
				t.Errorf("output %q, want %q", out, tc.wantOut)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %#v, want *Error", err)
			}
			if got := err.Error(); got != tc.wantErr {
				t.Errorf("Error() = %q, want %q", got, tc.wantErr)
			}
			if e.Output != tc.wantTail {
				t.Errorf("Output = %q, want %q", e.Output, tc.wantTail)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Errorf("does not unwrap to exit status 1: %v", err)
			}
		})
	}
}

func TestErrorUnwrapsContextAndStart(t *testing.T) {
	_, err := Run(exec.Command("/nonexistent/dynia-no-such-tool", "-c"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing program: %v", err)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "/nonexistent/dynia-no-such-tool -c: ") {
		t.Errorf("missing program: %v, want the command named", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Combined(exec.CommandContext(ctx, "sleep", "60"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v, want context.Canceled", err)
	}
}

func TestTail(t *testing.T) {
	var many []string
	for i := range 20 {
		many = append(many, strings.Repeat("x", i%3)+"line")
	}
	long := strings.Repeat("é", 400) // 800 bytes
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"blank lines dropped, trimmed", "  a \n\n b\n", "a | b"},
		{"last 8 lines", strings.Join(many, "\n"), strings.Join(many[12:], " | ")},
		{"last 500 bytes, whole runes", long, "…" + strings.Repeat("é", 250)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, Tail(tc.in)); diff != "" {
				t.Errorf("Tail (-want +got):\n%s", diff)
			}
		})
	}
}

// TestChildEnvironment: NOTIFY_SOCKET (systemd's address for this process's
// sd_notify messages) reaches no child: not through Environ, not through
// Run or Combined, whether the command inherits the environment or sets
// its own; every other variable does. Not parallel: it sets the process's
// environment.
func TestChildEnvironment(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("DYNIA_EXTCMD_KEPT", "kept")
	check := func(what, env string) {
		t.Helper()
		lines := strings.Split(env, "\n")
		if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "NOTIFY_SOCKET=") }) {
			t.Errorf("%s: NOTIFY_SOCKET inherited:\n%s", what, env)
		}
		if !slices.Contains(lines, "DYNIA_EXTCMD_KEPT=kept") {
			t.Errorf("%s: DYNIA_EXTCMD_KEPT=kept missing:\n%s", what, env)
		}
	}
	check("Environ", strings.Join(Environ(), "\n"))
	if got := Environ("A=1", "B=2"); !slices.Equal(got[len(got)-2:], []string{"A=1", "B=2"}) {
		t.Errorf("Environ(A=1, B=2) ends %q, want the extras last", got[len(got)-2:])
	}
	out, err := Run(exec.Command("env"))
	if err != nil {
		t.Fatal(err)
	}
	check("Run", out)
	out, err = Combined(exec.Command("env"))
	if err != nil {
		t.Fatal(err)
	}
	check("Combined", out)
	cmd := exec.Command("env")
	cmd.Env = append(os.Environ(), "EXTRA=1")
	out, err = Run(cmd)
	if err != nil {
		t.Fatal(err)
	}
	check("Run with its own Env", out)
	if !slices.Contains(strings.Split(out, "\n"), "EXTRA=1") {
		t.Errorf("Run with its own Env lost EXTRA=1:\n%s", out)
	}
}
