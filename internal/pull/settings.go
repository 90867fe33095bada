package pull

import (
	"crypto/ed25519"
	"time"

	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/signing"
)

// Defaults for pull.json fields left empty, suited to a droplet.
const (
	DefaultPollInterval     = 2 * time.Second
	DefaultHAProxyConfig    = "/etc/haproxy/haproxy.cfg"
	DefaultKeepalivedConfig = "/etc/keepalived/keepalived.conf"
	DefaultRunDir           = "/run/dynia"
	DefaultMetricsAddr      = "127.0.0.1:9321"
	DefaultChallengeAddr    = "127.0.0.1:9322"
	DefaultTLSDir           = "/etc/dynia/tls"

	maxBackoff        = 30 * time.Second
	pollTimeout       = 15 * time.Second // one poll of the state, the store's retries included
	fullRenderEvery   = 5 * time.Minute
	minReloadInterval = 500 * time.Millisecond
	statusEvery       = time.Minute     // heartbeat when nothing changed
	statusMinGap      = 2 * time.Second // coalesces bursts of changes into one PUT
	toolTimeout       = 15 * time.Second
)

// Settings is pull.json with defaults applied.
type Settings struct {
	Cluster          string
	NodeID           string
	PollInterval     time.Duration
	HAProxyConfig    string
	KeepalivedConfig string
	RunDir           string
	Supervise        bool
	HAProxyBin       string
	KeepalivedBin    string
	// Reload commands replace the built-in reloads when set (pull.json).
	HAProxyReload    []string
	KeepalivedReload []string
	MetricsAddr      string
	ChallengeAddr    string // ACME HTTP-01 answers, for HAProxy
	TLSDir           string // the certificate HAProxy serves
	LogDir           string // daemons' output files; "" = dynia-pull's stderr
	CloudInitLog     string
	// The app runtime (nodeconfig.Config's fields of the same names).
	Runtime        string
	DockerHost     string
	AppCommand     []string
	ClusterKeyFile string
	// Mesh is the WireGuard mesh VRRP runs over; nil runs VRRP over the VPC
	// interface between private IPs (pull.json mesh_disabled).
	Mesh *MeshSettings
	// StatePublicKey verifies every state before it is applied; nil: a
	// node made before signing (nothing checked). Needs a restart.
	StatePublicKey ed25519.PublicKey
	// ReportKeyFile signs this node's reports ("": unsigned). Needs a restart.
	ReportKeyFile string
	// AcceptedStateFile keeps the last applied state across restarts ("": none).
	AcceptedStateFile string
	// MinStateGeneration is the replay floor before any state was applied
	// (pull.json min_state_generation). Needs a restart.
	MinStateGeneration int64
	// NoIdleClose is pull.json's bench_no_idle_close (benchmarks only).
	NoIdleClose bool
	// Image is the droplet image the node was created from (the image file
	// beside pull.json, nodeconfig.ReadImage), for the report.
	Image string
}

// MeshSettings are pull.json's mesh fields with defaults applied.
type MeshSettings struct {
	Interface string // WireGuard interface name
	Port      int    // UDP listen port
	KeyFile   string // private key, 0600
	// WireGuardGo is the wireguard-go program; empty: kernel WireGuard.
	WireGuardGo string
}

// SettingsFrom applies defaults to a node config.
func SettingsFrom(c *nodeconfig.Config) Settings {
	s := Settings{
		Cluster: c.Cluster, NodeID: c.NodeID, PollInterval: c.PollInterval.Duration,
		HAProxyConfig: c.HAProxyConfig, KeepalivedConfig: c.KeepalivedConfig, RunDir: c.RunDir,
		Supervise: c.Supervise, HAProxyBin: c.HAProxyBin, KeepalivedBin: c.KeepalivedBin,
		HAProxyReload: c.HAProxyReloadCommand, KeepalivedReload: c.KeepalivedReloadCommand,
		MetricsAddr: c.MetricsAddr, LogDir: c.LogDir, CloudInitLog: c.CloudInitLog,
		ChallengeAddr: c.ACMEChallengeAddr, TLSDir: c.TLSDir,
		Runtime: c.Runtime, DockerHost: c.DockerHost, AppCommand: c.AppCommand, ClusterKeyFile: c.ClusterKeyFile,
		ReportKeyFile: c.ReportKeyFile, AcceptedStateFile: c.AcceptedStateFile, MinStateGeneration: c.MinStateGeneration,
		NoIdleClose: c.BenchNoIdleClose,
	}
	if c.StatePublicKey != "" {
		// nodeconfig.Validate refused a malformed key before this runs.
		s.StatePublicKey, _ = signing.ParsePublicKey(c.StatePublicKey)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	if s.PollInterval <= 0 {
		s.PollInterval = DefaultPollInterval
	}
	def(&s.HAProxyConfig, DefaultHAProxyConfig)
	def(&s.KeepalivedConfig, DefaultKeepalivedConfig)
	def(&s.RunDir, DefaultRunDir)
	def(&s.HAProxyBin, "haproxy")
	def(&s.KeepalivedBin, "keepalived")
	def(&s.MetricsAddr, DefaultMetricsAddr)
	def(&s.ChallengeAddr, DefaultChallengeAddr)
	def(&s.TLSDir, DefaultTLSDir)
	if !c.MeshDisabled {
		m := &MeshSettings{Interface: c.MeshInterface, Port: c.MeshPort, KeyFile: c.MeshKeyFile, WireGuardGo: c.WireGuardGoBin}
		def(&m.Interface, nodeconfig.DefaultMeshInterface)
		def(&m.KeyFile, nodeconfig.DefaultMeshKeyFile)
		if m.Port == 0 {
			m.Port = nodeconfig.DefaultMeshPort
		}
		s.Mesh = m
	}
	return s
}

// sameMesh compares two mesh settings (nil: disabled).
func sameMesh(a, b *MeshSettings) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
