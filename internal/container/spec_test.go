package container

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

const (
	digestA = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	digestB = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
)

func TestName(t *testing.T) {
	for _, c := range []struct {
		release int64
		digest  string
		want    string
	}{
		{1, digestA, "dynia-app-r1-0123456789ab"},
		{42, digestB, "dynia-app-r42-fedcba987654"},
		{7, "sha256:abc", "dynia-app-r7-abc"},
	} {
		if got := Name(c.release, c.digest); got != c.want {
			t.Errorf("Name(%d, %s) = %q, want %q", c.release, c.digest, got, c.want)
		}
	}
}

func TestParseDigestRef(t *testing.T) {
	for _, c := range []struct {
		ref     string
		want    DigestRef
		wantErr string
	}{
		{ref: "10.1.2.1:5000/demo-app@" + digestA, want: DigestRef{Repo: "10.1.2.1:5000/demo-app", Domain: "10.1.2.1:5000", Digest: digestA}},
		{ref: "registry.example.com/team/app@" + digestB, want: DigestRef{Repo: "registry.example.com/team/app", Domain: "registry.example.com", Digest: digestB}},
		{ref: "nginx@" + digestA, want: DigestRef{Repo: "docker.io/library/nginx", Domain: "docker.io", Digest: digestA}},
		{ref: "nginx:1.25", wantErr: "a pull by digest"},
		{ref: "nginx:1.25@" + digestA, wantErr: "without a tag"},
		{ref: "nginx@sha256:short", wantErr: "invalid"},
		{ref: "", wantErr: "image"},
		{ref: "team/UPPER@" + digestA, wantErr: "image"},
	} {
		got, err := ParseDigestRef(c.ref)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("ParseDigestRef(%q) error = %v, want ErrInvalidSpec containing %q", c.ref, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseDigestRef(%q): %v", c.ref, err)
			continue
		}
		if diff := cmp.Diff(c.want, got); diff != "" {
			t.Errorf("ParseDigestRef(%q) (-want +got):\n%s", c.ref, diff)
		}
	}
}

func validSpec() Spec {
	return Spec{
		Cluster:       "blue-fox",
		Node:          "n1",
		Release:       3,
		Image:         "10.1.2.1:5000/demo-app@" + digestA,
		BindIP:        netip.MustParseAddr("10.1.2.11"),
		ContainerPort: 8080,
		Env:           map[string]string{"DYNIA_NODE_ID": "n1", "DB_PASSWORD": "hunter2-secret"},
	}
}

func TestSpecValidate(t *testing.T) {
	for _, c := range []struct {
		name    string
		mutate  func(*Spec)
		wantErr string
	}{
		{"valid", func(*Spec) {}, ""},
		{"cluster", func(s *Spec) { s.Cluster = "Blue Fox" }, `cluster "Blue Fox"`},
		{"node", func(s *Spec) { s.Node = "n_1" }, `node "n_1"`},
		{"release", func(s *Spec) { s.Release = 0 }, "release 0"},
		{"tag", func(s *Spec) { s.Image = "demo-app:v1" }, `image "demo-app:v1"`},
		{"bind unset", func(s *Spec) { s.BindIP = netip.Addr{} }, "bind IP"},
		{"bind any", func(s *Spec) { s.BindIP = netip.IPv4Unspecified() }, `bind IP "0.0.0.0"`},
		{"port", func(s *Spec) { s.ContainerPort = 0 }, "container port 0"},
		{"memory", func(s *Spec) { s.Memory = 1 << 20 }, "memory 1048576"},
		{"pids", func(s *Spec) { s.PidsLimit = -1 }, "pids limit -1"},
		{"env name", func(s *Spec) { s.Env = map[string]string{"A=B": "x"} }, `env name "A=B"`},
		{"env value", func(s *Spec) { s.Env = map[string]string{"TOKEN": "sec\x00ret"} }, "env TOKEN"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := validSpec()
			c.mutate(&s)
			err := s.Validate()
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) || !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Validate() = %v, want ErrInvalidSpec containing %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), "sec\x00ret") || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Validate error shows an env value: %v", err)
			}
		})
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	s := validSpec()
	labels := s.Labels()
	for k, v := range labels {
		if strings.Contains(v, s.Env["DB_PASSWORD"]) {
			t.Errorf("label %s=%q holds the secret env value", k, v)
		}
	}
	m, ok, err := ParseLabels(labels)
	if err != nil || !ok {
		t.Fatalf("ParseLabels(Labels()) = ok %v, err %v", ok, err)
	}
	want := Meta{Cluster: "blue-fox", Node: "n1", Release: 3, Image: "10.1.2.1:5000/demo-app@" + digestA, Digest: digestA}
	if diff := cmp.Diff(want, m); diff != "" {
		t.Errorf("ParseLabels (-want +got):\n%s", diff)
	}
}

func TestParseLabels(t *testing.T) {
	good := validSpec().Labels()
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, c := range []struct {
		name    string
		labels  map[string]string
		wantOK  bool
		wantErr string
	}{
		{"not dynia's", map[string]string{"maintainer": "x"}, false, ""},
		{"nil", nil, false, ""},
		{"good", good, true, ""},
		{"release text", with(LabelRelease, "three"), true, `dynia.release="three"`},
		{"release zero", with(LabelRelease, "0"), true, "dynia.release"},
		{"image tag", with(LabelImage, "demo-app:v1"), true, "dynia.image"},
		{"digest mismatch", with(LabelDigest, digestB), true, "disagrees"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ok, err := ParseLabels(c.labels)
			if ok != c.wantOK {
				t.Errorf("ok = %v, want %v", ok, c.wantOK)
			}
			if c.wantErr == "" && err != nil {
				t.Errorf("err = %v", err)
			}
			if c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("err = %v, want it to contain %q", err, c.wantErr)
			}
		})
	}
}

func TestEnvSorted(t *testing.T) {
	s := validSpec()
	s.Env = map[string]string{"B": "2", "A": "1", "C": "=3"}
	if diff := cmp.Diff([]string{"A=1", "B=2", "C==3"}, s.env()); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestPickPort(t *testing.T) {
	r := PortRange{First: 20000, Last: 20004}
	takenSet := func(ps ...uint16) func(uint16) bool {
		return func(p uint16) bool { return slices.Contains(ps, p) }
	}
	for _, c := range []struct {
		name    string
		start   uint16
		taken   func(uint16) bool
		want    uint16
		wantErr bool
	}{
		{"first free", 20000, takenSet(), 20000, false},
		{"from start", 20003, takenSet(), 20003, false},
		{"skip taken", 20001, takenSet(20001, 20002), 20003, false},
		{"wrap around", 20004, takenSet(20004), 20000, false},
		{"start outside range", 7, takenSet(), 20002, false}, // 7 % 5 = 2
		{"all taken", 20000, takenSet(20000, 20001, 20002, 20003, 20004), 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := PickPort(r, c.start, c.taken)
			if (err != nil) != c.wantErr {
				t.Fatalf("PickPort err = %v, wantErr %v", err, c.wantErr)
			}
			if got != c.want {
				t.Errorf("PickPort = %d, want %d", got, c.want)
			}
		})
	}
}

func TestPortRangeValidate(t *testing.T) {
	for _, c := range []struct {
		r  PortRange
		ok bool
	}{
		{DefaultPorts, true},
		{PortRange{1024, 1024}, true},
		{PortRange{80, 90}, false},
		{PortRange{30000, 20000}, false},
	} {
		if err := c.r.Validate(); (err == nil) != c.ok {
			t.Errorf("%v.Validate() = %v, want ok %v", c.r, err, c.ok)
		}
	}
}

func TestIsPortConflict(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want bool
	}{
		{"driver failed programming external connectivity on endpoint x: Bind for 10.1.2.11:20001 failed: port is already allocated", true},
		{"Error starting userland proxy: listen tcp4 10.1.2.11:20001: bind: address already in use", true},
		{"OCI runtime create failed: no such file", false},
	} {
		if got := isPortConflict(errors.New(c.msg)); got != c.want {
			t.Errorf("isPortConflict(%q) = %v, want %v", c.msg, got, c.want)
		}
	}
}

func TestEncodeAuth(t *testing.T) {
	for _, c := range []struct {
		name string
		auth Auth
		want *registry.AuthConfig
	}{
		{"anonymous", Auth{}, nil},
		{"password", Auth{Username: "alice", Password: "pw"}, &registry.AuthConfig{Username: "alice", Password: "pw", ServerAddress: "reg.example.com"}},
		{"identity token", Auth{IdentityToken: "refresh"}, &registry.AuthConfig{IdentityToken: "refresh", ServerAddress: "reg.example.com"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			enc, err := EncodeAuth(c.auth, "reg.example.com")
			if err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				if enc != "" {
					t.Errorf("EncodeAuth(anonymous) = %q, want no header", enc)
				}
				return
			}
			raw, err := base64.URLEncoding.DecodeString(enc)
			if err != nil {
				t.Fatalf("not base64url: %v", err)
			}
			var got registry.AuthConfig
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(*c.want, got); diff != "" {
				t.Errorf("decoded auth (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthNeverPrintsSecrets(t *testing.T) {
	a := Auth{Username: "alice", Password: "hunter2", IdentityToken: ""}
	b := Auth{IdentityToken: "tok-secret"}
	for _, s := range []string{
		fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a),
		fmt.Sprintf("%v %+v %#v", b, b, b),
		fmt.Sprintf("%v", struct{ A Auth }{a}),
	} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok-secret") {
			t.Errorf("formatted Auth shows a secret: %s", s)
		}
	}
	if got := a.String(); got != "user alice" {
		t.Errorf("String = %q", got)
	}
}

func TestSplitLines(t *testing.T) {
	long := strings.Repeat("x", MaxLogLineBytes+10)
	for _, c := range []struct {
		in   string
		n    int
		want []string
	}{
		{"", 5, nil},
		{"a\nb\nc\n", 5, []string{"a", "b", "c"}},
		{"a\nb\nc\n", 2, []string{"b", "c"}},
		{"a\r\nb", 5, []string{"a", "b"}},
		{long + "\n", 1, []string{long[:MaxLogLineBytes] + "…"}},
	} {
		if diff := cmp.Diff(c.want, splitLines([]byte(c.in), c.n)); diff != "" {
			t.Errorf("splitLines(%q, %d) (-want +got):\n%s", c.in, c.n, diff)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 8}
	for _, s := range []string{"hello ", "world", "!"} {
		if _, err := b.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := string(b.Bytes()); got != "o world!"[len("o world!")-8:] {
		t.Errorf("tailBuffer = %q, want the last 8 bytes %q", got, "o world!")
	}
}

func TestUnhealthyErrorMessage(t *testing.T) {
	e := &UnhealthyError{Container: "dynia-app-r3-0123456789ab", URL: "http://10.1.2.11:20001/healthz",
		Reason: "exited with status 3", Exited: true, ExitCode: 3, Logs: []string{"starting", "boom"}}
	want := "container dynia-app-r3-0123456789ab not healthy at http://10.1.2.11:20001/healthz: exited with status 3; last log lines: starting | boom"
	if got := e.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
}

// fakeIptables keeps DOCKER-USER's rules in memory and answers like
// iptables: -L fails on a missing chain, -C fails on a missing rule.
type fakeIptables struct {
	chain bool
	rules [][]string
	calls []string
}

func (f *fakeIptables) run(_ context.Context, args ...string) ([]byte, error) {
	f.calls = append(f.calls, strings.Join(args, " "))
	switch args[0] {
	case "-n":
		if !f.chain {
			return nil, errors.New("iptables: No chain/target/match by that name.")
		}
	case "-N":
		if f.chain {
			return nil, errors.New("iptables: Chain already exists.")
		}
		f.chain = true
	case "-C":
		for _, r := range f.rules {
			if slices.Equal(r, args[2:]) {
				return nil, nil
			}
		}
		return nil, errors.New("iptables: Bad rule (does a matching rule exist in that chain?).")
	case "-I":
		if !f.chain {
			return nil, errors.New("iptables: No chain/target/match by that name.")
		}
		f.rules = append([][]string{args[2:]}, f.rules...)
	default:
		return nil, fmt.Errorf("unexpected iptables %v", args)
	}
	return nil, nil
}

func TestBlockMetadataIdempotent(t *testing.T) {
	for _, chain := range []bool{false, true} {
		t.Run(fmt.Sprintf("chain exists %v", chain), func(t *testing.T) {
			f := &fakeIptables{chain: chain}
			for i := 0; i < 3; i++ {
				if err := BlockMetadata(context.Background(), f.run); err != nil {
					t.Fatalf("BlockMetadata #%d: %v", i+1, err)
				}
			}
			if diff := cmp.Diff([][]string{MetadataRule()}, f.rules); diff != "" {
				t.Errorf("rules after 3 calls (-want +got):\n%s", diff)
			}
			if !slices.Contains(MetadataRule(), MetadataIP+"/32") || !slices.Contains(MetadataRule(), "DROP") {
				t.Errorf("MetadataRule %v does not drop %s", MetadataRule(), MetadataIP)
			}
		})
	}
}

// TestClientPinned guards the pin: docs/container.md's API version facts
// (client range 1.40–1.56) are those of moby/moby/client v0.6.2, and a
// `go mod tidy` once silently moved it to an older release.
func TestClientPinned(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"github.com/moby/moby/client v0.6.2\n", "github.com/moby/moby/api v1.56.1\n"} {
		if !strings.Contains(string(mod), "\t"+want) {
			t.Errorf("go.mod does not require %s(update docs/container.md when moving it)", want)
		}
	}
	if MinAPIVersion != "1.40" || client.MaxAPIVersion != "1.56" {
		t.Errorf("client API range %s–%s, docs say 1.40–1.56", MinAPIVersion, client.MaxAPIVersion)
	}
}

func TestIsAuthError(t *testing.T) {
	for _, c := range []struct {
		msg  string
		want bool
	}{
		{"Error response from daemon: unauthorized: authentication required", true},
		{`Get "http://10.1.2.1:5000/v2/app/manifests/sha256:x": no basic auth credentials`, true},
		{"pull access denied for app, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", true},
		{"open /var/lib/docker/image/overlay2/x: permission denied", false},
		{"manifest unknown", false},
	} {
		if got := isAuthError(errors.New(c.msg)); got != c.want {
			t.Errorf("isAuthError(%q) = %v, want %v", c.msg, got, c.want)
		}
	}
}
