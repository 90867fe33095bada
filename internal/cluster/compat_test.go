package cluster

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dynia/dynia/internal/signing"
)

// The compatibility fixtures: state-previous.json is a state as the
// previous release wrote it (this release's format, frozen here: a later
// release must keep reading it); state-next.json is one a next release
// might write within schema_version 1, with optional fields this build
// does not know at the top level and nested (app, ha, a release, nodes).
func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "compat", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCompatFixtures: the node decoder reads the previous release's state
// and the next one's, to the same State; the CLI decoder reads the
// previous one and refuses the next one with a *NewerStateError naming
// the first unknown field and saying to upgrade the CLI.
func TestCompatFixtures(t *testing.T) {
	t.Parallel()
	prev, next := readFixture(t, "state-previous.json"), readFixture(t, "state-next.json")
	want, err := Decode(prev)
	if err != nil {
		t.Fatalf("CLI decoder, previous release's state: %v", err)
	}
	if diff := cmp.Diff(sample(t), want); diff != "" {
		t.Fatalf("previous release's state reads differently (-want +got):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{{"previous", prev}, {"next", next}} {
		got, err := DecodeNode(tc.b, "v1.0.0")
		if err != nil {
			t.Fatalf("node decoder, %s release's state: %v", tc.name, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("node decoder, %s release's state (-want +got):\n%s", tc.name, diff)
		}
	}
	_, err = Decode(next)
	var ne *NewerStateError
	if !errors.As(err, &ne) || ne.Field != "app.releases[0].command" {
		t.Fatalf("CLI decoder, next release's state: %v, want a NewerStateError for app.releases[0].command", err)
	}
	const msg = `state written by a newer dynia (field "app.releases[0].command" is unknown to this one, which would drop it on its next write): upgrade the dynia CLI`
	if err.Error() != msg {
		t.Fatalf("error %q, want %q", err, msg)
	}
}

// TestNodeDecoderStillStrict: ignoring unknown fields is all the node
// decoder forgives: a duplicate or case-variant key of a field it knows
// (a typo, or a smuggling attempt), a duplicate inside an unknown field,
// a bad value, a missing or older schema are refused as before.
func TestNodeDecoderStillStrict(t *testing.T) {
	t.Parallel()
	next := string(readFixture(t, "state-next.json"))
	for _, tc := range []struct{ name, from, to, want string }{
		{"duplicate known key", `"generation": 5`, `"generation": 5, "generation": 6`, `duplicate key "generation"`},
		{"case variant of a known key", `"private_ip": "10.10.0.12"`, `"Private_IP": "10.10.0.12"`, `must be spelled "private_ip"`},
		{"duplicate inside an unknown field", `"percent": 10`, `"percent": 10, "percent": 90`, `duplicate key "percent"`},
		{"case variants of an unknown field", `"zone": "sgp1-a"`, `"zone": "sgp1-a", "ZONE": "x"`, `differ only in case`},
		{"bad value", `"private_ip": "10.10.0.12"`, `"private_ip": "10.10.0.x"`, `nodes[1].private_ip "10.10.0.x"`},
		{"older schema", `"schema_version": 1`, `"schema_version": 0`, `schema_version "0": unsupported`},
		{"missing schema", `"schema_version": 1,`, ``, `schema_version "": missing`},
		// A min_pull_version this build cannot parse is upgrade-required on a node
		// (a newer CLI may write forms it does not know): TestUpgradeRequired.
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doc := strings.Replace(next, tc.from, tc.to, 1)
			if doc == next {
				t.Fatalf("%q not in the fixture", tc.from)
			}
			_, err := DecodeNode([]byte(doc), "v1.0.0")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("DecodeNode = %v, want an error containing %q", err, tc.want)
			}
			if errors.Is(err, ErrUpgradeRequired) {
				t.Fatalf("DecodeNode = %v: not an upgrade", err)
			}
		})
	}
}

// TestUpgradeRequired: a state whose min_pull_version is above the
// node's release, or whose schema_version is above the node's, is an
// UpgradeRequiredError for the node decoder — before validation, so a
// value only the newer rules accept does not mask it; at or above it,
// and for a build that names no release, the state applies.
func TestUpgradeRequired(t *testing.T) {
	t.Parallel()
	next := string(readFixture(t, "state-next.json"))
	withMin := func(v string) string {
		return strings.Replace(next, `"schema_version": 1,`, `"schema_version": 1, "min_pull_version": "`+v+`",`, 1)
	}
	for _, tc := range []struct {
		name, doc, version, need string // need "": applies
	}{
		{"below", withMin("v1.4.0"), "v1.3.9", "v1.4.0"},
		{"git describe after an older tag", withMin("v1.4.0"), "v1.3.0-12-gabcdef0", "v1.4.0"},
		{"equal", withMin("v1.4.0"), "v1.4.0", ""},
		{"dirty build of the release", withMin("v1.4.0"), "v1.4.0-dirty", ""},
		{"after the release", withMin("v1.4.0"), "v1.4.0-3-g1234567", ""},
		{"newer minor", withMin("v1.4.0"), "v1.10.0", ""},
		{"dev build counts as newest", withMin("v1.4.0"), "dev", ""},
		{"commit-hash build counts as newest", withMin("v1.4.0"), "abc1234", ""},
		{"no minimum", next, "v0.0.1", ""},
		{"newer schema", strings.Replace(next, `"schema_version": 1`, `"schema_version": 2`, 1), "dev", "schema_version 2"},
		{"a minimum in a form only a newer dynia writes", withMin("v1.5.0-rc1"), "v1.4.0", "v1.5.0-rc1"},
		{"below, with a value this build refuses", strings.Replace(withMin("v9.0.0"), `"role": "active"`, `"role": "leader"`, 1), "v1.0.0", "v9.0.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, err := DecodeNode([]byte(tc.doc), tc.version)
			var ue *UpgradeRequiredError
			switch {
			case tc.need == "" && err != nil:
				t.Fatalf("DecodeNode(%s) = %v, want it applied", tc.version, err)
			case tc.need != "" && (!errors.As(err, &ue) || ue.Need != tc.need || ue.Have != tc.version || !errors.Is(err, ErrUpgradeRequired)):
				t.Fatalf("DecodeNode(%s) = %v, want upgrade required to %s", tc.version, err, tc.need)
			case tc.need != "" && ue.Schema == 0 && !strings.HasPrefix(err.Error(), "upgrade required: the state needs dynia-pull "+tc.need+" or newer, this is "+tc.version):
				t.Fatalf("error %q", err)
			case ue != nil && ue.Schema != 0 && err.Error() != "upgrade required: the state is schema_version 2, this dynia-pull (dev) reads 1; serving the last good config":
				t.Fatalf("error %q", err)
			case tc.need == "" && st.Generation != 5:
				t.Fatalf("generation %d", st.Generation)
			}
		})
	}
}

// TestSignedNextStateVerifiesOnNode: the signature is over the payload's
// bytes as stored, so a state with fields the node does not know verifies
// and decodes (DecodeSignedNode) — and a byte changed inside an unknown
// field still breaks the signature.
func TestSignedNextStateVerifiesOnNode(t *testing.T) {
	t.Parallel()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0}, ed25519.SeedSize))
	env, err := signing.Seal(signing.KindState, key, readFixture(t, "state-next.json"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := DecodeSignedNode(env, signing.Public(key), "v1.0.0")
	if err != nil || st.Generation != 5 {
		t.Fatalf("DecodeSignedNode = %v, %v", st, err)
	}
	if _, err := DecodeSigned(env, signing.Public(key)); !errors.As(err, new(*NewerStateError)) {
		t.Fatalf("CLI DecodeSigned = %v, want a NewerStateError", err)
	}
	tampered := bytes.Replace(env, []byte(`sgp1-a`), []byte(`sgp1-b`), 1)
	if bytes.Equal(tampered, env) {
		t.Fatal("unknown field not in the envelope")
	}
	if _, err := DecodeSignedNode(tampered, signing.Public(key), "v1.0.0"); !errors.As(err, new(*SignatureError)) {
		t.Fatalf("tampered unknown field: %v, want a SignatureError", err)
	}
}

func TestVersionBelow(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		have, need string
		want       bool
	}{
		{"v1.2.3", "v1.2.4", true},
		{"v1.2.3", "v1.3.0", true},
		{"v1.9.9", "v2.0.0", true},
		{"1.2.3", "v1.2.4", true}, // a version without the v
		{"v1.2.3", "v1.2.3", false},
		{"v1.10.0", "v1.9.0", false},
		{"v1.2.3-5-gdeadbee-dirty", "v1.2.3", false},
		{"v1.2.2-5-gdeadbee", "v1.2.3", true},
		{"v1.2.3+meta", "v1.2.4", true},
		{"dev", "v9.9.9", false},
		{"", "v9.9.9", false},
		{"v1.2", "v9.9.9", false},
		{"v1.2.3", "", false},
	} {
		if got := VersionBelow(tc.have, tc.need); got != tc.want {
			t.Errorf("VersionBelow(%q, %q) = %v, want %v", tc.have, tc.need, got, tc.want)
		}
	}
	if got := MaxPullVersion("v1.2.0", "v1.10.0"); got != "v1.10.0" {
		t.Errorf("MaxPullVersion = %q", got)
	}
}

func TestSetMinPullVersion(t *testing.T) {
	t.Parallel()
	s := sample(t)
	next, err := SetMinPullVersion(s, "v1.4.0")
	if err != nil || next.MinPullVersion != "v1.4.0" || s.MinPullVersion != "" {
		t.Fatalf("SetMinPullVersion = %+v, %v", next, err)
	}
	if _, err := SetMinPullVersion(next, "v1.4.0"); !errors.Is(err, ErrNoChange) {
		t.Fatalf("same again: %v, want ErrNoChange", err)
	}
	if _, err := SetMinPullVersion(s, "latest"); err == nil || !strings.Contains(err.Error(), `min_pull_version "latest"`) {
		t.Fatalf("bad version: %v", err)
	}
	b, err := next.Encode()
	if err != nil || !bytes.Contains(b, []byte(`"min_pull_version": "v1.4.0"`)) {
		t.Fatalf("Encode: %v\n%s", err, b)
	}
	back, err := Decode(b)
	if err != nil || back.MinPullVersion != "v1.4.0" {
		t.Fatalf("round trip: %v, %v", back, err)
	}
}
