package bucket_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/testutil"
)

// s3Options are the options that reach srv (or a proxy in front of it).
func s3Options(srv *testutil.S3Server) bucket.Options {
	return bucket.Options{
		Endpoint:        srv.Endpoint,
		Region:          srv.Region,
		AccessKeyID:     srv.AccessKeyID,
		SecretAccessKey: srv.SecretAccessKey,
		RetryBaseDelay:  time.Millisecond,
	}
}

func openS3(t *testing.T, url string, opts bucket.Options) bucket.Store {
	t.Helper()
	s, err := bucket.Open(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	var n atomic.Int64
	runConformance(t, func(t *testing.T) bucket.Store {
		return openS3(t, srv.URL(fmt.Sprintf("conformance/%d", n.Add(1))), s3Options(srv))
	})
}

func TestS3Scoping(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	ctx := context.Background()
	a := openS3(t, srv.URL("team/a"), s3Options(srv))
	b := openS3(t, srv.URL("team/b"), s3Options(srv))
	whole := openS3(t, srv.URL(""), s3Options(srv))

	mustPut(t, a, "clusters/demo/state.json", "A", bucket.Cond{})
	if _, err := b.Get(ctx, "clusters/demo/state.json", ""); !errors.Is(err, bucket.ErrNotFound) {
		t.Errorf("store b sees store a's key: %v", err)
	}
	if infos, err := b.List(ctx, ""); err != nil || len(infos) != 0 {
		t.Errorf("b.List = %v, %v; want empty", infos, err)
	}
	infos, err := a.List(ctx, "clusters/")
	if err != nil || len(infos) != 1 || infos[0].Key != "clusters/demo/state.json" {
		t.Errorf("a.List = %+v, %v; want the relative key", infos, err)
	}
	if got := mustGet(t, whole, "team/a/clusters/demo/state.json"); got != "A" {
		t.Errorf("unscoped store reads %q", got)
	}
	// versitygw posix keeps the object as a file: the prefix really is in the key.
	if _, err := os.Stat(filepath.Join(srv.Dir, srv.Bucket, "team/a/clusters/demo/state.json")); err != nil {
		t.Errorf("object not at the prefixed key: %v", err)
	}
}

func TestS3AccessDenied(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	ctx := context.Background()
	const wrongSecret = "wrong-" + testSecret
	for name, opts := range map[string]bucket.Options{
		"wrong secret": {Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: srv.AccessKeyID, SecretAccessKey: wrongSecret},
		"unknown key":  {Endpoint: srv.Endpoint, Region: srv.Region, AccessKeyID: "NOSUCHKEY", SecretAccessKey: wrongSecret},
	} {
		s := openS3(t, srv.URL("p"), opts)
		_, getErr := s.Get(ctx, "clusters/demo/state.json", "")
		_, putErr := s.Put(ctx, "clusters/demo/state.json", []byte("x"), bucket.Cond{IfNoneMatch: true})
		_, listErr := s.List(ctx, "clusters/")
		for _, err := range []error{getErr, putErr, listErr} {
			if !errors.Is(err, bucket.ErrAccessDenied) {
				t.Errorf("%s: %v, want ErrAccessDenied", name, err)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, srv.Bucket) || !strings.Contains(msg, "clusters/") {
				t.Errorf("%s: %q does not name bucket and key", name, msg)
			}
			if strings.Contains(msg, wrongSecret) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), wrongSecret) {
				t.Errorf("%s: error leaks the secret: %s", name, msg)
			}
		}
		t.Logf("%s: %v", name, getErr)
	}
}

func TestS3MissingBucket(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	s := openS3(t, "s3://no-such-bucket/p", s3Options(srv))
	_, err := s.Get(context.Background(), "state.json", "")
	if err == nil || errors.Is(err, bucket.ErrNotFound) {
		t.Fatalf("Get in a missing bucket: %v; want an error that is not ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "no-such-bucket does not exist") {
		t.Errorf("message %q does not say the bucket is missing", err)
	}
}

func TestS3Presign(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	s := openS3(t, srv.URL("dynia"), s3Options(srv))
	mustPut(t, s, "bin/dynia-pull-v1-linux-amd64", "ELF...", bucket.Cond{})
	u, err := s.(bucket.Presigner).PresignGet(context.Background(), "bin/dynia-pull-v1-linux-amd64", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(u, srv.SecretAccessKey) {
		t.Fatal("presigned URL contains the secret")
	}
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != "ELF..." {
		t.Errorf("GET presigned URL: %d %q", resp.StatusCode, body)
	}
}

// slowDown answers like an overloaded Spaces.
func slowDown(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
}

// TestS3ThrottleRetried: a few 503 SlowDown answers are retried with backoff
// and then the request goes through to the real server.
func TestS3ThrottleRetried(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	target, _ := url.Parse(srv.Endpoint)
	var throttled, passed atomic.Int64
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host // keep the signed Host header
	}}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if throttled.Load() < 3 {
			throttled.Add(1)
			slowDown(w, http.StatusServiceUnavailable)
			return
		}
		passed.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	var logs testutil.Buffer
	opts := s3Options(srv)
	opts.Endpoint = front.URL
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s := openS3(t, srv.URL("p"), opts)
	mustPut(t, s, "state.json", "v1", bucket.Cond{IfNoneMatch: true})
	if throttled.Load() != 3 || passed.Load() != 1 {
		t.Errorf("%d throttled, %d passed; want 3 and 1", throttled.Load(), passed.Load())
	}
	if got := strings.Count(logs.String(), "retrying"); got != 3 {
		t.Errorf("%d retry log lines, want 3:\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), srv.SecretAccessKey) {
		t.Error("log contains the secret")
	}
}

// TestS3ThrottleExhausted needs no S3 server: every answer is a throttle.
func TestS3ThrottleExhausted(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		var requests atomic.Int64
		front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			slowDown(w, status)
		}))
		s := openS3(t, "s3://b/p", bucket.Options{
			Endpoint: front.URL, AccessKeyID: "K", SecretAccessKey: testSecret,
			MaxRetries: 2, RetryBaseDelay: time.Millisecond,
		})
		_, err := s.Put(context.Background(), "state.json", []byte("x"), bucket.Cond{IfMatch: `"abc"`})
		front.Close()
		if !errors.Is(err, bucket.ErrThrottled) {
			t.Errorf("HTTP %d: %v, want ErrThrottled", status, err)
		}
		if got := requests.Load(); got != 3 {
			t.Errorf("HTTP %d: %d requests, want 3 (1 + MaxRetries)", status, got)
		}
	}
}

// TestS3ErrorMapping checks how answers map to sentinels and which are
// retried, against a fake server (no S3 needed). A 412 is an answer, not a
// failure: it must never be retried.
func TestS3ErrorMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		status   int
		code     string
		op       string // get, put, put-if-match, delete
		want     error  // nil: an error wrapping no sentinel; errNone: success
		requests int64
	}{
		{"412", 412, "PreconditionFailed", "put-if-match", bucket.ErrPrecondition, 1},
		{"409 conflict", 409, "ConditionalRequestConflict", "put-if-match", bucket.ErrPrecondition, 1},
		{"404 on If-Match", 404, "NoSuchKey", "put-if-match", bucket.ErrPrecondition, 1},
		{"404 on get", 404, "NoSuchKey", "get", bucket.ErrNotFound, 1},
		{"404 on delete", 404, "NoSuchKey", "delete", errNone, 1},
		{"304", 304, "", "get", bucket.ErrNotModified, 1},
		{"403", 403, "AccessDenied", "put", bucket.ErrAccessDenied, 1},
		{"400", 400, "InvalidArgument", "put", nil, 1},
		{"500 retried", 500, "InternalError", "get", nil, 3},
		{"503 retried", 503, "SlowDown", "delete", bucket.ErrThrottled, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tc.status)
				if tc.status != 304 {
					fmt.Fprintf(w, `<Error><Code>%s</Code><Message>test message</Message></Error>`, tc.code)
				}
			}))
			t.Cleanup(front.Close)
			s := openS3(t, "s3://b/p", bucket.Options{Endpoint: front.URL, AccessKeyID: "K", SecretAccessKey: testSecret,
				MaxRetries: 2, RetryBaseDelay: time.Millisecond})
			ctx := context.Background()
			var err error
			switch tc.op {
			case "get":
				_, err = s.Get(ctx, "k", `"etag"`)
			case "put":
				_, err = s.Put(ctx, "k", []byte("x"), bucket.Cond{})
			case "put-if-match":
				_, err = s.Put(ctx, "k", []byte("x"), bucket.Cond{IfMatch: `"etag"`})
			case "delete":
				err = s.Delete(ctx, "k")
			}
			switch {
			case tc.want == errNone:
				if err != nil {
					t.Errorf("%s: %v, want success", tc.op, err)
				}
			case tc.want == nil:
				var be *bucket.Error
				if !errors.As(err, &be) || be.Kind != nil {
					t.Errorf("%s: %v, want a *bucket.Error without a sentinel", tc.op, err)
				}
			case !errors.Is(err, tc.want):
				t.Errorf("%s: %v, want %v", tc.op, err, tc.want)
			}
			if got := requests.Load(); got != tc.requests {
				t.Errorf("%d requests, want %d", got, tc.requests)
			}
		})
	}
}

var errNone = errors.New("no error")

// TestS3ProbeDetectsIgnoredConditions puts a proxy in front of versitygw
// that behaves like a store without conditional requests: it drops If-Match
// and If-None-Match and, because SigV4 signs those headers, re-signs the
// request with the same credentials so the server accepts it.
func TestS3ProbeDetectsIgnoredConditions(t *testing.T) {
	t.Parallel()
	srv := testutil.StartVersityGW(t)
	target, _ := url.Parse(srv.Endpoint)
	signer := v4.NewSigner()
	creds := aws.Credentials{AccessKeyID: srv.AccessKeyID, SecretAccessKey: srv.SecretAccessKey}
	var stripped atomic.Int64
	var signErr atomic.Value
	proxy := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		out := pr.Out
		pr.SetURL(target)
		if out.Header.Get("If-Match") == "" && out.Header.Get("If-None-Match") == "" {
			out.Host = pr.In.Host // untouched: the client's signature stays valid
			return
		}
		stripped.Add(1)
		out.Header.Del("If-Match")
		out.Header.Del("If-None-Match")
		out.Header.Del("Authorization")
		out.Header.Del("X-Amz-Date")
		if err := signer.SignHTTP(out.Context(), creds, out, out.Header.Get("X-Amz-Content-Sha256"), "s3", srv.Region, time.Now()); err != nil {
			signErr.Store(err)
		}
	}}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)

	opts := s3Options(srv)
	opts.Endpoint = front.URL
	s := openS3(t, srv.URL("probe"), opts)
	res, err := bucket.Probe(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if err := signErr.Load(); err != nil {
		t.Fatalf("re-signing: %v", err)
	}
	if stripped.Load() == 0 {
		t.Fatal("the proxy saw no conditional request")
	}
	if res.ConditionalWrites {
		t.Errorf("Probe through a condition-stripping proxy = %+v, want ConditionalWrites=false", res)
	}
	t.Logf("problems: %q", res.Problems)
	assertRefused(t, s)

	// The same store straight to versitygw is safe.
	direct := openS3(t, srv.URL("probe"), s3Options(srv))
	if err := bucket.RequireSafe(context.Background(), direct, false); err != nil {
		t.Errorf("RequireSafe direct: %v", err)
	}
}

// TestS3LostAnswer: behind testutil.S3Proxy, a conditional put whose answer
// is lost (applied by versitygw, answered 500) is retried by the backend,
// and the retry gets 412: the caller sees ErrPrecondition although its
// write is in the store. This is the case cluster.Store recognises by its
// operation id, and what the CLI's lost-answer tests drive.
func TestS3LostAnswer(t *testing.T) {
	t.Parallel()
	testutil.Integration(t)
	srv := testutil.StartVersityGW(t)
	proxy := testutil.StartS3Proxy(t, srv.Endpoint)
	opts := s3Options(srv)
	opts.Endpoint = proxy.Endpoint
	s := openS3(t, srv.URL("lost"), opts)
	ctx := context.Background()

	proxy.LoseAnswer(1, testutil.ConditionalPut("/k"))
	_, err := s.Put(ctx, "k", []byte("one"), bucket.Cond{IfNoneMatch: true})
	if !errors.Is(err, bucket.ErrPrecondition) {
		t.Fatalf("create whose answer was lost: %v, want the retry's precondition failure", err)
	}
	etag := mustGetETag(t, s, "k", "one")
	proxy.LoseAnswer(1, testutil.ConditionalPut("/k"))
	_, err = s.Put(ctx, "k", []byte("two"), bucket.Cond{IfMatch: etag})
	if !errors.Is(err, bucket.ErrPrecondition) {
		t.Fatalf("update whose answer was lost: %v, want the retry's precondition failure", err)
	}
	mustGetETag(t, s, "k", "two")
	if got := proxy.Lost(); len(got) != 2 || proxy.Armed() != 0 {
		t.Fatalf("answers lost: %v (%d armed), want both puts", got, proxy.Armed())
	}
	// Unarmed, the proxy passes requests through untouched.
	if _, err := s.Put(ctx, "k", []byte("three"), bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	mustGetETag(t, s, "k", "three")
}

func mustGetETag(t *testing.T, s bucket.Store, key, want string) string {
	t.Helper()
	obj, err := s.Get(context.Background(), key, "")
	if err != nil {
		t.Fatal(err)
	}
	if string(obj.Body) != want {
		t.Fatalf("%s holds %q, want %q", key, obj.Body, want)
	}
	return obj.ETag
}

// TestS3UnreachableRetried: a store that never answers (every dial times
// out, as when the bucket's address is unreachable) is tried 1 +
// MaxRetries times, and the error says it is unreachable, naming the
// network error. Dial timeouts match context.DeadlineExceeded (net's
// timeout errors do), and were taken for the caller's own deadline: one
// attempt, no retry, an SDK wrapping for a message.
func TestS3UnreachableRetried(t *testing.T) {
	t.Parallel()
	var dials atomic.Int64
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		// A dialer whose timeout has already passed gives net's own
		// timeout error, at once.
		return (&net.Dialer{Timeout: time.Nanosecond}).DialContext(ctx, network, addr)
	}}
	s := openS3(t, "s3://b/p", bucket.Options{Endpoint: "http://127.0.0.1:9", AccessKeyID: "K", SecretAccessKey: testSecret,
		MaxRetries: 2, RetryBaseDelay: time.Millisecond, HTTPClient: &http.Client{Transport: tr}})
	_, err := s.Get(context.Background(), "clusters/x/state.json", "")
	if !errors.Is(err, bucket.ErrUnavailable) {
		t.Fatalf("get from an unreachable store: %v, want ErrUnavailable", err)
	}
	if got := dials.Load(); got != 3 {
		t.Errorf("%d attempts, want 3 (1 + MaxRetries)", got)
	}
	msg := err.Error()
	if !strings.Contains(msg, "object store unreachable (dial tcp 127.0.0.1:9: i/o timeout; 3 attempts)") || strings.Contains(msg, "StatusCode: 0") {
		t.Errorf("error %q; want the store unreachable, the dial error and the attempts, without the SDK's wrapping", msg)
	}

	// The caller's deadline ends the retries: still unreachable, with the
	// network error the attempts got.
	slow := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		time.Sleep(20 * time.Millisecond)
		return (&net.Dialer{Timeout: time.Nanosecond}).DialContext(ctx, network, addr)
	}}
	s = openS3(t, "s3://b/p", bucket.Options{Endpoint: "http://127.0.0.1:9", AccessKeyID: "K", SecretAccessKey: testSecret,
		MaxRetries: 50, RetryBaseDelay: 10 * time.Millisecond, HTTPClient: &http.Client{Transport: slow}})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = s.Get(ctx, "clusters/x/state.json", "")
	if !errors.Is(err, bucket.ErrUnavailable) || !strings.Contains(err.Error(), "no answer before the deadline (dial tcp 127.0.0.1:9: i/o timeout") {
		t.Errorf("get cut short by the caller's deadline: %v; want unreachable, naming the dial error", err)
	}
}
