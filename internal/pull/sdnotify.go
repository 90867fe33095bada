package pull

import (
	"errors"
	"log/slog"
	"strconv"

	"github.com/coreos/go-systemd/v22/daemon"
)

// systemd readiness. dynia-pull.service is Type=notify: `systemctl start`
// returns once dynia-pull sends READY=1 on $NOTIFY_SOCKET (sd_notify(3),
// https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html).
// The daemon is ready when its first poll-and-apply attempt has finished
// (Daemon.Run): the state's config is installed and HAProxy and keepalived
// were reloaded (or started, in supervise mode), or the attempt failed and
// the node serves its last good config (or, on a fresh node with none on
// disk, has no config yet); STATUS= says which. STOPPING=1 is
// sent when shutdown begins. Without $NOTIFY_SOCKET (not under systemd,
// tests) nothing is sent.

// notifyFunc sends one sd_notify message (newline-separated VAR=value
// assignments).
type notifyFunc func(state string)

// sdNotify returns the notifyFunc that writes to $NOTIFY_SOCKET, read at
// each call. A failed send is logged: systemd then times the start out
// (TimeoutStartSec), which the log line explains.
func sdNotify(log *slog.Logger) notifyFunc {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Warn("sd_notify", "state", state, "err", err)
		}
	}
}

// readyState is the READY=1 message for the first apply attempt's outcome.
// haveConfig says whether a haproxy.cfg is on disk: a failed first attempt
// serves the last good config only if there is one (not on a fresh node).
func readyState(gen int64, err error, haveConfig bool) string {
	msg := daemon.SdNotifyReady + "\nSTATUS="
	var ae *ApplyError
	reason := ""
	if errors.As(err, &ae) {
		reason = " (" + ae.Reason + ")"
	}
	switch {
	case err == nil && gen > 0:
		return msg + "serving generation " + strconv.FormatInt(gen, 10)
	case err == nil:
		return msg + "serving; no state applied yet"
	case !haveConfig:
		return msg + "no config yet" + reason
	default:
		return msg + "serving the last good config; state not applied" + reason
	}
}
