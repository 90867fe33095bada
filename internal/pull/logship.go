package pull

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/report"
)

// Log tails reach the operator without SSH: dynia-pull uploads a bounded,
// redacted tail of each component's log to
// clusters/<name>/nodes/<id>/logs/<component>.log, which `dynia node logs`
// reads. It uploads at start (so a node that never serves still says why,
// once cloud-init got as far as dynia-pull), at once when the node's
// last_error changes, and otherwise every logShipEvery when a tail
// changed. A component not uploaded yet (its log was still empty, or the
// upload failed) is tried again every few seconds until it is. Spaces limits writes per object, so one object is written at
// most once per logMinGap.
const (
	logShipEvery = 10 * time.Minute
	logMinGap    = time.Minute
	// logRotateBytes bounds the daemons' log files on disk: past it the
	// file's tail is kept in <file>.1 and the file is truncated (the
	// daemons append, so truncating in place is safe).
	logRotateBytes = 8 << 20
)

// Ring keeps the last report.LogTailBytes of complete lines written to it: the
// logger writes dynia-pull's own lines through it.
type Ring struct {
	mu  sync.Mutex
	buf []byte
	gen int // bumped on every write, so the shipper knows it changed
}

// NewRing returns an empty ring.
func NewRing() *Ring { return &Ring{} }

// Write appends p, dropping the oldest whole lines past report.LogTailBytes.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if over := len(r.buf) - report.LogTailBytes; over > 0 {
		cut := over
		if i := bytes.IndexByte(r.buf[over:], '\n'); i >= 0 {
			cut = over + i + 1
		}
		r.buf = append([]byte(nil), r.buf[cut:]...)
	}
	r.gen++
	return len(p), nil
}

func (r *Ring) snapshot() ([]byte, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]byte(nil), r.buf...), r.gen
}

// logSource is one component's log: a ring or a file.
type logSource struct {
	name string
	ring *Ring
	path string
}

func (s logSource) tail() ([]byte, string, error) {
	if s.ring != nil {
		b, gen := s.ring.snapshot()
		return b, fmt.Sprint(gen), nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	b, err := readTail(f, st.Size(), report.LogTailBytes)
	return b, fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano()), err
}

// readTail reads the last n bytes of f (of size size), from a line start.
func readTail(f io.ReaderAt, size int64, n int) ([]byte, error) {
	off := max(size-int64(n), 0)
	b := make([]byte, size-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}

// shipper uploads log tails.
type shipper struct {
	d       *Daemon
	sources []logSource
	// secrets are redacted from every line (the node token, the Spaces
	// key): read when a tail is uploaded, so a rotated file is covered.
	secrets func() []string
	last    map[string]string    // component → tail version uploaded
	at      map[string]time.Time // component → upload time
}

// Patterns redacted whatever the node knows: DO tokens, bearer headers,
// and key/secret/password values in key=value or JSON form.
var redactREs = []*regexp.Regexp{
	regexp.MustCompile(`do[op]_v1_[0-9a-fA-F]{16,}`),
	regexp.MustCompile(`(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}`),
	regexp.MustCompile(`(?i)((?:secret|password|passwd|token|private_key)[A-Za-z_]*"?\s*[:=]\s*"?)[^"\s,}]{4,}`),
}

// Redact removes secrets from a log text.
func Redact(b []byte, secrets []string) []byte {
	for _, s := range secrets {
		if len(s) >= 6 {
			b = bytes.ReplaceAll(b, []byte(s), []byte("[redacted]"))
		}
	}
	for i, re := range redactREs {
		if i == 0 {
			b = re.ReplaceAll(b, []byte("[redacted]"))
			continue
		}
		b = re.ReplaceAll(b, []byte("${1}[redacted]"))
	}
	return b
}

// shipMode says which components ship uploads.
type shipMode int

const (
	shipAll     shipMode = iota // every component with lines
	shipChanged                 // those whose tail changed since uploaded
	shipPending                 // those never uploaded yet
)

// ship uploads the components mode selects, at most once per logMinGap per
// object.
func (s *shipper) ship(ctx context.Context, mode shipMode) {
	set, store := s.d.current()
	now := time.Now()
	var secrets []string
	if s.secrets != nil {
		secrets = s.secrets()
	}
	for _, src := range s.sources {
		b, version, err := src.tail()
		if err != nil || len(b) == 0 {
			continue // not there (yet): nothing to say
		}
		if mode == shipChanged && version == s.last[src.name] {
			continue
		}
		if mode == shipPending && !s.at[src.name].IsZero() {
			continue
		}
		if now.Sub(s.at[src.name]) < logMinGap {
			continue
		}
		var out bytes.Buffer
		fmt.Fprintf(&out, "%s node=%s component=%s uploaded=%s\n", report.LogHeaderPrefix, set.NodeID, src.name, now.UTC().Format(time.RFC3339))
		out.Write(Redact(b, secrets))
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = store.Put(pctx, report.LogKey(set.Cluster, set.NodeID, src.name), out.Bytes(), bucket.Cond{})
		cancel()
		if err != nil {
			s.d.log.Warn("upload log tail", "component", src.name, "err", err)
			continue
		}
		s.last[src.name], s.at[src.name] = version, now
	}
}

// rotate keeps the daemons' log files bounded.
func (s *shipper) rotate() {
	for _, src := range s.sources {
		if src.path == "" || src.name == report.LogCloudInit {
			continue // cloud-init's log is the system's
		}
		st, err := os.Stat(src.path)
		if err != nil || st.Size() < logRotateBytes {
			continue
		}
		f, err := os.Open(src.path)
		if err != nil {
			continue
		}
		b, err := readTail(f, st.Size(), logRotateBytes/8)
		f.Close()
		if err != nil {
			continue
		}
		if err := writeFileAtomic(src.path+".1", b, 0o640); err != nil {
			s.d.log.Warn("rotate log", "path", src.path, "err", err)
			continue
		}
		if err := os.Truncate(src.path, 0); err != nil {
			s.d.log.Warn("rotate log", "path", src.path, "err", err)
		}
	}
}

// logLoop uploads at start, on every new last_error, and every
// logShipEvery; a component still missing from the bucket is retried on
// every check.
func (d *Daemon) logLoop(ctx context.Context, s *shipper) {
	s.ship(ctx, shipAll)
	tick := time.NewTicker(logShipEvery)
	defer tick.Stop()
	check := time.NewTicker(5 * time.Second)
	defer check.Stop()
	lastErr := d.rep.snapshot().LastError
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.rotate()
			s.ship(ctx, shipChanged)
		case <-check.C:
			// An error is when the operator needs the lines: ship the
			// tails that changed since, now rather than in ten minutes.
			if e := d.rep.snapshot().LastError; e != lastErr {
				lastErr = e
				if e != "" {
					s.ship(ctx, shipChanged)
					continue
				}
			}
			s.ship(ctx, shipPending)
		}
	}
}

// logSources lists what a node uploads: dynia-pull's own lines (ring), the
// daemons' and the app's files in logDir, and cloud-init's output.
func logSources(ring *Ring, logDir, cloudInitLog string) []logSource {
	var out []logSource
	if ring != nil {
		out = append(out, logSource{name: report.LogPull, ring: ring})
	}
	if logDir != "" {
		for _, c := range []string{report.LogHAProxy, report.LogKeepalived, report.LogApp} {
			out = append(out, logSource{name: c, path: filepath.Join(logDir, c+".log")})
		}
	}
	if cloudInitLog != "" {
		out = append(out, logSource{name: report.LogCloudInit, path: cloudInitLog})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
