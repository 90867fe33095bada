package bucket

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"
)

// Options configure Open. The zero value talks to DigitalOcean Spaces in
// nyc3 with credentials from the environment.
type Options struct {
	// Endpoint is the S3 endpoint URL. Empty means
	// https://<Region>.digitaloceanspaces.com.
	Endpoint string
	// Region signs requests. Empty means "nyc3" for Spaces, or "us-east-1"
	// when Endpoint is set (the default of S3 gateways such as versitygw).
	Region string
	// PathStyle addresses the bucket in the path (http://host/bucket/key).
	// It is forced on when Endpoint's host is an IP address or localhost.
	PathStyle bool
	// AccessKeyID and SecretAccessKey; when empty they come from
	// SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY, then
	// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
	AccessKeyID     string
	SecretAccessKey string
	// HTTPClient overrides the SDK's default transport (tests, proxies).
	HTTPClient *http.Client
	// Logger receives retry warnings; nil discards them.
	Logger *slog.Logger
	// MaxRetries bounds retries of throttled (503 SlowDown, 429) and
	// transient (5xx, network) failures. 0 means 4; negative means none.
	MaxRetries int
	// RetryBaseDelay is the first backoff step (doubling, full jitter,
	// capped at 5 s). 0 means 200 ms. Tests set it small.
	RetryBaseDelay time.Duration
}

// String shows the options without the secret, so %v in a log is safe.
func (o Options) String() string {
	secret := ""
	if o.SecretAccessKey != "" {
		secret = "[redacted]"
	}
	return fmt.Sprintf("{Endpoint:%s Region:%s PathStyle:%t AccessKeyID:%s SecretAccessKey:%s MaxRetries:%d}",
		o.Endpoint, o.Region, o.PathStyle, o.AccessKeyID, secret, o.MaxRetries)
}

// GoString keeps %#v from printing the secret too.
func (o Options) GoString() string { return "bucket.Options" + o.String() }

// LogValue keeps slog from printing the secret.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", o.Endpoint),
		slog.String("region", o.Region),
		slog.Bool("path_style", o.PathStyle),
		slog.String("access_key_id", o.AccessKeyID),
	)
}

// Open returns the store named by rawURL, scoped to its prefix: keys passed
// to the store are relative ("clusters/demo/state.json").
//
//	s3://bucket/prefix   S3 / DigitalOcean Spaces (see Options)
//	file:///abs/dir      a local directory (file://rel/dir is relative to the cwd)
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// Do not echo rawURL: it might carry credentials.
		return nil, fmt.Errorf("bucket: open: invalid store URL (want s3://bucket/prefix or file:///dir)")
	}
	if u.User != nil {
		return nil, fmt.Errorf("bucket: open %s: credentials do not belong in the store URL; use an access key option or SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("bucket: open %s: query parameters and fragments are not supported (endpoint and region are options)", u.Redacted())
	}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("bucket: open %s: missing bucket name (want s3://bucket/prefix)", u.Redacted())
		}
		prefix, err := cleanPrefix(u.Path)
		if err != nil {
			return nil, fmt.Errorf("bucket: open %s: %w", u.Redacted(), err)
		}
		return openS3(ctx, u.Host, prefix, opts)
	case "file":
		dir := u.Path
		if u.Host != "" && u.Host != "localhost" {
			dir = u.Host + u.Path // file://rel/dir
		}
		if dir == "" {
			return nil, fmt.Errorf("bucket: open %s: missing directory (want file:///abs/dir)", u.Redacted())
		}
		return openFile(dir, opts)
	default:
		return nil, fmt.Errorf("bucket: open: unsupported scheme %q (want s3:// or file://)", u.Scheme)
	}
}

// LoadCredentialsFile reads {"access_key_id": ..., "secret_access_key": ...}
// (the file dynia-pull gets from cloud-init). Errors never contain the secret.
func LoadCredentialsFile(path string) (id, secret string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("bucket: read credentials: %w", err)
	}
	var f struct {
		AccessKeyID     string `json:"access_key_id"`
		SecretAccessKey string `json:"secret_access_key"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		// json errors can quote file content; report only the position-free kind.
		return "", "", fmt.Errorf("bucket: read credentials %s: not valid JSON", path)
	}
	if f.AccessKeyID == "" || f.SecretAccessKey == "" {
		return "", "", fmt.Errorf("bucket: read credentials %s: access_key_id and secret_access_key are required", path)
	}
	return f.AccessKeyID, f.SecretAccessKey, nil
}

// resolveCredentials fills empty credentials from the environment.
func resolveCredentials(opts Options) (id, secret string) {
	if opts.AccessKeyID != "" || opts.SecretAccessKey != "" {
		return opts.AccessKeyID, opts.SecretAccessKey
	}
	for _, pair := range [][2]string{
		{"SPACES_ACCESS_KEY_ID", "SPACES_SECRET_ACCESS_KEY"},
		{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
	} {
		if id, secret := os.Getenv(pair[0]), os.Getenv(pair[1]); id != "" && secret != "" {
			return id, secret
		}
	}
	return "", ""
}

// cleanPrefix turns a URL path into a store prefix without slashes at the ends.
func cleanPrefix(p string) (string, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return "", nil
	}
	if err := checkKey(p); err != nil {
		return "", fmt.Errorf("invalid prefix: %w", err)
	}
	return p, nil
}

// checkKey enforces the keys both backends can store identically: relative,
// slash-separated, no empty/"."/".." segments (a file backend would escape its
// directory), no segment starting with ".dynia-" (the file backend's lock and
// temp files), valid UTF-8, at most 1024 bytes (the S3 limit).
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", errInvalidKey)
	case len(key) > 1024:
		return fmt.Errorf("%w: longer than 1024 bytes", errInvalidKey)
	case !utf8.ValidString(key) || strings.ContainsRune(key, 0):
		return fmt.Errorf("%w %q: not valid UTF-8 text", errInvalidKey, key)
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "" || seg == "." || seg == "..":
			return fmt.Errorf("%w %q: empty, \".\" or \"..\" path segment", errInvalidKey, key)
		case strings.HasPrefix(seg, reservedPrefix):
			return fmt.Errorf("%w %q: segments starting with %q are reserved", errInvalidKey, key, reservedPrefix)
		}
	}
	return nil
}

// checkListPrefix accepts "" or a key-like prefix that may end in "/" or in
// a partial segment ("clusters/de").
func checkListPrefix(prefix string) error {
	p := strings.TrimSuffix(prefix, "/")
	if p == "" {
		if prefix != "" {
			return fmt.Errorf("%w: list prefix %q", errInvalidKey, prefix)
		}
		return nil
	}
	return checkKey(p)
}

// reservedPrefix marks the file backend's own files; keys may not use it.
const reservedPrefix = ".dynia-"

// absDir resolves a file:// directory.
func absDir(dir string) (string, error) {
	return filepath.Abs(filepath.FromSlash(dir))
}
