package sandbox

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"
)

// mintSpacesKey creates a Spaces key through the sandbox's API, as
// create-ha does, and returns its id and secret.
func mintSpacesKey(t *testing.T, info *Info, bucketName, permission string) (id, secret string) {
	t.Helper()
	var out struct {
		Key struct {
			AccessKey string `json:"access_key"`
			SecretKey string `json:"secret_key"`
		} `json:"key"`
	}
	api(t, info, "POST", "/v2/spaces/keys", map[string]any{"name": "test-" + permission,
		"grants": []map[string]string{{"bucket": bucketName, "permission": permission}}}, &out)
	return out.Key.AccessKey, out.Key.SecretKey
}

// TestSandboxSpacesKeys: a key minted through the sandbox's API works on
// its bucket at once (the simulator's hook ran before the answer) and
// nowhere else — another bucket cannot be listed, read or written, and no
// bucket created — and stops working as soon as its deletion is answered.
// The node token may move a Reserved IP but not create droplets or keys.
// versitygw's account file is 0600.
func TestSandboxSpacesKeys(t *testing.T) {
	ctx := context.Background()
	_, opts, info := upLab(t, "/bin/true", nil)
	dir := opts.Dir
	root := s3Client(info.S3Endpoint, info.AccessKeyID, info.SecretAccessKey)
	const other = "someone-elses-bucket"
	if _, err := root.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(other)}); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{info.Bucket, other} {
		if _, err := root.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(b), Key: aws.String("dynia/clusters/x/state.json"), Body: strings.NewReader("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	id, secret := mintSpacesKey(t, info, info.Bucket, "readwrite")
	node := s3Client(info.S3Endpoint, id, secret)
	try := func(bucketName string) map[string]string {
		out := map[string]string{}
		_, err := node.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucketName)})
		out["list"] = code(err)
		g, err := node.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucketName), Key: aws.String("dynia/clusters/x/state.json")})
		if err == nil {
			_, _ = io.Copy(io.Discard, g.Body)
			g.Body.Close()
		}
		out["get"] = code(err)
		_, err = node.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucketName), Key: aws.String("dynia/clusters/x/nodes/n/status.json"), Body: strings.NewReader("{}")})
		out["put"] = code(err)
		return out
	}
	if diff := cmp.Diff(map[string]string{"list": "ok", "get": "ok", "put": "ok"}, try(info.Bucket)); diff != "" {
		t.Errorf("the key on its own bucket (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"list": "AccessDenied", "get": "AccessDenied", "put": "AccessDenied"}, try(other)); diff != "" {
		t.Errorf("the key on another bucket (-want +got):\n%s", diff)
	}
	if _, err := node.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("made-by-a-node")}); code(err) != "AccessDenied" {
		t.Errorf("the key created a bucket: %s", code(err))
	}
	if st, err := os.Stat(filepath.Join(dir, "s3iam", "users.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("versitygw's accounts file: %v %v, want mode 0600", st, err)
	}

	// The node token: reads and Reserved IPs, nothing else.
	nodeInfo := *info
	nodeInfo.Token = info.NodeToken
	for _, c := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/v2/reserved_ips", nil, 200},
		{"POST", "/v2/droplets", map[string]any{"name": "evil", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "debian-12-x64"}, 403},
		{"POST", "/v2/spaces/keys", map[string]any{"name": "evil", "grants": []map[string]string{{"bucket": "", "permission": "fullaccess"}}}, 403},
		{"GET", "/v2/spaces/keys", nil, 403},
	} {
		if got, b := apiTry(t, &nodeInfo, c.method, c.path, c.body); got != c.want {
			t.Errorf("node token %s %s: %d, want %d: %s", c.method, c.path, got, c.want, b)
		}
	}

	api(t, info, "DELETE", "/v2/spaces/keys/"+id, nil, nil)
	if got := try(info.Bucket)["list"]; got == "ok" {
		t.Error("a deleted key still lists its bucket")
	}
}
