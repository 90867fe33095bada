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
func Serve(ctx context.Context, opts ServeOptions) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if opts.Dir == "" {
		opts.Dir = DefaultDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var cfg config
	if err := readJSON(configPath(opts.Dir), &cfg); err != nil {
		return fmt.Errorf("sandbox serve: %w (start it with `dynia sandbox up`)", err)
	}
	p, err := newPlan(cfg.Prefix, cfg.PublicRange)
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	runtime, err := ParseRuntime(cfg.Runtime)
	if err != nil {
		return fmt.Errorf("sandbox serve: runtime %q: %w", cfg.Runtime, err)
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

	s3dir, iamDir := filepath.Join(opts.Dir, "s3"), filepath.Join(opts.Dir, "s3iam")
	for _, d := range []string{s3dir, iamDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("sandbox serve: %w", err)
		}
	}
	gwArgs := []string{"--port", p.S3Addr(), "--region", s3Region, "--quiet", "--iam-dir", iamDir, "posix", s3dir}
	if cfg.RequestLogs {
		gwArgs = append([]string{"--access-log", filepath.Join(opts.Dir, "logs", "s3-access.log")}, gwArgs...)
	}
	gw := supervise(procSpec{
		Name: "versitygw", Path: cfg.VersitygwBinary,
		// --iam-dir: versitygw's own accounts, one per Spaces key the
		// simulator mints (spaces.go); its users.json is 0600.
		Args: gwArgs,
		// Keys in the environment, not argv: /proc/PID/cmdline is world-readable.
		Env:     []string{"ROOT_ACCESS_KEY_ID=" + info.AccessKeyID, "ROOT_SECRET_ACCESS_KEY=" + info.SecretAccessKey},
		Dir:     opts.Dir,
		LogPath: filepath.Join(opts.Dir, "logs", "versitygw.log"),
		PidPath: filepath.Join(opts.Dir, "run", "versitygw.pid"),
	}, log)
	defer gw.Stop(context.WithoutCancel(ctx), 5*time.Second)
	// The container registry, and the demo images pushed to it meanwhile.
	reg, err := startRegistry(ctx, opts.Dir, cfg, p, log)
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	defer reg.Stop(context.WithoutCancel(ctx), 5*time.Second)
	if err := createBucket(ctx, info); err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	if info.Registry, info.Images, err = reg.Wait(ctx); err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}

	var sim *dosim.Server
	// writeStatus never calls into the simulator: a simulator call can fire
	// hooks, which call writeStatus.
	var statusMu sync.Mutex
	var lastStatus *Info
	var mgr *manager
	writeStatus := func() {
		statusMu.Lock()
		defer statusMu.Unlock()
		cur := *info
		cur.Droplets, cur.ReservedIPs = mgr.Snapshot()
		if lastStatus != nil && reflect.DeepEqual(*lastStatus, cur) {
			return
		}
		if err := writeJSON(statusPath(opts.Dir), cur); err != nil {
			log.Error("write status", "err", err)
			return
		}
		lastStatus = &cur
	}
	boot := cloudBooter{plan: p, binary: cfg.Binary, pullBinary: cfg.PullBinary, runtime: runtime, registry: info.Registry}
	mgr = newManager(opts.Dir, p, boot, log, nil)
	if info.Firewalls, err = ParseFirewalls(cfg.Firewalls); err != nil {
		return fmt.Errorf("sandbox serve: firewalls %q: %w", cfg.Firewalls, err)
	}
	// fw stays nil (Sync does nothing) unless firewalls are enforced. Its
	// source is set once the simulator exists; no hook fires before that.
	var fw *firewaller
	if info.Firewalls == FirewallsEnforce {
		fw = newFirewaller(nil, p.DropletNS, log)
	}
	// Spaces keys minted through the API become versitygw accounts limited
	// to their buckets; src is set once the simulator exists.
	keys := newSpacesKeys(info.S3Endpoint, s3Region, info.AccessKeyID, info.SecretAccessKey, nil, log)

	// Hooks run synchronously inside the simulator's request, outside its
	// lock: by the time an assign action completes, the route has moved.
	hctx := context.WithoutCancel(ctx)
	var onCall func(dosim.Call, string, time.Time)
	if cfg.RequestLogs {
		calls, err := newCallLog(filepath.Join(opts.Dir, "logs", "api-calls.log"))
		if err != nil {
			return fmt.Errorf("sandbox serve: %w", err)
		}
		defer func() { _ = calls.Close() }()
		onCall = calls.record
	}
	sim = dosim.New(dosim.Options{
		OnCall:      onCall,
		PublicRange: p.AllocRange(),
		Regions:     cfg.Regions,
		ActionDelay: cfg.ActionDelay,
		Logger:      log,
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
			writeStatus()
		},
		OnDropletActive: func(d dosim.Droplet) { mgr.SetStatus(d.ID, d.Status); writeStatus() },
		OnDropletPower: func(d dosim.Droplet, on bool) {
			if err := mgr.Power(hctx, d.ID, on); err != nil {
				log.Error("power droplet", "droplet", d.ID, "on", on, "err", err)
			}
			fw.Sync(hctx)
			writeStatus()
		},
		OnDropletDelete: func(d dosim.Droplet) {
			if err := mgr.Delete(hctx, d.ID); err != nil {
				log.Error("delete droplet", "droplet", d.ID, "err", err)
			}
			fw.Sync(hctx)
			writeStatus()
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
			writeStatus()
		},
	})
	if fw != nil {
		fw.src = sim
	}
	keys.src = sim.SpacesKeys
	// Accounts a previous serve left (its keys died with its simulator).
	keys.Sync(ctx)
	sim.AddToken(info.Token, dosim.FullScopes()...)
	sim.AddToken(info.NodeToken, dosim.NodeScopes()...)
	registered := time.Now()
	sim.RegisterImage(dosim.Image{Name: info.Image, Description: "dynia node image (sandbox)", CreatedAt: registered})
	for i, name := range cfg.ExtraImages {
		// Newer by a second each: the CLI's default, the newest
		// dynia-node-* snapshot, is the last one given.
		sim.RegisterImage(dosim.Image{Name: name, Description: "dynia node image (sandbox, --extra-image: the same node binaries)",
			CreatedAt: registered.Add(time.Duration(i+1) * time.Second)})
	}
	// Pebble, the DNS server and the Cloudflare simulator (tls.go), ready
	// before the status that lists them is written.
	tlsSvc, err := startTLSServices(ctx, opts.Dir, cfg, p, sim, info, log)
	if err != nil {
		return fmt.Errorf("sandbox serve: %w", err)
	}
	defer tlsSvc.Stop(context.WithoutCancel(ctx))

	errc := make(chan error, 1)
	go func() { errc <- sim.ListenAndServe(ctx, p.APIAddr(), p.MetadataAddr()) }()
	writeStatus()
	log.Info("sandbox serving", "api", info.APIURL, "s3", info.S3Endpoint, "metadata", p.MetadataAddr(), "firewalls", info.Firewalls)

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
			fw.Sync(ctx)
			keys.Sync(ctx)
			writeStatus()
		}
	}
	log.Info("sandbox stopping")
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
	delay := 20 * time.Millisecond
	for {
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(info.Bucket)})
		if err == nil || strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create bucket %s on versitygw: %w", info.Bucket, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 500*time.Millisecond)
	}
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
