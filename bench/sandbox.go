package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/fsutil"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/sandbox"
)

// Sandbox is one sandbox of the harness's own: its own directory, name
// prefix, public range (a /24 of 198.18.0.0/15, the benchmarking range) and
// CLI config, so it never touches a user's sandbox. Every dynia command
// goes through the CLI binary, as a user runs it.
type Sandbox struct {
	r      *Runner
	root   string // temporary directory holding dir and config
	dir    string
	config string
	Info   sandbox.Info
	cloud  *cloud.Client
	store  *cluster.Store
}

// UpSandbox starts a sandbox with the sandbox's defaults (docker runtime,
// firewalls enforced) plus extra `sandbox up` flags, and --request-logs.
// Down it with Down.
func (r *Runner) UpSandbox(extra ...string) *Sandbox {
	// A short directory: HAProxy's master socket path must fit 108 bytes.
	root, err := os.MkdirTemp("", "dyb")
	if err != nil {
		r.Fatalf("sandbox dir: %v", err)
	}
	s := &Sandbox{r: r, root: root, dir: filepath.Join(root, "sandbox"), config: filepath.Join(root, "config.yaml")}
	var res CLIResult
	for try := 0; try < 10; try++ {
		n := rand.Uint32()
		prefix := fmt.Sprintf("b%05x", n&0xfffff)
		rng := fmt.Sprintf("198.%d.%d.0/24", 18+(n>>20)&1, (n>>21)&0xff)
		args := append([]string{"sandbox", "up", "--prefix", prefix, "--public-range", rng, "--request-logs"}, extra...)
		if res = s.CLI(args...); res.Code == 0 {
			r.Logf("dynia %s (%v)", strings.Join(args, " "), res.Took.Round(time.Millisecond))
			s.Refresh()
			return s
		}
		if !strings.Contains(res.Stderr, "in use") && !strings.Contains(res.Stderr, "already exists") {
			break
		}
	}
	_ = os.RemoveAll(root)
	r.Fatalf("dynia sandbox up: exit %d: %s", res.Code, strings.TrimSpace(res.Stderr))
	return nil
}

// Down tears the sandbox down and removes its directory.
func (s *Sandbox) Down() {
	if res := s.CLI("sandbox", "down"); res.Code != 0 {
		s.r.Logf("sandbox down: exit %d: %s", res.Code, res.Stderr)
		return
	}
	_ = os.RemoveAll(s.root)
}

// CLIResult is one dynia command's outcome.
type CLIResult struct {
	Code           int
	Stdout, Stderr string
	Took           time.Duration
}

// CLI runs dynia with the sandbox's config (and --dir for sandbox
// commands); never fatal.
func (s *Sandbox) CLI(args ...string) CLIResult {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	full := append([]string{"--config", s.config}, args...)
	if args[0] == "sandbox" {
		full = append([]string{"--config", s.config, "sandbox", "--dir", s.dir}, args[1:]...)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(s.r.cfg.BinDir, "dynia"), full...)
	cmd.Env = append(os.Environ(), "PATH="+s.r.cfg.BinDir+":"+os.Getenv("PATH")+":/root/go/bin:/usr/sbin:/sbin")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	res := CLIResult{Stdout: out.String(), Stderr: errOut.String(), Took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	case err != nil:
		res.Code, res.Stderr = -1, err.Error()
	}
	return res
}

// MustCLI is CLI, fatal on a non-zero exit.
func (s *Sandbox) MustCLI(args ...string) CLIResult {
	res := s.CLI(args...)
	if res.Code != 0 {
		s.r.Fatalf("dynia %s: exit %d: %s", strings.Join(args, " "), res.Code, strings.TrimSpace(res.Stderr))
	}
	s.r.Logf("dynia %s (%v)", strings.Join(args, " "), res.Took.Round(time.Millisecond))
	return res
}

// Refresh rereads `sandbox status -o json`.
func (s *Sandbox) Refresh() sandbox.Info {
	res := s.MustCLIQuiet("sandbox", "status", "-o", "json")
	var info sandbox.Info
	if err := json.Unmarshal([]byte(res.Stdout), &info); err != nil {
		s.r.Fatalf("sandbox status -o json: %v", err)
	}
	s.Info = info
	return info
}

// MustCLIQuiet is MustCLI without the log line (frequent reads).
func (s *Sandbox) MustCLIQuiet(args ...string) CLIResult {
	res := s.CLI(args...)
	if res.Code != 0 {
		s.r.Fatalf("dynia %s: exit %d: %s", strings.Join(args, " "), res.Code, strings.TrimSpace(res.Stderr))
	}
	return res
}

// Cloud is a DO API client on the sandbox's full token.
func (s *Sandbox) Cloud() *cloud.Client {
	if s.cloud == nil {
		c, err := cloud.New(s.Info.Token, cloud.Options{BaseURL: s.Info.APIURL, PollInterval: 50 * time.Millisecond})
		if err != nil {
			s.r.Fatalf("DO API client: %v", err)
		}
		s.cloud = c
	}
	return s.cloud
}

// Store is the sandbox bucket's cluster state store.
func (s *Sandbox) Store() *cluster.Store {
	if s.store == nil {
		b, err := bucket.Open(context.Background(), s.Info.StateURL, bucket.Options{
			Endpoint: s.Info.S3Endpoint, Region: s.Info.S3Region, PathStyle: true,
			AccessKeyID: s.Info.AccessKeyID, SecretAccessKey: s.Info.SecretAccessKey})
		if err != nil {
			s.r.Fatalf("open the sandbox bucket: %v", err)
		}
		// Signed like the CLI's own writes (docs/security.md): nodes apply
		// only states signed with the cluster's state key, which the CLI
		// keeps beside its config (keys/<cluster>-<8 hex>.sign.key).
		s.store = cluster.NewSignedStore(b, cluster.FileKeys{Base: s.keyBase})
	}
	return s.store
}

// keyBase finds the CLI's key files of cluster name under the sandbox's
// config directory (keys/<name>-<8 hex of the state URL>.*).
func (s *Sandbox) keyBase(name string) (string, error) {
	m, _ := filepath.Glob(filepath.Join(filepath.Dir(s.config), "keys", name+"-????????.sign.key"))
	if len(m) != 1 {
		return "", fmt.Errorf("state key of cluster %s: %d key files under %s", name, len(m), filepath.Dir(s.config))
	}
	return strings.TrimSuffix(m[0], ".sign.key"), nil
}

// Update changes a cluster's state with compare-and-swap, as the CLI does:
// the benchmark's hook for changes no command makes (a node drained and
// back, a sub-second advert interval).
func (s *Sandbox) Update(name string, mutate func(*cluster.State) error) *cluster.State {
	st, err := s.Store().Update(context.Background(), name, func(cur *cluster.State) (*cluster.State, error) {
		next := cur.Clone()
		if err := mutate(next); err != nil {
			return nil, err
		}
		return next, nil
	})
	if err != nil {
		s.r.Fatalf("update the state of %s: %v", name, err)
	}
	return st
}

// Holder is the droplet holding ip per the simulated DO (0: none).
func (s *Sandbox) Holder(ip string) int {
	rip, err := s.Cloud().GetReservedIP(context.Background(), ip)
	if err != nil {
		s.r.Fatalf("get Reserved IP %s: %v", ip, err)
	}
	return rip.DropletID
}

// NodeRow is a row of `node list -o json`.
type NodeRow struct {
	ID              string `json:"id"`
	Role            string `json:"role"`
	PublicIP        string `json:"public_ip"`
	PrivateIP       string `json:"private_ip"`
	Status          string `json:"status"`
	HealthReason    string `json:"health_reason"`
	DropletID       int    `json:"droplet_id"`
	HoldsReservedIP bool   `json:"holds_reserved_ip"`
}

// Nodes is `node list --name name -o json`.
func (s *Sandbox) Nodes(name string) []NodeRow {
	var rows []NodeRow
	if err := json.Unmarshal([]byte(s.MustCLIQuiet("node", "list", "--name", name, "-o", "json").Stdout), &rows); err != nil {
		s.r.Fatalf("node list: %v", err)
	}
	return rows
}

// WaitUp waits until every node of the cluster is up.
func (s *Sandbox) WaitUp(name string, timeout time.Duration) {
	s.r.WaitFor(timeout, func() error {
		for _, r := range s.Nodes(name) {
			if r.Status != "up" {
				return fmt.Errorf("node %s is %s (%s)", r.ID, r.Status, r.HealthReason)
			}
		}
		return nil
	})
}

// ReservedIP is the cluster's Reserved IP.
func (s *Sandbox) ReservedIP(name string) string {
	var v struct {
		ReservedIP string `json:"reserved_ip"`
	}
	if err := json.Unmarshal([]byte(s.MustCLIQuiet("cluster", "get", "--name", name, "-o", "json").Stdout), &v); err != nil {
		s.r.Fatalf("cluster get: %v", err)
	}
	return v.ReservedIP
}

// NewCluster makes a cluster of n nodes running demo-app v1 and waits
// until every node is up; it returns the Reserved IP.
func (s *Sandbox) NewCluster(name string, n int) string {
	s.MustCLI("node", "create-ha", "--name", name, "--region", "nyc3", "--size", "s-1vcpu-1gb", "--timeout", "3m", "--image", s.Demo("v1"))
	if n > 1 {
		s.MustCLI("node", "add", "--name", name, "--count", strconv.Itoa(n-1), "--timeout", "5m")
	}
	s.WaitUp(name, 3*time.Minute)
	return s.ReservedIP(name)
}

// Demo is the sandbox registry's demo image of a version, by tag.
func (s *Sandbox) Demo(version string) string { return s.Info.Registry + "/demo-app:" + version }

// Droplet is the sandbox's record of a droplet.
func (s *Sandbox) Droplet(id int) sandbox.Droplet {
	for _, d := range s.Refresh().Droplets {
		if d.ID == id {
			return d
		}
	}
	s.r.Fatalf("no droplet %d in the sandbox", id)
	return sandbox.Droplet{}
}

// DropletDir is where the sandbox keeps a droplet's files.
func (s *Sandbox) DropletDir(id int) string {
	return filepath.Join(s.dir, "droplets", strconv.Itoa(id))
}

// Netns runs a command in a namespace and returns its combined output.
func Netns(ns string, args ...string) (string, error) {
	return extcmd.Combined(exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...))
}

// PullPID is the droplet's running dynia-pull (0: none), from the pid file
// the sandbox writes ("pid starttime").
func (s *Sandbox) PullPID(id int) int {
	pid, _, _ := procstat.ReadPidFile(filepath.Join(s.DropletDir(id), "pids", "pull.pid"))
	return pid
}

// EditPullConfig rewrites a droplet's pull.json (edit gets it as a map)
// and restarts its dynia-pull (SIGTERM; the sandbox starts it again,
// HAProxy and keepalived keep running and are adopted), then waits for the
// new one.
func (s *Sandbox) EditPullConfig(id int, edit func(map[string]any)) {
	path := filepath.Join(s.DropletDir(id), "pull.json")
	b, err := os.ReadFile(path)
	if err != nil {
		s.r.Fatalf("read pull.json: %v", err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		s.r.Fatalf("pull.json: %v", err)
	}
	edit(m)
	out, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteFileAtomic(path, out, 0o600); err != nil {
		s.r.Fatalf("write pull.json: %v", err)
	}
	old := s.PullPID(id)
	if old != 0 {
		_ = syscall.Kill(old, syscall.SIGTERM)
	}
	s.r.WaitFor(time.Minute, func() error {
		if p := s.PullPID(id); p == 0 || p == old {
			return fmt.Errorf("dynia-pull of droplet %d not restarted yet", id)
		}
		return nil
	})
}
