package container

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// Labels dynia puts on every container it starts. Docker reserves the
// com.docker.*, io.docker.* and org.dockerproject.* prefixes
// (https://docs.docker.com/config/labels-custom-metadata/); these use
// "dynia.". No label ever holds a secret: labels show in `docker ps`,
// in List and in dynia's status reports.
const (
	LabelCluster = "dynia.cluster"      // cluster name; marks the container as dynia's
	LabelNode    = "dynia.node"         // node id ("" when the Spec has none)
	LabelRelease = "dynia.release"      // release number, decimal
	LabelImage   = "dynia.image"        // image reference as pulled: repo@sha256:…
	LabelDigest  = "dynia.image.digest" // manifest digest: sha256:<64 hex>
)

// NamePrefix starts the name of every container dynia starts.
const NamePrefix = "dynia-app-"

// DefaultMemory is the memory limit of a release when the Spec has none:
// 256 MiB. A 1 GiB droplet has about 960 MiB usable; dockerd, containerd,
// haproxy, keepalived and dynia-pull take about 200 MiB, and during a switch
// two releases run side by side, so 2 × 256 MiB still leave headroom.
const DefaultMemory int64 = 256 << 20

// MinMemory is Docker's lower bound for a memory limit (6 MiB).
const MinMemory int64 = 6 << 20

// DefaultPidsLimit caps the processes of a release (a fork bomb in the app
// must not take the node's haproxy down with it).
const DefaultPidsLimit int64 = 1024

// Log limits of every container: Docker's "local" driver (compressed,
// rotated), 3 files of 10 MB. The json-file default never rotates.
const (
	LogDriver  = "local"
	LogMaxSize = "10m"
	LogMaxFile = "3"
)

// Spec is what Start runs.
type Spec struct {
	Cluster string // cluster name, as in the state: [a-z0-9][a-z0-9-]*, at most 63
	Node    string // node id (label only; pass it to the app in Env, e.g. DYNIA_NODE_ID)
	Release int64  // release number, ≥ 1
	// Image is the image by digest, "<repo>@sha256:<64 hex>", already pulled
	// (Pull). A tag is refused: a tag can move, a digest cannot.
	Image string
	// BindIP is the node address the app's port is published on (the
	// node's private address, where HAProxy reaches it). Required; neither
	// 0.0.0.0 nor :: (the app must not be published on the public address).
	BindIP netip.Addr
	// HostPort is the published port; 0 picks a free one from the
	// Runtime's port range.
	HostPort uint16
	// ContainerPort is the TCP port the app listens on inside the container.
	ContainerPort uint16
	// Env is the app's environment. It may hold secrets: Docker keeps it
	// in the container's config (root-only on disk) and `docker inspect`
	// shows it to root; dynia never copies it into a label, log, error or
	// Instance (docs/container.md, "Secrets").
	Env map[string]string
	// Cmd replaces the image's CMD when non-empty.
	Cmd []string
	// Memory is the memory limit in bytes (no swap on top); 0 means
	// DefaultMemory; at least MinMemory.
	Memory int64
	// PidsLimit caps the number of processes; 0 means DefaultPidsLimit.
	PidsLimit int64
	// ReadOnlyRootfs mounts the image's filesystem read-only, with a
	// 64 MiB tmpfs on /tmp; for apps known to write nowhere else.
	ReadOnlyRootfs bool
}

var clusterName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Validate checks the Spec before any API call. Errors wrap ErrInvalidSpec
// and name the field and the value (an Env value is never named: it may be
// a secret).
func (s Spec) Validate() error {
	if !clusterName.MatchString(s.Cluster) {
		return invalid("cluster %q: want [a-z0-9][a-z0-9-]*, at most 63", s.Cluster)
	}
	if s.Node != "" && !clusterName.MatchString(s.Node) {
		return invalid("node %q: want [a-z0-9][a-z0-9-]*, at most 63", s.Node)
	}
	if s.Release < 1 {
		return invalid("release %d: want ≥ 1", s.Release)
	}
	if _, err := ParseDigestRef(s.Image); err != nil {
		return err
	}
	if !s.BindIP.IsValid() || s.BindIP.IsUnspecified() {
		return invalid("bind IP %q: want the node's private address, not unspecified", s.BindIP)
	}
	if s.ContainerPort == 0 {
		return invalid("container port 0: want the app's TCP port")
	}
	if s.Memory != 0 && s.Memory < MinMemory {
		return invalid("memory %d bytes: want 0 (default %d) or at least %d", s.Memory, DefaultMemory, MinMemory)
	}
	if s.PidsLimit < 0 {
		return invalid("pids limit %d: want 0 (default %d) or more", s.PidsLimit, DefaultPidsLimit)
	}
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return invalid("env name %q: want a name without '=' or NUL", k)
		}
		if strings.ContainsRune(v, 0) {
			return invalid("env %s: value holds a NUL byte", k)
		}
	}
	return nil
}

// DigestRef is an image reference by digest, split.
type DigestRef struct {
	Repo   string // normalized repository, e.g. "registry.example.com/team/app"
	Domain string // registry host[:port]
	Digest string // "sha256:<64 hex>"
}

// String is "<repo>@<digest>".
func (d DigestRef) String() string { return d.Repo + "@" + d.Digest }

// ParseDigestRef parses "<repo>@sha256:<64 hex>" (Docker's reference
// grammar, github.com/distribution/reference). A tag, with or without a
// digest, is refused.
func ParseDigestRef(ref string) (DigestRef, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return DigestRef{}, invalid("image %q: %v", ref, err)
	}
	dg, ok := named.(reference.Digested)
	if !ok {
		return DigestRef{}, invalid("image %q: want <repo>@sha256:<digest> (a pull by digest)", ref)
	}
	if _, ok := named.(reference.Tagged); ok {
		return DigestRef{}, invalid("image %q: want <repo>@sha256:<digest> without a tag", ref)
	}
	if dg.Digest().Algorithm() != "sha256" {
		return DigestRef{}, invalid("image %q: want a sha256 digest", ref)
	}
	return DigestRef{Repo: named.Name(), Domain: reference.Domain(named), Digest: dg.Digest().String()}, nil
}

// Name is the container name of a release: dynia-app-r<release>-<the first
// 12 hex digits of the manifest digest>. Unique per node and release; the
// digest part tells two images of one release number apart.
func Name(release int64, digest string) string {
	hex := strings.TrimPrefix(digest, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return fmt.Sprintf("%sr%d-%s", NamePrefix, release, hex)
}

// Labels returns the labels Start puts on the Spec's container.
func (s Spec) Labels() map[string]string {
	ref, _ := ParseDigestRef(s.Image) // validated by the caller
	return map[string]string{
		LabelCluster: s.Cluster,
		LabelNode:    s.Node,
		LabelRelease: strconv.FormatInt(s.Release, 10),
		LabelImage:   ref.String(),
		LabelDigest:  ref.Digest,
	}
}

// env is Env as Docker's "K=V" list, sorted so a container's config does
// not depend on map order.
func (s Spec) env() []string {
	out := make([]string, 0, len(s.Env))
	for k, v := range s.Env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Meta is what a container's labels say about it.
type Meta struct {
	Cluster string
	Node    string
	Release int64
	Image   string // repo@sha256:…
	Digest  string // sha256:…
}

// ParseLabels reads a container's dynia labels. ok is false when the
// container is not dynia's (no LabelCluster); err reports a dynia container
// whose labels are damaged (edited by hand).
func ParseLabels(labels map[string]string) (m Meta, ok bool, err error) {
	cluster, ok := labels[LabelCluster]
	if !ok {
		return Meta{}, false, nil
	}
	m = Meta{Cluster: cluster, Node: labels[LabelNode], Image: labels[LabelImage], Digest: labels[LabelDigest]}
	rel, err := strconv.ParseInt(labels[LabelRelease], 10, 64)
	if err != nil || rel < 1 {
		return m, true, fmt.Errorf("label %s=%q: want a release number ≥ 1", LabelRelease, labels[LabelRelease])
	}
	m.Release = rel
	ref, err := ParseDigestRef(m.Image)
	if err != nil {
		return m, true, fmt.Errorf("label %s: %w", LabelImage, err)
	}
	if ref.Digest != m.Digest {
		return m, true, fmt.Errorf("label %s=%q disagrees with %s=%q", LabelDigest, m.Digest, LabelImage, m.Image)
	}
	return m, true, nil
}

// Instance is one dynia container as Docker reports it. It carries no
// environment (secrets stay in Docker).
type Instance struct {
	ID      string
	Name    string
	Cluster string
	Node    string
	Release int64
	Image   string // repo@sha256:…
	Digest  string // sha256:…
	// HostAddr is where the app is published (BindIP:HostPort), from the
	// container's port binding; valid also while it is stopped.
	HostAddr netip.AddrPort
	// State is Docker's: created, running, paused, restarting, removing,
	// exited or dead.
	State string
	// Health is Docker's HEALTHCHECK status (starting, healthy, unhealthy)
	// when the image defines one, else "". WaitHealthy does not use it.
	Health       string
	StartedAt    time.Time // zero if never started
	FinishedAt   time.Time // zero if never exited
	ExitCode     int
	RestartCount int  // restarts by the restart policy since start
	OOMKilled    bool // the last exit was the memory limit's doing
}

// Running reports whether Docker runs (or is restarting) the container.
func (i Instance) Running() bool { return i.State == "running" || i.State == "restarting" }

// PortRange is an inclusive range of host ports.
type PortRange struct{ First, Last uint16 }

// DefaultPorts is where Start picks host ports: 20000–20999. Below the
// kernel's default ephemeral range (32768–60999), but dynia's image widens
// that range (1024–65000), so docs/image.md proposes reserving this one
// with net.ipv4.ip_local_reserved_ports.
var DefaultPorts = PortRange{First: 20000, Last: 20999}

// Validate checks First ≤ Last and First ≥ 1024.
func (p PortRange) Validate() error {
	if p.First < 1024 || p.Last < p.First {
		return invalid("port range %d-%d: want 1024 ≤ first ≤ last", p.First, p.Last)
	}
	return nil
}

// Size is the number of ports in the range.
func (p PortRange) Size() int { return int(p.Last) - int(p.First) + 1 }

// PickPort returns the first port of r, scanning from start (wrapping
// around), for which taken is false. It fails when every port is taken.
// start outside r is moved into it, so a random start spreads concurrent
// picks.
func PickPort(r PortRange, start uint16, taken func(uint16) bool) (uint16, error) {
	n := r.Size()
	off := 0
	if start >= r.First && start <= r.Last {
		off = int(start - r.First)
	} else {
		off = int(start) % n
	}
	for i := 0; i < n; i++ {
		p := r.First + uint16((off+i)%n)
		if !taken(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free host port in %d-%d", r.First, r.Last)
}
