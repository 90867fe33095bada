// Package render turns a cluster state and one node's local settings into
// that node's haproxy.cfg and keepalived.conf.
//
// Templates are embedded text/template files with sprig's hermetic function
// map and missingkey=error, so a render depends only on its inputs. Output is
// deterministic (nodes sorted by id) and starts with a header naming the
// cluster, the generation that produced it and a hash of the body. The hash
// covers the body only, so a new generation that does not change this node's
// files does not rewrite them or reload a daemon.
package render

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"math"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/mesh"
	"github.com/dynia/dynia/internal/nodeconfig"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").
	Funcs(sprig.HermeticTxtFuncMap()).
	Option("missingkey=error").
	ParseFS(templateFS, "templates/*.tmpl"))

// HealthURI is answered by HAProxy itself on every node.
const HealthURI = "/dynia/healthz"

// BackendName is the HAProxy backend holding every app server.
const BackendName = "app"

// AppHealthURI is what every node's HAProxy asks each node's app frontend
// in its health checks; the node maps it to the health path of the release
// it runs, so nodes on different releases are checked right.
const AppHealthURI = "/dynia/app-healthz"

// Defaults for Local fields left empty.
const (
	DefaultBind      = ":80"
	DefaultInterface = "eth1" // a droplet's VPC interface
	DefaultCurl      = "/usr/bin/curl"
)

// Local is what a render needs beyond the state: facts about this node.
type Local struct {
	NodeID string
	// RunDir holds sockets, pid files, the server state file and the fifo.
	RunDir string
	// Bind is HAProxy's frontend address; ":80" serves every local address,
	// including traffic arriving for the Reserved IP's anchor.
	Bind string
	// Interface carries VRRP: the WireGuard mesh interface when Mesh (default
	// dynia0), else the VPC interface holding the node's private IP (default
	// eth1).
	Interface string
	// Mesh runs VRRP over the WireGuard mesh (internal/mesh): the source and
	// peer addresses are mesh addresses derived from the private IPs.
	// Without it they are the private IPs on the VPC interface, which a
	// DigitalOcean Cloud Firewall does not let VRRP cross.
	Mesh bool
	// Curl is the absolute path of curl, used by keepalived's health script.
	Curl string
	// App is the release this node runs now (nil: none): the node's app
	// frontend, on its private IP and the cluster's app port, forwards to
	// it.
	App *LocalApp
	// ACME is where dynia-pull answers ACME HTTP-01 challenges (host:port,
	// loopback); "" routes none (TLS off).
	ACME string
	// TLS is the certificate this node serves on :443 (nil: none yet, or
	// TLS off).
	TLS *LocalTLS
	// NoIdleClose leaves out `option idle-close-on-response`: only for the
	// reload-safety benchmark's comparison run (pull.json
	// bench_no_idle_close).
	NoIdleClose bool
}

// LocalTLS is the HTTPS frontend's certificate and options.
type LocalTLS struct {
	CertFile string // PEM chain and key, 0600
	// Serial names the certificate in the file: a new one changes the
	// rendered config, so the reload that installs it loads it.
	Serial string
	// Redirect answers plain HTTP with a 301 to HTTPS (not the ACME
	// challenges); only with a real certificate, never the placeholder.
	Redirect bool
	HSTS     bool
}

// LocalApp is the app instance a node runs.
type LocalApp struct {
	Release int64
	// Addr is where the instance listens: the private IP and a host port
	// (container.Instance.HostAddr, or the process runtime's address).
	Addr string
	// HealthPath is the release's health path (cluster.ValidateHealthPath).
	// The template doubles its '%' (`replace "%" "%%"`): http-request
	// set-pathq takes a log-format string, where a bare '%' starts a
	// variable (haproxy -c refuses %20; %[src] would be evaluated).
	HealthPath string
}

func (l Local) withDefaults() Local {
	if l.Bind == "" {
		l.Bind = DefaultBind
	}
	if l.Interface == "" && l.Mesh {
		l.Interface = nodeconfig.DefaultMeshInterface
	}
	if l.Interface == "" {
		l.Interface = DefaultInterface
	}
	if l.Curl == "" {
		l.Curl = DefaultCurl
	}
	return l
}

// Paths are the per-node runtime files. Namespaces share PIDs and /run, so
// every node needs its own (sandbox droplets are network namespaces only:
// docs/sandbox.md).
type Paths struct {
	StatsSocket     string // HAProxy admin socket (0600)
	MasterSocket    string // HAProxy master CLI (reload, show proc)
	ServerStateFile string
	HAProxyPid      string
	KeepalivedPid   string
	VRRPPid         string
	CheckersPid     string
	NotifyFIFO      string
}

// PathsIn returns the runtime paths inside runDir.
func PathsIn(runDir string) Paths {
	j := func(name string) string { return filepath.Join(runDir, name) }
	return Paths{
		StatsSocket:     j("haproxy.sock"),
		MasterSocket:    j("haproxy-master.sock"),
		ServerStateFile: j("haproxy.state"),
		HAProxyPid:      j("haproxy.pid"),
		KeepalivedPid:   j("keepalived.pid"),
		VRRPPid:         j("keepalived-vrrp.pid"),
		CheckersPid:     j("keepalived-checkers.pid"),
		NotifyFIFO:      j("keepalived.fifo"),
	}
}

// Backend is one server line of the app backend.
type Backend struct {
	ID       string
	Addr     string
	Port     int
	Draining bool
}

// Backends returns the servers HAProxy routes to: ready and draining nodes,
// sorted by id.
func Backends(s *cluster.State) []Backend {
	var out []Backend
	for _, n := range sortedNodes(s) {
		if n.Lifecycle != cluster.Ready && n.Lifecycle != cluster.Draining {
			continue
		}
		out = append(out, Backend{ID: n.ID, Addr: n.PrivateIP, Port: n.Port(s.App), Draining: n.Lifecycle == cluster.Draining})
	}
	return out
}

// Peer is a VRRP peer.
type Peer struct {
	ID   string
	Addr string
}

// VRRPMembers are the nodes taking part in VRRP: every node with a private
// IP except those being removed. Provisioning nodes are included so they hear
// the MASTER's adverts and stay BACKUP instead of electing themselves.
func VRRPMembers(s *cluster.State) []Peer {
	var out []Peer
	for _, n := range sortedNodes(s) {
		if n.PrivateIP == "" || n.Lifecycle == cluster.Removing {
			continue
		}
		out = append(out, Peer{ID: n.ID, Addr: n.PrivateIP})
	}
	return out
}

func sortedNodes(s *cluster.State) []cluster.Node {
	nodes := append([]cluster.Node(nil), s.Nodes...)
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes
}

// VRID is the cluster's virtual_router_id (1-254), stable per cluster name.
func VRID(clusterName string) int {
	h := fnv.New32a()
	h.Write([]byte(clusterName))
	return 1 + int(h.Sum32()%254)
}

// File is one rendered file.
type File struct {
	Content []byte
	Hash    string // of the body, as in the header
}

// Result is everything rendered for one node.
type Result struct {
	HAProxy    File
	Keepalived File
	Backends   []Backend
}

// Render renders both files for l.NodeID. It fails when the node is not in
// the state or has no private IP yet.
func Render(s *cluster.State, l Local) (*Result, error) {
	l = l.withDefaults()
	self := s.Node(l.NodeID)
	if self == nil {
		return nil, fmt.Errorf("render: node %s is not in cluster %s", l.NodeID, s.Name)
	}
	if self.PrivateIP == "" {
		return nil, fmt.Errorf("render: node %s has no private IP yet", l.NodeID)
	}
	paths := PathsIn(l.RunDir)
	backends := Backends(s)

	hp, err := execute("haproxy.cfg.tmpl", s, l.NodeID, map[string]any{
		"Paths":        paths,
		"Bind":         l.Bind,
		"HealthURI":    HealthURI,
		"AppHealthURI": AppHealthURI,
		"AppBind":      net.JoinHostPort(self.PrivateIP, strconv.Itoa(self.Port(s.App))),
		"LocalApp":     l.App,
		"ACME":         l.ACME,
		"TLS":          l.TLS,
		"Backends":     backends,
		"NoIdleClose":  l.NoIdleClose,
	})
	if err != nil {
		return nil, err
	}

	source := self.PrivateIP
	var peers []Peer
	for _, p := range VRRPMembers(s) {
		if p.ID != self.ID {
			peers = append(peers, p)
		}
	}
	if l.Mesh {
		if source, peers, err = meshAddresses(s, self, peers); err != nil {
			return nil, err
		}
	}
	adv := s.HA.AdvertInterval
	if adv == 0 {
		adv = cluster.DefaultAdvertInterval
	}
	vrid := VRID(s.Name)
	kd, err := execute("keepalived.conf.tmpl", s, l.NodeID, map[string]any{
		"Paths":        paths,
		"RouterID":     cluster.Hostname(s.Name, self.ID),
		"CheckCommand": checkCommand(l),
		"Single":       len(peers) == 0,
		"Interface":    l.Interface,
		"VRID":         vrid,
		"Priority":     self.Priority,
		"AdvertInt":    strconv.FormatFloat(adv, 'f', -1, 64),
		"Version3":     adv != math.Trunc(adv),
		"Preempt":      s.HA.Preempt,
		"Mesh":         l.Mesh,
		"SourceIP":     source,
		"Peers":        peers,
		"DummyVIP":     fmt.Sprintf("169.254.255.%d", vrid),
	})
	if err != nil {
		return nil, err
	}
	return &Result{HAProxy: hp, Keepalived: kd, Backends: backends}, nil
}

// meshAddresses maps this node's and its peers' private IPs to their mesh
// addresses (mesh.Address). Two nodes mapping to the same address (private
// IPs equal in their low 16 bits: not one DO VPC, which is at most a /16)
// are an error, not a render that would send adverts to the wrong node.
func meshAddresses(s *cluster.State, self *cluster.Node, peers []Peer) (string, []Peer, error) {
	src, err := mesh.Address(self.PrivateIP)
	if err != nil {
		return "", nil, fmt.Errorf("render: node %s: %w", self.ID, err)
	}
	seen := map[string]string{src.String(): self.ID}
	out := make([]Peer, 0, len(peers))
	for _, p := range peers {
		a, err := mesh.Address(p.Addr)
		if err != nil {
			return "", nil, fmt.Errorf("render: node %s: %w", p.ID, err)
		}
		if other, dup := seen[a.String()]; dup {
			return "", nil, fmt.Errorf("render: nodes %s and %s of cluster %s map to the same mesh address %s (private IPs in one VPC differ in their low 16 bits)", other, p.ID, s.Name, a)
		}
		seen[a.String()] = p.ID
		out = append(out, Peer{ID: p.ID, Addr: a.String()})
	}
	return src.String(), out, nil
}

// checkCommand asks HAProxy's own health URI on the frontend's address.
func checkCommand(l Local) string {
	host, port, err := net.SplitHostPort(l.Bind)
	if err != nil {
		host, port = "", "80"
	}
	if host == "" || host == "0.0.0.0" || host == "*" {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("%s -fsS -o /dev/null --max-time 1 http://%s%s", l.Curl, net.JoinHostPort(host, port), HealthURI)
}

func execute(name string, s *cluster.State, nodeID string, data map[string]any) (File, error) {
	var body bytes.Buffer
	if err := templates.ExecuteTemplate(&body, name, data); err != nil {
		return File{}, fmt.Errorf("render %s: %w", name, err)
	}
	h := hashBody(body.Bytes())
	var out bytes.Buffer
	fmt.Fprintf(&out, "# dynia cluster=%s node=%s generation=%d sha256=%s\n", s.Name, nodeID, s.Generation, h)
	out.WriteString("# Written by dynia-pull; local edits are overwritten.\n")
	out.Write(body.Bytes())
	return File{Content: out.Bytes(), Hash: h}, nil
}

const headerLines = 2

func hashBody(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// FileHash returns the body hash of a file written by Render, recomputed
// from its body (so a hand edit shows up as a different hash), and ok=false
// when content does not carry a dynia header.
func FileHash(content []byte) (hash string, ok bool) {
	if !bytes.HasPrefix(content, []byte("# dynia ")) {
		return "", false
	}
	rest := content
	for i := 0; i < headerLines; i++ {
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return "", false
		}
		rest = rest[nl+1:]
	}
	return hashBody(rest), true
}

// HeaderGeneration returns the generation named in a rendered file's header.
func HeaderGeneration(content []byte) (int64, bool) {
	line, _, _ := strings.Cut(string(content), "\n")
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "generation="); ok {
			g, err := strconv.ParseInt(v, 10, 64)
			return g, err == nil
		}
	}
	return 0, false
}
