// Package nodeconfig is the on-node configuration of dynia-pull
// (/etc/dynia/pull.json). cloud-init writes it, the sandbox writes it, and
// dynia-pull reads it. Secrets are never inline: the config names 0600 files.
package nodeconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/jsonstrict"
	"github.com/dynia/dynia/internal/signing"
)

// DefaultPath is where cloud-init writes the config on a droplet.
const DefaultPath = "/etc/dynia/pull.json"

// DefaultImagePath is where cloud-init writes the droplet image the node
// was created from (one line: a snapshot id or a distribution slug).
// dynia-pull reads it beside its config (ImagePath) and reports it.
const DefaultImagePath = "/etc/dynia/image"

// ImagePath is the image file that goes with the config at configPath:
// "image" in the same directory, so a sandbox droplet's root or a test's
// directory holds its own.
func ImagePath(configPath string) string {
	return filepath.Join(filepath.Dir(configPath), filepath.Base(DefaultImagePath))
}

// ReadImage reads the image file beside configPath: "" when there is none
// (a node created before the file existed) or it cannot be read.
func ReadImage(configPath string) string {
	b, err := os.ReadFile(ImagePath(configPath))
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

// Config is pull.json. Every path has a default suited to a real droplet;
// tests and the sandbox override them per node.
type Config struct {
	Cluster string `json:"cluster"`
	NodeID  string `json:"node_id"`
	// StateURL is s3://bucket/prefix or file://DIR, as the CLI's --state.
	StateURL string `json:"state_url"`
	// Endpoint is the S3/Spaces endpoint (https://sgp1.digitaloceanspaces.com).
	Endpoint  string `json:"endpoint,omitempty"`
	Region    string `json:"region,omitempty"`
	PathStyle bool   `json:"path_style,omitempty"`
	// CredentialsFile holds the Spaces key: JSON {"access_key_id","secret_access_key"}.
	CredentialsFile string `json:"credentials_file,omitempty"`
	// DOTokenFile holds the node-scoped DO API token (reserved_ip:update + reads).
	DOTokenFile string `json:"do_token_file,omitempty"`
	// DOAPIURL overrides the DO API base URL (sandbox/tests).
	DOAPIURL string `json:"do_api_url,omitempty"`
	// MetadataURL overrides http://169.254.169.254 (sandbox/tests).
	MetadataURL string `json:"metadata_url,omitempty"`

	PollInterval Duration `json:"poll_interval,omitempty"`

	// Where rendered files go and how daemons are run/reloaded.
	HAProxyConfig    string `json:"haproxy_config,omitempty"`
	KeepalivedConfig string `json:"keepalived_config,omitempty"`
	RunDir           string `json:"run_dir,omitempty"` // pid files, sockets, fifo
	// Supervise makes dynia-pull start and supervise haproxy and keepalived
	// itself (sandbox, tests, and the node image's default).
	Supervise     bool   `json:"supervise,omitempty"`
	HAProxyBin    string `json:"haproxy_bin,omitempty"`
	KeepalivedBin string `json:"keepalived_bin,omitempty"`
	// HAProxyReloadCommand and KeepalivedReloadCommand replace the built-in
	// reloads (HAProxy's master socket, SIGHUP to keepalived's pid file)
	// when the daemons are run some other way, e.g.
	// ["systemctl", "reload", "haproxy"]. An argv, run without a shell.
	HAProxyReloadCommand    []string `json:"haproxy_reload_command,omitempty"`
	KeepalivedReloadCommand []string `json:"keepalived_reload_command,omitempty"`

	// Runtime runs the app: "docker" (the node image's; the default) or
	// "process" (a machine without Docker: AppCommand is started as a
	// child process per release).
	Runtime string `json:"runtime,omitempty"`
	// DockerHost is the Docker Engine API address
	// (default unix:///var/run/docker.sock).
	DockerHost string `json:"docker_host,omitempty"`
	// AppCommand is the process runtime's app, an argv run without a
	// shell; it gets its address in DYNIA_APP_ADDR (ip:port), its node in
	// DYNIA_NODE_ID and the release's environment.
	AppCommand []string `json:"app_command,omitempty"`
	// ClusterKeyFile holds the cluster's age identity (0600), which opens
	// the state's sealed secrets (secret env, registry credentials,
	// certificates).
	ClusterKeyFile string `json:"cluster_key_file,omitempty"`

	// StatePublicKey is the public half of the cluster's state key
	// (Ed25519, base64 of 32 bytes): dynia-pull applies only states signed
	// with it (docs/security.md). Empty: a node made before state signing,
	// which checks no signature (and says so in its report).
	StatePublicKey string `json:"state_public_key,omitempty"`
	// ReportKeyFile holds this node's report key (Ed25519 seed, base64,
	// 0600), which signs its status reports; the state's node table holds
	// the public half. Empty: reports are written unsigned.
	ReportKeyFile string `json:"report_key_file,omitempty"`
	// AcceptedStateFile keeps the last state this node verified and
	// applied (0600), so a restarted dynia-pull still refuses older
	// generations put back in the bucket. Empty: remembered in memory only.
	AcceptedStateFile string `json:"accepted_state_file,omitempty"`
	// MinStateGeneration is the state's generation when the CLI made this
	// node's user-data: dynia-pull refuses any older state as a replay,
	// even before it applied one, so an old signed state put back while
	// the node boots cannot be its first (docs/security.md). 0: no floor
	// until the first state applied.
	MinStateGeneration int64 `json:"min_state_generation,omitempty"`

	// LogDir receives the supervised daemons' output (<name>.log) and the
	// app's; dynia-pull bounds the files and uploads their tails for
	// `dynia node logs`. Empty: the daemons write to dynia-pull's stderr
	// and only dynia-pull's own lines are uploaded. cloud-init sets
	// /var/log/dynia.
	LogDir string `json:"log_dir,omitempty"`
	// CloudInitLog is cloud-init's output, uploaded as the cloud-init
	// component (cloud-init sets /var/log/cloud-init-output.log).
	CloudInitLog string `json:"cloud_init_log,omitempty"`

	MetricsAddr string `json:"metrics_addr,omitempty"` // default 127.0.0.1:9321
	// ACMEChallengeAddr is where dynia-pull answers ACME HTTP-01
	// challenges for HAProxy (default 127.0.0.1:9322, loopback only).
	ACMEChallengeAddr string `json:"acme_challenge_addr,omitempty"`
	// TLSDir holds the certificate HAProxy serves on :443 (cert.pem, 0600;
	// default /etc/dynia/tls).
	TLSDir string `json:"tls_dir,omitempty"`
	// LogLevel is the least severe of dynia-pull's own log lines it writes
	// and uploads: debug, info, warn or error (slog's levels; default
	// info). It follows a config reload; DYNIA_PULL_DEBUG=1 forces debug.
	LogLevel string `json:"log_level,omitempty"`

	// The WireGuard mesh keepalived's VRRP runs over (docs/pull.md, Mesh).
	// MeshInterface is the interface's name (default dynia0): at most 15
	// characters of [a-zA-Z0-9_=+.-]. wireguard-go and wg keep their UAPI
	// socket at /var/run/wireguard/<name>.sock, shared by every network
	// namespace, so nodes sharing a machine (the sandbox) need unique names.
	MeshInterface string `json:"mesh_interface,omitempty"`
	// MeshPort is the UDP port WireGuard listens on (default 51820).
	MeshPort int `json:"mesh_port,omitempty"`
	// MeshKeyFile holds this node's WireGuard private key (base64, as `wg
	// genkey` writes it), created 0600 by dynia-pull at first start
	// (default /var/lib/dynia/wireguard.key). It never leaves the node.
	MeshKeyFile string `json:"mesh_key_file,omitempty"`
	// WireGuardGoBin, when set, runs the mesh on the userspace wireguard-go
	// (started and supervised by dynia-pull in supervise mode) instead of
	// kernel WireGuard: for hosts without the wireguard module (the sandbox).
	WireGuardGoBin string `json:"wireguard_go_bin,omitempty"`
	// MeshDisabled runs VRRP over the VPC interface between private IPs, as
	// before the mesh. Only for networks that carry VRRP (IP protocol 112):
	// a DigitalOcean Cloud Firewall does not, so droplets keep the mesh.
	MeshDisabled bool `json:"mesh_disabled,omitempty"`
	// BenchNoIdleClose leaves `option idle-close-on-response` out of
	// haproxy.cfg. A benchmark knob only (docs/benchmarks.md, reload
	// safety: the same run with and without it); never set it on a real
	// node, where keep-alive clients would then see reloads fail requests.
	BenchNoIdleClose bool `json:"bench_no_idle_close,omitempty"`
}

// Mesh defaults for the fields left empty.
const (
	DefaultMeshInterface = "dynia0"
	DefaultMeshPort      = 51820 // WireGuard's customary port (wg-quick(8) examples)
	DefaultMeshKeyFile   = "/var/lib/dynia/wireguard.key"
)

// ValidateInterfaceName checks a Linux interface name: 1-15 bytes (IFNAMSIZ
// is 16 with the NUL), from [a-zA-Z0-9_=+.-], and not "." or "..". The
// kernel allows more (anything but '/', ':' and whitespace); the narrower
// set keeps names safe in file names and `ip` arguments.
func ValidateInterfaceName(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("must be 1-15 characters")
	}
	if name == "." || name == ".." {
		return fmt.Errorf("must not be %q", name)
	}
	for _, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_=+.-", r)
		if !ok {
			return fmt.Errorf("may hold only letters, digits and _=+.-")
		}
	}
	return nil
}

// App runtimes (Config.Runtime).
const (
	RuntimeDocker  = "docker"
	RuntimeProcess = "process"
)

// Duration is a time.Duration written as a Go duration string ("2s").
type Duration struct{ time.Duration }

// MarshalJSON writes "2s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads "2s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"2s\": %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Load reads and strictly decodes a config file (a typo in a key is an error).
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read node config: %w", err)
	}
	return Decode(b)
}

// MaxBytes bounds pull.json; cloud-init writes about 1 KiB.
const MaxBytes = 64 << 10

// CheckDocument refuses a pull.json over MaxBytes, with duplicate or
// case-variant keys, or trailing data (package jsonstrict). Decode runs it;
// so must any lenient reader.
func CheckDocument(b []byte) error {
	if err := jsonstrict.Check[Config](b, MaxBytes); err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	return nil
}

// Decode strictly decodes pull.json and validates the required fields.
func Decode(b []byte) (*Config, error) {
	if err := CheckDocument(b); err != nil {
		return nil, err
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// logLevels are log_level's values, as slog names its levels.
var logLevels = []string{"debug", "info", "warn", "error"}

// SlogLevel is log_level as a slog.Level (info when unset).
func (c *Config) SlogLevel() slog.Level {
	switch c.LogLevel {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// Validate checks required fields and names the first bad one.
func (c *Config) Validate() error {
	switch {
	case c.Cluster == "":
		return fmt.Errorf("node config: cluster is empty")
	case c.NodeID == "":
		return fmt.Errorf("node config: node_id is empty")
	case c.StateURL == "":
		return fmt.Errorf("node config: state_url is empty")
	case c.PollInterval.Duration < 0:
		return fmt.Errorf("node config: poll_interval %q is negative", c.PollInterval)
	case len(c.HAProxyReloadCommand) > 0 && c.HAProxyReloadCommand[0] == "":
		return fmt.Errorf("node config: haproxy_reload_command %q has no program", c.HAProxyReloadCommand)
	case len(c.KeepalivedReloadCommand) > 0 && c.KeepalivedReloadCommand[0] == "":
		return fmt.Errorf("node config: keepalived_reload_command %q has no program", c.KeepalivedReloadCommand)
	case c.Runtime != "" && c.Runtime != RuntimeDocker && c.Runtime != RuntimeProcess:
		return fmt.Errorf("node config: runtime %q: must be %s or %s", c.Runtime, RuntimeDocker, RuntimeProcess)
	case c.Runtime == RuntimeProcess && (len(c.AppCommand) == 0 || c.AppCommand[0] == ""):
		return fmt.Errorf("node config: app_command %q: the process runtime needs a program", c.AppCommand)
	case c.LogLevel != "" && !slices.Contains(logLevels, c.LogLevel):
		return fmt.Errorf("node config: log_level %q: must be debug, info, warn or error", c.LogLevel)
	case c.MeshPort < 0 || c.MeshPort > 65535:
		return fmt.Errorf("node config: mesh_port %d must be 1-65535 (0: %d)", c.MeshPort, DefaultMeshPort)
	}
	if c.MinStateGeneration < 0 {
		return fmt.Errorf("node config: min_state_generation %d must not be negative", c.MinStateGeneration)
	}
	if c.StatePublicKey != "" {
		if _, err := signing.ParsePublicKey(c.StatePublicKey); err != nil {
			return fmt.Errorf("node config: state_public_key %q: %w", c.StatePublicKey, err)
		}
	}
	if c.MeshInterface != "" {
		if err := ValidateInterfaceName(c.MeshInterface); err != nil {
			return fmt.Errorf("node config: mesh_interface %q %w", c.MeshInterface, err)
		}
	}
	return c.validateInputs()
}
