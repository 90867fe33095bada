package cloudinit

import (
	"bytes"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Fixed, recognizable secret values: tests look for them in outputs.
const (
	keyID     = "DO00SECRETKEYID"
	secretKey = "s3cr3t/Access+Key"
	doToken   = "dop_v1_0123456789abcdef"
	sha       = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	signature = "X-Amz-Signature=deadbeefcafe"
	// An Ed25519 seed (32 bytes of 0x42) and an unrelated public key.
	reportKey = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="
	statePub  = "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik="
	pullURL   = "https://dynia-state.sgp1.digitaloceanspaces.com/bin/dynia-pull-1.2.3-linux-amd64?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&" + signature
)

func params(mode Mode) Params {
	p := Params{
		Mode:     mode,
		Cluster:  "myapp",
		NodeID:   "misty-owl",
		Hostname: "myapp-misty-owl",
		Node: nodeconfig.Config{
			StateURL:     "s3://dynia-state/dynia",
			Endpoint:     "https://sgp1.digitaloceanspaces.com",
			Region:       "sgp1",
			PollInterval: nodeconfig.Duration{Duration: 2 * time.Second},
		},
		SpacesAccessKeyID:     keyID,
		SpacesSecretAccessKey: secretKey,
		DOToken:               doToken,
		StatePublicKey:        statePub,
		ReportKey:             reportKey,
		Image:                 "182746331",
	}
	if mode == Bootstrap {
		p.PullBinaryURL = pullURL
		p.PullBinarySHA256 = sha
		p.Distro = "debian-12-x64"
	}
	return p
}

// hostile carries values that break naive YAML templating.
func hostile() Params {
	p := params(Snapshot)
	p.SpacesAccessKeyID = `key: "quoted" 'single' #comment`
	p.SpacesSecretAccessKey = "line1\nline2: {x: [1]}\n- item\n...\n---\n"
	p.DOToken = `tok:en "with" 'quotes' & *anchor !tag %`
	p.Node.StateURL = "s3://b/pre fix: #x"
	return p
}

// variants is every shape of user-data dynia sends.
func variants() map[string]Params {
	ubuntu := params(Bootstrap)
	ubuntu.Distro = "ubuntu-24-04-x64"
	bare := params(Snapshot)
	bare.SpacesAccessKeyID, bare.SpacesSecretAccessKey, bare.DOToken = "", "", ""
	bare.StatePublicKey, bare.ReportKey = "", ""
	bare.Node = nodeconfig.Config{StateURL: "file:///var/lib/dynia/state"}
	return map[string]Params{
		"snapshot":         params(Snapshot),
		"bootstrap":        params(Bootstrap),
		"bootstrap-ubuntu": ubuntu,
		"snapshot-nocreds": bare,
		"hostile":          hostile(),
	}
}

func render(t *testing.T, p Params) []byte {
	t.Helper()
	b, err := Render(p)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	return b
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cloudinit -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s mismatch (-want +got), run with -update if intended:\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	for _, name := range []string{"snapshot", "bootstrap"} {
		ud := render(t, variants()[name])
		golden(t, name, ud)
		golden(t, name+"-masked", Mask(ud))
	}
}

func TestRenderDefaultsToSnapshot(t *testing.T) {
	t.Parallel()
	p := params(Snapshot)
	p.Mode = ""
	if got, want := render(t, p), render(t, params(Snapshot)); !bytes.Equal(got, want) {
		t.Error("empty Mode did not render as Snapshot")
	}
}

func TestRenderDefaultsHostname(t *testing.T) {
	t.Parallel()
	p := params(Snapshot)
	p.Hostname = ""
	if got, want := render(t, p), render(t, params(Snapshot)); !bytes.Equal(got, want) {
		t.Error("empty Hostname did not default to <cluster>-<node id>")
	}
}

func TestParseRoundTrip(t *testing.T) {
	t.Parallel()
	for name, p := range variants() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ud := render(t, p)
			c, err := Parse(ud)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Hostname != p.Hostname || c.FQDN != p.Hostname || c.PreserveHostname == nil || *c.PreserveHostname {
				t.Errorf("hostname fields = %q %q %v", c.Hostname, c.FQDN, c.PreserveHostname)
			}
			files := map[string]File{}
			for _, f := range c.WriteFiles {
				if f.Owner != "root:root" || f.Defer || f.Encoding != "" {
					t.Errorf("%s: owner %q defer %v encoding %q", f.Path, f.Owner, f.Defer, f.Encoding)
				}
				files[f.Path] = f
			}

			pull, ok := files[PullConfigPath]
			if !ok || pull.Permissions != "0600" {
				t.Fatalf("pull.json missing or not 0600: %+v", pull)
			}
			node, err := nodeconfig.Decode([]byte(pull.Content))
			if err != nil {
				t.Fatalf("pull.json does not decode: %v", err)
			}
			want := p.Node
			want.Cluster, want.NodeID, want.Supervise = p.Cluster, p.NodeID, true
			want.LogDir, want.CloudInitLog = LogDir, CloudInitLog
			if p.SpacesAccessKeyID != "" {
				want.CredentialsFile = SpacesCredentialsPath
			}
			if p.DOToken != "" {
				want.DOTokenFile = DOTokenPath
			}
			if p.StatePublicKey != "" {
				want.StatePublicKey, want.AcceptedStateFile = p.StatePublicKey, AcceptedStatePath
			}
			if p.ReportKey != "" {
				want.ReportKeyFile = ReportKeyPath
			}
			if diff := cmp.Diff(want, *node); diff != "" {
				t.Errorf("pull.json (-want +got):\n%s", diff)
			}
			if img, ok := files[ImagePath]; p.Image != "" && (!ok || img.Content != p.Image+"\n" || img.Permissions != "0644") {
				t.Errorf("image file: %+v, want %q 0644", img, p.Image)
			}

			if p.SpacesAccessKeyID != "" {
				var creds map[string]string
				if err := json.Unmarshal([]byte(files[SpacesCredentialsPath].Content), &creds); err != nil {
					t.Fatalf("spaces.json: %v", err)
				}
				wantCreds := map[string]string{"access_key_id": p.SpacesAccessKeyID, "secret_access_key": p.SpacesSecretAccessKey}
				if diff := cmp.Diff(wantCreds, creds); diff != "" {
					t.Errorf("spaces.json (-want +got):\n%s", diff)
				}
				if files[SpacesCredentialsPath].Permissions != "0600" {
					t.Errorf("spaces.json permissions %q", files[SpacesCredentialsPath].Permissions)
				}
			} else if _, ok := files[SpacesCredentialsPath]; ok {
				t.Error("spaces.json written without credentials")
			}
			if p.DOToken != "" {
				if f := files[DOTokenPath]; f.Content != p.DOToken || f.Permissions != "0600" {
					t.Errorf("do-token = %q %q", f.Content, f.Permissions)
				}
			}
			if p.ReportKey != "" {
				if f := files[ReportKeyPath]; f.Content != p.ReportKey+"\n" || f.Permissions != "0600" {
					t.Errorf("report.key permissions %q (content differs: %v)", f.Permissions, f.Content != p.ReportKey+"\n")
				}
			} else if _, ok := files[ReportKeyPath]; ok {
				t.Error("report.key written without a report key")
			}

			switch p.Mode {
			case Snapshot:
				wantCmd := []Command{{"systemctl", "enable", "--now", "--no-block", UnitName}}
				if diff := cmp.Diff(wantCmd, c.RunCmd); diff != "" {
					t.Errorf("runcmd (-want +got):\n%s", diff)
				}
				if len(c.WriteFiles) > 5 {
					t.Errorf("snapshot mode writes %d files, want only config, image and secrets", len(c.WriteFiles))
				}
			case Bootstrap:
				for path, want := range map[string]string{
					PullBinaryURLPath:        p.PullBinaryURL,
					PullBinarySHA256Path:     p.PullBinarySHA256,
					LibDir + "/" + UnitName:  string(Unit),
					LibDir + "/provision.sh": string(ProvisionScript),
					LibDir + "/bootstrap.sh": string(BootstrapScript),
				} {
					if files[path].Content != want {
						t.Errorf("%s content differs", path)
					}
				}
				if files[PullBinaryURLPath].Permissions != "0600" {
					t.Error("presigned URL file is not 0600")
				}
				if files[LibDir+"/bootstrap.sh"].Permissions != "0755" {
					t.Error("bootstrap.sh is not executable")
				}
				if diff := cmp.Diff([]Command{{LibDir + "/bootstrap.sh"}}, c.RunCmd); diff != "" {
					t.Errorf("runcmd (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestMaskHidesEverySecret(t *testing.T) {
	t.Parallel()
	for name, p := range variants() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ud := render(t, p)
			masked := Mask(ud)
			secrets := []string{p.SpacesAccessKeyID, p.SpacesSecretAccessKey, p.DOToken, p.PullBinaryURL, p.ReportKey}
			if p.PullBinaryURL != "" {
				secrets = append(secrets, signature)
			}
			for _, s := range secrets {
				if s == "" {
					continue
				}
				if !bytes.Contains(ud, []byte(firstLine(s))) && !strings.ContainsAny(s, "\"'\n") {
					t.Errorf("secret %q not in the rendered user-data: test is broken", s)
				}
				if bytes.Contains(masked, []byte(firstLine(s))) {
					t.Errorf("masked user-data still contains %q", s)
				}
			}
			// Masking touches only secrets: the rest is still valid and the same.
			mc, err := Parse(masked)
			if err != nil {
				t.Fatalf("Parse(Mask): %v", err)
			}
			c, _ := Parse(ud)
			for i := range c.WriteFiles {
				if secretPaths[c.WriteFiles[i].Path] {
					if mc.WriteFiles[i].Content != Masked {
						t.Errorf("%s not masked", c.WriteFiles[i].Path)
					}
					c.WriteFiles[i].Content = Masked
				}
			}
			if diff := cmp.Diff(c, mc); diff != "" {
				t.Errorf("Mask changed more than secrets (-render +mask):\n%s", diff)
			}
		})
	}
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

func TestMaskUnknownInput(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"not yaml: [",
		"#!/bin/sh\necho " + doToken,
		"#cloud-config\nwrite_files:\n- path: /root/key\n  permissions: '0400'\n  content: " + doToken + "\n",
		"#cloud-config\nwrite_files:\n- path: /etc/dynia/do-token\n  content: " + doToken + "\n",
	} {
		if out := Mask([]byte(in)); bytes.Contains(out, []byte(doToken)) {
			t.Errorf("Mask(%q) leaks the token:\n%s", in, out)
		}
	}
}

func TestHostileValuesSurvive(t *testing.T) {
	t.Parallel()
	p := hostile()
	ud := render(t, p)
	c, err := Parse(ud)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly the keys and files dynia writes: nothing was injected.
	var doc map[string]any
	if err := yaml.Unmarshal(ud, &doc); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(doc))
	wantKeys := []string{"fqdn", "hostname", "manage_etc_hosts", "preserve_hostname", "runcmd", "write_files"}
	if diff := cmp.Diff(wantKeys, keys); diff != "" {
		t.Errorf("top-level keys (-want +got):\n%s", diff)
	}
	if len(c.WriteFiles) != 5 { // pull.json, image, spaces.json, do-token, report.key
		t.Errorf("%d files, want 5", len(c.WriteFiles))
	}
	for _, f := range c.WriteFiles {
		if f.Path == DOTokenPath && f.Content != p.DOToken {
			t.Errorf("token = %q, want %q", f.Content, p.DOToken)
		}
	}
}

func TestRenderRejects(t *testing.T) {
	t.Parallel()
	big := params(Snapshot)
	big.Node.StateURL = "s3://b/" + strings.Repeat("x", MaxUserData)
	tests := map[string]func(p *Params){
		"unknown mode":       func(p *Params) { p.Mode = "golden" },
		"no node id":         func(p *Params) { p.NodeID = "" },
		"bad hostname":       func(p *Params) { p.Hostname = "my app" },
		"hostname injection": func(p *Params) { p.Hostname = "a\nruncmd: [reboot]" },
		"half credentials":   func(p *Params) { p.SpacesSecretAccessKey = "" },
		"token newline":      func(p *Params) { p.DOToken = "a\nb" },
		"node for other":     func(p *Params) { p.Node.NodeID = "brave-panda" },
		"no state url":       func(p *Params) { p.Node.StateURL = "" },
		"too big":            func(p *Params) { p.Node.StateURL = big.Node.StateURL },
		"bootstrap distro": func(p *Params) {
			p.Mode, p.PullBinaryURL, p.PullBinarySHA256, p.Distro = Bootstrap, pullURL, sha, "centos-9"
		},
		"bootstrap sha": func(p *Params) {
			p.Mode, p.PullBinaryURL, p.PullBinarySHA256, p.Distro = Bootstrap, pullURL, "abc", "debian-12-x64"
		},
		"bootstrap url": func(p *Params) {
			p.Mode, p.PullBinaryURL, p.PullBinarySHA256, p.Distro = Bootstrap, "ftp://x/y", sha, "debian-12-x64"
		},
		"bootstrap url quote": func(p *Params) {
			p.Mode, p.PullBinaryURL, p.PullBinarySHA256, p.Distro = Bootstrap, pullURL+`"`, sha, "debian-12-x64"
		},
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := params(Snapshot)
			mutate(&p)
			ud, err := Render(p)
			if err == nil {
				t.Fatalf("Render succeeded (%d bytes), want an error", len(ud))
			}
			for _, s := range []string{doToken, secretKey} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

func TestSizeLimit(t *testing.T) {
	t.Parallel()
	p := params(Bootstrap)
	// Just under the limit renders; just over fails.
	base := len(render(t, p))
	if base > MaxUserData/4 {
		t.Errorf("bootstrap user-data is %d bytes: too close to the %d limit", base, MaxUserData)
	}
	// A long (valid, absolute) path fills the document.
	p.Node.CloudInitLog = "/" + strings.Repeat("m", MaxUserData-base-len(`,"cloud_init_log": "/"`)-64)
	if ud, err := Render(p); err != nil {
		t.Errorf("near the limit: %v", err)
	} else if len(ud) > MaxUserData {
		t.Errorf("rendered %d bytes", len(ud))
	}
	p.Node.CloudInitLog += strings.Repeat("m", 200)
	if _, err := Render(p); err == nil {
		t.Error("over the limit rendered without error")
	}
}

// TestSchema runs Debian's real cloud-init schema validator on every variant.
func TestSchema(t *testing.T) {
	bin := testutil.NeedBinary(t, "cloud-init")
	dir := t.TempDir()
	for name, p := range variants() {
		for suffix, ud := range map[string][]byte{"": render(t, p), "-masked": Mask(render(t, p))} {
			t.Run(name+suffix, func(t *testing.T) {
				f := filepath.Join(dir, name+suffix+".yaml")
				if err := os.WriteFile(f, ud, 0o600); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(bin, "schema", "--config-file", f).CombinedOutput()
				if err != nil {
					t.Fatalf("cloud-init schema: %v\n%s", err, out)
				}
				if !bytes.Contains(out, []byte("Valid cloud-config")) {
					t.Errorf("cloud-init schema said:\n%s", out)
				}
			})
		}
	}
}
