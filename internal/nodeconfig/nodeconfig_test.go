package nodeconfig

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte(`{"cluster":"demo","node_id":"misty-owl","state_url":"s3://b/p","poll_interval":"2s","supervise":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval.Duration != 2*time.Second || !c.Supervise {
		t.Fatalf("decoded %+v", c)
	}
	tests := map[string]string{
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","poll_intervall":"2s"}`:                                     `unknown field "poll_intervall"`,
		`{"node_id":"x","state_url":"s3://b"}`:                                                                            "cluster is empty",
		`{"cluster":"demo","state_url":"s3://b"}`:                                                                         "node_id is empty",
		`{"cluster":"demo","node_id":"x"}`:                                                                                "state_url is empty",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","poll_interval":2}`:                                         "duration must be a string",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","poll_interval":"-1s"}`:                                     "negative",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","haproxy_reload_command":[""]}`:                             `haproxy_reload_command [""] has no program`,
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","keepalived_reload_command":"systemctl reload keepalived"}`: "keepalived_reload_command",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","mesh_port":70000}`:                                         "mesh_port 70000 must be 1-65535",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","mesh_port":-1}`:                                            "mesh_port -1",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","min_state_generation":-1}`:                                 "min_state_generation -1 must not be negative",
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","mesh_interface":"wg-1234567890123"}`:                       `mesh_interface "wg-1234567890123" must be 1-15 characters`,
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","mesh_interface":"wg/0"}`:                                   `mesh_interface "wg/0" may hold only`,
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","mesh_interface":"wg 0"}`:                                   `mesh_interface "wg 0" may hold only`,
		`{"cluster":"demo","node_id":"x","state_url":"s3://b","mesh_interface":".."}`:                                     `mesh_interface ".." must not be ".."`,
	}
	for doc, want := range tests {
		if _, err := Decode([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want an error containing %q", doc, err, want)
		}
	}
}

func TestMeshFields(t *testing.T) {
	t.Parallel()
	c, err := Decode([]byte(`{"cluster":"demo","node_id":"misty-owl","state_url":"s3://b","mesh_interface":"wg3164444",
		"mesh_port":51821,"mesh_key_file":"/k","wireguard_go_bin":"/usr/bin/wireguard-go"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.MeshInterface != "wg3164444" || c.MeshPort != 51821 || c.MeshKeyFile != "/k" || c.WireGuardGoBin != "/usr/bin/wireguard-go" || c.MeshDisabled {
		t.Errorf("decoded %+v", c)
	}
	for _, name := range []string{"dynia0", "a", "wg_=+.-Z9", "123456789012345"} {
		if err := ValidateInterfaceName(name); err != nil {
			t.Errorf("ValidateInterfaceName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "1234567890123456", "wg:0", "wgé"} {
		if err := ValidateInterfaceName(name); err == nil {
			t.Errorf("ValidateInterfaceName(%q) accepted", name)
		}
	}
}

// TestLogLevel: log_level is one of slog's four level names, lowercase;
// anything else names the field and the value.
func TestLogLevel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level string
		want  slog.Level
	}{
		{"", slog.LevelInfo},
		{"debug", slog.LevelDebug},
		{"info", slog.LevelInfo},
		{"warn", slog.LevelWarn},
		{"error", slog.LevelError},
	} {
		c, err := Decode([]byte(`{"cluster":"demo","node_id":"misty-owl","state_url":"s3://b","log_level":"` + tc.level + `"}`))
		if err != nil {
			t.Fatalf("log_level %q: %v", tc.level, err)
		}
		if got := c.SlogLevel(); got != tc.want {
			t.Errorf("log_level %q: level %v, want %v", tc.level, got, tc.want)
		}
	}
	for _, bad := range []string{"DEBUG", "warning", "trace", "info+2", " info"} {
		_, err := Decode([]byte(`{"cluster":"demo","node_id":"misty-owl","state_url":"s3://b","log_level":"` + bad + `"}`))
		if want := `node config: log_level "` + bad + `": must be debug, info, warn or error`; err == nil || err.Error() != want {
			t.Errorf("log_level %q: %v, want %q", bad, err, want)
		}
	}
}

// TestReadImage: the image file beside pull.json gives its first line,
// trimmed; a node without the file (created before it existed) reports
// none.
func TestReadImage(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "pull.json")
	if got := ReadImage(cfg); got != "" {
		t.Fatalf("no file: %q, want none", got)
	}
	if err := os.WriteFile(filepath.Join(dir, "image"), []byte("182746331\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ReadImage(cfg); got != "182746331" {
		t.Fatalf("ReadImage = %q, want 182746331", got)
	}
	if ImagePath(DefaultPath) != DefaultImagePath {
		t.Fatalf("ImagePath(%s) = %s, want %s", DefaultPath, ImagePath(DefaultPath), DefaultImagePath)
	}
}
