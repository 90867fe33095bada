package pull

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/render"
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

// dumpServerState writes `show servers state` to the server-state-file that
// the next worker loads, so drain and health survive the reload.
func dumpServerState(ctx context.Context, statsSock, path string) error {
	out, err := socketCmd(ctx, statsSock, "show servers state")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(out), 0o600)
}

// BackendStatus is one server as this node's HAProxy sees it.
type BackendStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"` // UP, DOWN, DRAIN or MAINT
}

// showBackends reads `show stat` and maps every app server to a status.
func showBackends(ctx context.Context, statsSock string) ([]BackendStatus, error) {
	out, err := socketCmd(ctx, statsSock, "show stat")
	if err != nil {
		return nil, err
	}
	return parseStat(out)
}

func parseStat(out string) ([]BackendStatus, error) {
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
	var res []BackendStatus
	for _, row := range rows[1:] {
		if len(row) <= sti || len(row) <= wi || row[pi] != render.BackendName || row[si] == "BACKEND" {
			continue
		}
		res = append(res, BackendStatus{ID: row[si], Status: mapStatus(row[sti], row[wi])})
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
