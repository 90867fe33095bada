package pull

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/dynia/dynia/internal/report"
	"github.com/dynia/dynia/internal/testutil"
)

// lineLog collects log records' messages and attributes, those at level
// or above (all with a nil level).
type lineLog struct {
	level slog.Leveler
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Enabled(_ context.Context, lv slog.Level) bool {
	return l.level == nil || lv >= l.level.Level()
}
func (l *lineLog) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	l.lines = append(l.lines, b.String())
	return nil
}
func (l *lineLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lineLog) WithGroup(string) slog.Handler      { return l }
func (l *lineLog) count() int                         { l.mu.Lock(); defer l.mu.Unlock(); return len(l.lines) }
func (l *lineLog) line(i int) string                  { l.mu.Lock(); defer l.mu.Unlock(); return l.lines[i] }
func (l *lineLog) all() []string                      { l.mu.Lock(); defer l.mu.Unlock(); return slices.Clone(l.lines) }

// TestNotifyLoopStopsWhileWaiting: a fifo that cannot be opened is logged
// and retried after a wait, and that wait ends when the context does (a
// retry an hour away must not hold up shutdown).
func TestNotifyLoopStopsWhileWaiting(t *testing.T) {
	t.Parallel()
	h := &lineLog{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	missing := filepath.Join(t.TempDir(), "no-such-dir", "notify.fifo")
	go func() {
		defer close(done)
		notifyLoop(ctx, slog.New(h), missing, func(string) {}, time.Hour)
	}()
	testutil.WaitFor(t, 30*time.Second, func() error {
		if h.count() == 0 {
			return errors.New("no error logged yet")
		}
		return nil
	})
	if got := h.line(0); !strings.Contains(got, "notify fifo") || !strings.Contains(got, "no such file") {
		t.Errorf("logged %q, want the open error", got)
	}
	cancel()
	testutil.WaitClosed(t, 30*time.Second, done, "notifyLoop still waiting to retry after its context ended")
	if n := h.count(); n != 1 {
		t.Errorf("%d errors logged, want 1 (no retry before the hour)", n)
	}
}

// TestReadFIFOReadErrorLeavesNothing: when the read fails (here: end of
// file on a file that is not a fifo) readFIFO returns the error, closes
// the file and leaves no goroutine waiting for the context, which stays
// alive across the retries of notifyLoop. Not parallel: goleak looks at
// every goroutine.
func TestReadFIFOReadErrorLeavesNothing(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	path := filepath.Join(t.TempDir(), "notify.fifo")
	if err := os.WriteFile(path, []byte("INSTANCE \"dynia\" MASTER 150\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := readFIFO(t.Context(), path, func(s string) { got = append(got, s) })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("readFIFO: %v, want unexpected EOF", err)
	}
	if len(got) != 1 || got[0] != report.VRRPMaster {
		t.Errorf("states %q, want [MASTER]", got)
	}
}
