package pull

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/render"
	"github.com/dynia/dynia/internal/report"
)

// socketCmd sends one command to an HAProxy CLI socket (admin or master)
// and returns the whole answer.
func socketCmd(ctx context.Context, path, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("haproxy socket %s: %w", path, err)
	}
	defer func() { _ = c.Close() }() // the answer is read; nothing to learn from Close
	if dl, ok := ctx.Deadline(); ok {
		// Without a deadline a silent HAProxy would block ReadAll forever.
		if err := c.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("haproxy socket %s: set deadline: %w", path, err)
		}
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy socket %s: send %q: %w", path, cmd, err)
	}
	// The master CLI answers and closes only once our side is shut.
	// If CloseWrite fails the peer has already gone, which ReadAll sees too.
	if uc, ok := c.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return string(b), fmt.Errorf("haproxy socket %s: read answer to %q: %w", path, cmd, err)
	}
	return string(b), nil
}

var masterReloadsRE = regexp.MustCompile(`(?m)^\d+\s+master\s+(\d+)`)

// masterReloads returns the master's reload counter from `show proc`.
func masterReloads(ctx context.Context, masterSock string) (int, error) {
	out, err := socketCmd(ctx, masterSock, "show proc")
	if err != nil {
		return 0, err
	}
	m := masterReloadsRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("haproxy show proc: no master line in %q", out)
	}
	return strconv.Atoi(m[1])
}

// reloadHAProxy asks the master to reload and waits until its reload
// counter moves, so the new worker is serving when it returns.
func reloadHAProxy(ctx context.Context, masterSock string) error {
	before, err := masterReloads(ctx, masterSock)
	if err != nil {
		return err
	}
	// The master re-executes itself and closes the connection; the answer is empty.
	if _, err := socketCmd(ctx, masterSock, "reload"); err != nil {
		return fmt.Errorf("haproxy reload: %w", err)
	}
	deadline := time.Now().Add(toolTimeout)
	for {
		n, err := masterReloads(ctx, masterSock)
		if err == nil && n > before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("haproxy reload: master did not report a reload within %v (last error: %v)", toolTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// setServerStates puts every backend server in the running worker into its
// desired admin state (drain or ready), so a drain acts before the reload.
// Servers the worker does not know yet are skipped.
func setServerStates(ctx context.Context, statsSock string, backends []render.Backend) error {
	for _, b := range backends {
		state := "ready"
		if b.Draining {
			state = "drain"
		}
		out, err := socketCmd(ctx, statsSock, fmt.Sprintf("set server %s/%s state %s", render.BackendName, b.ID, state))
		if err != nil {
			return err
		}
		if out = strings.TrimSpace(out); out != "" && !strings.Contains(out, "No such server") {
			return fmt.Errorf("haproxy set server %s state %s: %s", b.ID, state, out)
		}
	}
	return nil
}

// saveServerState writes the server-state-file that the next HAProxy loads
// (the worker of the coming reload, or one started cold), so drain and
// health states survive: `show servers state` from the running worker, or,
// when none answers, the file as it is. Only servers that newCfg (the
// haproxy.cfg about to be installed) has in the same backend with the same
// address and port are kept: HAProxy applies a saved address and port over
// the configured ones (haproxy/haproxy#985), so carrying a server whose
// app_port or private IP changed would pin the old one, across reloads and
// cold starts alike.
func saveServerState(ctx context.Context, statsSock, path string, newCfg []byte) error {
	out, err := socketCmd(ctx, statsSock, "show servers state")
	if err != nil {
		b, rerr := os.ReadFile(path)
		if errors.Is(rerr, fs.ErrNotExist) {
			return nil // nothing running, nothing saved: nothing to carry
		}
		if rerr != nil {
			return fmt.Errorf("server state: %w", rerr)
		}
		out = string(b)
	}
	_, servers := configServers(newCfg)
	return writeFileAtomic(path, filterServerState([]byte(out), servers), 0o600)
}

// pruneServerState removes from the server-state-file named in the
// haproxy.cfg at cfgPath every server that config does not have with the
// same address and port, before HAProxy starts cold from that config. The
// file is kept consistent when configs are installed (saveServerState);
// this also covers a file left by an older dynia-pull.
func pruneServerState(cfgPath string) error {
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		return fmt.Errorf("prune server state: %w", err)
	}
	path, servers := configServers(cfg)
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("prune server state: %w", err)
	}
	pruned := filterServerState(b, servers)
	if bytes.Equal(pruned, b) {
		return nil
	}
	return writeFileAtomic(path, pruned, 0o600)
}

// serverKey names a server: its backend and its name.
type serverKey struct{ backend, server string }

// configServers reads an haproxy.cfg: the global server-state-file and the
// address:port of every `server` line, by backend and name.
func configServers(cfg []byte) (stateFile string, servers map[serverKey]string) {
	servers = map[serverKey]string{}
	section, name := "", ""
	for _, line := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist", "program", "mailers", "cache", "http-errors", "ring":
			section, name = f[0], ""
			if len(f) > 1 {
				name = f[1]
			}
			continue
		}
		switch {
		case section == "global" && f[0] == "server-state-file" && len(f) > 1:
			stateFile = f[1]
		case (section == "backend" || section == "listen") && f[0] == "server" && len(f) > 2:
			servers[serverKey{name, f[1]}] = f[2]
		}
	}
	return stateFile, servers
}

// filterServerState keeps the lines of a `show servers state` dump whose
// server is in servers with the same address and port, and the version and
// header lines. A dump whose header lacks the columns needed to tell keeps
// no server at all: carrying nothing only costs the saved states, carrying
// a stale address costs the traffic.
func filterServerState(dump []byte, servers map[serverKey]string) []byte {
	var out bytes.Buffer
	col := map[string]int{}
	for _, line := range strings.Split(string(dump), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			continue
		case strings.HasPrefix(trimmed, "#"):
			for i, name := range strings.Fields(strings.TrimPrefix(trimmed, "#")) {
				col[name] = i
			}
			out.WriteString(line + "\n")
			continue
		case len(col) == 0:
			if _, err := strconv.Atoi(trimmed); err == nil {
				out.WriteString(line + "\n") // the version line, before the header
			}
			continue
		}
		f := strings.Fields(trimmed)
		get := func(name string) (string, bool) {
			i, ok := col[name]
			if !ok || i >= len(f) {
				return "", false
			}
			return f[i], true
		}
		be, ok1 := get("be_name")
		srv, ok2 := get("srv_name")
		addr, ok3 := get("srv_addr")
		port, ok4 := get("srv_port")
		if !ok1 || !ok2 || !ok3 || !ok4 {
			continue
		}
		if want, ok := servers[serverKey{be, srv}]; ok && want == net.JoinHostPort(addr, port) {
			out.WriteString(line + "\n")
		}
	}
	return out.Bytes()
}

// showBackends reads `show stat` and maps every app server to a status.
func showBackends(ctx context.Context, statsSock string) ([]report.BackendStatus, error) {
	out, err := socketCmd(ctx, statsSock, "show stat")
	if err != nil {
		return nil, err
	}
	return parseStat(out)
}

func parseStat(out string) ([]report.BackendStatus, error) {
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("haproxy show stat: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("haproxy show stat: empty answer")
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	pi, si, sti, wi := col["pxname"], col["svname"], col["status"], col["weight"]
	var res []report.BackendStatus
	for _, row := range rows[1:] {
		if len(row) <= sti || len(row) <= wi || row[pi] != render.BackendName || row[si] == "BACKEND" {
			continue
		}
		res = append(res, report.BackendStatus{ID: row[si], Status: mapStatus(row[sti], row[wi])})
	}
	return res, nil
}

func mapStatus(status, weight string) string {
	switch {
	case strings.HasPrefix(status, "MAINT"):
		return "MAINT"
	case strings.HasPrefix(status, "DRAIN"), strings.HasPrefix(status, "NOLB"):
		return "DRAIN"
	case strings.HasPrefix(status, "DOWN"):
		return "DOWN"
	case weight == "0":
		return "DRAIN"
	default: // UP, "UP 1/2", "no check"
		return "UP"
	}
}

// oldWorkerPIDs lists the workers the master shows under "# old workers"
// in `show proc`: workers a reload replaced that still serve the
// connections they had.
func oldWorkerPIDs(ctx context.Context, masterSock string) ([]int, error) {
	out, err := socketCmd(ctx, masterSock, "show proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	old := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "#") {
			old = strings.TrimSpace(line) == "# old workers"
			continue
		}
		if f := strings.Fields(line); old && len(f) > 1 && f[1] == "worker" {
			if pid, err := strconv.Atoi(f[0]); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids, nil
}
