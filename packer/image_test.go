package packer_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/testutil"
)

// cacheDir is shared with hack/deps.d/40-packer.sh.
const cacheDir = "/root/.cache/dynia"

// testVersion is stamped into the dynia-pull the tests install, so the
// version check proves the image carries the binary it was given.
const testVersion = "0.0.0-imagecheck"

func runCmd(ctx context.Context, t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func need(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	if testutil.Required() {
		t.Fatalf("integration prerequisite missing (DYNIA_REQUIRE_INTEGRATION=1): "+format, args...)
	}
	t.Skipf("integration prerequisite missing: "+format, args...)
}

// packerEnv points Packer at the plugin built by make deps and keeps it off
// the network (no checkpoint/telemetry calls) and out of $HOME.
func packerEnv(t *testing.T) []string {
	plugins := os.Getenv("PACKER_PLUGIN_PATH")
	if plugins == "" {
		plugins = filepath.Join(cacheDir, "packer-plugins")
	}
	matches, _ := filepath.Glob(filepath.Join(plugins, "github.com/digitalocean/digitalocean/packer-plugin-digitalocean_v*_SHA256SUM"))
	need(t, len(matches) > 0, "packer-plugin-digitalocean not in %s (run `make deps`)", plugins)
	return []string{
		"PACKER_PLUGIN_PATH=" + plugins,
		"PACKER_CONFIG_DIR=" + t.TempDir(),
		"CHECKPOINT_DISABLE=1",
		"PACKER_NO_COLOR=1",
		// validate runs the builder's Prepare, which insists on a token;
		// this one never reaches an API.
		"DIGITALOCEAN_TOKEN=validate-only-not-a-token",
	}
}

func TestPackerFmtAndValidate(t *testing.T) {
	packer := testutil.NeedBinary(t, "packer")
	env := packerEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, err := runCmd(ctx, t, env, packer, "version")
	if err != nil {
		t.Fatal(err)
	}
	// Debian's packer 1.6.6 cannot parse required_plugins: insist on ours.
	if !strings.Contains(out, "v1.9.4") {
		t.Fatalf("packer version = %q, want v1.9.4 (run `make deps`)", strings.TrimSpace(out))
	}
	if out, err := runCmd(ctx, t, env, packer, "fmt", "-check", "-diff", "."); err != nil {
		t.Fatalf("packer fmt -check: %v\n%s", err, out)
	}

	bin := filepath.Join(t.TempDir(), "dynia-pull")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	validate := func(vars ...string) (string, error) {
		args := []string{"validate", "-var", "dynia_pull_binary=" + bin}
		for _, v := range vars {
			args = append(args, "-var", v)
		}
		return runCmd(ctx, t, env, packer, append(args, "dynia-node.pkr.hcl")...)
	}
	for _, vars := range [][]string{
		{"version=1.2.3"},
		{"version=1.2.3-rc.1", "base_image=ubuntu-24-04-x64", `snapshot_regions=["nyc3","fra1"]`, "region=ams3"},
	} {
		if out, err := validate(vars...); err != nil {
			t.Errorf("packer validate %v: %v", vars, err)
		} else if !strings.Contains(out, "The configuration is valid") {
			t.Errorf("packer validate %v said: %s", vars, out)
		}
	}
	// The validation rules hold: these must be refused.
	for _, vars := range [][]string{
		{"version=1.2.3", "base_image=centos-stream-9-x64"},
		{"version=1.2.3 evil"},
		{}, // version is required
	} {
		if out, err := validate(vars...); err == nil {
			t.Errorf("packer validate %v accepted it:\n%s", vars, out)
		}
	}
}

// hostMirrors finds the Debian archive and security mirrors this machine
// uses (deb822 .sources or one-line sources.list), so the test never
// hardcodes a host.
func hostMirrors(t *testing.T) (archive, security string) {
	t.Helper()
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, stanza := range strings.Split(string(b), "\n\n") {
			var uris, suites []string
			for _, line := range strings.Split(stanza, "\n") {
				k, v, ok := strings.Cut(line, ":")
				if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				switch strings.TrimSpace(k) {
				case "URIs":
					uris = strings.Fields(v)
				case "Suites":
					suites = strings.Fields(v)
				}
			}
			pick(uris, suites, &archive, &security)
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			// deb [opts] URI SUITE COMPONENTS...
			if len(f) < 3 || f[0] != "deb" {
				continue
			}
			f = f[1:]
			if strings.HasPrefix(f[0], "[") {
				for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
					f = f[1:]
				}
				f = f[1:]
			}
			if len(f) >= 2 {
				pick(f[:1], f[1:2], &archive, &security)
			}
		}
	}
	need(t, archive != "" && security != "", "no bookworm and bookworm-security sources on this machine (archive %q, security %q)", archive, security)
	return archive, security
}

func pick(uris, suites []string, archive, security *string) {
	if len(uris) == 0 {
		return
	}
	for _, s := range suites {
		if s == "bookworm" && *archive == "" {
			*archive = uris[0]
		}
		if s == "bookworm-security" && *security == "" {
			*security = uris[0]
		}
	}
}

// baseRoot returns a tarball of a minbase bookworm root plus systemd (every
// droplet image has it; provision.sh needs systemctl), made once by
// debootstrap and cached (a cold debootstrap takes about half a minute).
func baseRoot(ctx context.Context, t *testing.T, archive string) string {
	t.Helper()
	tarball := filepath.Join(cacheDir, "debootstrap-bookworm-minbase-systemd.tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}
	debootstrap := testutil.NeedBinary(t, "debootstrap")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "base")
	start := time.Now()
	if _, err := runCmd(ctx, t, nil, debootstrap, "--variant=minbase", "--include=systemd,systemd-sysv", "bookworm", dir, archive); err != nil {
		t.Fatalf("debootstrap: %v", err)
	}
	tmp := tarball + ".tmp"
	if _, err := runCmd(ctx, t, nil, "tar", "-C", dir, "--numeric-owner", "-cf", tmp, "."); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, tarball); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap + cache: %v", time.Since(start).Round(time.Second))
	return tarball
}

// dyniaPull builds the real cmd/dynia-pull, stamped with testVersion. Until
// that command exists a stub stands in, and CI (DYNIA_REQUIRE_INTEGRATION=1)
// fails: the image check is only meaningful with the real binary.
func dyniaPull(ctx context.Context, t *testing.T) (path string, real bool) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dynia-pull")
	env := []string{"CGO_ENABLED=0"} // it runs inside the chroot
	if srcs, _ := filepath.Glob("../cmd/dynia-pull/*.go"); len(srcs) > 0 {
		// Both places a version may be stamped (the Makefile's and main's).
		ldflags := "-X main.version=" + testVersion + " -X github.com/dynia/dynia/internal/pull.Version=" + testVersion
		if _, err := runCmd(ctx, t, env, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "../cmd/dynia-pull"); err != nil {
			t.Fatalf("build dynia-pull: %v", err)
		}
		return out, true
	}
	if testutil.Required() {
		t.Fatal("cmd/dynia-pull does not exist yet: the image check needs the real binary")
	}
	t.Log("cmd/dynia-pull does not exist yet: using a stub dynia-pull")
	src := t.TempDir()
	main := `package main

import ("fmt"; "os")

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("dynia-pull ` + testVersion + `")
		return
	}
	os.Exit(2)
}
`
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module stub\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stub: %v\n%s", err, b)
	}
	return out, false
}

// inChroot runs a command in root with /proc, /sys and /dev mounted in a
// private mount namespace: the mounts vanish with the process, so nothing
// is left mounted on the host whatever happens to the test.
func inChroot(ctx context.Context, t *testing.T, root string, env []string, args ...string) (string, error) {
	t.Helper()
	script := `set -e
r=$1; shift
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
exec chroot "$r" "$@"`
	full := append([]string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh", root,
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, env...)
	return runCmd(ctx, t, nil, "unshare", append(full, args...)...)
}

func copyFile(t *testing.T, src, dst string, mode fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// harnessPolicy is the test's own policy-rc.d: provision.sh must leave it.
const harnessPolicy = "#!/bin/sh\n# image test harness\nexit 101\n"

// prepareRoot unpacks the cached base root into a temp dir and makes it
// look like a fresh droplet to apt: sources with bookworm-updates and
// security from this machine's mirrors, the host's resolver, service starts
// blocked. dpkg runs with force-unsafe-io (test-only, the root is thrown
// away); dropUnsafeIO removes that before the assertions.
func prepareRoot(ctx context.Context, t *testing.T) string {
	t.Helper()
	archive, security := hostMirrors(t)
	tarball := baseRoot(ctx, t, archive)
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(ctx, t, nil, "tar", "-C", root, "--numeric-owner", "-xf", tarball); err != nil {
		t.Fatal(err)
	}
	sources := fmt.Sprintf(`Types: deb
URIs: %s
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: %s
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`, archive, security)
	writeFile(t, filepath.Join(root, "etc/apt/sources.list.d/debian.sources"), sources, 0o644)
	if err := os.Remove(filepath.Join(root, "etc/apt/sources.list")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	copyFile(t, "/etc/resolv.conf", filepath.Join(root, "etc/resolv.conf"), 0o644)
	writeFile(t, filepath.Join(root, "usr/sbin/policy-rc.d"), harnessPolicy, 0o755)
	writeFile(t, filepath.Join(root, unsafeIOPath), "force-unsafe-io\n", 0o644)
	return root
}

const unsafeIOPath = "etc/dpkg/dpkg.cfg.d/image-check-unsafe-io"

func dropUnsafeIO(t *testing.T, root string) {
	t.Helper()
	if err := os.Remove(filepath.Join(root, unsafeIOPath)); err != nil {
		t.Fatal(err)
	}
}

// TestProvisionInChroot runs scripts/provision.sh (what Packer uploads)
// for real in a Debian 12 root, as Packer would on the build droplet, then
// checks the result and applies create-ha's snapshot-mode user-data to it.
func TestProvisionInChroot(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "unshare")
	testutil.NeedBinary(t, "chroot")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	start := time.Now()
	root := prepareRoot(ctx, t)
	t.Logf("base root ready: %v", time.Since(start).Round(100*time.Millisecond))

	bin, real := dyniaPull(ctx, t)
	// What Packer's file provisioners upload.
	copyFile(t, bin, filepath.Join(root, "tmp/dynia/dynia-pull"), 0o755)
	copyFile(t, "../cloudinit/files/dynia-pull.service", filepath.Join(root, "tmp/dynia/dynia-pull.service"), 0o644)
	copyFile(t, "scripts/provision.sh", filepath.Join(root, "root/provision.sh"), 0o755)

	provStart := time.Now()
	out, err := inChroot(ctx, t, root, []string{
		"DYNIA_PROVISION_MODE=image",
		"DYNIA_PULL_SRC=/tmp/dynia/dynia-pull",
		"DYNIA_UNIT_SRC=/tmp/dynia/dynia-pull.service",
		"DYNIA_EXPECT_VERSION=" + testVersion,
	}, "/root/provision.sh")
	if err != nil {
		t.Fatalf("provision.sh failed: %v", err)
	}
	dropUnsafeIO(t, root)
	t.Logf("provision.sh: %v (whole check so far %v)", time.Since(provStart).Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Fetched ") || strings.HasPrefix(line, "provision: dynia-pull version") {
			t.Log(line)
		}
	}

	t.Run("packages", func(t *testing.T) {
		installed := dpkgInstalled(t, root)
		for _, p := range []string{"haproxy", "keepalived", "docker.io", "curl", "ca-certificates", "iproute2", "wireguard-tools", "unattended-upgrades", "cloud-init"} {
			if !installed[p] {
				t.Errorf("package %s is not installed", p)
			}
		}
		if installed["needrestart"] {
			t.Error("needrestart is installed (recommends leaked in)")
		}
	})

	t.Run("units", func(t *testing.T) {
		wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
		// Lstat: enable links are absolute paths inside the root.
		for _, u := range []string{"dynia-pull.service", "docker.service"} {
			if _, err := os.Lstat(filepath.Join(wants, u)); err != nil {
				t.Errorf("%s is not enabled: %v", u, err)
			}
		}
		if target, err := os.Readlink(filepath.Join(wants, "dynia-pull.service")); err != nil || target != "/etc/systemd/system/dynia-pull.service" {
			t.Errorf("dynia-pull.service enable link -> %q (%v)", target, err)
		}
		unit, err := os.ReadFile(filepath.Join(root, "etc/systemd/system/dynia-pull.service"))
		if err != nil || !bytes.Equal(unit, cloudinit.Unit) {
			t.Errorf("installed unit differs from the canonical one (%v)", err)
		}
		for _, u := range []string{"haproxy.service", "keepalived.service"} {
			if target, err := os.Readlink(filepath.Join(root, "etc/systemd/system", u)); err != nil || target != "/dev/null" {
				t.Errorf("%s is not masked: link %q (%v)", u, target, err)
			}
			if _, err := os.Lstat(filepath.Join(wants, u)); err == nil {
				t.Errorf("%s is still enabled", u)
			}
		}
	})

	t.Run("nothing serves before dynia-pull", func(t *testing.T) {
		for _, f := range []string{"etc/haproxy/haproxy.cfg", "etc/keepalived/keepalived.conf"} {
			if _, err := os.Stat(filepath.Join(root, f)); err == nil {
				t.Errorf("/%s ships with the image", f)
			}
		}
		if got, err := os.ReadFile(filepath.Join(root, "usr/sbin/policy-rc.d")); err != nil || string(got) != harnessPolicy {
			t.Errorf("provision.sh touched the harness's policy-rc.d (%v)", err)
		}
	})

	t.Run("dynia-pull", func(t *testing.T) {
		st, err := os.Stat(filepath.Join(root, "usr/local/bin/dynia-pull"))
		if err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("/usr/local/bin/dynia-pull: %v %v", st, err)
		}
		out, err := inChroot(ctx, t, root, nil, "/usr/local/bin/dynia-pull", "version")
		if err != nil || !strings.Contains(out, testVersion) {
			t.Errorf("dynia-pull version = %q (%v), want %s", strings.TrimSpace(out), err, testVersion)
		}
		if st, err := os.Stat(filepath.Join(root, "etc/dynia")); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("/etc/dynia: %v %v, want mode 0700", st, err)
		}
	})

	t.Run("system settings", func(t *testing.T) {
		contains(t, root, "etc/sysctl.d/60-dynia.conf", "net.ipv4.ip_nonlocal_bind = 1")
		contains(t, root, "etc/systemd/journald.conf.d/60-dynia.conf", "SystemMaxUse=")
		contains(t, root, "etc/apt/apt.conf.d/20auto-upgrades", `APT::Periodic::Unattended-Upgrade "1";`)
		contains(t, root, "etc/apt/apt.conf.d/50unattended-upgrades", "label=Debian-Security")
		var daemon map[string]any
		if b, err := os.ReadFile(filepath.Join(root, "etc/docker/daemon.json")); err != nil || json.Unmarshal(b, &daemon) != nil {
			t.Errorf("etc/docker/daemon.json is missing or not JSON: %v", err)
		}
	})

	t.Run("fresh for the snapshot", func(t *testing.T) {
		for _, p := range []string{"var/lib/cloud/instance", "var/lib/cloud/instances", "var/log/cloud-init.log", "tmp/dynia"} {
			if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
				t.Errorf("/%s is left in the image", p)
			}
		}
		if b, err := os.ReadFile(filepath.Join(root, "etc/machine-id")); err != nil || len(b) != 0 {
			t.Errorf("/etc/machine-id is %q (%v), want empty so each droplet gets its own", b, err)
		}
	})

	t.Run("snapshot user-data applies", func(t *testing.T) {
		applyUserData(ctx, t, root, real)
	})
	t.Logf("whole chroot check: %v", time.Since(start).Round(100*time.Millisecond))
}

// applyUserData renders create-ha's snapshot-mode user-data, validates it
// with the cloud-init installed in the image, writes its files as cloud-init's
// write_files would, and checks that dynia-pull accepts the result. The
// "Spaces" is a versitygw on loopback (the chroot shares the host's network)
// holding a state object, so `dynia-pull check` exercises the config, the
// credentials file, a real S3 GET and the tools the image installed.
func applyUserData(ctx context.Context, t *testing.T, root string, real bool) {
	s3 := testutil.StartVersityGW(t)
	const prefix = "dynia"
	store, err := bucket.Open(ctx, s3.URL(prefix), bucket.Options{
		Endpoint: s3.Endpoint, Region: s3.Region, AccessKeyID: s3.AccessKeyID, SecretAccessKey: s3.SecretAccessKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, cluster.StateKey("myapp"), []byte(`{"name":"myapp"}`), bucket.Cond{}); err != nil {
		t.Fatal(err)
	}
	ud, err := cloudinit.Render(cloudinit.Params{
		Mode:     cloudinit.Snapshot,
		Cluster:  "myapp",
		NodeID:   "misty-owl",
		Hostname: "myapp-misty-owl",
		Node: nodeconfig.Config{
			StateURL:  s3.URL(prefix),
			Endpoint:  s3.Endpoint,
			Region:    s3.Region,
			PathStyle: true,
		},
		SpacesAccessKeyID:     s3.AccessKeyID,
		SpacesSecretAccessKey: s3.SecretAccessKey,
		DOToken:               "dop_v1_imagecheck",
	})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "tmp/user-data.yaml"), string(ud), 0o600)
	if out, err := inChroot(ctx, t, root, nil, "cloud-init", "schema", "--config-file", "/tmp/user-data.yaml"); err != nil {
		t.Errorf("the image's cloud-init rejects the user-data: %v", err)
	} else if !strings.Contains(out, "Valid cloud-config") {
		t.Errorf("cloud-init schema: %s", out)
	}

	cc, err := cloudinit.Parse(ud)
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, root, cc)

	pullJSON := filepath.Join(root, cloudinit.PullConfigPath)
	cfg, err := nodeconfig.Load(pullJSON)
	if err != nil {
		t.Fatalf("nodeconfig.Load: %v", err)
	}
	if !cfg.Supervise {
		t.Error("pull.json does not ask dynia-pull to supervise haproxy/keepalived, but the image masks their units")
	}
	for _, p := range []string{cloudinit.PullConfigPath, cfg.CredentialsFile, cfg.DOTokenFile} {
		st, err := os.Stat(filepath.Join(root, p))
		if err != nil || st.Mode().Perm() != 0o600 || st.Sys() == nil {
			t.Errorf("%s: %v %v, want a 0600 file", p, st, err)
		}
	}
	if st, err := os.Stat(filepath.Join(root, "etc/dynia")); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("/etc/dynia after write_files: %v %v", st, err)
	}

	if !real {
		t.Log("stub dynia-pull: checked with nodeconfig.Load only")
		return
	}
	out, err := inChroot(ctx, t, root, nil, "/usr/local/bin/dynia-pull", "check", "--config", cloudinit.PullConfigPath)
	if err != nil {
		t.Errorf("dynia-pull check: %v", err)
	} else {
		t.Logf("dynia-pull check: %s", strings.TrimSpace(out))
	}
}

// writeFiles does what cloud-init's write_files does with dynia's entries
// (plain-text content, octal permissions, root:root — we run as root).
func writeFiles(t *testing.T, root string, cc *cloudinit.Config) {
	t.Helper()
	for _, f := range cc.WriteFiles {
		mode, err := strconv.ParseUint(f.Permissions, 8, 32)
		if err != nil {
			t.Fatalf("%s: permissions %q: %v", f.Path, f.Permissions, err)
		}
		if f.Owner != "root:root" || f.Encoding != "" {
			t.Errorf("%s: owner %q encoding %q", f.Path, f.Owner, f.Encoding)
		}
		dst := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte(f.Content), fs.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dst, fs.FileMode(mode)); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, content string, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func contains(t *testing.T, root, path, want string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, path))
	if err != nil {
		t.Errorf("/%s: %v", path, err)
		return
	}
	if !strings.Contains(string(b), want) {
		t.Errorf("/%s lacks %q", path, want)
	}
}

// dpkgInstalled reads the root's dpkg status file: no chroot needed.
func dpkgInstalled(t *testing.T, root string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		t.Fatal(err)
	}
	installed := map[string]bool{}
	for _, stanza := range strings.Split(string(b), "\n\n") {
		var pkg, status string
		for _, line := range strings.Split(stanza, "\n") {
			if v, ok := strings.CutPrefix(line, "Package: "); ok {
				pkg = v
			}
			if v, ok := strings.CutPrefix(line, "Status: "); ok {
				status = v
			}
		}
		if status == "install ok installed" {
			installed[pkg] = true
		}
	}
	return installed
}

// TestBootstrapInChroot runs a --bootstrap droplet's first boot in a fresh
// Debian root: the user-data's files are written, then its runcmd
// (bootstrap.sh) provisions the node, downloads dynia-pull from a
// "presigned URL" served on loopback, checks its sha256 and enables the
// unit. A second boot with a tampered download must fail and keep the
// installed binary.
func TestBootstrapInChroot(t *testing.T) {
	testutil.NeedRoot(t)
	testutil.NeedBinary(t, "unshare")
	testutil.NeedBinary(t, "chroot")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	root := prepareRoot(ctx, t)
	binPath, _ := dyniaPull(ctx, t)
	bin, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)

	const signature = "X-Amz-Signature=0123abcd"
	var hits atomic.Int32
	var tampered atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/bin/dynia-pull-linux-amd64" || !strings.Contains(r.URL.RawQuery, signature) {
			http.Error(w, "bad presigned URL", http.StatusForbidden)
			return
		}
		if tampered.Load() {
			w.Write([]byte("#!/bin/sh\necho tampered\n"))
			return
		}
		w.Write(bin)
	}))
	t.Cleanup(srv.Close)

	ud, err := cloudinit.Render(cloudinit.Params{
		Mode:     cloudinit.Bootstrap,
		Cluster:  "myapp",
		NodeID:   "brave-panda",
		Hostname: "myapp-brave-panda",
		Node:     nodeconfig.Config{StateURL: "s3://dynia-state/dynia"},
		DOToken:  "dop_v1_bootstrapcheck",
		// A presigned URL carries its signature in the query.
		PullBinaryURL:    srv.URL + "/bin/dynia-pull-linux-amd64?X-Amz-Algorithm=AWS4-HMAC-SHA256&" + signature,
		PullBinarySHA256: hex.EncodeToString(sum[:]),
		Distro:           "debian-12-x64",
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cloudinit.Parse(ud)
	if err != nil {
		t.Fatal(err)
	}
	if len(cc.RunCmd) != 1 {
		t.Fatalf("runcmd = %v, want one command", cc.RunCmd)
	}
	boot := func() (string, error) {
		writeFiles(t, root, cc)
		return inChroot(ctx, t, root, nil, cc.RunCmd[0]...)
	}
	out, err := boot()
	if err != nil {
		t.Fatalf("first boot: %v", err)
	}
	dropUnsafeIO(t, root)
	t.Logf("bootstrap first boot: %v", time.Since(start).Round(100*time.Millisecond))

	installed := filepath.Join(root, cloudinit.PullBinaryPath)
	got, err := os.ReadFile(installed)
	if err != nil || !bytes.Equal(got, bin) {
		t.Fatalf("installed dynia-pull differs from the served one (%v)", err)
	}
	if st, _ := os.Stat(installed); st == nil || st.Mode().Perm() != 0o755 {
		t.Errorf("dynia-pull mode: %v", st)
	}
	if _, err := os.Stat(filepath.Join(root, cloudinit.PullBinaryURLPath)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the presigned URL file is left behind (%v)", err)
	}
	if strings.Contains(out, signature) {
		t.Error("bootstrap output shows the presigned URL")
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants/dynia-pull.service")); err != nil {
		t.Errorf("dynia-pull.service not enabled: %v", err)
	}
	if target, _ := os.Readlink(filepath.Join(root, "etc/systemd/system/haproxy.service")); target != "/dev/null" {
		t.Errorf("haproxy.service not masked (%q)", target)
	}
	pkgs := dpkgInstalled(t, root)
	for _, p := range []string{"haproxy", "keepalived", "docker.io", "curl"} {
		if !pkgs[p] {
			t.Errorf("package %s not installed", p)
		}
	}
	if _, err := nodeconfig.Load(filepath.Join(root, cloudinit.PullConfigPath)); err != nil {
		t.Error(err)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d downloads, want 1", n)
	}

	// A tampered download: the sha256 check fails, nothing is replaced.
	tampered.Store(true)
	out, err = boot()
	if err == nil {
		t.Fatalf("boot with a tampered download succeeded:\n%s", out)
	}
	if !strings.Contains(err.Error(), "FAILED") {
		t.Errorf("tampered boot failed, but not at the checksum: %v", err)
	}
	if got, _ := os.ReadFile(installed); !bytes.Equal(got, bin) {
		t.Error("a tampered download replaced dynia-pull")
	}
	leftovers, _ := filepath.Glob(filepath.Join(root, "usr/local/bin/.dynia-pull.*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary downloads left: %v", leftovers)
	}
	t.Logf("bootstrap check: %v", time.Since(start).Round(100*time.Millisecond))
}
