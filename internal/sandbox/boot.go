package sandbox

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// cloudBooter boots a droplet from its #cloud-config the way cloud-init and
// the node image would: write_files land under the droplet's own root
// directory, then (runtime docker) containerd and dockerd start, as
// docker.service does on a droplet, and dynia-pull starts from the
// rewritten pull.json. Everything else in the user-data (packages, runcmd)
// is the image's business and is skipped: the sandbox's "image" is this
// machine.
type cloudBooter struct {
	plan       plan
	binary     string // dynia (demo-app)
	pullBinary string
	// runtime is RuntimeDocker or RuntimeProcess.
	runtime string
	// registry is the sandbox registry's host:port ("" = none), insecure
	// for every droplet's dockerd.
	registry string
}

func (b cloudBooter) Boot(_ context.Context, ddir string, d dropletNet, userData []byte) ([]procSpec, error) {
	if len(bytes.TrimSpace(userData)) == 0 {
		return nil, nil // a bare droplet: network only
	}
	cc, err := cloudinit.Parse(userData)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	root := filepath.Join(ddir, "root")
	// What cloud-init would log: the sandbox's boot steps, so `dynia node
	// logs --component cloud-init` has the same shape as on a droplet.
	var bootLog strings.Builder
	for _, f := range cc.WriteFiles {
		if err := writeCloudFile(root, f); err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
		fmt.Fprintf(&bootLog, "%s sandbox cloud-init: write_files %s (%s)\n", time.Now().UTC().Format(time.RFC3339), f.Path, f.Permissions)
	}
	fmt.Fprintf(&bootLog, "%s sandbox cloud-init: packages and runcmd skipped (the image is this machine); starting dynia-pull\n", time.Now().UTC().Format(time.RFC3339))
	if err := os.MkdirAll(filepath.Join(ddir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	if err := appendFile(filepath.Join(ddir, "logs", "cloud-init.log"), bootLog.String()); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	raw, err := os.ReadFile(filepath.Join(root, nodeconfig.DefaultPath))
	if os.IsNotExist(err) {
		return nil, nil // not a dynia node
	}
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	cfg, err := nodeconfig.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	b.rewrite(cfg, ddir)
	cfgPath := filepath.Join(ddir, "pull.json")
	if err := writeJSON(cfgPath, cfg); err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	// dynia-pull reads the image file beside its config
	// (nodeconfig.ImagePath): the rewritten config's neighbour here.
	if img, err := os.ReadFile(filepath.Join(root, nodeconfig.DefaultImagePath)); err == nil {
		if err := fsutil.WriteFileAtomic(nodeconfig.ImagePath(cfgPath), img, 0o644); err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
	}
	logs := filepath.Join(ddir, "logs")
	var procs []procSpec
	if b.runtime != RuntimeProcess {
		// The node image's docker.service: the droplet's own engine.
		e := dropletEngine(ddir, d.NS, b.registry, netip.PrefixFrom(d.Private, d.PrivLen), b.plan.Public)
		if err := e.WriteConfig(); err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
		procs = append(procs, dockerProcs(e, ddir)...)
	}
	// dynia-pull runs the app (its runtime starts the releases `dynia app
	// deploy` names): no app process of the sandbox's own.
	procs = append(procs, procSpec{
		Name: "pull", Path: b.pullBinary, Args: []string{"run", "--config", cfgPath},
		Dir: ddir, LogPath: filepath.Join(logs, "pull.log"), PidPath: filepath.Join(ddir, "pids", "pull.pid"),
	})
	return procs, nil
}

// rewrite points the node config at the droplet's directory and at the
// sandbox's cloud, as if the droplet had its own filesystem.
func (b cloudBooter) rewrite(c *nodeconfig.Config, ddir string) {
	root := filepath.Join(ddir, "root")
	rooted := func(p, def string) string {
		if p == "" {
			p = def
		}
		if p == "" {
			return ""
		}
		return filepath.Join(root, filepath.Clean("/"+p))
	}
	c.CredentialsFile = rooted(c.CredentialsFile, "")
	c.DOTokenFile = rooted(c.DOTokenFile, "")
	c.ClusterKeyFile = rooted(c.ClusterKeyFile, "")
	c.ReportKeyFile = rooted(c.ReportKeyFile, "")
	c.AcceptedStateFile = rooted(c.AcceptedStateFile, "")
	c.TLSDir = rooted(c.TLSDir, "/etc/dynia/tls")
	c.HAProxyConfig = rooted(c.HAProxyConfig, "/etc/haproxy/haproxy.cfg")
	c.KeepalivedConfig = rooted(c.KeepalivedConfig, "/etc/keepalived/keepalived.conf")
	c.RunDir = filepath.Join(ddir, "run")
	// The droplet's logs dir: `sandbox logs` reads the same files dynia-pull
	// uploads for `dynia node logs`.
	c.LogDir = filepath.Join(ddir, "logs")
	c.CloudInitLog = filepath.Join(ddir, "logs", "cloud-init.log")
	c.Supervise = true
	c.DOAPIURL = b.plan.APIURL()
	c.MetadataURL = b.plan.MetadataURL()
	// The app runtime is the "image"'s: this sandbox's. The process runtime
	// runs the sandbox's demo app for every release: it listens on
	// DYNIA_APP_ADDR and answers with the node id and the release's
	// DEMO_APP_VERSION.
	if b.runtime == RuntimeProcess {
		c.Runtime, c.DockerHost = RuntimeProcess, ""
		c.AppCommand = []string{b.binary, "sandbox", "demo-app"}
	} else {
		c.Runtime, c.AppCommand = RuntimeDocker, nil
		c.DockerHost = dropletEngine(ddir, "", "").Host()
	}
	// The VRRP mesh runs on wireguard-go (this machine's kernel may lack
	// the wireguard module). Its interface name must be unique on the whole
	// machine, not just in the droplet's namespace: wireguard-go and wg
	// keep their UAPI socket in /var/run/wireguard, which every namespace
	// shares, and concurrent sandboxes number droplets alike. So the name
	// hashes the droplet's namespace (prefix and droplet id): wg + 8 hex.
	if !c.MeshDisabled {
		h := fnv.New32a()
		h.Write([]byte(b.plan.Prefix + "-d" + filepath.Base(ddir)))
		c.MeshInterface = fmt.Sprintf("wg%08x", h.Sum32())
		c.MeshKeyFile = rooted(c.MeshKeyFile, nodeconfig.DefaultMeshKeyFile)
		c.WireGuardGoBin = "/usr/bin/wireguard-go" // Debian's package; `make deps-sandbox` installs it
		if p, err := exec.LookPath("wireguard-go"); err == nil {
			c.WireGuardGoBin = p
		}
	}
	// The S3 endpoint is left as the CLI wrote it: filling in the
	// sandbox's would hide a CLI that forgets to tell nodes where the state
	// is (on DigitalOcean they would fall back to nyc3 and never report).
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeCloudFile writes one write_files entry under root with its mode.
func writeCloudFile(root string, f cloudinit.File) error {
	if !filepath.IsAbs(f.Path) {
		return fmt.Errorf("write_files: path %q is not absolute", f.Path)
	}
	content, err := decodeContent(f.Encoding, f.Content)
	if err != nil {
		return fmt.Errorf("write_files %s: %w", f.Path, err)
	}
	mode := os.FileMode(0o644)
	if f.Permissions != "" {
		v, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil {
			return fmt.Errorf("write_files %s: permissions %q: %w", f.Path, f.Permissions, err)
		}
		mode = os.FileMode(v) & os.ModePerm
	}
	dst := filepath.Join(root, filepath.Clean(f.Path))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("write_files %s: %w", f.Path, err)
	}
	if err := fsutil.WriteFileAtomic(dst, content, mode); err != nil {
		return fmt.Errorf("write_files %s: %w", f.Path, err)
	}
	return nil
}

// decodeContent handles cloud-init's encodings.
func decodeContent(enc, content string) ([]byte, error) {
	switch strings.ToLower(enc) {
	case "", "text/plain":
		return []byte(content), nil
	case "b64", "base64":
		return base64.StdEncoding.DecodeString(content)
	case "gz", "gzip":
		return gunzip([]byte(content))
	case "gz+b64", "gzip+base64", "gz+base64", "gzip+b64":
		b, err := base64.StdEncoding.DecodeString(content)
		if err != nil {
			return nil, err
		}
		return gunzip(b)
	}
	return nil, fmt.Errorf("unsupported encoding %q", enc)
}

func gunzip(b []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	// ReadAll reports corrupt or truncated data (checksums included);
	// closing the in-memory reader has nothing to add.
	defer func() { _ = r.Close() }()
	return io.ReadAll(r)
}
