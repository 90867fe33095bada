package bucket_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dynia/dynia/internal/bucket"
)

const testSecret = "sEcReT/do-not-print+1234567890"

func TestOpenS3(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	creds := bucket.Options{AccessKeyID: "DO00EXAMPLE", SecretAccessKey: testSecret}
	for _, tc := range []struct {
		url, want string
	}{
		{"s3://my-bucket/dynia/prod", "s3://my-bucket/dynia/prod"},
		{"s3://my-bucket/dynia/prod/", "s3://my-bucket/dynia/prod"},
		{"s3://my-bucket", "s3://my-bucket"},
		{"s3://my-bucket/", "s3://my-bucket"},
	} {
		s, err := bucket.Open(ctx, tc.url, creds)
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		if s.String() != tc.want {
			t.Errorf("Open(%q).String() = %q, want %q", tc.url, s.String(), tc.want)
		}
		if _, ok := s.(bucket.Presigner); !ok {
			t.Errorf("S3 store does not implement Presigner")
		}
	}
	for _, bad := range []string{"s3://", "s3:///prefix", "gs://b/p", "s3://b/a/../c", "://x", "s3://b/p?x=%zz"} {
		if _, err := bucket.Open(ctx, bad, creds); err == nil {
			t.Errorf("Open(%q): want an error", bad)
		}
	}
}

func TestOpenRejectsCredentialsInURL(t *testing.T) {
	t.Parallel()
	_, err := bucket.Open(context.Background(), "s3://KEY:"+testSecret+"@bucket/p", bucket.Options{})
	if err == nil {
		t.Fatal("want an error for credentials in the URL")
	}
	if strings.Contains(err.Error(), testSecret) {
		t.Errorf("error leaks the secret: %v", err)
	}
}

func TestOpenCredentialsFromEnv(t *testing.T) {
	// Not parallel: t.Setenv.
	ctx := context.Background()
	for _, v := range []string{"SPACES_ACCESS_KEY_ID", "SPACES_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
		t.Setenv(v, "")
	}
	if _, err := bucket.Open(ctx, "s3://b/p", bucket.Options{}); err == nil || !strings.Contains(err.Error(), "SPACES_ACCESS_KEY_ID") {
		t.Errorf("Open without credentials: %v, want an error naming SPACES_ACCESS_KEY_ID", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIA")
	t.Setenv("AWS_SECRET_ACCESS_KEY", testSecret)
	if _, err := bucket.Open(ctx, "s3://b/p", bucket.Options{}); err != nil {
		t.Errorf("Open with AWS_* env: %v", err)
	}
	t.Setenv("SPACES_ACCESS_KEY_ID", "DO00")
	t.Setenv("SPACES_SECRET_ACCESS_KEY", testSecret)
	if _, err := bucket.Open(ctx, "s3://b/p", bucket.Options{}); err != nil {
		t.Errorf("Open with SPACES_* env: %v", err)
	}
}

func TestOptionsNeverPrintSecret(t *testing.T) {
	t.Parallel()
	o := bucket.Options{Endpoint: "http://127.0.0.1:1", AccessKeyID: "DO00", SecretAccessKey: testSecret}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("opening", "opts", o)
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%v %+v %#v %s", o, o, o, o), logged.String()} {
		if strings.Contains(s, testSecret) {
			t.Errorf("secret printed: %s", s)
		}
		if !strings.Contains(s, "DO00") {
			t.Errorf("access key id missing from %s", s)
		}
	}
}

func TestLoadCredentialsFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	id, secret, err := bucket.LoadCredentialsFile(write("ok.json", `{"access_key_id":"DO00","secret_access_key":"`+testSecret+`"}`))
	if err != nil || id != "DO00" || secret != testSecret {
		t.Errorf("LoadCredentialsFile = %q, %q, %v", id, secret, err)
	}
	for name, content := range map[string]string{
		"broken.json":  `{"access_key_id":"DO00","secret_access_key":"` + testSecret + `"`,
		"missing.json": `{"secret_access_key":"` + testSecret + `"}`,
		"typed.json":   `{"access_key_id":1,"secret_access_key":"` + testSecret + `"}`,
	} {
		_, _, err := bucket.LoadCredentialsFile(write(name, content))
		if err == nil {
			t.Errorf("%s: want an error", name)
		} else if strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: error leaks the secret: %v", name, err)
		}
	}
	if _, _, err := bucket.LoadCredentialsFile(filepath.Join(dir, "absent.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("absent file: %v, want ErrNotExist", err)
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	err := error(&bucket.Error{Op: "put", Store: "s3://b/p", Key: "clusters/x/state.json", Kind: bucket.ErrPrecondition, Detail: "HTTP 412 PreconditionFailed"})
	if got, want := err.Error(), "bucket: put s3://b/p/clusters/x/state.json: precondition failed (HTTP 412 PreconditionFailed)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("update: %w", err), bucket.ErrPrecondition) {
		t.Error("errors.Is does not find the sentinel")
	}
}
