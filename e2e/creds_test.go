package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// checkNodeCredentials: every droplet of the cluster holds the cluster's
// own Spaces key — the one key create-ha minted, readwrite on the sandbox's
// bucket only — and the node token, never the operator's key or token. With
// the droplet's key, its bucket can be listed and written; another bucket
// cannot be listed, read or written. With the node token, a droplet cannot
// be created.
func checkNodeCredentials(t *testing.T, e *sandboxEnv, name string) {
	t.Helper()
	ctx := context.Background()
	e.refresh()
	keys, err := e.cloud().ListSpacesKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []cloud.SpacesKey
	for _, k := range keys {
		if strings.HasPrefix(k.Name, "dynia-"+name+"-") {
			mine = append(mine, k)
		}
	}
	if len(mine) != 1 {
		t.Fatalf("Spaces keys of cluster %s: %v, want exactly one", name, mine)
	}
	key := mine[0]
	if diff := cmp.Diff([]cloud.SpacesGrant{{Bucket: e.info.Bucket, Permission: "readwrite"}}, key.Grants); diff != "" {
		t.Errorf("the nodes' key's grants (-want +got):\n%s", diff)
	}
	rows := e.nodes(name)
	var secret string
	for _, r := range rows {
		ddir := filepath.Join(e.dir, "droplets", fmt.Sprint(r.DropletID))
		cfg, err := nodeconfig.Load(filepath.Join(ddir, "pull.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cred struct {
			ID     string `json:"access_key_id"`
			Secret string `json:"secret_access_key"`
		}
		b, err := os.ReadFile(cfg.CredentialsFile)
		if err != nil || json.Unmarshal(b, &cred) != nil {
			t.Fatalf("node %s's Spaces credentials %s: %v", r.ID, cfg.CredentialsFile, err)
		}
		if cred.ID != key.AccessKey || cred.ID == e.info.AccessKeyID || cred.Secret == e.info.SecretAccessKey {
			t.Errorf("node %s uses Spaces key %s, want the cluster's %s (the operator's is %s)", r.ID, cred.ID, key.AccessKey, e.info.AccessKeyID)
		}
		secret = cred.Secret
		tok, err := os.ReadFile(filepath.Join(ddir, "root", cloudinit.DOTokenPath))
		if err != nil || string(tok) != e.info.NodeToken {
			t.Errorf("node %s's DO token is not the node token (%v)", r.ID, err)
		}
	}

	op := s3.New(s3.Options{BaseEndpoint: aws.String(e.info.S3Endpoint), Region: e.info.S3Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(e.info.AccessKeyID, e.info.SecretAccessKey, "")})
	node := s3.New(s3.Options{BaseEndpoint: aws.String(e.info.S3Endpoint), Region: e.info.S3Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(key.AccessKey, secret, "")})
	other := "not-" + name + "-bucket"
	if _, err := op.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(other)}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(other), Key: aws.String("private"), Body: strings.NewReader("x")}); err != nil {
		t.Fatal(err)
	}
	try := func(bucket string) map[string]string {
		out := map[string]string{}
		_, err := node.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), MaxKeys: aws.Int32(1)})
		out["list"] = s3Code(err)
		g, err := node.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("private")})
		if err == nil {
			_, _ = io.Copy(io.Discard, g.Body)
			g.Body.Close()
		}
		out["get"] = s3Code(err)
		_, err = node.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("e2e-node-key-probe"), Body: strings.NewReader("x")})
		out["put"] = s3Code(err)
		return out
	}
	if got := try(e.info.Bucket); got["list"] != "ok" || got["put"] != "ok" {
		t.Errorf("the nodes' key on its own bucket: %v", got)
	}
	if diff := cmp.Diff(map[string]string{"list": "AccessDenied", "get": "AccessDenied", "put": "AccessDenied"}, try(other)); diff != "" {
		t.Errorf("the nodes' key on another bucket (-want +got):\n%s", diff)
	}

	body := strings.NewReader(`{"name":"evil","region":"nyc3","size":"s-1vcpu-1gb","image":"debian-12-x64"}`)
	req, _ := http.NewRequestWithContext(ctx, "POST", e.info.APIURL+"/v2/droplets", body)
	req.Header.Set("Authorization", "Bearer "+e.info.NodeToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("the node token creating a droplet: %d, want 403", resp.StatusCode)
	}
}

func s3Code(err error) string {
	if err == nil {
		return "ok"
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return err.Error()
}

// recordTB records Errorf calls instead of failing.
type recordTB struct {
	testing.TB
	errs []string
}

func (r *recordTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recordTB) Error(args ...any)   { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recordTB) Logf(string, ...any) {}
func (r *recordTB) Helper()             {}

// TestSecretWatch checks the check itself, on a made-up run directory: a
// secret in a command's output, a log, a bucket object or a world-readable
// file is reported with its kind and place and never its value; one in a
// 0600 file, in `sandbox status -o json` or sealed is not.
func TestSecretWatch(t *testing.T) {
	root := t.TempDir()
	sb := filepath.Join(root, "sandbox")
	token, nodeToken := "dop_v1_"+strings.Repeat("a1", 32), "dop_v1_"+strings.Repeat("b2", 32)
	s3secret, wgKey := strings.Repeat("c3", 20), "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
	write := func(rel, content string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	status, _ := json.Marshal(map[string]any{"token": token, "node_token": nodeToken, "secret_access_key": s3secret, "prefix": "x"})
	write("sandbox/status.json", string(status), 0o600)
	write("sandbox/run/serve.pid", fmt.Sprint(os.Getpid()), 0o600)
	write("sandbox/droplets/7/root/var/lib/dynia/wireguard.key", wgKey+"\n", 0o600)
	write("sandbox/droplets/7/root/etc/haproxy/haproxy.cfg", "global\n", 0o644)
	write("sandbox/droplets/7/logs/pull.log", "ok\n", 0o600)
	var w secretWatch
	w.output([]string{"sandbox", "status", "-o", "json"}, result{0, string(status), ""})
	w.output([]string{"node", "list"}, result{0, "fine", ""})

	check := func() []string {
		rec := &recordTB{TB: t}
		w.check(rec, root, sb, nil)
		return rec.errs
	}
	if errs := check(); len(errs) != 0 {
		t.Fatalf("a clean run: %v", errs)
	}
	write("sandbox/droplets/7/logs/pull.log", "using token "+nodeToken+"\n", 0o600)
	write("sandbox/s3/dynia-sandbox/dynia/clusters/x/nodes/n/status.json", `{"error":"key `+wgKey+`"}`, 0o600)
	write("sandbox/droplets/7/root/etc/haproxy/haproxy.cfg", "# "+s3secret, 0o644)
	w.output([]string{"node", "add"}, result{1, "", "error: " + token})
	errs := check()
	want := []string{
		"secret leaked: the DO token in output of `dynia node add`",
		"secret leaked: the credential in sandbox/droplets/7/root/var/lib/dynia/wireguard.key in the bucket object sandbox/s3/dynia-sandbox/dynia/clusters/x/nodes/n/status.json",
		"secret leaked: the node token in the log sandbox/droplets/7/logs/pull.log",
		"secret leaked: the operator's Spaces secret in the group/world-readable file sandbox/droplets/7/root/etc/haproxy/haproxy.cfg",
	}
	if diff := cmp.Diff(want, errs); diff != "" {
		t.Errorf("reported leaks (-want +got):\n%s", diff)
	}
	for _, e := range errs {
		for _, s := range []string{token, nodeToken, s3secret, wgKey} {
			if strings.Contains(e, s) {
				t.Errorf("the report shows the secret: %s", e)
			}
		}
	}
}

// TestNodeTokenRefused: the built CLI, with no node token configured,
// refuses every command that creates droplets — exit 2, one line naming
// --node-token-file, every scope of a node token and --allow-operator-token
// — and refuses a node token file others may read, naming its mode, both
// before any API call or write: the DO API and the bucket it is given are a
// closed port, so any call would fail with exit 1 instead (as it does with
// --allow-operator-token), and its config directory stays empty. No sandbox.
func TestNodeTokenRefused(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "node-token")
	if err := os.WriteFile(tokenFile, []byte("dop_v1_creds_e2e_node_token_0123456789\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokenFile, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
	cfgDir := filepath.Join(dir, "config")
	if err := os.Mkdir(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		full := append([]string{"--config", filepath.Join(cfgDir, "config.yaml"), "--state", "s3://creds-e2e/dynia"}, args...)
		cmd := exec.CommandContext(ctx, dyniaBin(t), full...)
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "XDG_CONFIG_HOME=" + cfgDir,
			"DIGITALOCEAN_ACCESS_TOKEN=dop_v1_creds_e2e_operator_token_0123456789",
			"DIGITALOCEAN_API_URL=http://127.0.0.1:1", "SPACES_ENDPOINT=http://127.0.0.1:1", "SPACES_REGION=us-east-1",
			"SPACES_ACCESS_KEY_ID=DOCREDSE2EKEY", "SPACES_SECRET_ACCESS_KEY=creds-e2e-spaces-secret-0123456789"}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("run dynia: %v", err)
		}
		return result{code, out.String(), errOut.String()}
	}
	wantRefused := func(r result, args []string, want ...string) {
		t.Helper()
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 1 {
			t.Errorf("dynia %s: exit %d, stderr %q; want exit 2 and one line", strings.Join(args, " "), r.code, r.stderr)
			return
		}
		for _, w := range want {
			if !strings.Contains(lines[0], w) {
				t.Errorf("dynia %s: %q does not name %q", strings.Join(args, " "), lines[0], w)
			}
		}
		for _, s := range []string{"dop_v1_creds_e2e", "creds-e2e-spaces-secret"} {
			if strings.Contains(r.stdout+r.stderr, s) {
				t.Errorf("dynia %s shows a secret", strings.Join(args, " "))
			}
		}
	}
	scopes := []string{"--node-token-file", "--allow-operator-token", "reserved_ip:update", "reserved_ip:read",
		"droplet:read", "regions:read", "sizes:read", "actions:read", "image:read"}
	for _, args := range [][]string{
		{"node", "create-ha", "--name", "web", "--region", "sgp1", "--size", "s-1vcpu-1gb"},
		{"node", "create-ha", "--name", "web", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--dry-run"},
		{"node", "add", "--name", "web"},
	} {
		wantRefused(run(args...), args, scopes...)
	}
	args := []string{"node", "create-ha", "--name", "web", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--node-token-file", tokenFile}
	wantRefused(run(args...), args, `--node-token-file "`+tokenFile+`"`, "0644", "chmod 600")
	if ents, err := os.ReadDir(cfgDir); err != nil || len(ents) != 0 {
		t.Errorf("config directory after refused commands: %v %v, want empty", ents, err)
	}
}
