package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/sandbox"
)

// TestSandboxUpBadACMECertValidity: checked before the root check and
// anything privileged.
func TestSandboxUpBadACMECertValidity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ val, want string }{
		{"1500ms", "whole seconds"},
		{"500ms", "at least 1s"},
		{"-1h", "at least 1s"},
	} {
		t.Run(tc.val, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			r := runLocal(t, "sandbox", "up", "--dir", dir, "--acme-cert-validity", tc.val)
			wantUsage(t, r, "--acme-cert-validity", tc.want)
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("sandbox dir written on bad input: %v", ents)
			}
		})
	}
}

// TestSandboxContextTLS: `sandbox up` records the sandbox's ACME CA and
// Cloudflare simulator in the context, the Cloudflare token in a 0600 file
// (never in the config), and the config still decodes strictly.
func TestSandboxContextTLS(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	f := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f.Getenv = func(string) string { return "" }
	f.Global.ConfigPath = cfgPath
	const cfToken = "0123456789abcdef0123456789abcdef01234567"
	info := &sandbox.Info{
		APIURL: "http://198.51.100.1", Token: "dop_v1_x", NodeToken: "dop_v1_y", MetadataURL: "http://169.254.169.254",
		S3Endpoint: "http://198.51.100.1:9000", S3Region: "us-east-1", StateURL: "s3://dynia-sandbox/dynia",
		AccessKeyID: "DYNIAKEY", SecretAccessKey: "secret", Dir: dir,
		ACMEDirectory: "https://198.51.100.1:14000/dir", ACMERootCA: filepath.Join(dir, "acme", "root.pem"),
		ACMEListenerCA: filepath.Join(dir, "acme", "listener-root.pem"), DNSServer: "198.51.100.1:53",
		CloudflareAPIURL: "http://198.51.100.1:8080/client/v4", CloudflareToken: cfToken,
		DNSZones: map[string]string{"cloudflare": "sandbox.test", "digitalocean": "do.sandbox.test"},
	}
	if err := writeSandboxContext(f, info); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(cfToken)) {
		t.Fatalf("the Cloudflare token is in the config:\n%s", raw)
	}
	cfg, err := LoadConfig(cfgPath) // strict: every key known, every kind right
	if err != nil {
		t.Fatalf("LoadConfig: %v\n%s", err, raw)
	}
	c := cfg.Contexts[SandboxContext]
	if c == nil {
		t.Fatalf("no %s context:\n%s", SandboxContext, raw)
	}
	type tlsCtx struct {
		ACMEDirectory, ACMEDirectoryRoots, ACMETrustRoots string
		CloudflareAPIURL, TokenDir                        string
	}
	got := tlsCtx{c.ACMEDirectory, c.ACMEDirectoryRoots, c.ACMETrustRoots, c.CloudflareAPIURL, filepath.Dir(c.CloudflareTokenFile)}
	want := tlsCtx{info.ACMEDirectory, info.ACMEListenerCA, info.ACMERootCA, info.CloudflareAPIURL, filepath.Join(dir, "cli")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("context (-want +got):\n%s", diff)
	}
	st, err := os.Stat(c.CloudflareTokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("cloudflare_token_file %s: %v %v, want mode 0600", c.CloudflareTokenFile, st.Mode().Perm(), err)
	}
	if b, _ := os.ReadFile(c.CloudflareTokenFile); string(b) != cfToken {
		t.Errorf("cloudflare_token_file holds %d bytes, want the token", len(b))
	}

	// A sandbox older than these services leaves them out.
	f2 := NewFactory(&IOStreams{In: strings.NewReader(""), Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}})
	f2.Getenv = func(string) string { return "" }
	f2.Global.ConfigPath = cfgPath
	old := *info
	old.ACMEDirectory, old.ACMERootCA, old.ACMEListenerCA, old.DNSServer, old.CloudflareAPIURL, old.CloudflareToken = "", "", "", "", "", ""
	if err := writeSandboxContext(f2, &old); err != nil {
		t.Fatal(err)
	}
	raw, _ = os.ReadFile(cfgPath)
	for _, k := range []string{"acme_", "cloudflare_"} {
		if bytes.Contains(raw, []byte(k)) {
			t.Errorf("config has %s* keys for a sandbox without them:\n%s", k, raw)
		}
	}
}
