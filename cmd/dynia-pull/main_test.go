package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/testutil"
)

// TestHelpAndTypos: --help and -h print the usage to stdout and exit 0, at
// the top and for each command; --version is `version`; a mistyped command
// is named with the nearest one and exits 2.
func TestHelpAndTypos(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // a prefix of stdout ("" = nothing)
		stderrLine string // stderr's first line ("" = nothing)
	}{
		{[]string{"--help"}, exitOK, "usage: dynia-pull <command> [flags]\n\ncommands:\n", ""},
		{[]string{"-h"}, exitOK, "usage: dynia-pull <command> [flags]\n", ""},
		{[]string{"help"}, exitOK, "usage: dynia-pull <command> [flags]\n", ""},
		{[]string{"once", "--help"}, exitOK, "usage: dynia-pull once [flags]\n  -config string\n", ""},
		{[]string{"render", "-h"}, exitOK, "usage: dynia-pull render [flags]\n", ""},
		{[]string{"--version"}, exitOK, "dynia-pull " + version + "\n", ""},
		{[]string{"onse"}, exitUsage, "", `dynia-pull: unknown command "onse"; did you mean once?`},
		{[]string{"renderr", "--state", "x"}, exitUsage, "", `dynia-pull: unknown command "renderr"; did you mean render?`},
		{[]string{"xyzzy"}, exitUsage, "", `dynia-pull: unknown command "xyzzy"`},
		{[]string{"once", "--bogus"}, exitUsage, "", "flag provided but not defined: -bogus"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			var out, errb strings.Builder
			code := Main(t.Context(), tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if !strings.HasPrefix(out.String(), tc.stdout) || (tc.stdout == "") != (out.Len() == 0) {
				t.Errorf("stdout %q, want it to start %q", out.String(), tc.stdout)
			}
			first, _, _ := strings.Cut(errb.String(), "\n")
			if first != tc.stderrLine {
				t.Errorf("stderr's first line %q, want %q", first, tc.stderrLine)
			}
		})
	}
}

// TestOnceErrorLine: `once` that cannot load its config or open its store
// says why in one line on stderr, and exits 1.
func TestOnceErrorLine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pull.json")
	creds := filepath.Join(dir, "spaces.json")
	doc := `{"cluster":"shop","node_id":"amber-fox","state_url":"s3://bucket/p","endpoint":"http://127.0.0.1:1","region":"us-east-1","credentials_file":"` + creds + `"}`
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"cluster":"shop","node_id":"amber-fox","state_url":"s3://b","log_level":"loud"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, config string
		want         []string // in the one line
	}{
		{"missing config", filepath.Join(dir, "none.json"), []string{"dynia-pull once: read node config: ", "none.json", "no such file"}},
		{"bad config", bad, []string{"dynia-pull once: node config: log_level \"loud\": must be debug, info, warn or error"}},
		{"store credentials missing", cfg, []string{"dynia-pull once: ", "spaces.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb strings.Builder
			code := Main(t.Context(), []string{"once", "--config", tc.config}, &out, &errb)
			if code != exitFailed {
				t.Errorf("exit %d, want %d", code, exitFailed)
			}
			lines := strings.Split(strings.TrimSuffix(errb.String(), "\n"), "\n")
			if len(lines) != 1 || errb.Len() == 0 {
				t.Fatalf("stderr %q, want one line", errb.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("stderr %q, want it to contain %q", lines[0], w)
				}
			}
		})
	}
}

// TestForwardHUP: each SIGHUP becomes a reload request; when the context
// ends the forwarder returns, even with a request nobody takes.
func TestForwardHUP(t *testing.T) {
	t.Parallel()
	hup := make(chan os.Signal, 1)
	reload := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); forwardHUP(ctx, hup, reload) }()
	hup <- syscall.SIGHUP
	<-reload // forwarded (the test's deadline bounds the wait)
	hup <- syscall.SIGHUP
	// Wait until the forwarder holds the second signal, then stop taking
	// requests, as Run does when it returns.
	testutil.WaitFor(t, 30*time.Second, func() error {
		if len(hup) != 0 {
			return errors.New("second SIGHUP not taken yet")
		}
		return nil
	})
	cancel()
	testutil.WaitClosed(t, 30*time.Second, done, "forwarder still running after its context ended")
}
