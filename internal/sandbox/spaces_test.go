package sandbox

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/dosim"
	"github.com/dynia/dynia/internal/testutil"
)

// TestSpacesKeysOnVersityGW: keys as the simulator mints them become
// versitygw accounts limited to their grants. A readwrite key lists, reads,
// writes and deletes in its bucket and is denied listing, reading and
// writing another bucket, and creating one; a read key reads but cannot
// write; a fullaccess key writes anywhere and creates buckets; a deleted
// key is refused at once; a second pass changes nothing.
func TestSpacesKeysOnVersityGW(t *testing.T) {
	srv := testutil.StartVersityGWIAM(t)
	ctx := t.Context()
	root := s3Client(srv.Endpoint, srv.AccessKeyID, srv.SecretAccessKey)
	const other = "other-cluster-bucket"
	if _, err := root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(other)}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{srv.Bucket, other} {
		if _, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("dynia/clusters/x/state.json"), Body: strings.NewReader("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	keys := []dosim.SpacesKey{
		{Name: "rw", AccessKey: "DOREADWRITE0001", Secret: "rw-secret-0123456789", Grants: []dosim.SpacesGrant{{Bucket: srv.Bucket, Permission: "readwrite"}}},
		{Name: "ro", AccessKey: "DOREADONLY00001", Secret: "ro-secret-0123456789", Grants: []dosim.SpacesGrant{{Bucket: srv.Bucket, Permission: "read"}}},
		{Name: "full", AccessKey: "DOFULLACCESS001", Secret: "full-secret-0123456789", Grants: []dosim.SpacesGrant{{Permission: "fullaccess"}}},
	}
	src := func() []dosim.SpacesKey { mu.Lock(); defer mu.Unlock(); return append([]dosim.SpacesKey(nil), keys...) }
	var logs bytes.Buffer
	sk := newSpacesKeys(srv.Endpoint, srv.Region, srv.AccessKeyID, srv.SecretAccessKey, src,
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err := sk.sync(ctx); err != nil {
		t.Fatal(err)
	}
	rw := s3Client(srv.Endpoint, keys[0].AccessKey, keys[0].Secret)
	ro := s3Client(srv.Endpoint, keys[1].AccessKey, keys[1].Secret)
	full := s3Client(srv.Endpoint, keys[2].AccessKey, keys[2].Secret)

	ops := func(c *s3.Client, bucket string) map[string]string {
		out := map[string]string{}
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("dynia/")})
		out["list"] = code(err)
		g, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("dynia/clusters/x/state.json")})
		if err == nil {
			_, _ = io.Copy(io.Discard, g.Body)
			g.Body.Close()
		}
		out["get"] = code(err)
		_, err = c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("dynia/clusters/x/nodes/n/status.json"), Body: strings.NewReader("{}")})
		out["put"] = code(err)
		_, err = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("dynia/clusters/x/nodes/n/status.json")})
		out["delete"] = code(err)
		return out
	}
	ok := map[string]string{"list": "ok", "get": "ok", "put": "ok", "delete": "ok"}
	denied := map[string]string{"list": "AccessDenied", "get": "AccessDenied", "put": "AccessDenied", "delete": "AccessDenied"}
	for _, tc := range []struct {
		name   string
		c      *s3.Client
		bucket string
		want   map[string]string
	}{
		{"readwrite key, its bucket", rw, srv.Bucket, ok},
		{"readwrite key, another bucket", rw, other, denied},
		{"read key, its bucket", ro, srv.Bucket, map[string]string{"list": "ok", "get": "ok", "put": "AccessDenied", "delete": "AccessDenied"}},
		{"read key, another bucket", ro, other, denied},
		{"fullaccess key, another bucket", full, other, ok},
	} {
		if diff := cmp.Diff(tc.want, ops(tc.c, tc.bucket)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	if _, err := rw.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("rw-made-this")}); code(err) != "AccessDenied" {
		t.Errorf("a readwrite key created a bucket: %s", code(err))
	}
	if _, err := full.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("full-made-this")}); err != nil {
		t.Errorf("a fullaccess key could not create a bucket: %v", err)
	}

	// The new bucket gets its policy at the next pass; a pass after that,
	// with nothing changed, writes nothing.
	if err := sk.sync(ctx); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if err := sk.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "created") || strings.Contains(logs.String(), "policy set") || strings.Contains(logs.String(), "deleted") {
		t.Errorf("an unchanged pass changed something:\n%s", logs.String())
	}

	// Deleted: refused at the next request.
	mu.Lock()
	keys = keys[1:]
	mu.Unlock()
	if err := sk.sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := code(func() error {
		_, err := rw.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket)})
		return err
	}()); got != "InvalidAccessKeyId" && got != "AccessDenied" {
		t.Errorf("a deleted key still lists its bucket: %s", got)
	}
	if got := ops(ro, srv.Bucket)["get"]; got != "ok" {
		t.Errorf("the remaining read key lost its grant: %s", got)
	}
	for _, secret := range []string{"rw-secret", "ro-secret", "full-secret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the sync log shows a key's secret")
		}
	}
}

func s3Client(endpoint, id, secret string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(endpoint), Region: "us-east-1", UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(id, secret, ""),
	})
}

// code is an S3 error's code, "ok" without one.
func code(err error) string {
	if err == nil {
		return "ok"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}
