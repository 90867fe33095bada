package pull

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// VRRP states reported in Status.VRRPState.
const (
	VRRPMaster  = "MASTER"
	VRRPBackup  = "BACKUP"
	VRRPFault   = "FAULT"
	VRRPUnknown = "UNKNOWN"
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
	go func() {
		<-ctx.Done()
		f.Close()
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
	return fmt.Errorf("read notify fifo: %w", sc.Err())
}

func parseNotify(line string) (string, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "INSTANCE" {
		return "", false
	}
	switch f[2] {
	case VRRPMaster, VRRPBackup, VRRPFault:
		return f[2], true
	case "STOP":
		return VRRPUnknown, true
	}
	return "", false
}
