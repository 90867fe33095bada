package nodeconfig

import (
	"strings"
	"testing"
)

// TestDecodeRefusesUnsafeInputs: pull.json's values that reach a daemon's
// config or a bucket key are checked, and the document is read strictly.
func TestDecodeRefusesUnsafeInputs(t *testing.T) {
	t.Parallel()
	const base = `"cluster":"demo","node_id":"misty-owl","state_url":"s3://b/p"`
	for _, tc := range []struct{ name, doc, want string }{
		{"cluster", `{"cluster":"My_App","node_id":"misty-owl","state_url":"s3://b"}`, `cluster "My_App": not a cluster name`},
		{"node id path", `{"cluster":"demo","node_id":"../../x","state_url":"s3://b"}`, `node_id "../../x": not a two-word node id`},
		{"run dir space", `{` + base + `,"run_dir":"/run/dyn ia"}`, `run_dir "/run/dyn ia": character ' ' not allowed`},
		{"run dir comment", `{` + base + `,"run_dir":"/run/dynia#x"}`, `run_dir "/run/dynia#x": character '#' not allowed`},
		{"run dir newline", `{` + base + `,"run_dir":"/run/dynia\nstats socket /tmp/x"}`, `run_dir "/run/dynia\nstats socket /tmp/x": character '\n' not allowed`},
		{"run dir quote", `{` + base + `,"run_dir":"/run/\"x"}`, `character '"' not allowed`},
		{"run dir relative", `{` + base + `,"run_dir":"run"}`, `run_dir "run": must be an absolute, clean path`},
		{"run dir unclean", `{` + base + `,"run_dir":"/run/../etc"}`, `must be an absolute, clean path`},
		{"relative config path", `{` + base + `,"haproxy_config":"haproxy.cfg"}`, `haproxy_config "haproxy.cfg": must be an absolute path`},
		{"control character in a path", `{` + base + `,"log_dir":"/var/log/\u001b[2J"}`, `log_dir "/var/log/\x1b[2J": contains a control character`},
		{"metrics on the VPC", `{` + base + `,"metrics_addr":"10.10.0.5:9321"}`, `metrics_addr "10.10.0.5:9321": must be a loopback address`},
		{"metrics everywhere", `{` + base + `,"metrics_addr":":9321"}`, `metrics_addr ":9321": must be a loopback address`},
		{"metrics by name", `{` + base + `,"metrics_addr":"localhost:9321"}`, `must be a loopback address`},
		{"acme public", `{` + base + `,"acme_challenge_addr":"0.0.0.0:9322"}`, `acme_challenge_addr "0.0.0.0:9322": must be a loopback address`},
		{"metrics no port", `{` + base + `,"metrics_addr":"127.0.0.1"}`, `metrics_addr "127.0.0.1": not host:port`},
		{"duplicate key", `{` + base + `,"supervise":true,"supervise":false}`, `duplicate key "supervise"`},
		{"case-variant key", `{` + base + `,"Supervise":true}`, `key "Supervise" must be spelled "supervise"`},
		{"trailing data", `{` + base + `}}`, `trailing data`},
		{"too large", `{` + base + `}` + strings.Repeat(" ", MaxBytes), `over the limit of 65536`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Decode = %v, want an error containing %q", err, tc.want)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
	for _, addr := range []string{"127.0.0.1:9321", "127.0.0.2:0", "[::1]:9321"} {
		if _, err := Decode([]byte(`{` + base + `,"metrics_addr":"` + addr + `"}`)); err != nil {
			t.Errorf("metrics_addr %q: %v", addr, err)
		}
	}
	for _, dir := range []string{"/run/dynia", "/tmp/TestX123/001/run", "/var/lib/dynia-sandbox/d_3/run", "/a/b+c,d=e@f~g:h"} {
		if _, err := Decode([]byte(`{` + base + `,"run_dir":"` + dir + `"}`)); err != nil {
			t.Errorf("run_dir %q: %v", dir, err)
		}
	}
}
