// Package cloudinit renders the #cloud-config user-data that turns a droplet
// into a dynia node, and reads it back.
//
// The document is built from Go structs and serialized with sigs.k8s.io/yaml,
// never by text templating, so a token with quotes, colons or newlines cannot
// change its structure. Secrets go only into 0600 root-owned files; Mask hides
// them for --dry-run output. Parse is what the local sandbox uses to "boot" a
// simulated droplet from the exact bytes the CLI sent.
//
// The embedded files (files/) are the only copies: the Packer recipe
// uploads them from here, so image and --bootstrap nodes share them.
package cloudinit

import (
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// Mode says what the droplet's image already contains.
type Mode string

const (
	// Snapshot: the droplet boots from the dynia-node-* image; user-data
	// only configures it.
	Snapshot Mode = "snapshot"
	// Bootstrap: a stock distro image; first boot installs everything and
	// downloads dynia-pull through a presigned URL.
	Bootstrap Mode = "bootstrap"
)

// Where things land on a droplet.
const (
	PullConfigPath        = nodeconfig.DefaultPath      // /etc/dynia/pull.json
	ImagePath             = nodeconfig.DefaultImagePath // /etc/dynia/image
	SpacesCredentialsPath = "/etc/dynia/spaces.json"
	DOTokenPath           = "/etc/dynia/do-token"
	ClusterKeyPath        = "/etc/dynia/cluster.key"
	PullBinaryURLPath     = "/etc/dynia/pull-binary.url"
	PullBinarySHA256Path  = "/etc/dynia/pull-binary.sha256"
	PullBinaryPath        = "/usr/local/bin/dynia-pull"
	UnitName              = "dynia-pull.service"
	LibDir                = "/usr/local/lib/dynia"
	// LogDir holds the daemons' and the app's logs (pull.json log_dir).
	LogDir = "/var/log/dynia"
	// CloudInitLog is where cloud-init writes the output of its stages.
	CloudInitLog = "/var/log/cloud-init-output.log"
)

// Where state and report signing put things on a droplet (docs/security.md).
const (
	// ReportKeyPath holds the node's report key (signs its status reports).
	ReportKeyPath = "/etc/dynia/report.key"
	// AcceptedStatePath keeps the last state the node applied, so a
	// restarted dynia-pull still refuses older ones (pull.json
	// accepted_state_file).
	AcceptedStatePath = "/var/lib/dynia/state.json"
)

// MaxUserData is DigitalOcean's user_data limit.
const MaxUserData = 64 << 10

// Distros accepted for Bootstrap mode (DigitalOcean image slugs).
var Distros = []string{"debian-12-x64", "ubuntu-24-04-x64"}

// Embedded node files, shared with packer/ (see the package comment).
var (
	//go:embed files/dynia-pull.service
	Unit []byte
	//go:embed files/provision.sh
	ProvisionScript []byte
	//go:embed files/bootstrap.sh
	BootstrapScript []byte
)

// Params is everything one droplet's user-data needs.
type Params struct {
	Mode     Mode // "" means Snapshot
	Cluster  string
	NodeID   string
	Hostname string // "" means cluster.Hostname(Cluster, NodeID)

	// Node is pull.json. Render fills Cluster/NodeID when empty, points
	// CredentialsFile/DOTokenFile at the files below when their secret is
	// given, and sets Supervise (the image masks the distro units).
	Node nodeconfig.Config

	SpacesAccessKeyID     string // → SpacesCredentialsPath (0600)
	SpacesSecretAccessKey string
	DOToken               string // node-scoped token → DOTokenPath (0600), no trailing newline
	// ClusterKey is the cluster's age identity (internal/secrets) →
	// ClusterKeyPath (0600): it opens the state's sealed secrets.
	ClusterKey string
	// StatePublicKey is the cluster's state key, public half (base64) →
	// pull.json state_public_key: the node applies only states it signed.
	StatePublicKey string
	// ReportKey is this node's report key, private half (base64 seed,
	// internal/signing) → ReportKeyPath (0600): it signs the node's reports.
	ReportKey string
	// Image is the droplet image the node is created from, as the CLI
	// asked DigitalOcean for it (a snapshot id, or a distribution slug with
	// --bootstrap) → ImagePath (0644), which dynia-pull reports. A file of
	// its own rather than a pull.json key: a dynia-pull older than the key
	// would take it for a typo and report the node degraded.
	Image string

	// Bootstrap mode only.
	PullBinaryURL    string // presigned GET of the uploaded dynia-pull
	PullBinarySHA256 string // hex
	Distro           string // one of Distros
}

// Config is a parsed #cloud-config: the parts dynia writes.
type Config struct {
	Hostname         string   `json:"hostname,omitempty"`
	FQDN             string   `json:"fqdn,omitempty"`
	PreserveHostname *bool    `json:"preserve_hostname,omitempty"`
	ManageEtcHosts   bool     `json:"manage_etc_hosts,omitempty"`
	WriteFiles       []File   `json:"write_files,omitempty"`
	PackageUpdate    bool     `json:"package_update,omitempty"`
	Packages         []string `json:"packages,omitempty"`
	// RunCmd items are argv lists (cloud-init quotes each element); a plain
	// string item, which cloud-init passes to sh verbatim, parses as a
	// one-element list. dynia never renders string items.
	RunCmd []Command `json:"runcmd,omitempty"`
}

// File is one write_files entry.
type File struct {
	Path        string `json:"path"`
	Content     string `json:"content"`
	Permissions string `json:"permissions,omitempty"` // octal string, "0600"
	Owner       string `json:"owner,omitempty"`       // "root:root"
	Encoding    string `json:"encoding,omitempty"`    // "" (plain text) in what dynia renders
	// Defer false: written in the init stage, before dynia-pull can start.
	Defer bool `json:"defer"`
}

// Command is one runcmd item as argv.
type Command []string

// UnmarshalJSON accepts both the list and the plain-string forms.
func (c *Command) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*c = Command{s}
		return nil
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("runcmd item must be a string or a list of strings: %w", err)
	}
	*c = l
	return nil
}

const header = "#cloud-config\n"

// Render builds the user-data for one droplet.
func Render(p Params) ([]byte, error) {
	if p.Mode == "" {
		p.Mode = Snapshot
	}
	if p.Hostname == "" && p.Cluster != "" && p.NodeID != "" {
		p.Hostname = cluster.Hostname(p.Cluster, p.NodeID)
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	pullJSON, err := p.pullConfig()
	if err != nil {
		return nil, err
	}
	f := false
	cc := Config{
		Hostname:         p.Hostname,
		FQDN:             p.Hostname,
		PreserveHostname: &f,
		ManageEtcHosts:   true,
	}
	if cc.WriteFiles, err = p.nodeFiles(pullJSON); err != nil {
		return nil, err
	}
	p.addBoot(&cc)
	return encode(cc)
}

// pullConfig is pull.json: p.Node completed with the cluster, the node id
// and the paths of the files Render writes, validated and indented.
func (p Params) pullConfig() ([]byte, error) {
	node := p.Node
	if node.Cluster == "" {
		node.Cluster = p.Cluster
	}
	if node.NodeID == "" {
		node.NodeID = p.NodeID
	}
	if node.Cluster != p.Cluster || node.NodeID != p.NodeID {
		return nil, fmt.Errorf("render user-data: node config is for %s/%s, params for %s/%s",
			node.Cluster, node.NodeID, p.Cluster, p.NodeID)
	}
	node.Supervise = true
	if node.LogDir == "" {
		node.LogDir = LogDir
	}
	if node.CloudInitLog == "" {
		node.CloudInitLog = CloudInitLog
	}
	if p.SpacesAccessKeyID != "" {
		node.CredentialsFile = SpacesCredentialsPath
	}
	if p.DOToken != "" {
		node.DOTokenFile = DOTokenPath
	}
	if p.ClusterKey != "" {
		node.ClusterKeyFile = ClusterKeyPath
	}
	if p.StatePublicKey != "" {
		node.StatePublicKey = p.StatePublicKey
		if node.AcceptedStateFile == "" {
			node.AcceptedStateFile = AcceptedStatePath
		}
	}
	if p.ReportKey != "" {
		node.ReportKeyFile = ReportKeyPath
	}
	if err := node.Validate(); err != nil {
		return nil, fmt.Errorf("render user-data: %w", err)
	}
	pullJSON, err := json.MarshalIndent(node, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render user-data: encode node config: %w", err)
	}
	return pullJSON, nil
}

// nodeFiles are the write_files every mode has: pull.json, the image name
// and the secrets given.
func (p Params) nodeFiles(pullJSON []byte) ([]File, error) {
	files := []File{secretFile(PullConfigPath, string(pullJSON)+"\n")}
	if p.Image != "" {
		files = append(files, plainFile(ImagePath, "0644", []byte(p.Image+"\n")))
	}
	if p.SpacesAccessKeyID != "" {
		creds, err := json.MarshalIndent(map[string]string{
			"access_key_id":     p.SpacesAccessKeyID,
			"secret_access_key": p.SpacesSecretAccessKey,
		}, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("render user-data: encode spaces credentials: %w", err)
		}
		files = append(files, secretFile(SpacesCredentialsPath, string(creds)+"\n"))
	}
	if p.DOToken != "" {
		files = append(files, secretFile(DOTokenPath, p.DOToken))
	}
	if p.ClusterKey != "" {
		files = append(files, secretFile(ClusterKeyPath, p.ClusterKey+"\n"))
	}
	if p.ReportKey != "" {
		files = append(files, secretFile(ReportKeyPath, p.ReportKey+"\n"))
	}
	return files, nil
}

// addBoot adds what starts dynia-pull in p's mode: the image's unit, or the
// bootstrap's files and script.
func (p Params) addBoot(cc *Config) {
	switch p.Mode {
	case Snapshot:
		// The image enables the unit, and its ConditionPathExists usually
		// starts it once write_files has run; this covers the boot where
		// systemd evaluated the condition first. --no-block: the unit is
		// Type=notify, and cloud-init need not wait for its READY=1.
		cc.RunCmd = []Command{{"systemctl", "enable", "--now", "--no-block", UnitName}}
	case Bootstrap:
		cc.WriteFiles = append(cc.WriteFiles,
			secretFile(PullBinaryURLPath, p.PullBinaryURL),
			plainFile(PullBinarySHA256Path, "0644", []byte(strings.ToLower(p.PullBinarySHA256))),
			plainFile(LibDir+"/"+UnitName, "0644", Unit),
			plainFile(LibDir+"/provision.sh", "0755", ProvisionScript),
			plainFile(LibDir+"/bootstrap.sh", "0755", BootstrapScript),
		)
		// provision.sh installs the packages (not cloud-init's packages:
		// module) so that policy-rc.d keeps Debian's haproxy from starting
		// with its default config, exactly as in the image build.
		cc.RunCmd = []Command{{LibDir + "/bootstrap.sh"}}
	}
}

// encode is the #cloud-config document, within DigitalOcean's user-data
// limit.
func encode(cc Config) ([]byte, error) {
	body, err := yaml.Marshal(cc)
	if err != nil {
		return nil, fmt.Errorf("render user-data: encode yaml: %w", err)
	}
	out := append([]byte(header), body...)
	if len(out) > MaxUserData {
		return nil, fmt.Errorf("render user-data: %d bytes, DigitalOcean allows %d", len(out), MaxUserData)
	}
	return out, nil
}

func secretFile(path, content string) File {
	return File{Path: path, Content: content, Permissions: "0600", Owner: "root:root"}
}

func plainFile(path, perm string, content []byte) File {
	return File{Path: path, Content: string(content), Permissions: perm, Owner: "root:root"}
}

// check validates the parameters and names the first bad one. It never
// prints a secret value.
func (p Params) check() error {
	switch {
	case p.Mode != Snapshot && p.Mode != Bootstrap:
		return fmt.Errorf("render user-data: unknown mode %q", p.Mode)
	case p.Cluster == "" || p.NodeID == "":
		return fmt.Errorf("render user-data: cluster and node id are required")
	case !validHostname(p.Hostname):
		return fmt.Errorf("render user-data: invalid hostname %q", p.Hostname)
	case (p.SpacesAccessKeyID == "") != (p.SpacesSecretAccessKey == ""):
		return fmt.Errorf("render user-data: Spaces access key id and secret must be given together")
	case strings.ContainsAny(p.DOToken, "\r\n"):
		return fmt.Errorf("render user-data: DO token contains a line break")
	case strings.ContainsAny(p.ClusterKey, "\r\n"):
		return fmt.Errorf("render user-data: cluster key contains a line break")
	case strings.ContainsAny(p.ReportKey, "\r\n"):
		return fmt.Errorf("render user-data: report key contains a line break")
	}
	if p.Mode != Bootstrap {
		return nil
	}
	if !contains(Distros, p.Distro) {
		return fmt.Errorf("render user-data: bootstrap distro %q is not one of %s", p.Distro, strings.Join(Distros, ", "))
	}
	if b, err := hex.DecodeString(p.PullBinarySHA256); err != nil || len(b) != 32 {
		return fmt.Errorf("render user-data: dynia-pull sha256 %q is not 64 hex digits", p.PullBinarySHA256)
	}
	u, err := url.Parse(p.PullBinaryURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("render user-data: dynia-pull URL is not an http(s) URL")
	}
	// bootstrap.sh hands the URL to curl inside double quotes.
	if strings.ContainsAny(p.PullBinaryURL, "\"\\ \t\r\n") {
		return fmt.Errorf("render user-data: dynia-pull URL contains quotes, backslashes or spaces")
	}
	return nil
}

// validHostname: RFC 1123 labels, as DigitalOcean droplet names.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !isHostnameRune(r) {
				return false
			}
		}
	}
	return true
}

// isHostnameRune reports whether r may appear in a hostname label (RFC 1123:
// ASCII letters, digits and hyphens).
func isHostnameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-'
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Parse reads a #cloud-config document.
func Parse(userData []byte) (*Config, error) {
	if !strings.HasPrefix(string(userData), "#cloud-config") {
		return nil, fmt.Errorf("parse user-data: not a #cloud-config document")
	}
	var c Config
	if err := yaml.Unmarshal(userData, &c); err != nil {
		return nil, fmt.Errorf("parse user-data: %w", err)
	}
	return &c, nil
}

// Masked is what Mask puts in place of a secret.
const Masked = "***"

// secretPaths hold credentials. Everything else dynia writes is safe to
// print (pull.json names the secret files, it holds no secret itself).
var secretPaths = map[string]bool{
	SpacesCredentialsPath: true,
	DOTokenPath:           true,
	ClusterKeyPath:        true,
	ReportKeyPath:         true,
	PullBinaryURLPath:     true,
}

// Mask returns the user-data with every secret value replaced by "***", for
// --dry-run. Besides dynia's own secret files, any write_files entry that is
// not world-readable (other than pull.json) is masked, and unparseable input
// is masked whole: when in doubt, hide.
func Mask(userData []byte) []byte {
	var doc map[string]any
	if err := yaml.Unmarshal(userData, &doc); err != nil || !strings.HasPrefix(string(userData), "#cloud-config") {
		return []byte(header + "# (user-data masked: not a parseable #cloud-config)\n")
	}
	if files, ok := doc["write_files"].([]any); ok {
		for _, f := range files {
			m, ok := f.(map[string]any)
			if !ok {
				continue
			}
			path, _ := m["path"].(string)
			perm, _ := m["permissions"].(string)
			if secretPaths[path] || (path != PullConfigPath && !worldReadable(perm)) {
				m["content"] = Masked
			}
		}
	}
	body, err := yaml.Marshal(doc)
	if err != nil {
		return []byte(header + "# (user-data masked: re-encoding failed)\n")
	}
	return append([]byte(header), body...)
}

// worldReadable reports whether an octal permission string grants o+r.
// A missing mode is cloud-init's default 0644.
func worldReadable(perm string) bool {
	if perm == "" {
		return true
	}
	var mode uint32
	if _, err := fmt.Sscanf(perm, "%o", &mode); err != nil {
		return false
	}
	return mode&0o004 != 0
}
