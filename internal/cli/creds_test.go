package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/godo"
	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/dosim"
)

// setContext changes the test context and saves the config.
func (e *testEnv) setContext(change func(c *Context)) {
	e.t.Helper()
	c, err := LoadConfig(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	change(c.Contexts["test"])
	if err := c.Save(); err != nil {
		e.t.Fatal(err)
	}
}

// writeSecret writes a secret file with the given mode (chmod: the umask
// must not decide it).
func writeSecret(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantRefused runs args and checks exit 2, one stderr line with every want,
// no API call and no bucket write.
func (e *testEnv) wantRefused(t *testing.T, args []string, want ...string) {
	t.Helper()
	calls, writes := len(e.sim.Calls()), e.writes.Load()
	wantUsage(t, e.run(args...), want...)
	for _, c := range e.sim.Calls()[calls:] {
		t.Errorf("API call before the refusal: %s %s", c.Method, c.Path)
	}
	if n := e.writes.Load() - writes; n != 0 {
		t.Errorf("%d bucket writes before the refusal", n)
	}
}

// dropletFiles is a droplet's user-data write_files by path.
func dropletFiles(t *testing.T, d dosim.Droplet) map[string]string {
	t.Helper()
	cfg, err := cloudinit.Parse([]byte(d.UserData))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range cfg.WriteFiles {
		out[f.Path] = f.Content
	}
	return out
}

// TestNodeTokenRequired: every command that creates droplets refuses, exit
// 2 on one line naming --node-token-file and every scope a node token
// needs, before any API call or write, when no node token is configured;
// --allow-operator-token (or allow_operator_token in the context) lets it
// give droplets the CLI's own token, with a warning.
func TestNodeTokenRequired(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("tok")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "tok", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	// A node left provisioning, for repair-ha --force to finish.
	e.updateState("tok", func(s *cluster.State) {
		next, _, err := cluster.AddNodes(s, 1, cluster.NewNamer(0), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		*s = *next
	})
	e.setContext(func(c *Context) { c.NodeTokenFile = "" })
	want := append([]string{"--node-token-file", "--allow-operator-token"}, NodeTokenScopes...)
	for _, args := range [][]string{
		{"node", "create-ha", "--name", "other", "--region", "sgp1", "--size", "s-1vcpu-1gb"},
		{"node", "create-ha", "--name", "other", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--dry-run"},
		{"node", "add", "--name", "tok"},
		{"node", "repair-ha", "--name", "tok", "--force"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) { e.wantRefused(t, args, want...) })
	}

	// Allowed: the droplets get the CLI's token, and the run says so.
	r := e.mustRun("node", "repair-ha", "--name", "tok", "--force", "--allow-operator-token")
	if !strings.Contains(r.stderr, "warning: droplets get your own DigitalOcean token") {
		t.Errorf("no warning about the operator token:\n%s", r.stderr)
	}
	st := e.state("tok")
	var tokens []string
	for _, d := range e.sim.Droplets() {
		tokens = append(tokens, dropletFiles(t, d)[cloudinit.DOTokenPath])
	}
	if diff := cmp.Diff([]string{nodeToken, fullToken}, tokens); diff != "" || len(st.Nodes) != 2 {
		t.Errorf("droplets' DO tokens (-want +got):\n%s", diff)
	}
	e.setContext(func(c *Context) { c.AllowOperatorToken = true })
	r = e.mustRun("node", "add", "--name", "tok", "--no-wait")
	if !strings.Contains(r.stderr, "warning: droplets get your own DigitalOcean token") {
		t.Errorf("allow_operator_token in the context: no warning:\n%s", r.stderr)
	}
}

// TestNodeTokenChecked: a node token file holding the CLI's own token, a
// token DigitalOcean refuses (401) and one lacking droplet:read (403) are
// refused, exit 2, before anything is written or created; one that can read
// the account works with a warning, a least-privilege one without.
func TestNodeTokenChecked(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	e.sim.AddToken("weak-token", "reserved_ip:update", "reserved_ip:read")
	for _, tc := range []struct {
		name, token string
		want        []string
		apiCalls    bool
	}{
		{"the operator's token", fullToken, []string{"holds your own DigitalOcean token", "reserved_ip:update"}, false},
		{"unknown token", "no-such-token", []string{"401", "refuses the node token"}, true},
		{"token without droplet:read", "weak-token", []string{"403", "list droplets", "droplet:read"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tf := writeSecret(t, dir, strings.ReplaceAll(tc.name, " ", "-"), tc.token, 0o600)
			calls, writes := len(e.sim.Calls()), e.writes.Load()
			wantUsage(t, e.run("node", "create-ha", "--name", "chk", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--node-token-file", tf), tc.want...)
			for _, c := range e.sim.Calls()[calls:] {
				if !tc.apiCalls || c.Method != "GET" {
					t.Errorf("API call: %s %s", c.Method, c.Path)
				}
			}
			if n := e.writes.Load() - writes; n != 0 {
				t.Errorf("%d bucket writes", n)
			}
		})
	}
	if objs, _ := e.bucket.List(t.Context(), ""); len(objs) != 0 {
		t.Errorf("refused create-ha runs left %d objects", len(objs))
	}
	// A token with more scopes than nodes need works, with a warning.
	e.sim.AddToken("broad-token", dosim.FullScopes()...)
	stop := e.fakeNodes("chk")
	defer stop()
	r := e.mustRun("node", "create-ha", "--name", "chk", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--node-token-file", writeSecret(t, dir, "broad", "broad-token", 0o600))
	if !strings.Contains(r.stderr, "warning: the node token can read your account") {
		t.Errorf("no warning about a broad node token:\n%s", r.stderr)
	}
	r = e.mustRun("node", "add", "--name", "chk", "--node-token-file", writeSecret(t, dir, "narrow", nodeToken, 0o600))
	if strings.Contains(r.stderr, "warning") {
		t.Errorf("a least-privilege node token got a warning:\n%s", r.stderr)
	}
}

// credFileCase is one credential file of TestCredentialFileModes: its
// mode, content, where it is named (the context, set, or a flag in args)
// and the name the refusal must give.
type credFileCase struct {
	name    string
	mode    os.FileMode
	content string
	set     func(c *Context, path string)
	args    func(path string) []string
	want    string
}

// TestCredentialFileModes: every file a credential is read from — the DO
// token, the node token (flag and context), the Cloudflare token, the
// registry login (and, on S3, the Spaces key: TestSpacesCredentialFileMode)
// — is refused when its group or others may read it: exit 2, one line
// naming the file and its mode, with chmod 600.
func TestCredentialFileModes(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("modes")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "modes", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	dir := t.TempDir()
	for _, tc := range []credFileCase{
		{"context token_file", 0o644, fullToken, func(c *Context, p string) { c.TokenFile = p },
			func(string) []string { return []string{"node", "add", "--name", "modes"} }, "contexts.test.token_file"},
		{"context node_token_file", 0o640, nodeToken, func(c *Context, p string) { c.NodeTokenFile = p },
			func(string) []string { return []string{"node", "add", "--name", "modes"} }, "contexts.test.node_token_file"},
		{"--node-token-file", 0o604, nodeToken, nil,
			func(p string) []string { return []string{"node", "add", "--name", "modes", "--node-token-file", p} }, "--node-token-file"},
		{"context cloudflare_token_file", 0o644, "cf-token", func(c *Context, p string) { c.CloudflareTokenFile = p },
			func(string) []string {
				return []string{"dns", "set", "--name", "modes", "--record", "app.example.com", "--provider", "cloudflare"}
			}, "contexts.test.cloudflare_token_file"},
		{"--registry-auth-file", 0o644, `{"username":"u","password":"p"}`, nil,
			func(p string) []string {
				return []string{"app", "deploy", "--name", "modes", "--image", "registry.example.com/app:v1", "--registry-auth-file", p}
			}, "--registry-auth-file"},
	} {
		t.Run(tc.name, func(t *testing.T) { e.wantCredFileRefused(t, dir, tc) })
	}
}

// TestSpacesCredentialFileMode is TestCredentialFileModes' case for the
// Spaces key, which only an s3:// state reads.
func TestSpacesCredentialFileMode(t *testing.T) {
	e := newS3Env(t)
	stop := e.fakeNodes("modes")
	defer stop()
	e.mustRun("node", "create-ha", "--name", "modes", "--region", "sgp1", "--size", "s-1vcpu-1gb")
	cred, _ := json.Marshal(map[string]string{"access_key_id": e.s3.AccessKeyID, "secret_access_key": e.s3.SecretAccessKey})
	e.wantCredFileRefused(t, t.TempDir(), credFileCase{"context spaces_credentials_file", 0o644, string(cred),
		func(c *Context, p string) { c.SpacesCredentialsFile = p },
		func(string) []string { return []string{"node", "list", "--name", "modes"} }, "contexts.test.spaces_credentials_file"})
}

// wantCredFileRefused writes tc's file into dir with tc's mode, names it
// and checks the command refuses it (exit 2) without a bucket write.
func (e *testEnv) wantCredFileRefused(t *testing.T, dir string, tc credFileCase) {
	t.Helper()
	p := writeSecret(t, dir, strings.NewReplacer(" ", "-", "/", "-").Replace(tc.name), tc.content, tc.mode)
	if tc.set != nil {
		old, _ := LoadConfig(e.cfg)
		saved := *old.Contexts["test"]
		e.setContext(func(c *Context) { tc.set(c, p) })
		defer e.setContext(func(c *Context) { *c = saved })
	}
	writes := e.writes.Load()
	wantUsage(t, e.run(tc.args(p)...), tc.want, p, fmt.Sprintf("mode %04o", tc.mode), "chmod 600")
	if n := e.writes.Load() - writes; n != 0 {
		t.Errorf("%d bucket writes", n)
	}
}

// TestNodeSpacesKey: create-ha mints the nodes a Spaces key of their own,
// readwrite on the state's bucket only, named after the cluster; the state
// names it and holds its secret sealed, never in the clear; droplets get it,
// never the CLI's key; re-running create-ha and adding nodes reuse it (no
// new key); a key a crashed run left is deleted by the next command that
// creates a droplet, whether it mints or reuses; a key deleted behind
// dynia's back is replaced; destroy deletes it. No output
// shows a secret.
func TestNodeSpacesKey(t *testing.T) {
	e := newS3Env(t)
	stop := e.fakeNodes("keys")
	defer stop()
	name := nodeKeyName("keys", e.s3.URL("dynia"))
	// A key a crashed create-ha minted but never recorded.
	orphan, _, err := simGodo(t, e).SpacesKeys.Create(t.Context(), godoKeyReq(name, e.s3.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	add := func(r result) { out.WriteString(r.stdout + r.stderr) }
	add(e.mustRun("node", "create-ha", "--name", "keys", "--region", "sgp1", "--size", "s-1vcpu-1gb"))

	keys := e.sim.SpacesKeys()
	if len(keys) != 1 {
		t.Fatalf("%d Spaces keys after create-ha, want 1 (the orphan %s deleted): %v", len(keys), orphan.AccessKey, keyNames(keys))
	}
	k := keys[0]
	if diff := cmp.Diff([]dosim.SpacesGrant{{Bucket: e.s3.Bucket, Permission: "readwrite"}}, k.Grants); diff != "" || k.Name != name {
		t.Errorf("key %s grants (-want +got):\n%s", k.Name, diff)
	}
	st := e.state("keys")
	if st.NodeSpacesKey == nil || st.NodeSpacesKey.AccessKeyID != k.AccessKey || st.NodeSpacesKey.Bucket != e.s3.Bucket || st.NodeSpacesKey.Name != name {
		t.Fatalf("state's node_spaces_key %+v, want %s", st.NodeSpacesKey, k.AccessKey)
	}
	raw, err := e.bucket.Get(t.Context(), cluster.StateKey("keys"), "")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw.Body), k.Secret) {
		t.Error("the state holds the nodes' Spaces secret in the clear")
	}
	wantDropletKey := func(d dosim.Droplet, id, secret string) {
		t.Helper()
		var c struct {
			ID     string `json:"access_key_id"`
			Secret string `json:"secret_access_key"`
		}
		if err := json.Unmarshal([]byte(dropletFiles(t, d)[cloudinit.SpacesCredentialsPath]), &c); err != nil {
			t.Fatal(err)
		}
		if c.ID != id || c.Secret != secret {
			t.Errorf("droplet %s's Spaces key is %s, want %s", d.Name, c.ID, id)
		}
		if strings.Contains(d.UserData, e.s3.SecretAccessKey) {
			t.Errorf("droplet %s's user-data holds the CLI's Spaces secret", d.Name)
		}
	}
	for _, d := range e.sim.Droplets() {
		wantDropletKey(d, k.AccessKey, k.Secret)
	}

	// A key a run minted after the state named k, lost the race to record
	// it and died before deleting it: the re-run deletes it.
	lost, _, err := simGodo(t, e).SpacesKeys.Create(t.Context(), godoKeyReq(name, e.s3.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	calls := len(e.sim.Calls())
	add(e.mustRun("node", "create-ha", "--name", "keys", "--region", "sgp1", "--size", "s-1vcpu-1gb"))
	add(e.mustRun("node", "add", "--name", "keys"))
	if got := keyNames(e.sim.SpacesKeys()); !cmp.Equal(got, []string{name + "/" + k.AccessKey}) {
		t.Errorf("Spaces keys after node add: %v, want only %s (the lost %s deleted)", got, k.AccessKey, lost.AccessKey)
	}
	for _, c := range e.sim.Calls()[calls:] {
		if c.Method == "POST" && c.Path == "/v2/spaces/keys" {
			t.Error("a re-run or an add minted another key")
		}
	}
	for _, d := range e.sim.Droplets() {
		wantDropletKey(d, k.AccessKey, k.Secret)
	}

	// Deleted behind dynia's back: the next droplet gets a new key.
	if _, err := simGodo(t, e).SpacesKeys.Delete(t.Context(), k.AccessKey); err != nil {
		t.Fatal(err)
	}
	r := e.mustRun("node", "add", "--name", "keys")
	add(r)
	if !strings.Contains(r.stderr, "no longer exists") {
		t.Errorf("node add does not say the key was gone:\n%s", r.stderr)
	}
	keys = e.sim.SpacesKeys()
	if len(keys) != 1 || keys[0].AccessKey == k.AccessKey || e.state("keys").NodeSpacesKey.AccessKeyID != keys[0].AccessKey {
		t.Fatalf("after the key vanished: keys %v, state %+v", keyNames(keys), e.state("keys").NodeSpacesKey)
	}
	nk := keys[0]

	// Another orphan, left after the last droplet was made: destroy
	// deletes it with the state's key.
	late, _, err := simGodo(t, e).SpacesKeys.Create(t.Context(), godoKeyReq(name, e.s3.Bucket))
	if err != nil {
		t.Fatal(err)
	}
	add(e.mustRun("cluster", "destroy", "--name", "keys", "--yes"))
	if keys := e.sim.SpacesKeys(); len(keys) != 0 {
		t.Errorf("destroy left Spaces keys: %v", keyNames(keys))
	}
	for _, s := range []string{k.Secret, nk.Secret, orphan.SecretKey, lost.SecretKey, late.SecretKey, e.s3.SecretAccessKey, fullToken, nodeToken} {
		if strings.Contains(out.String(), s) {
			t.Errorf("command output shows a secret")
		}
	}
}

func godoKeyReq(name, bucketName string) *godo.SpacesKeyCreateRequest {
	return &godo.SpacesKeyCreateRequest{Name: name, Grants: []*godo.Grant{{Bucket: bucketName, Permission: godo.SpacesKeyReadWrite}}}
}

func keyNames(keys []dosim.SpacesKey) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Name+"/"+k.AccessKey)
	}
	return out
}

// TestSecretEnvFile: --secret-env-file keeps secret values out of the
// command line: a 0600 file's K=V lines become sealed env, never plain env;
// a file others may read is refused naming its mode; a line without "=" (or
// a --secret-env without one) is refused without echoing it.
func TestSecretEnvFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const secret = "postgres://app:hunter2hunter2@db/app"
	good := writeSecret(t, dir, "good", "# the database\nDB_URL="+secret+"\n", 0o600)
	o := AppOptions{Image: "registry.example.com/app:v1", Port: 8080, HealthPath: "/healthz", HealthTimeout: time.Minute, SecretEnvFile: good}
	r, err := o.parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"DB_URL": secret}, r.secrets.Env); diff != "" || len(r.rel.Env) != 0 {
		t.Errorf("sealed env (-want +got):\n%s\nplain env: %v", diff, r.rel.Env)
	}
	for _, tc := range []struct {
		name string
		o    AppOptions
		want string
	}{
		{"readable by others", AppOptions{SecretEnvFile: writeSecret(t, dir, "open", "DB_URL="+secret, 0o644)}, "mode 0644 lets others read it"},
		{"a line without =", AppOptions{SecretEnvFile: writeSecret(t, dir, "bare", secret, 0o600)}, "want K=V"},
		{"--secret-env without =", AppOptions{SecretEnv: []string{secret}}, "--secret-env: want K=V"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.Image, o.Port, o.HealthPath, o.HealthTimeout = "registry.example.com/app:v1", 8080, "/healthz", time.Minute
			_, err := o.parse(nil)
			if exitCode(err) != ExitUsage || !strings.Contains(fmt.Sprint(err), tc.want) {
				t.Fatalf("parse: %v (exit %d), want exit 2 with %q", err, exitCode(err), tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestDestroyWithoutSpacesKeyScopes: with a token lacking the spaces_key
// scopes, destroying a cluster whose state names a key fails at that key,
// naming the scope, and a re-run with the scope finishes the job (the key
// deleted); a cluster whose state names no key (made before nodes had their
// own) is destroyed with a warning that an orphan key, if any, remains.
func TestDestroyWithoutSpacesKeyScopes(t *testing.T) {
	e := newS3Env(t)
	var noKeys []string
	for _, sc := range dosim.FullScopes() {
		if !strings.HasPrefix(sc, "spaces_key:") {
			noKeys = append(noKeys, sc)
		}
	}
	for _, name := range []string{"keyed", "unkeyed"} {
		stop := e.fakeNodes(name)
		e.mustRun("node", "create-ha", "--name", name, "--region", "sgp1", "--size", "s-1vcpu-1gb")
		stop()
	}
	unkeyed := e.state("unkeyed").NodeSpacesKey
	if _, err := simGodo(t, e).SpacesKeys.Delete(t.Context(), unkeyed.AccessKeyID); err != nil {
		t.Fatal(err)
	}
	e.updateState("unkeyed", func(s *cluster.State) { s.NodeSpacesKey = nil })
	keyed := e.state("keyed").NodeSpacesKey
	e.sim.AddToken(fullToken, noKeys...)

	r := e.run("cluster", "destroy", "--name", "keyed", "--yes")
	if r.code == 0 || !strings.Contains(r.stderr, "spaces_key:delete") {
		t.Errorf("destroy without spaces_key:delete: exit %d, want a failure naming the scope:\n%s", r.code, r.stderr)
	}
	r = e.mustRun("cluster", "destroy", "--name", "unkeyed", "--yes")
	if !strings.Contains(r.stderr, "warning: cannot list Spaces keys") {
		t.Errorf("destroy of a cluster without a key, token without spaces_key:read: no warning:\n%s", r.stderr)
	}
	if _, _, err := cluster.NewStore(e.bucket).Load(t.Context(), "unkeyed"); !errors.Is(err, cluster.ErrClusterNotFound) {
		t.Errorf("unkeyed's state after destroy: %v, want not found", err)
	}

	e.sim.AddToken(fullToken, dosim.FullScopes()...)
	e.mustRun("cluster", "destroy", "--name", "keyed", "--yes")
	if keys := e.sim.SpacesKeys(); len(keys) != 0 {
		t.Errorf("Spaces keys after the re-run: %v, want none (%s deleted)", keyNames(keys), keyed.AccessKeyID)
	}
}

// TestNodeTokenReadOnce: the node token file is read once per command,
// while it checks its input; a file replaced after that (here: at the
// command's first bucket write, after the token was checked with DO) does
// not change the token the droplets get. Before, prepareBoot read the file
// again and the droplets got the replacement, which was never checked.
func TestNodeTokenReadOnce(t *testing.T) {
	e := newEnv(t)
	stop := e.fakeNodes("once")
	defer stop()
	e.sim.AddToken("replacement-node-token", dosim.NodeScopes()...)
	path := writeSecret(t, t.TempDir(), "node-token", nodeToken, 0o600)
	var mu sync.Mutex
	replaced := 0
	e.onBucketWrite = func() {
		mu.Lock()
		defer mu.Unlock()
		if replaced == 0 {
			tmp := path + ".new"
			if err := os.WriteFile(tmp, []byte("replacement-node-token"), 0o600); err != nil {
				t.Error(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Error(err)
			}
		}
		replaced++
	}
	for _, args := range [][]string{
		{"node", "create-ha", "--name", "once", "--region", "sgp1", "--size", "s-1vcpu-1gb", "--node-token-file", path},
		{"node", "add", "--name", "once", "--node-token-file", path},
	} {
		mu.Lock()
		replaced = 0
		if err := os.WriteFile(path, []byte(nodeToken), 0o600); err != nil {
			t.Fatal(err)
		}
		mu.Unlock()
		e.mustRun(args...)
		mu.Lock()
		n := replaced
		mu.Unlock()
		if n == 0 {
			t.Fatalf("dynia %s: no bucket write, the token file was never replaced", strings.Join(args, " "))
		}
	}
	var tokens []string
	for _, d := range e.sim.Droplets() {
		tokens = append(tokens, dropletFiles(t, d)[cloudinit.DOTokenPath])
	}
	if diff := cmp.Diff([]string{nodeToken, nodeToken}, tokens); diff != "" {
		t.Errorf("droplets' DO tokens (-want +got):\n%s", diff)
	}
}
