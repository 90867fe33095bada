package main

import (
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	t.Parallel()
	var out, errb strings.Builder
	if c := Main(t.Context(), nil, &out, &errb); c != exitUsage {
		t.Errorf("no args: %d", c)
	}
	if c := Main(t.Context(), []string{"bogus"}, &out, &errb); c != exitUsage {
		t.Errorf("unknown command: %d", c)
	}
	if c := Main(t.Context(), []string{"render", "--node", "a-b"}, &out, &errb); c != exitUsage {
		t.Errorf("render without --state: %d", c)
	}
	if c := Main(t.Context(), []string{"once", "--config", "/nonexistent/pull.json"}, &out, &errb); c != exitFailed {
		t.Errorf("once with a missing config: %d", c)
	}
	if c := Main(t.Context(), []string{"version"}, &out, &errb); c != exitOK || !strings.Contains(out.String(), "dynia-pull") {
		t.Errorf("version: %d %q", c, out.String())
	}
}
