// Package demoimage builds dynia's demo app images offline and pushes them
// to a registry: demo-app:v1, demo-app:v2 and demo-app:broken, used by the
// container runtime's tests (internal/container) and by the sandbox.
//
// An image is one layer holding one static binary (/demo-app, the program in
// app/main.go, built with CGO_ENABLED=0) and a config whose Entrypoint runs it
// and whose Env bakes the version in. It is made with go-containerregistry
// from an empty image, so no base image, no Dockerfile, no docker build and
// no registry access are needed. Build is reproducible: the same binary and
// version give the same manifest digest (file times and the creation time
// are the Unix epoch).
//
// The app listens on AppPort and answers "<DYNIA_NODE_ID> <version>" on /
// and 200 on /healthz; the broken variant answers 500 on /healthz forever.
// Setting DEMO_APP_MODE=exit in the container's environment makes any
// variant exit at once with status 3 (a release that crashes on start).
package demoimage

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/dynia/dynia/internal/extcmd"
)

// AppPort is the TCP port the demo app listens on inside the container.
const AppPort = 8080

// Repo is the repository name the tests and the sandbox push the images to.
const Repo = "demo-app"

// Broken is the version whose image never becomes healthy.
const Broken = "broken"

// BinaryPath is where the binary sits in the image (its Entrypoint).
const BinaryPath = "/demo-app"

//go:embed app/main.go
var appSource []byte

var validVersion = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Build returns the demo image for version (e.g. "v1", "v2", or Broken),
// with the binary Binary compiles. The image is in memory; Push uploads it.
func Build(version string) (v1.Image, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	return BuildFrom(bin, version)
}

// BuildFrom returns the demo image for version around binary, the contents
// of a static linux executable for this machine's architecture that behaves
// like app/main.go (callers that ship a prebuilt binary use this).
func BuildFrom(binary []byte, version string) (v1.Image, error) {
	if !validVersion.MatchString(version) {
		return nil, fmt.Errorf("demo image: invalid version %q (want [A-Za-z0-9._-], at most 64)", version)
	}
	if len(binary) == 0 {
		return nil, errors.New("demo image: empty binary")
	}
	layer, err := binaryLayer(binary)
	if err != nil {
		return nil, err
	}
	env := []string{
		"DEMO_APP_VERSION=" + version,
		fmt.Sprintf("DEMO_APP_ADDR=:%d", AppPort),
	}
	if version == Broken {
		env = append(env, "DEMO_APP_MODE=broken")
	}
	cfg := &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: time.Unix(0, 0).UTC()},
		Config: v1.Config{
			Entrypoint:   []string{BinaryPath},
			Env:          env,
			ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", AppPort): {}},
			// nobody: the app needs no privilege, and a scratch image has no
			// /etc/passwd, so the user is numeric.
			User: "65534:65534",
			Labels: map[string]string{
				"org.opencontainers.image.title":   "dynia demo app",
				"org.opencontainers.image.version": version,
			},
		},
	}
	base, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("demo image: config: %w", err)
	}
	img, err := mutate.Append(base, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: time.Unix(0, 0).UTC()},
			CreatedBy: "dynia internal/demoimage: " + BinaryPath,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("demo image: append layer: %w", err)
	}
	return img, nil
}

// lastLayer is the layer of the binary BuildFrom saw last: the variants of
// one binary share it, so it is tarred and gzipped once, not once per
// image and again per push (the sandbox builds all three at start).
var lastLayer struct {
	sync.Mutex
	sum   [sha256.Size]byte
	layer v1.Layer
}

// binaryLayer is the one-file layer holding binary at BinaryPath.
func binaryLayer(binary []byte) (v1.Layer, error) {
	sum := sha256.Sum256(binary)
	lastLayer.Lock()
	defer lastLayer.Unlock()
	if lastLayer.layer != nil && lastLayer.sum == sum {
		return lastLayer.layer, nil
	}
	layerTar, err := singleFileTar(BinaryPath[1:], binary, 0o755)
	if err != nil {
		return nil, fmt.Errorf("demo image: layer: %w", err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("demo image: layer: %w", err)
	}
	lastLayer.sum, lastLayer.layer = sum, layer
	return layer, nil
}

// singleFileTar is a tar stream holding one root-owned regular file with
// the Unix epoch as its time, so the layer digest depends on content only.
func singleFileTar(name string, data []byte, mode int64) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     mode,
		Size:     int64(len(data)),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

var binary struct {
	sync.Mutex
	data []byte
}

// Binary compiles app/main.go (embedded in this package) into a static
// linux binary for this machine's architecture with the `go` command
// (on PATH, else /usr/local/go/bin/go), once per process. It needs the Go
// toolchain but no network: the app uses the standard library only.
func Binary() ([]byte, error) {
	binary.Lock()
	defer binary.Unlock()
	if binary.data != nil {
		return binary.data, nil
	}
	goBin, err := goCommand()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dynia-demo-app-")
	if err != nil {
		return nil, fmt.Errorf("demo app build: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }() // scratch directory; a leftover in the temp dir is harmless
	files := map[string][]byte{
		"go.mod":  []byte("module dynia-demo-app\n\ngo 1.22\n"),
		"main.go": appSource,
	}
	for n, b := range files {
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			return nil, fmt.Errorf("demo app build: %w", err)
		}
	}
	out := filepath.Join(dir, "demo-app")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH,
		"GOFLAGS=-mod=mod", "GOWORK=off", "GOTOOLCHAIN=local", "GO111MODULE=on")
	if _, err := extcmd.Combined(cmd); err != nil {
		return nil, fmt.Errorf("demo app build: %w", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("demo app build: %w", err)
	}
	binary.data = data
	return data, nil
}

func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	// `make` and CI put Go in /usr/local/go without always adding it to PATH.
	const fallback = "/usr/local/go/bin/go"
	if _, err := os.Stat(fallback); err == nil {
		return fallback, nil
	}
	return "", errors.New("demo app build: the go command (on PATH or " + fallback + ") is needed to compile the demo app")
}

// Push uploads img to registryHostPort (e.g. "10.1.2.1:5000") as repo:tag
// and returns the manifest digest ("sha256:<64 hex>"), which is what a pull
// by digest names. The registry is spoken to over plain HTTP when it does
// not answer HTTPS (name.Insecure): Push is for the tests' and the
// sandbox's own registries. opts add e.g. remote.WithAuth for a registry
// with htpasswd authentication.
func Push(ctx context.Context, registryHostPort, repo, tag string, img v1.Image, opts ...remote.Option) (string, error) {
	ref, err := name.NewTag(registryHostPort+"/"+repo+":"+tag, name.Insecure, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("push demo image: reference %q: %w", registryHostPort+"/"+repo+":"+tag, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push demo image %s: digest: %w", ref, err)
	}
	if err := remote.Write(ref, img, append([]remote.Option{remote.WithContext(ctx)}, opts...)...); err != nil {
		return "", fmt.Errorf("push demo image %s to registry %s: %w", ref, registryHostPort, err)
	}
	return digest.String(), nil
}
