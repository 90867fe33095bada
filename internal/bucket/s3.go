package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/dynia/dynia/internal/poll"
)

// s3Store is the S3 / Spaces backend.
type s3Store struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	prefix  string // without slashes at the ends; "" for the whole bucket
	secret  string // kept only to scrub it from server messages
	log     *slog.Logger
	retry   retryPolicy
}

var _ Presigner = (*s3Store)(nil)

func openS3(_ context.Context, bucket, prefix string, opts Options) (*s3Store, error) {
	id, secret := resolveCredentials(opts)
	if id == "" || secret == "" {
		return nil, fmt.Errorf("bucket: open s3://%s: no credentials: set the access key options or SPACES_ACCESS_KEY_ID and SPACES_SECRET_ACCESS_KEY", bucket)
	}
	region := opts.Region
	endpoint := opts.Endpoint
	switch {
	case region == "" && endpoint == "":
		region = "nyc3"
	case region == "":
		region = "us-east-1"
	}
	if endpoint == "" {
		endpoint = "https://" + region + ".digitaloceanspaces.com"
	}
	eu, err := url.Parse(endpoint)
	if err != nil || eu.Host == "" || (eu.Scheme != "http" && eu.Scheme != "https") {
		return nil, fmt.Errorf("bucket: open s3://%s: invalid endpoint %q (want http(s)://host[:port])", bucket, endpoint)
	}
	pathStyle := opts.PathStyle
	if h := eu.Hostname(); h == "localhost" || net.ParseIP(h) != nil {
		pathStyle = true // virtual-host addressing cannot work against an IP
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	s3opts := s3.Options{
		Region:       region,
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: pathStyle,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, ""),
		// Our loop in do() retries; the SDK's would also retry 412s' neighbours
		// (and time out sooner than callers expect).
		Retryer: aws.NopRetryer{},
		// service/s3 v1.73.0 began sending CRC32 checksums on every PUT, which
		// S3-compatible stores (Spaces among them) reject; aws-sdk-go-v2
		// discussion #2960 gives WhenRequired as the way back.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if opts.HTTPClient != nil {
		s3opts.HTTPClient = opts.HTTPClient
	} else {
		s3opts.HTTPClient = defaultHTTPClient()
	}
	client := s3.New(s3opts)
	return &s3Store{
		client:  client,
		presign: s3.NewPresignClient(client),
		bucket:  bucket,
		prefix:  prefix,
		secret:  secret,
		log:     log,
		retry:   newRetryPolicy(opts),
	}, nil
}

func (s *s3Store) String() string {
	if s.prefix == "" {
		return "s3://" + s.bucket
	}
	return "s3://" + s.bucket + "/" + s.prefix
}

// fullKey maps a store-relative key to the bucket key.
func (s *s3Store) fullKey(key string) string {
	if s.prefix == "" {
		return key
	}
	return s.prefix + "/" + key
}

func (s *s3Store) Get(ctx context.Context, key, ifNoneMatch string) (*Object, error) {
	if err := checkKey(key); err != nil {
		return nil, s.fail("get", key, nil, "", err)
	}
	var obj *Object
	err := s.do(ctx, "get", key, false, func(ctx context.Context) error {
		out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
			Bucket:      aws.String(s.bucket),
			Key:         aws.String(s.fullKey(key)),
			IfNoneMatch: optETag(ifNoneMatch),
		})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		body, err := io.ReadAll(out.Body)
		if err != nil {
			return err // a broken body is transient: retried
		}
		obj = &Object{Body: body, ETag: aws.ToString(out.ETag), LastModified: aws.ToTime(out.LastModified)}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return obj, nil
}

func (s *s3Store) Put(ctx context.Context, key string, body []byte, cond Cond) (string, error) {
	if err := checkKey(key); err != nil {
		return "", s.fail("put", key, nil, "", err)
	}
	if cond.IfMatch != "" && cond.IfNoneMatch {
		return "", s.fail("put", key, nil, "", errors.New("IfMatch and IfNoneMatch are exclusive"))
	}
	in := &s3.PutObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(s.fullKey(key)),
		IfMatch:     optETag(cond.IfMatch),
		ContentType: aws.String(contentType(key)),
	}
	if cond.IfNoneMatch {
		in.IfNoneMatch = aws.String("*")
	}
	var etag string
	// A retried conditional put whose first attempt landed but whose answer
	// was lost reports ErrPrecondition: callers re-read and recognise their
	// own write (cluster.Store by its operation id, Probe by content).
	err := s.do(ctx, "put", key, cond.IfMatch != "", func(ctx context.Context) error {
		in.Body = bytes.NewReader(body)
		in.ContentLength = aws.Int64(int64(len(body)))
		out, err := s.client.PutObject(ctx, in)
		if err != nil {
			return err
		}
		etag = aws.ToString(out.ETag)
		return nil
	})
	return etag, err
}

func (s *s3Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return s.fail("delete", key, nil, "", err)
	}
	err := s.do(ctx, "delete", key, false, func(ctx context.Context) error {
		_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
			Bucket: aws.String(s.bucket),
			Key:    aws.String(s.fullKey(key)),
		})
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func (s *s3Store) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := checkListPrefix(prefix); err != nil {
		return nil, s.fail("list", prefix, nil, "", err)
	}
	full := prefix
	if s.prefix != "" {
		full = s.prefix + "/" + prefix
	}
	var infos []Info
	var token *string
	for {
		var out *s3.ListObjectsV2Output
		err := s.do(ctx, "list", prefix, false, func(ctx context.Context) error {
			var err error
			out, err = s.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
				Bucket:            aws.String(s.bucket),
				Prefix:            aws.String(full),
				ContinuationToken: token,
			})
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, o := range out.Contents {
			k := aws.ToString(o.Key)
			if s.prefix != "" {
				k = strings.TrimPrefix(k, s.prefix+"/")
			}
			infos = append(infos, Info{Key: k, ETag: aws.ToString(o.ETag), Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)})
		}
		if !aws.ToBool(out.IsTruncated) || out.NextContinuationToken == nil {
			break
		}
		token = out.NextContinuationToken
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Key < infos[j].Key })
	return infos, nil
}

// PresignGet returns a URL anyone can GET key with until ttl passes. The URL
// carries a signature, not the secret.
func (s *s3Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	if err := checkKey(key); err != nil {
		return "", s.fail("presign", key, nil, "", err)
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.fullKey(key)),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", s.fail("presign", key, nil, "", err)
	}
	return req.URL, nil
}

// do runs one S3 call with the retry policy and turns its error into *Error.
// ifMatch marks a put with If-Match, where 404 means the precondition failed.
func (s *s3Store) do(ctx context.Context, op, key string, ifMatch bool, call func(context.Context) error) error {
	var netDetail string // the last attempt's network error, if any
	for attempt := 0; ; attempt++ {
		err := call(ctx)
		if err == nil {
			return nil
		}
		c := s.classify(err, ifMatch)
		var oe *net.OpError
		if errors.As(err, &oe) {
			netDetail = c.detail
		}
		if !c.retry || attempt >= s.retry.max || ctx.Err() != nil {
			if c.throttle {
				c.kind = ErrThrottled
			}
			if ctx.Err() != nil && c.kind == ErrUnavailable {
				// Cut short by the caller's deadline: the SDK's wrapping of
				// that says less than what the attempts before it got.
				c.detail = "no answer before the deadline"
				if netDetail != "" {
					c.detail += " (" + netDetail + ")"
				}
			}
			if c.retry && attempt > 0 {
				c.detail += fmt.Sprintf("; %d attempts", attempt+1)
			}
			return s.fail(op, key, c.kind, c.detail, err)
		}
		d := s.retry.delay(attempt)
		s.log.Warn("object store request failed, retrying",
			"op", op, "store", s.String(), "key", key, "attempt", attempt+1, "delay", d, "reason", c.detail)
		if err := poll.Sleep(ctx, d); err != nil {
			if c.kind == ErrUnavailable {
				detail := "no answer before the deadline"
				if netDetail != "" {
					detail += " (" + netDetail + ")"
				}
				return s.fail(op, key, c.kind, fmt.Sprintf("%s; %d attempts", detail, attempt+1), err)
			}
			return s.fail(op, key, nil, "", err)
		}
	}
}

// accessCodes are credential errors whatever their status: versitygw
// answers an unknown access key with 404 XAdminUserNotFound.
var accessCodes = map[string]bool{
	"AccessDenied": true, "InvalidAccessKeyId": true, "SignatureDoesNotMatch": true,
	"XAdminUserNotFound": true,
}

type classified struct {
	kind     error  // sentinel or nil
	detail   string // "HTTP 412 PreconditionFailed"
	retry    bool
	throttle bool
}

// classify maps an SDK error to a sentinel and decides whether to retry.
func (s *s3Store) classify(err error, ifMatch bool) classified {
	// A cancelled caller is final. Not context.DeadlineExceeded: a dial or
	// read that timed out (net's timeout errors match it too) is an
	// attempt that got no answer, retried below like a refused
	// connection; do() stops once the caller's own deadline has passed.
	if errors.Is(err, context.Canceled) {
		return classified{detail: err.Error()}
	}
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	code, msg := "", ""
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code, msg = ae.ErrorCode(), ae.ErrorMessage()
	}
	detail := s.scrub(strings.TrimSpace(fmt.Sprintf("HTTP %d %s", status, code)))
	if status == 0 {
		// No response at all: connection refused/reset, a timeout, DNS,
		// TLS, a broken body. The network error says it best; the SDK's
		// wrapping ("https response error StatusCode: 0, RequestID: , …")
		// says nothing more.
		detail := err.Error()
		var oe *net.OpError
		if errors.As(err, &oe) {
			detail = oe.Error()
		}
		return classified{kind: ErrUnavailable, detail: s.scrub(detail), retry: true}
	}
	if accessCodes[code] {
		status = http.StatusForbidden
	}
	if msg != "" && (status == 403 || status == 401 || code == "NoSuchBucket") {
		detail += ": " + s.scrub(msg)
	}
	switch {
	case status == http.StatusNotModified:
		return classified{kind: ErrNotModified, detail: detail}
	case code == "NoSuchBucket":
		// Not ErrNotFound: a caller must not read "no bucket" as "no cluster".
		return classified{detail: detail + " (bucket " + s.bucket + " does not exist)"}
	case status == http.StatusPreconditionFailed, code == "ConditionalRequestConflict":
		return classified{kind: ErrPrecondition, detail: detail}
	case status == http.StatusNotFound && ifMatch:
		// AWS and versitygw answer If-Match on a missing key with 404.
		return classified{kind: ErrPrecondition, detail: detail}
	case status == http.StatusNotFound:
		return classified{kind: ErrNotFound, detail: detail}
	case status == http.StatusForbidden, status == http.StatusUnauthorized:
		return classified{kind: ErrAccessDenied, detail: detail}
	case status == http.StatusServiceUnavailable, status == http.StatusTooManyRequests, code == "SlowDown":
		return classified{detail: detail, retry: true, throttle: true}
	case status >= 500:
		return classified{detail: detail, retry: true}
	default:
		return classified{detail: detail}
	}
}

func (s *s3Store) fail(op, key string, kind error, detail string, err error) error {
	e := &Error{Op: op, Store: s.String(), Key: key, Kind: kind, Detail: detail}
	if err != nil {
		e.Err = &scrubbed{msg: s.scrub(err.Error()), err: err}
	}
	return e
}

// scrub removes the secret from server-provided text (belt and braces: no
// server should echo it, but a misbehaving proxy might).
func (s *s3Store) scrub(text string) string {
	if s.secret == "" {
		return text
	}
	return strings.ReplaceAll(text, s.secret, "[redacted]")
}

// scrubbed wraps a cause with its message already scrubbed; it holds no
// secret itself, so even %#v of an error is safe.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// optETag turns an ETag into a header value: nil when empty, quoted otherwise
// (S3 ETags are quoted strings; callers may pass either form).
func optETag(etag string) *string {
	if etag == "" {
		return nil
	}
	if etag == "*" || strings.HasPrefix(etag, `"`) || strings.HasPrefix(etag, `W/"`) {
		return aws.String(etag)
	}
	return aws.String(`"` + etag + `"`)
}

// contentType is a hint for humans browsing the bucket.
func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	case strings.HasSuffix(key, ".txt"), strings.HasSuffix(key, ".cfg"):
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

// defaultHTTPClient bounds each attempt, so a connection that stalls (a lost
// SYN, a half-open socket) fails fast into do()'s retry with a fresh
// connection instead of eating the caller's whole deadline. The SDK's
// default waits 30 s for a dial and forever for response headers.
func defaultHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	tr.ResponseHeaderTimeout = 20 * time.Second
	return &http.Client{Transport: tr}
}
