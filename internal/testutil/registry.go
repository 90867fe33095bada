package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Registry is a running docker-registry (Debian's distribution 2.8, the
// real Docker Registry HTTP API V2 server) with filesystem storage in a
// temporary directory, started by StartRegistry. It speaks plain HTTP: a
// dockerd pulling from it needs --insecure-registry for Addr (or its
// network), except on 127.0.0.0/8 which dockerd always treats as insecure.
type Registry struct {
	Addr     string // host:port it listens on
	Dir      string // storage root
	Username string // htpasswd user ("" without WithHtpasswd)
	Password string
	PID      int
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryConfig)

type registryConfig struct{ user, password string }

// WithHtpasswd makes the registry require HTTP basic authentication with
// one user (bcrypt htpasswd file, the only hash docker-registry accepts).
func WithHtpasswd(user, password string) RegistryOption {
	return func(c *registryConfig) { c.user, c.password = user, password }
}

// StartRegistry starts docker-registry on host (an IP the test owns: a
// loopback address or one in a namespace the test made) and a free port,
// waits until /v2/ answers, and kills it by pid when the test ends. It
// skips, or fails under DYNIA_REQUIRE_INTEGRATION=1, without the
// docker-registry binary (hack/deps.d/50-docker.sh installs it).
func StartRegistry(t testing.TB, host string, opts ...RegistryOption) *Registry {
	t.Helper()
	bin := NeedBinary(t, "docker-registry")
	var cfg registryConfig
	for _, o := range opts {
		o(&cfg)
	}
	root := t.TempDir()
	r := &Registry{Dir: filepath.Join(root, "storage"), Username: cfg.user, Password: cfg.password}
	if err := os.Mkdir(r.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	auth := ""
	if cfg.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(root, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(cfg.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: dynia-test\n    path: %s\n", htpasswd)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatalf("registry: find a free port on %s: %v", host, err)
		}
		addr := l.Addr().String()
		_ = l.Close() // only borrowing a free port number
		conf := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
  secret: %s
%s`, r.Dir, addr, randHex(16), auth)
		confPath := filepath.Join(root, fmt.Sprintf("config-%d.yml", attempt))
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(root, fmt.Sprintf("registry-%d.log", attempt))
		pid, err := startRegistry(t, bin, confPath, addr, logPath)
		if err == nil {
			r.Addr, r.PID = addr, pid
			return r
		}
		lastErr = err
	}
	t.Fatalf("docker-registry did not start: %v", lastErr)
	return nil
}

func startRegistry(t testing.TB, bin, confPath, addr, logPath string) (int, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := startChild(cmd)
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", bin, err)
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = waitStarted(proc.exited, 30*time.Second, func(ctx context.Context) error {
		// /v2/ answers 200, or 401 with authentication: either way it serves.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	if errors.Is(err, errExited) {
		out, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("docker-registry exited (%v): %s", proc.err, tail(out))
	}
	if err != nil {
		proc.kill()
		out, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("docker-registry not serving on %s after 30s (%v): %s", addr, err, tail(out))
	}
	client.CloseIdleConnections()
	t.Cleanup(func() {
		proc.kill()
		if t.Failed() {
			if out, err := os.ReadFile(logPath); err == nil && len(out) > 0 {
				t.Logf("docker-registry log (%s):\n%s", logPath, tail(out))
			}
		}
	})
	return cmd.Process.Pid, nil
}
