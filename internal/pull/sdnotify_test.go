package pull

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/testutil"
)

// longWait bounds waits for what a loaded machine does in well under a
// second.
const longWait = time.Minute

// gatedStore holds the first Get until release is closed, saying on
// entered that it got there.
type gatedStore struct {
	*memStore
	once    sync.Once
	entered chan struct{}
	release chan struct{}
}

func (g *gatedStore) Get(ctx context.Context, key, ifNoneMatch string) (*bucket.Object, error) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.entered)
		select {
		case <-g.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return g.memStore.Get(ctx, key, ifNoneMatch)
}

// listenNotify is a unixgram socket standing in for systemd's
// $NOTIFY_SOCKET.
func listenNotify(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return c
}

// readNotify returns the next datagram, or "" when none arrives by deadline.
func readNotify(t *testing.T, c *net.UnixConn, deadline time.Time) string {
	t.Helper()
	if err := c.SetReadDeadline(deadline); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

// TestReadyAfterFirstApply: with $NOTIFY_SOCKET set, Run sends nothing
// while its first poll is in flight, READY=1 (with the applied generation
// in STATUS=) once that first apply finished, and STOPPING=1 at shutdown.
// Not parallel: it sets NOTIFY_SOCKET for the process.
func TestReadyAfterFirstApply(t *testing.T) {
	sock := listenNotify(t)
	d, m, _, _ := newRecordingDaemon(t)
	g := &gatedStore{memStore: m, entered: make(chan struct{}), release: make(chan struct{})}
	d.store = g
	putState(t, m, testState(3, 2))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	select {
	case <-g.entered:
	case <-time.After(longWait):
		t.Fatal("the first poll never reached the store")
	}
	// The first Step is blocked in its poll: READY=1 cannot be due yet.
	if got := readNotify(t, sock, time.Now()); got != "" {
		t.Fatalf("sent %q before the first apply", got)
	}
	close(g.release)
	got := readNotify(t, sock, time.Now().Add(longWait))
	if want := "READY=1\nSTATUS=serving generation 3"; got != want {
		t.Fatalf("first notification %q, want %q", got, want)
	}
	if st := d.appliedState(); st == nil || st.Generation != 3 {
		t.Fatalf("READY=1 sent with applied state %v, want generation 3 applied", st)
	}
	if s := d.rep.snapshot(); s.AppliedGeneration != 3 {
		t.Fatalf("READY=1 sent while the report says generation %d", s.AppliedGeneration)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := readNotify(t, sock, time.Now().Add(longWait)); got != "STOPPING=1" {
		t.Fatalf("notification at shutdown %q, want STOPPING=1", got)
	}
}

// TestReadyWhenFirstApplyFails: a first apply that fails still ends the
// start, and STATUS= says why: a node with a config on disk serves it (the
// last good one); a fresh node with none says it has no config yet.
func TestReadyWhenFirstApplyFails(t *testing.T) {
	for _, tc := range []struct {
		name       string
		haveConfig bool
		want       string
	}{
		{"fresh node", false, "READY=1\nSTATUS=no config yet (decode)"},
		{"last good config on disk", true, "READY=1\nSTATUS=serving the last good config; state not applied (decode)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := listenNotify(t)
			d, m, set, _ := newRecordingDaemon(t)
			if tc.haveConfig {
				if err := os.MkdirAll(filepath.Dir(set.HAProxyConfig), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(set.HAProxyConfig, []byte("# the last good config\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := m.Put(context.Background(), cluster.StateKey("shop"), []byte("{not json"), bucket.Cond{}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- d.Run(ctx) }()
			if got := readNotify(t, sock, time.Now().Add(longWait)); got != tc.want {
				t.Errorf("first notification %q, want %q", got, tc.want)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

// TestNoNotifySocket: without $NOTIFY_SOCKET, Run applies and stops as
// before (nothing to send to, nothing logged as failing).
func TestNoNotifySocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := os.Unsetenv("NOTIFY_SOCKET"); err != nil {
		t.Fatal(err)
	}
	d, m, _, _ := newRecordingDaemon(t)
	log := &lineLog{}
	d.notify = sdNotify(slog.New(log))
	putState(t, m, testState(1, 2))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	testutil.WaitFor(t, longWait, func() error {
		if st := d.appliedState(); st == nil || st.Generation != 1 {
			return errors.New("first state not applied")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, l := range log.all() {
		if strings.Contains(l, "sd_notify") {
			t.Errorf("logged %q without a NOTIFY_SOCKET", l)
		}
	}
}
