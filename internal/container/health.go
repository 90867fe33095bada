package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/dynia/dynia/internal/poll"
)

// Log bounds: Logs returns at most MaxLogLines lines, each cut to
// MaxLogLineBytes, from the last maxLogBytes of at most 4 × maxLogBytes
// read from Docker's answer.
const (
	MaxLogLines     = 1000
	MaxLogLineBytes = 1024
	maxLogBytes     = 256 << 10
	// FailureLogLines is how many log lines an UnhealthyError carries.
	FailureLogLines = 20
)

// Logs returns the last n lines (1 ≤ n ≤ MaxLogLines; n ≤ 0 means 50) the
// container wrote to stdout and stderr, oldest first, each cut to
// MaxLogLineBytes.
func (r *Runtime) Logs(ctx context.Context, inst Instance, n int) ([]string, error) {
	if err := r.ready(ctx); err != nil {
		return nil, err
	}
	if n <= 0 {
		n = 50
	}
	if n > MaxLogLines {
		n = MaxLogLines
	}
	rc, err := r.cli.ContainerLogs(ctx, inst.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n)})
	if err != nil {
		return nil, fmt.Errorf("logs of %s: %w", inst.Name, err)
	}
	defer rc.Close()
	buf := &tailBuffer{max: maxLogBytes}
	// Not a TTY, so the stream is multiplexed; both streams into one
	// buffer keeps their order.
	if _, err := stdcopy.StdCopy(buf, buf, io.LimitReader(rc, 4*maxLogBytes)); err != nil {
		return nil, fmt.Errorf("logs of %s: %w", inst.Name, err)
	}
	return splitLines(buf.Bytes(), n), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.buf }

// splitLines returns the last n lines of b, each cut to MaxLogLineBytes.
func splitLines(b []byte, n int) []string {
	b = bytes.TrimRight(b, "\n")
	if len(b) == 0 {
		return nil
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		l = strings.TrimRight(l, "\r")
		if len(l) > MaxLogLineBytes {
			l = l[:MaxLogLineBytes] + "…"
		}
		lines[i] = l
	}
	return lines
}

// UnhealthyError is WaitHealthy's failure: why, and what the app said.
type UnhealthyError struct {
	Container string   // container name
	URL       string   // the health URL polled
	Reason    string   // one line: "exited with status 3", "no 200 after 1m0s (last: 500 Internal Server Error)"
	Exited    bool     // the container exited (or was restarted by its policy)
	ExitCode  int      // when Exited; -1: restarted before its status was seen
	OOMKilled bool     // when Exited: the memory limit killed it
	Logs      []string // its last FailureLogLines log lines, oldest first
}

func (e *UnhealthyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "container %s not healthy at %s: %s", e.Container, e.URL, e.Reason)
	if len(e.Logs) > 0 {
		b.WriteString("; last log lines: ")
		for i, l := range e.Logs {
			if i > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(l)
		}
	}
	return b.String()
}

// WaitHealthy polls http://<inst.HostAddr><path> until it answers 200,
// for at most timeout (and while ctx lives). It fails with an
// *UnhealthyError carrying the container's last log lines when the
// container exits or is restarted by its policy (a crash), or when no 200
// came in time. Poll interval: 100 ms growing to 1 s; each request times
// out after the health client's timeout (2 s by default).
func (r *Runtime) WaitHealthy(ctx context.Context, inst Instance, path string, timeout time.Duration) error {
	if !strings.HasPrefix(path, "/") {
		return invalid("health path %q: want an absolute path (/healthz)", path)
	}
	if !inst.HostAddr.IsValid() {
		return invalid("container %s: no published address", inst.Name)
	}
	if err := r.ready(ctx); err != nil {
		return err
	}
	url := "http://" + inst.HostAddr.String() + path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fail := func(reason string, st Instance, exited bool) error {
		e := &UnhealthyError{Container: inst.Name, URL: url, Reason: reason, Exited: exited}
		if exited {
			e.ExitCode, e.OOMKilled = st.ExitCode, st.OOMKilled
		}
		// The caller's ctx may be spent; the logs are the point of the error.
		lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer lcancel()
		if logs, err := r.Logs(lctx, inst, FailureLogLines); err == nil {
			e.Logs = logs
		} else {
			e.Logs = []string{"(logs unavailable: " + err.Error() + ")"}
		}
		r.log.Warn("release container not healthy", "container", inst.Name, "reason", reason)
		return e
	}
	last := "no answer yet"
	err := poll.UntilBackoff(ctx, 100*time.Millisecond, time.Second, func() error {
		st, err := r.inspect(ctx, inst.ID)
		if err != nil && ctx.Err() == nil {
			return poll.Stop(fmt.Errorf("wait for %s to be healthy: %w", inst.Name, err))
		}
		if err != nil {
			return errNotHealthy // ctx is done: the wait ends below
		}
		switch {
		case st.RestartCount > inst.RestartCount && st.State == "running" && st.ExitCode == 0:
			// Docker clears the exit code when the policy starts the
			// container again: a poll that came after the restart (a
			// busy machine) cannot see how it ended.
			st.ExitCode = -1
			return poll.Stop(fail(fmt.Sprintf("crashed and was restarted %d times (its exit status was gone by the time it was seen)%s", st.RestartCount-inst.RestartCount, oom(st)), st, true))
		case st.RestartCount > inst.RestartCount:
			return poll.Stop(fail(fmt.Sprintf("exited with status %d and was restarted %d times%s", st.ExitCode, st.RestartCount-inst.RestartCount, oom(st)), st, true))
		case st.State != "running":
			return poll.Stop(fail(fmt.Sprintf("%s with status %d%s", st.State, st.ExitCode, oom(st)), st, true))
		}
		code, err := r.probe(ctx, url)
		if err == nil && code == http.StatusOK {
			r.log.Info("release container healthy", "container", inst.Name, "url", url)
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = strconv.Itoa(code) + " " + http.StatusText(code)
		}
		return errNotHealthy
	})
	if errors.Is(err, errNotHealthy) {
		return fail(fmt.Sprintf("no 200 after %v (last: %s)", timeout, last), Instance{}, false)
	}
	return err
}

// errNotHealthy is WaitHealthy's condition not holding yet.
var errNotHealthy = errors.New("not healthy yet")

func oom(st Instance) string {
	if st.OOMKilled {
		return " (killed by the memory limit)"
	}
	return ""
}

// probe is one GET; the body is drained (bounded) and dropped.
func (r *Runtime) probe(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := r.health.Do(req)
	if err != nil {
		var ue interface{ Timeout() bool }
		if errors.As(err, &ue) && ue.Timeout() {
			return 0, errors.New("timeout")
		}
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse nothing; just drain
	return resp.StatusCode, nil
}
