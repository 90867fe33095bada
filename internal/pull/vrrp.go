package pull

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/poll"
	"github.com/dynia/dynia/internal/report"
)

// ensureFIFO makes path a fifo (mode 0600) for keepalived's notify_fifo.
func ensureFIFO(path string) error {
	st, err := os.Lstat(path)
	if err == nil && st.Mode()&fs.ModeNamedPipe != 0 {
		return nil
	}
	if err == nil {
		// A stale regular file or socket. If it stays, Mkfifo below would
		// fail with EEXIST, which is ignored, and keepalived would write
		// into the wrong kind of file.
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale notify fifo %s: %w", path, err)
		}
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create notify fifo %s: %w", path, err)
	}
	return nil
}

// readFIFO delivers the VRRP states keepalived writes to its notify fifo,
// in order, until ctx ends. Lines look like `INSTANCE "dynia" MASTER 150`.
// The fifo is opened read-write so a restarting keepalived never makes the
// reader see end-of-file.
func readFIFO(ctx context.Context, path string, onState func(string)) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open notify fifo: %w", err)
	}
	// Closing f is what ends the blocked read when ctx ends; on a read
	// error it is closed here, leaving no goroutine or descriptor behind
	// for each retry.
	stop := context.AfterFunc(ctx, func() { _ = f.Close() }) // a read-only fifo: nothing to flush
	defer func() {
		if stop() {
			_ = f.Close() // nothing was written; the read error is the one to report
		}
	}()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if st, ok := parseNotify(sc.Text()); ok {
			onState(st)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	err = sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF // not a fifo opened read-write: a writer closed it
	}
	return fmt.Errorf("read notify fifo: %w", err)
}

// notifyLoop runs readFIFO until ctx ends, retrying after retry when the
// fifo cannot be opened or read; the wait ends with ctx.
func notifyLoop(ctx context.Context, log *slog.Logger, path string, onState func(string), retry time.Duration) {
	for ctx.Err() == nil {
		if err := readFIFO(ctx, path, onState); err != nil {
			log.Error("notify fifo", "err", err)
			if poll.Sleep(ctx, retry) != nil {
				return
			}
		}
	}
}

func parseNotify(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "INSTANCE" {
		return "", false
	}
	switch f[2] {
	case report.VRRPMaster, report.VRRPBackup, report.VRRPFault:
		return f[2], true
	case "STOP":
		return report.VRRPUnknown, true
	}
	return "", false
}
