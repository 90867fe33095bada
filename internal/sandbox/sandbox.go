package sandbox

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/dockerd"
	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/procstat"
)

// DefaultDir holds the sandbox's state, logs and secrets (0700).
const DefaultDir = "/var/lib/dynia/sandbox"

// Options configure Up.
type Options struct {
	// Dir holds config, status (with tokens), logs and droplet roots.
	// Default DefaultDir.
	Dir string
	// Prefix names namespaces (<prefix>-rt, <prefix>-d<ID>) and the root
	// namespace's veth (<prefix>-h). Default "dynia"; tests use unique ones.
	Prefix string
	// PublicRange is where public IPs and Reserved IPs come from (default
	// 198.51.100.0/24). It is checked against the machine's routes and
	// addresses first.
	PublicRange string
	// Binary is the dynia binary: it runs `sandbox serve` and
	// `sandbox demo-app`. Default: the running executable.
	Binary string
	// PullBinary is dynia-pull. Default: "dynia-pull" next to Binary, else PATH.
	PullBinary string
	// VersitygwBinary is the S3 gateway. Default: PATH, then ~/go/bin.
	VersitygwBinary string
	// Runtime is how droplets run the app: RuntimeDocker (each dynia node
	// droplet runs its own dockerd and containerd) or RuntimeProcess (no
	// Docker; for machines without it). Default DefaultRuntime.
	Runtime string
	// DemoAppBinary is the static demo app (`make build`'s
	// bin/dynia-demo-app) the demo images are built around. Default:
	// "dynia-demo-app" next to Binary, else PATH. Needed with
	// RuntimeDocker; with RuntimeProcess the registry and images are
	// skipped without it.
	DemoAppBinary string
	// RegistryBinary is Debian's docker-registry. Default: PATH. Needed
	// with RuntimeDocker; optional as DemoAppBinary.
	RegistryBinary string
	// Version names the snapshot image registered in the simulator
	// (dynia-node-<Version>), which the CLI finds by default. Default "dev".
	Version string
	// ExtraImages are more snapshot names the simulator offers, each newer
	// than the dynia-node-<Version> one and the one before it, all booting
	// the same node binaries: a second "image" to upgrade a cluster to
	// (`dynia cluster upgrade`), visible as the droplets' image id.
	ExtraImages []string
	// Regions limits the simulator's regions (default: the simulator's).
	Regions []string
	// ActionDelay makes simulated actions (Reserved IP assignment, power)
	// take this long (the 5 s assignment measurement). Default 0: instant.
	ActionDelay time.Duration
	// Firewalls is FirewallsEnforce (every droplet's traffic passes only
	// what the cloud firewalls targeting it allow, as on DO) or
	// FirewallsOff (stored, not enforced). Default DefaultFirewalls.
	Firewalls string
	// RequestLogs makes serve log every DO API request (logs/api-calls.log,
	// JSON lines: time, method, path, status, the client's IP) and every S3
	// request (logs/s3-access.log, versitygw's access log): the benchmarks
	// count calls per command and per node from them. Off by default: the
	// files grow with every poll.
	RequestLogs bool
	// PebbleBinary is Pebble, the sandbox's ACME CA. Default: PATH, then
	// ~/go/bin (`make deps` installs it).
	PebbleBinary string
	// ACMECertValidity is how long certificates from the sandbox's ACME CA
	// are valid: whole seconds, or 0 for Pebble's default (90 days). Short
	// ones make tests renew (CheckACMECertValidity).
	ACMECertValidity time.Duration
	// ReadyTimeout bounds how long Up waits for the API (default 60 s).
	ReadyTimeout time.Duration
	// Logger receives progress (default: discard).
	Logger *slog.Logger
}

// Info is what `dynia sandbox status -o json` prints. Field names are a
// stable surface (scripts and tests read it; docs/sandbox.md): add fields, never rename them.
type Info struct {
	APIURL          string `json:"api_url"`
	Token           string `json:"token"`
	NodeToken       string `json:"node_token"`
	MetadataURL     string `json:"metadata_url"`
	S3Endpoint      string `json:"s3_endpoint"`
	S3Region        string `json:"s3_region"`
	Bucket          string `json:"bucket"`
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	StateURL        string `json:"state_url"`
	// ACMEDirectory is the ACME directory of the sandbox's CA (Pebble):
	// https://<range .1>:14000/dir, its certificate signed by
	// ACMEListenerCA.
	ACMEDirectory string `json:"acme_directory"`
	// ACMERootCA is the PEM file of the CA's issuance root(s), what the
	// certificates it issues verify to (acme.Verify's roots). Pebble makes
	// a new root at every start; serve rewrites the file then.
	ACMERootCA string `json:"acme_root_ca"`
	// ACMEListenerCA is the PEM file of the CA that signed Pebble's own
	// HTTPS certificate: trust it to talk to ACMEDirectory (acme.Config's
	// CARoots).
	ACMEListenerCA string `json:"acme_listener_ca"`
	// DNSServer (host:port, UDP and TCP) answers A queries for the names
	// in the DO and Cloudflare simulators' zones; Pebble validates through
	// it. The machine's own resolver knows nothing of it.
	DNSServer string `json:"dns_server"`
	// CloudflareAPIURL is the Cloudflare API simulator's v4 root, plain
	// HTTP (internal/dns.CloudflareOptions.BaseURL).
	CloudflareAPIURL string `json:"cloudflare_api_url"`
	// CloudflareToken is its API token (edit rights on every zone).
	CloudflareToken string `json:"cloudflare_token"`
	// DNSZones are the zones ready for records, by provider:
	// "cloudflare" → CloudflareZone, "digitalocean" → DigitalOceanZone.
	DNSZones map[string]string `json:"dns_zones"`
	// Image is the snapshot the simulator offers in every region.
	Image           string `json:"image"`
	Dir             string `json:"dir"`
	Prefix          string `json:"prefix"`
	PublicRange     string `json:"public_range"`
	RouterNamespace string `json:"router_namespace"`
	// Firewalls is "enforce" or "off" (Options.Firewalls).
	Firewalls string `json:"firewalls"`
	ServePID  int    `json:"serve_pid"`
	// Running is true when the serve process is alive.
	Running     bool         `json:"running"`
	Droplets    []Droplet    `json:"droplets"`
	ReservedIPs []ReservedIP `json:"reserved_ips"`
	// Runtime is "docker" or "process" (Options.Runtime).
	Runtime string `json:"runtime"`
	// Registry is the sandbox's container registry, host:port, plain HTTP,
	// no authentication (the router's public address, port 5000); "" when
	// the sandbox runs none.
	Registry string `json:"registry"`
	// Images are the demo images in Registry: demo-app v1, v2 and broken.
	Images []Image `json:"images"`
}

// Droplet is one simulated droplet as the sandbox runs it.
type Droplet struct {
	ID        int    `json:"id"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	PrivateIP string `json:"private_ip"`
	PublicIP  string `json:"public_ip"`
	Status    string `json:"status"` // new, active, off
}

// ReservedIP is a Reserved IP and its holder (0 = unassigned).
type ReservedIP struct {
	IP        string `json:"ip"`
	DropletID int    `json:"droplet_id"`
}

// config is Options as Up hands them to Serve (config.json).
type config struct {
	Prefix          string        `json:"prefix"`
	PublicRange     string        `json:"public_range"`
	Binary          string        `json:"binary"`
	PullBinary      string        `json:"pull_binary"`
	VersitygwBinary string        `json:"versitygw_binary"`
	PebbleBinary    string        `json:"pebble_binary,omitempty"`
	ACMEValidity    time.Duration `json:"acme_cert_validity,omitempty"`
	Version         string        `json:"version"`
	ExtraImages     []string      `json:"extra_images,omitempty"`
	Regions         []string      `json:"regions,omitempty"`
	ActionDelay     time.Duration `json:"action_delay,omitempty"`
	Firewalls       string        `json:"firewalls,omitempty"`
	Runtime         string        `json:"runtime,omitempty"`
	DemoAppBinary   string        `json:"demo_app_binary,omitempty"`
	RegistryBinary  string        `json:"registry_binary,omitempty"`
	RequestLogs     bool          `json:"request_logs,omitempty"`
}

// manifest records what Up made in the root namespace, written before it is
// made, so Down can undo it even when nothing else survived.
type manifest struct {
	Prefix      string `json:"prefix"`
	PublicRange string `json:"public_range"`
	RouterNS    string `json:"router_ns"`
	HostVeth    string `json:"host_veth"`
}

// Layout of Dir.
func configPath(dir string) string   { return filepath.Join(dir, "config.json") }
func manifestPath(dir string) string { return filepath.Join(dir, "manifest.json") }
func statusPath(dir string) string   { return filepath.Join(dir, "status.json") }
func servePidPath(dir string) string { return filepath.Join(dir, "run", "serve.pid") }
func dropletsDir(dir string) string  { return filepath.Join(dir, "droplets") }
func dropletDir(dir string, id int) string {
	return filepath.Join(dropletsDir(dir), strconv.Itoa(id))
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = DefaultDir
	}
	abs, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("sandbox dir: %w", err)
	}
	o.Dir = abs
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.PublicRange == "" {
		o.PublicRange = DefaultPublicRange
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	fw, err := ParseFirewalls(o.Firewalls)
	if err != nil {
		return fmt.Errorf("sandbox firewalls %q: %w", o.Firewalls, err)
	}
	o.Firewalls = fw
	if fw == FirewallsEnforce {
		if _, err := exec.LookPath("nft"); err != nil {
			return fmt.Errorf("sandbox --firewalls %s needs nft (nftables; run `make deps`): %w", fw, err)
		}
	}
	if err := CheckACMECertValidity(o.ACMECertValidity); err != nil {
		return fmt.Errorf("sandbox ACME certificate validity %v: %w", o.ACMECertValidity, err)
	}
	if o.PebbleBinary == "" {
		o.PebbleBinary = findBinary("pebble", "")
	}
	if o.PebbleBinary == "" {
		return errors.New("sandbox needs pebble (the ACME CA): not found (run `make deps`)")
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find dynia binary: %w", err)
		}
		o.Binary = exe
	}
	if o.PullBinary == "" {
		o.PullBinary = findBinary("dynia-pull", filepath.Dir(o.Binary))
	}
	if o.VersitygwBinary == "" {
		o.VersitygwBinary = findBinary("versitygw", "")
	}
	rt, err := ParseRuntime(o.Runtime)
	if err != nil {
		return fmt.Errorf("sandbox runtime %q: %w", o.Runtime, err)
	}
	o.Runtime = rt
	if o.DemoAppBinary == "" {
		o.DemoAppBinary = findBinary("dynia-demo-app", filepath.Dir(o.Binary))
	}
	if o.RegistryBinary == "" {
		o.RegistryBinary = findBinary("docker-registry", "")
	}
	need := map[string]string{"dynia": o.Binary, "dynia-pull": o.PullBinary, "versitygw": o.VersitygwBinary}
	if rt == RuntimeDocker {
		need["dynia-demo-app"], need["docker-registry"] = o.DemoAppBinary, o.RegistryBinary
		for _, b := range dockerd.Binaries {
			if _, err := exec.LookPath(b); err != nil {
				return fmt.Errorf("sandbox --runtime %s needs %s (Debian's docker.io; run `make deps-sandbox`), or use --runtime %s", rt, b, RuntimeProcess)
			}
		}
		if err := CheckDir(o.Dir, rt); err != nil {
			return fmt.Errorf("sandbox --dir %q: %w", o.Dir, err)
		}
	} else if o.DemoAppBinary == "" || o.RegistryBinary == "" {
		// The process runtime needs neither: no registry then.
		o.DemoAppBinary, o.RegistryBinary = "", ""
	}
	for name, p := range need {
		if p == "" {
			return fmt.Errorf("sandbox needs %s: not found (run `make build` and `make deps`)", name)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("sandbox needs %s: %w", name, err)
		}
	}
	return nil
}

// findBinary looks in first (if set), then PATH, then ~/go/bin.
func findBinary(name, first string) string {
	if first != "" {
		if p := filepath.Join(first, name); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		abs, _ := filepath.Abs(p)
		return abs
	}
	if home, err := os.UserHomeDir(); err == nil {
		if p := filepath.Join(home, "go", "bin", name); isExecutable(p) {
			return p
		}
	}
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Up creates the router namespace, its link to the root namespace and the
// guard route, starts `dynia sandbox serve` inside the router namespace and
// waits until the API answers. When the sandbox in Dir already runs, it
// returns its Info; leftovers of a crashed one are removed first.
func Up(ctx context.Context, opts Options) (*Info, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	log := opts.Logger
	p, err := newPlan(opts.Prefix, opts.PublicRange)
	if err != nil {
		return nil, err
	}
	if info, err := Status(opts.Dir); err == nil && info.Running {
		if info.Prefix != p.Prefix || info.PublicRange != p.Public.String() {
			return nil, fmt.Errorf("a sandbox already runs in %s with prefix %s and range %s; run `dynia sandbox down` first", opts.Dir, info.Prefix, info.PublicRange)
		}
		var running config
		if err := readJSON(configPath(opts.Dir), &running); err == nil && running.ACMEValidity != opts.ACMECertValidity {
			return nil, fmt.Errorf("a sandbox already runs in %s with ACME certificate validity %v (0: Pebble's default); run `dynia sandbox down` first to change it", opts.Dir, running.ACMEValidity)
		}
		if running, _ := ParseFirewalls(info.Firewalls); running != opts.Firewalls {
			return nil, fmt.Errorf("a sandbox already runs in %s with firewalls %s; run `dynia sandbox down` first to change it", opts.Dir, running)
		}
		if running, _ := ParseRuntime(info.Runtime); running != opts.Runtime {
			return nil, fmt.Errorf("a sandbox already runs in %s with runtime %s; run `dynia sandbox down` first to change it", opts.Dir, running)
		}
		if err := waitReady(ctx, opts.Dir, p, 10*time.Second); err != nil {
			return nil, err
		}
		return Status(opts.Dir)
	}
	if _, err := os.Stat(manifestPath(opts.Dir)); err == nil {
		log.Info("removing the leftovers of a sandbox that is not running", "dir", opts.Dir)
		if err := Down(ctx, opts.Dir); err != nil {
			return nil, fmt.Errorf("clean up the previous sandbox: %w", err)
		}
	}
	if netnsExists(p.RouterNS()) || linkExists(ctx, p.HostVeth()) {
		return nil, fmt.Errorf("namespace %s or link %s already exists but no sandbox in %s owns it (another --dir? use another prefix or remove them)", p.RouterNS(), p.HostVeth(), opts.Dir)
	}
	if err := checkMachineRange(ctx, p); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "run"), 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	if err := os.Chmod(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox dir: %w", err)
	}
	if err := writeJSON(manifestPath(opts.Dir), manifest{Prefix: p.Prefix, PublicRange: p.Public.String(), RouterNS: p.RouterNS(), HostVeth: p.HostVeth()}); err != nil {
		return nil, err
	}
	cfg := config{Prefix: p.Prefix, PublicRange: p.Public.String(), Binary: opts.Binary, PullBinary: opts.PullBinary,
		PebbleBinary: opts.PebbleBinary, ACMEValidity: opts.ACMECertValidity,
		VersitygwBinary: opts.VersitygwBinary, Version: opts.Version, ExtraImages: opts.ExtraImages, Regions: opts.Regions, ActionDelay: opts.ActionDelay,
		Firewalls: opts.Firewalls, Runtime: opts.Runtime, DemoAppBinary: opts.DemoAppBinary, RegistryBinary: opts.RegistryBinary,
		RequestLogs: opts.RequestLogs}
	if err := writeJSON(configPath(opts.Dir), cfg); err != nil {
		return nil, err
	}
	fail := func(err error) (*Info, error) {
		if derr := Down(context.WithoutCancel(ctx), opts.Dir); derr != nil {
			log.Error("clean up after failed sandbox up", "err", derr)
		}
		return nil, err
	}
	log.Info("creating router namespace", "namespace", p.RouterNS(), "public_range", p.Public)
	if err := setupRouter(ctx, p); err != nil {
		return fail(err)
	}
	log.Info("starting the simulated cloud", "api", p.APIURL())
	// nsenter enters only the network namespace: serve must share the root
	// mount namespace, or the droplet namespaces it creates (bind mounts
	// under /run/netns) would be invisible outside it (`ip netns exec`
	// would give it a private one).
	serve := procSpec{
		Name: "serve", Path: "nsenter",
		Args:     []string{"--net=/run/netns/" + p.RouterNS(), "--", opts.Binary, "sandbox", "serve", "--dir", opts.Dir},
		Dir:      opts.Dir,
		LogPath:  filepath.Join(opts.Dir, "logs", "serve.log"),
		PidPath:  servePidPath(opts.Dir),
		Detached: true,
	}
	cmd, err := startProc(serve)
	if err != nil {
		return fail(err)
	}
	// Reap it if it exits while this process still runs (tests; the CLI
	// exits right after Up and init inherits it).
	go func() { _ = cmd.Wait() }()
	if err := waitReady(ctx, opts.Dir, p, opts.ReadyTimeout); err != nil {
		return fail(fmt.Errorf("%w (see %s)", err, serve.LogPath))
	}
	log.Info("sandbox is up", "api", p.APIURL())
	return Status(opts.Dir)
}

// checkMachineRange refuses a public range the machine already uses.
func checkMachineRange(ctx context.Context, p plan) error {
	routes, err := run(ctx, "ip", "-j", "-4", "route", "show", "table", "all")
	if err != nil {
		return fmt.Errorf("check public range: %w", err)
	}
	addrs, err := run(ctx, "ip", "-j", "-4", "addr", "show")
	if err != nil {
		return fmt.Errorf("check public range: %w", err)
	}
	return checkRangeFree(p.Public, []byte(routes), []byte(addrs))
}

// waitReady waits for serve's status file and an answer from the API.
func waitReady(ctx context.Context, dir string, p plan, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	err := poll.Until(ctx, func() error {
		if pid, _, _ := procstat.ReadPidFile(servePidPath(dir)); pid == 0 {
			return poll.Stop(errors.New("sandbox serve process exited"))
		}
		if _, err := os.Stat(statusPath(dir)); err != nil {
			return errors.New("serve has not written its status yet")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.APIURL()+"/v2/regions", nil)
		if err != nil {
			return poll.Stop(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("sandbox API not ready after %v: %v", timeout, err)
	}
	return err
}

// Status reads the sandbox's status as Serve last wrote it and checks that
// serve still runs. A directory without a sandbox is an error wrapping
// os.ErrNotExist.
func Status(dir string) (*Info, error) {
	if dir == "" {
		dir = DefaultDir
	}
	b, err := os.ReadFile(statusPath(dir))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no sandbox in %s (run `dynia sandbox up`): %w", dir, os.ErrNotExist)
		}
		return nil, fmt.Errorf("read sandbox status: %w", err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, fmt.Errorf("read sandbox status: %w", err)
	}
	pid, _, _ := procstat.ReadPidFile(servePidPath(dir))
	info.ServePID, info.Running = pid, pid != 0
	if info.Droplets == nil {
		info.Droplets = []Droplet{}
	}
	if info.ReservedIPs == nil {
		info.ReservedIPs = []ReservedIP{}
	}
	if info.Images == nil {
		info.Images = []Image{}
	}
	return &info, nil
}

// Down stops every process and removes every namespace, veth, route and file
// the sandbox in dir made. It is idempotent and works after a crash: it
// reads the manifest and the droplet records, not the serve process.
func Down(ctx context.Context, dir string) error {
	if dir == "" {
		dir = DefaultDir
	}
	var m manifest
	if err := readJSON(manifestPath(dir), &m); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return removeFiles(dir)
		}
		return err
	}
	var errs []error
	// Serve first, gracefully: it stops the droplets' processes itself.
	if err := stopPidFile(servePidPath(dir), 15*time.Second); err != nil {
		errs = append(errs, err)
	}
	pidFiles, _ := filepath.Glob(filepath.Join(dir, "run", "*.pid"))
	// droplets/*/pids holds the sandbox's own pid files; droplets/*/run
	// belongs to dynia-pull.
	more, _ := filepath.Glob(filepath.Join(dropletsDir(dir), "*", "pids", "*.pid"))
	for _, f := range append(pidFiles, more...) {
		if err := stopPidFile(f, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	recs, _ := filepath.Glob(filepath.Join(dropletsDir(dir), "*", "droplet.json"))
	for _, f := range recs {
		var d dropletNet
		if err := readJSON(f, &d); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := deleteNetns(ctx, d.NS); err != nil {
			errs = append(errs, err)
		}
		// Its containers live in namespaces of their own (a crashed serve
		// leaves them running) and its engine's mounts stay until detached.
		if err := powerCutDocker(filepath.Dir(f), d.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if m.RouterNS != "" {
		if err := deleteNetns(ctx, m.RouterNS); err != nil {
			errs = append(errs, err)
		}
	}
	// Deleting the router namespace takes the veth pair and its routes with
	// it; this covers a namespace that was already gone.
	// The kernel tears a namespace down asynchronously: give the veth a
	// moment to vanish before deleting it by hand.
	if m.HostVeth != "" {
		_ = poll.Within(2500*time.Millisecond, func() error {
			if linkExists(ctx, m.HostVeth) {
				return fmt.Errorf("link %s still there", m.HostVeth)
			}
			return nil
		})
		if linkExists(ctx, m.HostVeth) {
			if err := ip(ctx, "link", "del", m.HostVeth); err != nil && linkExists(ctx, m.HostVeth) {
				errs = append(errs, fmt.Errorf("delete %s: %w", m.HostVeth, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox down: %w", err)
	}
	return removeFiles(dir)
}

// removeFiles deletes what the sandbox wrote in dir, then dir if empty; it
// never removes files it does not know.
func removeFiles(dir string) error {
	var errs []error
	for _, name := range []string{"droplets", "run", "logs", "s3", "s3iam", "registry", "acme", "config.json", "status.json", "manifest.json"} {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			errs = append(errs, err)
		}
	}
	// Temp files of an atomic write cut short by a crash.
	tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
	for _, f := range tmps {
		if err := os.Remove(f); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !isNotEmpty(err) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove sandbox files: %w", err)
	}
	return nil
}

func isNotEmpty(err error) bool {
	return err != nil && strings.Contains(err.Error(), "directory not empty")
}

// Logs opens a log: dropletRef is a droplet id, name or namespace ("" or
// "sandbox" for the cloud's own logs); component is pull, app, haproxy,
// keepalived, dockerd, containerd, cloud-init (droplets) or serve, versitygw, registry,
// pebble (the cloud). The caller closes it.
func Logs(dir, dropletRef, component string) (io.ReadCloser, error) {
	if dir == "" {
		dir = DefaultDir
	}
	if component == "" {
		component = "pull"
	}
	if strings.ContainsAny(component, "/.") {
		return nil, fmt.Errorf("log component %q: invalid", component)
	}
	if dropletRef == "" || dropletRef == "sandbox" {
		f, err := os.Open(filepath.Join(dir, "logs", component+".log"))
		if err != nil {
			return nil, fmt.Errorf("sandbox log %s: %w", component, err)
		}
		return f, nil
	}
	id, err := resolveDroplet(dir, dropletRef)
	if err != nil {
		return nil, err
	}
	logs := filepath.Join(dropletDir(dir, id), "logs")
	if f, err := os.Open(filepath.Join(logs, component+".log")); err == nil {
		return f, nil
	}
	if component == "haproxy" || component == "keepalived" {
		// dynia-pull supervises them: its own lines about them carry the
		// component, and their output goes straight to its stderr (so it
		// survives a restart of dynia-pull), recognised by its format.
		f, err := os.Open(filepath.Join(logs, "pull.log"))
		if err != nil {
			return nil, fmt.Errorf("droplet %d %s log: %w", id, component, err)
		}
		return filterLines(f, component), nil
	}
	return nil, fmt.Errorf("droplet %d has no %s log (components: pull, app, haproxy, keepalived, dockerd, containerd, cloud-init): %w", id, component, os.ErrNotExist)
}

// daemonLine recognises a daemon's own output lines in pull.log: HAProxy's
// startup and master messages and its `log stderr format short` lines;
// keepalived's console log (-l), which starts with a ctime date.
var daemonLine = map[string]*regexp.Regexp{
	"haproxy":    regexp.MustCompile(`^(\[(NOTICE|WARNING|ALERT)\]|<\d+>)`),
	"keepalived": regexp.MustCompile(`^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}: `),
}

// filterLines passes the lines of r tagged with component (JSON or text
// slog) and the component's own output lines.
func filterLines(r io.ReadCloser, component string) io.ReadCloser {
	pr, pw := io.Pipe()
	tags := []string{`"component":"` + component + `"`, "component=" + component + " "}
	own := daemonLine[component]
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text() + " "
			if strings.Contains(line, tags[0]) || strings.Contains(line, tags[1]) || (own != nil && own.MatchString(sc.Text())) {
				if _, err := io.WriteString(pw, sc.Text()+"\n"); err != nil {
					return
				}
			}
		}
		pw.CloseWithError(sc.Err())
	}()
	return pr
}

// resolveDroplet finds a droplet by id, name or namespace in the status.
func resolveDroplet(dir, ref string) (int, error) {
	info, err := Status(dir)
	if err != nil {
		return 0, err
	}
	for _, d := range info.Droplets {
		if strconv.Itoa(d.ID) == ref || d.Name == ref || d.Namespace == ref {
			return d.ID, nil
		}
	}
	// A droplet already deleted still has its logs until Down.
	if id, err := strconv.Atoi(ref); err == nil {
		if _, err := os.Stat(dropletDir(dir, id)); err == nil {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no droplet %q in the sandbox: %w", ref, os.ErrNotExist)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := fsutil.WriteFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
