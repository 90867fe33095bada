package sandbox

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/dynia/dynia/internal/demoimage"
	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/poll"
)

// registryPort is where the sandbox's registry listens on the router's
// public address (docker-registry's customary port).
const registryPort = 5000

// RegistryAddr is the sandbox registry's host:port: the router's public
// address, reached by droplets through their default route and by the
// root namespace through the guard route.
func (p plan) RegistryAddr() string { return fmt.Sprintf("%s:%d", p.RouterIP(), registryPort) }

// Image is one image the sandbox pushed to its registry (Info.Images):
// pull it as <registry>/<name>@<digest>.
type Image struct {
	Name   string `json:"name"`   // repository: demo-app
	Tag    string `json:"tag"`    // v1, v2, broken
	Digest string `json:"digest"` // manifest digest, sha256:<64 hex>
}

// demoTags are the demo app images every sandbox offers: two healthy
// releases and one whose /healthz never answers 200.
var demoTags = []string{"v1", "v2", demoimage.Broken}

func registryDir(dir string) string { return filepath.Join(dir, "registry") }

// sandboxRegistry is the registry serve runs, and the demo images being
// pushed to it.
type sandboxRegistry struct {
	addr string
	proc *supervised
	done chan struct{}
	imgs []Image
	err  error
}

// startRegistry starts Debian's docker-registry (distribution 2.8) under
// serve's supervision in the router namespace, on p.RegistryAddr(), with
// filesystem storage under <dir>/registry/data, and in the background
// builds demo-app:v1, v2 and broken from the demo app binary
// (demoimage.BuildFrom: no go toolchain, no network) and pushes them.
// Wait returns the images. Without a registry binary (--runtime process on
// a machine without docker-registry) it does nothing and Wait returns no
// registry.
func startRegistry(ctx context.Context, dir string, cfg config, p plan, log *slog.Logger) (*sandboxRegistry, error) {
	r := &sandboxRegistry{done: make(chan struct{})}
	if cfg.RegistryBinary == "" {
		close(r.done)
		return r, nil
	}
	r.addr = p.RegistryAddr()
	rdir := registryDir(dir)
	if err := os.MkdirAll(filepath.Join(rdir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	// Plain HTTP and no authentication: the registry is reachable only
	// from this machine (the router has no default route). The http
	// secret signs upload state; a fresh one each start is fine (uploads
	// do not survive a restart of serve anyway).
	conf := fmt.Sprintf(`version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
`, filepath.Join(rdir, "data"), r.addr, randomHex(16))
	confPath := filepath.Join(rdir, "config.yml")
	if err := fsutil.WriteFileAtomic(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r.proc = supervise(procSpec{
		Name: "registry", Path: cfg.RegistryBinary, Args: []string{"serve", confPath},
		Dir:     dir,
		LogPath: filepath.Join(dir, "logs", "registry.log"),
		PidPath: filepath.Join(dir, "run", "registry.pid"),
	}, log)
	go func() {
		defer close(r.done)
		began := time.Now()
		r.imgs, r.err = pushDemoImages(ctx, r.addr, cfg.DemoAppBinary)
		if r.err == nil {
			log.Info("demo images pushed", "registry", r.addr, "took", time.Since(began).Round(time.Millisecond))
		}
	}()
	return r, nil
}

// Wait returns the registry's host:port ("" without one) and the images
// pushed to it, once the push is over.
func (r *sandboxRegistry) Wait(ctx context.Context) (string, []Image, error) {
	select {
	case <-r.done:
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
	if r.err != nil {
		return "", nil, r.err
	}
	return r.addr, r.imgs, nil
}

// Stop stops the registry process.
func (r *sandboxRegistry) Stop(ctx context.Context, grace time.Duration) {
	if r != nil && r.proc != nil {
		r.proc.Stop(ctx, grace)
	}
}

// pushDemoImages waits until the registry at addr answers /v2/, then
// builds and pushes demo-app:<tag> for every demo tag around the binary.
func pushDemoImages(ctx context.Context, addr, binaryPath string) ([]Image, error) {
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		return nil, fmt.Errorf("demo images: read the demo app binary: %w", err)
	}
	if err := waitRegistry(ctx, addr, 30*time.Second); err != nil {
		return nil, err
	}
	var out []Image
	for _, tag := range demoTags {
		img, err := demoimage.BuildFrom(bin, tag)
		if err != nil {
			return nil, err
		}
		digest, err := demoimage.Push(ctx, addr, demoimage.Repo, tag, img)
		if err != nil {
			return nil, err
		}
		out = append(out, Image{Name: demoimage.Repo, Tag: tag, Digest: digest})
	}
	return out, nil
}

// waitRegistry polls GET /v2/ until the registry answers 200.
func waitRegistry(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	defer c.CloseIdleConnections()
	if err := poll.Until(ctx, func() error { return poll.GetOK(ctx, c, "http://"+addr+"/v2/") }); err != nil {
		return fmt.Errorf("registry %s not serving after %v: %w", addr, timeout, err)
	}
	return nil
}
