package pull

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/extcmd"
	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/procstat"
	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/secrets"
)

// processApp runs releases as processes of pull.json's app_command, for a
// machine without Docker (`dynia sandbox up --runtime process`). The
// image is not pulled or run: every release runs the same program, with
// the release's environment, DYNIA_APP_ADDR (the address to listen on),
// DYNIA_NODE_ID, DYNIA_RELEASE and DYNIA_IMAGE. Instances outlive
// dynia-pull like haproxy does (own process group); each is recorded in
// <run dir>/app/r<N>.json with its pid and start time, so a new dynia-pull
// adopts it and never signals a recycled pid.
type processApp struct {
	argv   []string
	dir    string // <run dir>/app
	logDir string // the instances' output: <log dir>/app.log ("" = dynia-pull's stderr)
	node   string
	log    *slog.Logger

	mu sync.Mutex
}

// procRecord is an instance's record file.
type procRecord struct {
	Release int64     `json:"release"`
	Image   string    `json:"image"`
	Addr    string    `json:"addr"`
	PID     int       `json:"pid"`
	Tick    uint64    `json:"start_tick"`
	Since   time.Time `json:"since"`
}

func newProcessApp(argv []string, runDir, logDir, nodeID string, log *slog.Logger) *processApp {
	return &processApp{argv: argv, dir: filepath.Join(runDir, "app"), logDir: logDir, node: nodeID, log: log}
}

func (p *processApp) records() []procRecord {
	files, _ := filepath.Glob(filepath.Join(p.dir, "r*.json"))
	var out []procRecord
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var r procRecord
		if json.Unmarshal(b, &r) != nil {
			continue
		}
		if !procstat.Alive(r.PID, r.Tick) {
			_ = os.Remove(f) // it is gone: so is its record
			continue
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Release > out[j].Release })
	return out
}

func (p *processApp) Instances(context.Context) ([]appInstance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []appInstance
	for _, r := range p.records() {
		addr, err := netip.ParseAddrPort(r.Addr)
		if err != nil {
			continue
		}
		out = append(out, appInstance{Release: r.Release, Image: r.Image, Addr: addr, ID: fmt.Sprint(r.PID), Since: r.Since})
	}
	return out, nil
}

func (p *processApp) Start(ctx context.Context, rel cluster.Release, sec secrets.Release, bind netip.Addr) (appInstance, error) {
	p.mu.Lock()
	port, err := freePort(bind)
	if err != nil {
		p.mu.Unlock()
		return appInstance{}, &appFailure{Reason: "pick a port: " + err.Error(), Retry: true}
	}
	addr := netip.AddrPortFrom(bind, port)
	env := extcmd.Environ() // dynia-pull's, without NOTIFY_SOCKET
	for k, v := range rel.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range sec.Env {
		env = append(env, k+"="+v)
	}
	for k, v := range appEnv(p.node, rel, addr) {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // outlives dynia-pull, like haproxy
	out, closeOut := p.output()
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Start()
	closeOut()
	if err != nil {
		p.mu.Unlock()
		return appInstance{}, &appFailure{Reason: fmt.Sprintf("start %s: %v", p.argv[0], err), Retry: true}
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap it whenever it ends
	tick, _ := procstat.StartTime(pid)
	now := time.Now().UTC()
	rec := procRecord{Release: rel.Number, Image: rel.Image, Addr: addr.String(), PID: pid, Tick: tick, Since: now}
	b, _ := json.Marshal(rec)
	// The record lets a restarted dynia-pull adopt this instance; without it
	// the instance still serves, and a restart starts a new one.
	err = os.MkdirAll(p.dir, 0o700)
	if err == nil {
		err = writeFileAtomic(filepath.Join(p.dir, fmt.Sprintf("r%d.json", rel.Number)), b, 0o600)
	}
	if err != nil {
		p.log.Warn("app: recording the instance failed; a restart will not adopt it", "release", rel.Number, "err", err)
	}
	p.mu.Unlock()
	inst := appInstance{Release: rel.Number, Image: rel.Image, Addr: addr, ID: fmt.Sprint(pid), Since: now}

	deadline := time.Now().Add(rel.HealthTimeout())
	for {
		if probeHealth(ctx, addr, rel.HealthPath) {
			return inst, nil
		}
		select {
		case werr := <-exited:
			p.forget(rel.Number)
			return appInstance{}, &appFailure{Reason: fmt.Sprintf("exited before it was healthy: %v", werr), Logs: p.tail(20)}
		case <-ctx.Done():
			_ = p.Stop(context.WithoutCancel(ctx), inst)
			return appInstance{}, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.Stop(context.WithoutCancel(ctx), inst)
			return appInstance{}, &appFailure{Reason: fmt.Sprintf("no 200 from %s%s after %v", addr, rel.HealthPath, rel.HealthTimeout()), Logs: p.tail(20)}
		}
	}
}

// output is where instances write: the app log in the log dir, appended.
func (p *processApp) output() (*os.File, func()) {
	if p.logDir == "" {
		return os.Stderr, func() {}
	}
	if err := os.MkdirAll(p.logDir, 0o750); err != nil {
		return os.Stderr, func() {}
	}
	f, err := os.OpenFile(filepath.Join(p.logDir, report.LogApp+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return os.Stderr, func() {}
	}
	return f, func() { f.Close() } // the child has its own descriptor
}

// tail is the app log's last n lines (the failed instance's among them).
func (p *processApp) tail(n int) []string {
	if p.logDir == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(p.logDir, report.LogApp+".log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil
	}
	b, err := readTail(f, st.Size(), 16<<10)
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func (p *processApp) forget(release int64) {
	_ = os.Remove(filepath.Join(p.dir, fmt.Sprintf("r%d.json", release)))
}

// Stop sends SIGTERM to the instance's process group, SIGKILL after the
// grace; only a pid whose start time matches the record is signalled.
func (p *processApp) Stop(ctx context.Context, inst appInstance) error {
	p.mu.Lock()
	var rec *procRecord
	for _, r := range p.records() {
		if r.Release == inst.Release && fmt.Sprint(r.PID) == inst.ID {
			rec = &r
		}
	}
	p.mu.Unlock()
	if rec == nil {
		return nil // gone already
	}
	_ = syscall.Kill(-rec.PID, syscall.SIGTERM)
	deadline := time.Now().Add(appStopGrace)
	for procstat.Alive(rec.PID, rec.Tick) && time.Now().Before(deadline) {
		_ = poll.Sleep(ctx, 100*time.Millisecond)
	}
	if procstat.Alive(rec.PID, rec.Tick) {
		_ = syscall.Kill(-rec.PID, syscall.SIGKILL)
	}
	p.forget(rec.Release)
	return nil
}

func (p *processApp) Healthy(ctx context.Context, inst appInstance, path string) bool {
	return probeHealth(ctx, inst.Addr, path)
}

// GC has nothing to collect: stopped processes leave only their records,
// removed as they are found dead.
func (p *processApp) GC(context.Context, []cluster.Release) error { return nil }

// freePort asks the kernel for a free port on ip.
func freePort(ip netip.Addr) (uint16, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return 0, err
	}
	defer func() { _ = ln.Close() }()
	return uint16(ln.Addr().(*net.TCPAddr).Port), nil
}

// probeHealth is one GET of addr+path; 200 is healthy.
func probeHealth(ctx context.Context, addr netip.AddrPort, path string) bool {
	if !addr.IsValid() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+path, nil)
	if err != nil {
		return false
	}
	resp, err := healthClient.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// healthClient never reuses connections: a probe must reach the instance
// as a new client would.
var healthClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
