package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/poll"
)

// ServeOptions configure Serve. Everything else comes from the config.json
// Up wrote in Dir.
type ServeOptions struct {
	Dir    string
	Logger *slog.Logger
}

const (
	sandboxBucket = "dynia-sandbox"
	s3Region      = "us-east-1"
)

// Serve is the simulated cloud, run by `dynia sandbox serve` inside the
// router namespace: the DO API and the metadata service (dosim) with their
// hooks driving the droplet namespaces, and versitygw as the S3 store. It
// returns when ctx is done or on SIGTERM/SIGINT, after stopping the
// droplets' processes; the network stays until Down.
//
// It starts, in order: versitygw, the registry (its demo images pushed
// meanwhile), the state bucket, the droplet manager and firewalls, the
// simulator with its hooks, then the TLS services; each started piece is
// stopped on the way out, in reverse.
func Serve(ctx context.Context, opts ServeOptions) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sv, err := newServer(opts)
	if err != nil {
		return err
	}
	gw, err := sv.startS3()
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	defer gw.Stop(context.WithoutCancel(ctx), 5*time.Second)
	// The container registry, and the demo images pushed to it meanwhile.
	reg, err := startRegistry(ctx, sv.dir, sv.cfg, sv.plan, sv.log)
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	defer reg.Stop(context.WithoutCancel(ctx), 5*time.Second)
	if err := sv.bucketAndImages(ctx, reg); err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	if err := sv.startDroplets(); err != nil {
		return err
	}
	closeCalls, err := sv.startSimulator(ctx)
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	defer closeCalls()
	// Pebble, the DNS server and the Cloudflare simulator (tls.go), ready
	// before the status that lists them is written.
	tlsSvc, err := startTLSServices(ctx, sv.dir, sv.cfg, sv.plan, sv.sim, sv.info, sv.log)
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	defer tlsSvc.Stop(context.WithoutCancel(ctx))
	return sv.serve(ctx)
}

// server is one run of Serve: the sandbox's config and what Serve has
// started so far.
type server struct {
	dir     string
	log     *slog.Logger
	cfg     config
	plan    plan
	runtime string
	info    *Info

	mgr  *manager
	fw   *firewaller // nil (Sync does nothing) unless firewalls are enforced
	keys *spacesKeys
	sim  *dosim.Server

	// statusMu orders writeStatus calls; lastStatus is the one last written.
	statusMu   sync.Mutex
	lastStatus *Info
}

// newServer reads the config Up wrote and mints the run's tokens and keys.
func newServer(opts ServeOptions) (*server, error) {
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var cfg config
	if err := readJSON(configPath(opts.Dir), &cfg); err != nil {
		return nil, fmt.Errorf("sandbox serve: %w (start it with `dynia sandbox up`)", err)
	}
	p, err := newPlan(cfg.Prefix, cfg.PublicRange)
	if err != nil {
		return nil, fmt.Errorf("sandbox serve: %w", err)
	}
	runtime, err := ParseRuntime(cfg.Runtime)
	if err != nil {
		return nil, fmt.Errorf("sandbox serve: runtime %q: %w", cfg.Runtime, err)
	}
	info := &Info{
		APIURL:          p.APIURL(),
		Token:           "dop_v1_" + randomHex(32),
		NodeToken:       "dop_v1_" + randomHex(32),
		MetadataURL:     p.MetadataURL(),
		S3Endpoint:      p.S3URL(),
		S3Region:        s3Region,
		Bucket:          sandboxBucket,
		AccessKeyID:     "DYNIA" + strings.ToUpper(randomHex(8)),
		SecretAccessKey: randomHex(20),
		StateURL:        "s3://" + sandboxBucket + "/dynia",
		Image:           "dynia-node-" + cfg.Version,
		Dir:             opts.Dir,
		Prefix:          p.Prefix,
		PublicRange:     p.Public.String(),
		RouterNamespace: p.RouterNS(),
		Firewalls:       cfg.Firewalls,
		Runtime:         runtime,
		ServePID:        os.Getpid(),
		Running:         true,
	}
	return &server{dir: opts.Dir, log: log, cfg: cfg, plan: p, runtime: runtime, info: info}, nil
}

// startS3 starts versitygw, the S3 store, with the run's root key.
func (sv *server) startS3() (*supervised, error) {
	s3dir, iamDir := filepath.Join(sv.dir, "s3"), filepath.Join(sv.dir, "s3iam")
	for _, d := range []string{s3dir, iamDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	gwArgs := []string{"--port", sv.plan.S3Addr(), "--region", s3Region, "--quiet", "--iam-dir", iamDir, "posix", s3dir}
	if sv.cfg.RequestLogs {
		gwArgs = append([]string{"--access-log", filepath.Join(sv.dir, "logs", "s3-access.log")}, gwArgs...)
	}
	return supervise(procSpec{
		Name: "versitygw", Path: sv.cfg.VersitygwBinary,
		// --iam-dir: versitygw's own accounts, one per Spaces key the
		// simulator mints (spaces.go); its users.json is 0600.
		Args: gwArgs,
		// Keys in the environment, not argv: /proc/PID/cmdline is world-readable.
		Env:     []string{"ROOT_ACCESS_KEY_ID=" + sv.info.AccessKeyID, "ROOT_SECRET_ACCESS_KEY=" + sv.info.SecretAccessKey},
		Dir:     sv.dir,
		LogPath: filepath.Join(sv.dir, "logs", "versitygw.log"),
		PidPath: filepath.Join(sv.dir, "run", "versitygw.pid"),
	}, sv.log), nil
}

// bucketAndImages creates the state bucket, then waits for the registry's
// demo images.
func (sv *server) bucketAndImages(ctx context.Context, reg *sandboxRegistry) error {
	if err := createBucket(ctx, sv.info); err != nil {
		return err
	}
	var err error
	sv.info.Registry, sv.info.Images, err = reg.Wait(ctx)
	return err
}

// startDroplets makes the droplet manager, the firewalls (when enforced)
// and the Spaces keys' sync; their sources are set once the simulator
// exists, and no hook fires before that.
func (sv *server) startDroplets() error {
	boot := cloudBooter{plan: sv.plan, binary: sv.cfg.Binary, pullBinary: sv.cfg.PullBinary, runtime: sv.runtime, registry: sv.info.Registry}
	sv.mgr = newManager(sv.dir, sv.plan, boot, sv.log, nil)
	var err error
	if sv.info.Firewalls, err = ParseFirewalls(sv.cfg.Firewalls); err != nil {
		return fmt.Errorf("sandbox serve: firewalls %q: %w", sv.cfg.Firewalls, err)
	}
	if sv.info.Firewalls == FirewallsEnforce {
		sv.fw = newFirewaller(nil, sv.plan.DropletNS, sv.log)
	}
	// Spaces keys minted through the API become versitygw accounts limited
	// to their buckets.
	sv.keys = newSpacesKeys(sv.info.S3Endpoint, s3Region, sv.info.AccessKeyID, sv.info.SecretAccessKey, nil, sv.log)
	return nil
}

// startSimulator makes the DO API simulator with the hooks that drive the
// droplets, gives it the run's tokens and images, and points the
// firewalls and the Spaces keys at it. It does not listen yet (serve
// does). closeCalls closes the API call log (Options.RequestLogs).
func (sv *server) startSimulator(ctx context.Context) (closeCalls func(), err error) {
	closeCalls = func() {}
	var onCall func(dosim.Call, string, time.Time)
	if sv.cfg.RequestLogs {
		calls, err := newCallLog(filepath.Join(sv.dir, "logs", "api-calls.log"))
		if err != nil {
			return nil, err
		}
		closeCalls = func() { _ = calls.Close() }
		onCall = calls.record
	}
	o := sv.hooks(context.WithoutCancel(ctx))
	o.OnCall = onCall
	o.PublicRange = sv.plan.AllocRange()
	o.Regions = sv.cfg.Regions
	o.ActionDelay = sv.cfg.ActionDelay
	o.Logger = sv.log
	sim := dosim.New(o)
	sv.sim = sim
	if sv.fw != nil {
		sv.fw.src = sim
	}
	sv.keys.src = sim.SpacesKeys
	// Accounts a previous serve left (its keys died with its simulator).
	sv.keys.Sync(ctx)
	sim.AddToken(sv.info.Token, dosim.FullScopes()...)
	sim.AddToken(sv.info.NodeToken, dosim.NodeScopes()...)
	registered := time.Now()
	sim.RegisterImage(dosim.Image{Name: sv.info.Image, Description: "dynia node image (sandbox)", CreatedAt: registered})
	for i, name := range sv.cfg.ExtraImages {
		// Newer by a second each: the CLI's default, the newest
		// dynia-node-* snapshot, is the last one given.
		sim.RegisterImage(dosim.Image{Name: name, Description: "dynia node image (sandbox, --extra-image: the same node binaries)",
			CreatedAt: registered.Add(time.Duration(i+1) * time.Second)})
	}
	return closeCalls, nil
}

// hooks are the simulator's hooks. They run synchronously inside the
// simulator's request, outside its lock (hctx outlives the request): by
// the time an assign action completes, the route has moved.
func (sv *server) hooks(hctx context.Context) dosim.Options {
	mgr, fw, keys, log := sv.mgr, sv.fw, sv.keys, sv.log
	return dosim.Options{
		OnDropletCreate: func(d dosim.Droplet) {
			spec, err := specFromDosim(d)
			if err == nil {
				err = mgr.Create(hctx, spec)
			}
			if err != nil {
				log.Error("create droplet", "droplet", d.ID, "err", err)
			}
			// Its own rules, and its addresses in the tag and droplet
			// sources of everyone else's.
			fw.Sync(hctx)
			sv.writeStatus()
		},
		OnDropletActive: func(d dosim.Droplet) { mgr.SetStatus(d.ID, d.Status); sv.writeStatus() },
		OnDropletPower: func(d dosim.Droplet, on bool) {
			if err := mgr.Power(hctx, d.ID, on); err != nil {
				log.Error("power droplet", "droplet", d.ID, "on", on, "err", err)
			}
			fw.Sync(hctx)
			sv.writeStatus()
		},
		OnDropletDelete: func(d dosim.Droplet) {
			if err := mgr.Delete(hctx, d.ID); err != nil {
				log.Error("delete droplet", "droplet", d.ID, "err", err)
			}
			fw.Sync(hctx)
			sv.writeStatus()
		},
		OnFirewallChange: func(dosim.Firewall, bool) { fw.Sync(hctx) },
		OnDropletTags:    func(dosim.Droplet) { fw.Sync(hctx) },
		// Before the API answers: a key works as soon as its creator has it
		// and stops working as soon as its deletion is answered.
		OnSpacesKeyChange: func(dosim.SpacesKey, bool) { keys.Sync(hctx) },
		OnReservedIPAssign: func(ip string, id int) {
			if err := mgr.AssignReservedIP(hctx, ip, id); err != nil {
				log.Error("assign reserved IP", "ip", ip, "droplet", id, "err", err)
			}
			log.Info("reserved IP routed", "ip", ip, "droplet", id)
			sv.writeStatus()
		},
	}
}

// writeStatus writes status.json when it changed. It never calls into the
// simulator: a simulator call can fire hooks, which call writeStatus.
func (sv *server) writeStatus() {
	sv.statusMu.Lock()
	defer sv.statusMu.Unlock()
	cur := *sv.info
	cur.Droplets, cur.ReservedIPs = sv.mgr.Snapshot()
	if sv.lastStatus != nil && reflect.DeepEqual(*sv.lastStatus, cur) {
		return
	}
	if err := writeJSON(statusPath(sv.dir), cur); err != nil {
		sv.log.Error("write status", "err", err)
		return
	}
	sv.lastStatus = &cur
}

// serve runs the simulator's listeners until ctx is done or they fail,
// reconciling every 2 s, then stops the droplets' processes.
func (sv *server) serve(ctx context.Context) error {
	sim, mgr, info := sv.sim, sv.mgr, sv.info
	errc := make(chan error, 1)
	go func() { errc <- sim.ListenAndServe(ctx, sv.plan.APIAddr(), sv.plan.MetadataAddr()) }()
	sv.writeStatus()
	sv.log.Info("sandbox serving", "api", info.APIURL, "s3", info.S3Endpoint, "metadata", sv.plan.MetadataAddr(), "firewalls", info.Firewalls)

	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var serveErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case serveErr = <-errc:
			break loop
		case <-tick.C:
			// Adopt Reserved IPs created without an assign hook.
			mgr.SyncReservedIPs(ctx, simReservedIPs(sim))
			// The safety net: a failed apply, or a change no hook reported.
			sv.fw.Sync(ctx)
			sv.keys.Sync(ctx)
			sv.writeStatus()
		}
	}
	sv.log.Info("sandbox stopping")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	mgr.StopAll(stopCtx, 5*time.Second)
	if serveErr != nil {
		return fmt.Errorf("sandbox serve: %w", serveErr)
	}
	return nil
}

func simReservedIPs(sim *dosim.Server) []ReservedIP {
	var out []ReservedIP
	for _, r := range sim.ReservedIPs() {
		out = append(out, ReservedIP{IP: r.IP, DropletID: r.DropletID})
	}
	return out
}

// specFromDosim maps the simulator's droplet to what the manager needs.
func specFromDosim(d dosim.Droplet) (dropletSpec, error) {
	priv, err := netip.ParseAddr(d.PrivateIPv4)
	if err != nil {
		return dropletSpec{}, fmt.Errorf("droplet %d private IP %q: %w", d.ID, d.PrivateIPv4, err)
	}
	mask, err := netip.ParseAddr(d.PrivateNetmask)
	if err != nil || !mask.Is4() {
		return dropletSpec{}, fmt.Errorf("droplet %d private netmask %q: bad", d.ID, d.PrivateNetmask)
	}
	gw, err := netip.ParseAddr(d.PrivateGateway)
	if err != nil {
		return dropletSpec{}, fmt.Errorf("droplet %d gateway %q: %w", d.ID, d.PrivateGateway, err)
	}
	s := dropletSpec{ID: d.ID, Name: d.Name, Status: d.Status, VPC: d.VPCUUID,
		Private: priv, PrivLen: maskBits(mask), Gateway: gw, UserData: []byte(d.UserData)}
	if d.PublicIPv4 != "" {
		if s.Public, err = netip.ParseAddr(d.PublicIPv4); err != nil {
			return dropletSpec{}, fmt.Errorf("droplet %d public IP %q: %w", d.ID, d.PublicIPv4, err)
		}
	}
	return s, nil
}

func maskBits(m netip.Addr) int {
	b := m.As4()
	n := 0
	for _, x := range b {
		for i := 7; i >= 0; i-- {
			if x&(1<<i) != 0 {
				n++
			}
		}
	}
	return n
}

// createBucket makes the state bucket once versitygw answers.
func createBucket(ctx context.Context, info *Info) error {
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(info.S3Endpoint),
		Region:       info.S3Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(info.AccessKeyID, info.SecretAccessKey, ""),
		HTTPClient:   &http.Client{Timeout: 5 * time.Second},
	})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := poll.Until(ctx, func() error {
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(info.Bucket)})
		if err != nil && strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create bucket %s on versitygw: %w", info.Bucket, err)
	}
	return nil
}

// callLog appends one JSON line per DO API request (Options.RequestLogs).
type callLog struct {
	mu sync.Mutex
	f  *os.File
}

func newCallLog(path string) (*callLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open API call log: %w", err)
	}
	return &callLog{f: f}, nil
}

// CallLogLine is one line of logs/api-calls.log.
type CallLogLine struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
	Remote string    `json:"remote"`
}

func (l *callLog) record(c dosim.Call, remote string, at time.Time) {
	b, err := json.Marshal(CallLogLine{Time: at.UTC(), Method: c.Method, Path: c.Path, Status: c.Status, Remote: remote})
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.f.Write(append(b, '\n'))
}

func (l *callLog) Close() error { return l.f.Close() }
