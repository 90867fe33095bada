package report

import (
	"bytes"
	"path/filepath"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// Log tail bounds.
const (
	// LogTailBytes bounds one uploaded tail (and the in-memory ring of
	// dynia-pull's own lines).
	LogTailBytes = 64 << 10
)

// Log components a node uploads.
const (
	LogPull       = "pull"
	LogHAProxy    = "haproxy"
	LogKeepalived = "keepalived"
	LogCloudInit  = "cloud-init"
	LogApp        = "app"
)

// LogComponents are the components `dynia node logs --component` takes.
var LogComponents = []string{LogPull, LogHAProxy, LogKeepalived, LogCloudInit, LogApp}

// LogKey is where a node's tail of component lives in the bucket.
func LogKey(clusterName, nodeID, component string) string {
	return filepath.Dir(cluster.StatusKey(clusterName, nodeID)) + "/logs/" + component + ".log"
}

// LogHeaderPrefix starts the first line of an uploaded tail; the rest of
// the line names the node, the component and the upload time (RFC 3339).
const LogHeaderPrefix = "# dynia-pull log tail:"

// ParseLogTail splits an uploaded tail into its header fields and lines.
func ParseLogTail(b []byte) (uploaded time.Time, body []byte) {
	line, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte(LogHeaderPrefix)) {
		return time.Time{}, b
	}
	for _, f := range strings.Fields(string(line)) {
		if v, ok := strings.CutPrefix(f, "uploaded="); ok {
			uploaded, _ = time.Parse(time.RFC3339, v)
		}
	}
	return uploaded, rest
}
