package main

import (
	"strings"
	"testing"
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
