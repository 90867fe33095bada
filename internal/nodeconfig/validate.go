package nodeconfig

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/dynia/dynia/internal/cluster"
)

// runDirChars are the bytes a run dir may hold besides letters and digits.
// The run dir is written unquoted into haproxy.cfg (stats socket,
// server-state-file) and keepalived.conf (notify_fifo, pid files): a space
// would split the word, '#' start a comment, a quote or '\\' be parsed, '$'
// expand a variable.
const runDirChars = "/._+,=@~:-"

// validateInputs checks the fields that reach a daemon's config or a bucket
// key: cluster and node_id become status keys and appear in rendered
// files; run_dir is rendered into both configs.
func (c *Config) validateInputs() error {
	if err := cluster.ValidateName(c.Cluster); err != nil {
		return fmt.Errorf("node config: cluster %q: not a cluster name (1-30 lowercase letters, digits or single hyphens)", c.Cluster)
	}
	if err := cluster.ValidateNodeID(c.NodeID); err != nil {
		return fmt.Errorf("node config: node_id %q: not a two-word node id like misty-owl", c.NodeID)
	}
	if c.RunDir != "" {
		if err := ValidateRunDir(c.RunDir); err != nil {
			return fmt.Errorf("node config: run_dir %q: %w", c.RunDir, err)
		}
	}
	// Metrics, status and ACME answers are for this node only (issue 14):
	// HAProxy forwards challenges to the ACME address, nothing else may.
	for _, f := range []struct{ name, addr string }{
		{"metrics_addr", c.MetricsAddr}, {"acme_challenge_addr", c.ACMEChallengeAddr},
	} {
		if f.addr != "" {
			if err := validateLoopback(f.addr); err != nil {
				return fmt.Errorf("node config: %s %q: %w", f.name, f.addr, err)
			}
		}
	}
	for _, f := range []struct{ name, path string }{
		{"haproxy_config", c.HAProxyConfig}, {"keepalived_config", c.KeepalivedConfig},
		{"credentials_file", c.CredentialsFile}, {"do_token_file", c.DOTokenFile},
		{"cluster_key_file", c.ClusterKeyFile}, {"log_dir", c.LogDir}, {"cloud_init_log", c.CloudInitLog},
		{"mesh_key_file", c.MeshKeyFile},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return fmt.Errorf("node config: %s %q: must be an absolute path", f.name, f.path)
		}
		if strings.ContainsFunc(f.path, isControl) {
			return fmt.Errorf("node config: %s %q: contains a control character", f.name, f.path)
		}
	}
	return nil
}

// validateLoopback accepts host:port with a loopback IP literal (127.0.0.0/8
// or ::1) and a port.
func validateLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("not host:port")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("must be a loopback address (127.0.0.1:PORT): it serves this node only")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not 0-65535", port)
	}
	return nil
}

// ValidateRunDir checks a run dir: an absolute, clean path of letters,
// digits and runDirChars.
func ValidateRunDir(dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return fmt.Errorf("must be an absolute, clean path")
	}
	for _, r := range dir {
		ok := 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(runDirChars, r)
		if !ok {
			return fmt.Errorf("character %q not allowed (letters, digits and %s): the path is written unquoted into haproxy.cfg and keepalived.conf", r, runDirChars)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
