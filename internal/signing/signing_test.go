package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const doc = "{\n  \"schema_version\": 1,\n  \"name\": \"shop\",\n  \"generation\": 7\n}\n"

func mustKey(t *testing.T) []byte {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	key := mustKey(t)
	other := mustKey(t)
	signed, err := Seal(KindState, key, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(signed) {
		t.Fatalf("envelope is not JSON:\n%s", signed)
	}
	// The document is inside verbatim (minus the trailing newline), so a
	// person reading the object sees the state as it is.
	if !bytes.Contains(signed, []byte(strings.TrimSpace(doc))) {
		t.Fatalf("envelope does not hold the document verbatim:\n%s", signed)
	}
	got, err := Open(KindState, signed, Public(key))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(strings.TrimSpace(doc), string(got)); diff != "" {
		t.Fatalf("payload (-want +got):\n%s", diff)
	}

	tampered := bytes.Replace(signed, []byte(`"generation": 7`), []byte(`"generation": 8`), 1)
	reindented := func() []byte {
		var b bytes.Buffer
		if err := json.Indent(&b, signed, "", "    "); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}()
	otherSigned, _ := Seal(KindState, other, []byte(doc))
	report, _ := Seal(KindReport, key, []byte(doc))
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"unsigned", []byte(doc), ErrUnsigned},
		{"one byte of the payload changed", tampered, ErrBadSignature},
		{"signed by another key", otherSigned, ErrBadSignature},
		{"a report's signature presented as a state's", report, ErrBadSignature},
		// Re-formatting the envelope changes the payload's bytes: the
		// signature covers bytes, not a canonical form.
		{"envelope re-indented", reindented, ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(KindState, tc.b, Public(key))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestParseMalformed(t *testing.T) {
	key := mustKey(t)
	good, _ := Seal(KindReport, key, []byte(`{"a":1}`))
	for _, tc := range []struct {
		name string
		b    string
	}{
		{"short signature", `{"dynia_signed": "report", "signature": "AAAA", "payload": {"a":1}}`},
		{"no payload", `{"dynia_signed": "report", "signature": "` + strings.Repeat("A", 86) + `=="}`},
		{"unknown field", strings.Replace(string(good), `"payload"`, `"extra": 1, "payload"`, 1)},
		{"trailing data", string(good) + "{}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.b)); err == nil {
				t.Fatalf("Parse accepted %s", tc.b)
			}
		})
	}
	// Not an envelope at all: no envelope, no error (the document's own
	// decoder judges it).
	for _, b := range []string{doc, "not json", "[1,2]"} {
		if e, err := Parse([]byte(b)); e != nil || err != nil {
			t.Fatalf("Parse(%q) = %v, %v; want nil, nil", b, e, err)
		}
	}
	payload, signed, err := Unwrap(good)
	if err != nil || !signed || string(payload) != `{"a":1}` {
		t.Fatalf("Unwrap = %q, %v, %v", payload, signed, err)
	}
}

func TestKeyText(t *testing.T) {
	key := mustKey(t)
	pub, err := ParsePublicKey(PublicKeyString(Public(key)))
	if err != nil || !bytes.Equal(pub, Public(key)) {
		t.Fatalf("public key round trip: %v", err)
	}
	back, err := ParsePrivateKey(PrivateKeyString(key) + "\n")
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("private key round trip: %v", err)
	}
	for _, bad := range []string{"", "AAAA", strings.Repeat("A", 44)[:43] + "!"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	if _, err := ParsePrivateKey("secret-looking-but-wrong"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("ParsePrivateKey error %v (must fail and not echo the input)", err)
	}
}

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "demo.sign.key")
	key := mustKey(t)
	if err := WritePrivateKey(path, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("key dir mode %04o, want 0700", di.Mode().Perm())
	}
	got, err := LoadPrivateKey(path)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	// Never replaced: the first key stays.
	if err := WritePrivateKey(path, mustKey(t)); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WritePrivateKey: %v, want ErrExist", err)
	}
	if got, _ := LoadPrivateKey(path); !bytes.Equal(got, key) {
		t.Fatal("the key file was replaced")
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".key-*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key: %v, want a refusal", err)
	}
}
