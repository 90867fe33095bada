package sandbox

import (
	"io"
	"strings"
	"testing"
)

// TestFilterDaemonLines: `sandbox logs --component haproxy|keepalived`
// finds dynia-pull's lines about the daemon and the daemon's own output,
// which it writes straight to dynia-pull's stderr.
func TestFilterDaemonLines(t *testing.T) {
	t.Parallel()
	log := strings.Join([]string{
		`{"time":"t","level":"INFO","msg":"started","component":"haproxy","pid":1}`,
		`{"time":"t","level":"INFO","msg":"started","component":"keepalived","pid":2}`,
		`{"time":"t","level":"INFO","msg":"applied"}`,
		`[NOTICE]   (8890) : New worker (8892) forked`,
		`<1>Server b/s1 is DOWN, reason: Layer4 connection problem`,
		`Fri Nov 27 14:37:52 2026: (dynia) Entering MASTER STATE`,
		`Fri Nov  7 04:37:52 2026: Starting VRRP child process, pid=8899`,
	}, "\n") + "\n"
	for comp, want := range map[string][]int{"haproxy": {0, 3, 4}, "keepalived": {1, 5, 6}} {
		b, err := io.ReadAll(filterLines(io.NopCloser(strings.NewReader(log)), comp))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(log, "\n")
		var exp []string
		for _, i := range want {
			exp = append(exp, lines[i])
		}
		if got := strings.TrimSuffix(string(b), "\n"); got != strings.Join(exp, "\n") {
			t.Errorf("%s lines:\n%s\nwant:\n%s", comp, got, strings.Join(exp, "\n"))
		}
	}
}
