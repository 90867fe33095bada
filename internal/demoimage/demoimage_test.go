package demoimage

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/dynia/dynia/internal/testutil"
)

func TestBinaryIsStatic(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("not an ELF binary: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the demo app binary has an ELF interpreter: it is dynamically linked and cannot run FROM scratch")
		}
	}
}

func TestBuild(t *testing.T) {
	digests := map[string]string{}
	for _, v := range []string{"v1", "v2", Broken} {
		img, err := Build(v)
		if err != nil {
			t.Fatal(err)
		}
		dg, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests[v] = dg.String()
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.Config.Entrypoint, []string{BinaryPath}) || cfg.OS != "linux" {
			t.Errorf("%s: entrypoint %v os %s, want [%s] linux", v, cfg.Config.Entrypoint, cfg.OS, BinaryPath)
		}
		if !slices.Contains(cfg.Config.Env, "DEMO_APP_VERSION="+v) {
			t.Errorf("%s: env %v lacks DEMO_APP_VERSION=%s", v, cfg.Config.Env, v)
		}
		if got := slices.Contains(cfg.Config.Env, "DEMO_APP_MODE=broken"); got != (v == Broken) {
			t.Errorf("%s: DEMO_APP_MODE=broken in env = %v", v, got)
		}
		if _, ok := cfg.Config.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("%s: exposed ports %v, want 8080/tcp", v, cfg.Config.ExposedPorts)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: layers %d (%v), want 1", v, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		hdr, err := tr.Next()
		if err != nil || hdr.Name != BinaryPath[1:] || hdr.Mode != 0o755 {
			t.Errorf("%s: layer entry %+v (%v), want %s 0755", v, hdr, err, BinaryPath[1:])
		}
		if _, err := tr.Next(); !errors.Is(err, io.EOF) {
			t.Errorf("%s: layer holds more than the binary (%v)", v, err)
		}
		rc.Close()
	}
	if digests["v1"] == digests["v2"] || digests["v2"] == digests[Broken] {
		t.Errorf("variants share a digest: %v", digests)
	}
	// Reproducible: the same binary and version give the same digest.
	again, err := Build("v1")
	if err != nil {
		t.Fatal(err)
	}
	if dg, _ := again.Digest(); dg.String() != digests["v1"] {
		t.Errorf("second Build(v1) digest %s, first %s", dg, digests["v1"])
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	for _, v := range []string{"", "v 1", "../x", "-v1"} {
		if _, err := BuildFrom([]byte("x"), v); err == nil {
			t.Errorf("BuildFrom(version %q) succeeded", v)
		}
	}
	if _, err := BuildFrom(nil, "v1"); err == nil {
		t.Error("BuildFrom(empty binary) succeeded")
	}
}

func TestPush(t *testing.T) {
	reg := testutil.StartRegistry(t, "127.0.0.1", testutil.WithHtpasswd("pusher", "push-pass"))
	img, err := Build("v1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	auth := remote.WithAuth(&authn.Basic{Username: "pusher", Password: "push-pass"})

	_, err = Push(ctx, reg.Addr, Repo, "v1", img)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous Push = %v, want a 401 from the registry", err)
	}

	digest, err := Push(ctx, reg.Addr, Repo, "v1", img, auth)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if digest != want.String() {
		t.Errorf("Push returned %s, image digest %s", digest, want)
	}
	ref, err := name.NewDigest(reg.Addr+"/"+Repo+"@"+digest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref, auth)
	if err != nil {
		t.Fatalf("pull back by digest: %v", err)
	}
	cfg, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cfg.Config.Env, "DEMO_APP_VERSION=v1") {
		t.Errorf("pulled config env %v, want DEMO_APP_VERSION=v1", cfg.Config.Env)
	}
}
