package secrets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	id, rcpt, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := RecipientOf(id); got != rcpt {
		t.Fatalf("RecipientOf = %s, want %s", got, rcpt)
	}
	in := Release{Env: map[string]string{"DB_PASSWORD": "hunter2-very-secret"}, RegistryAuth: &RegistryAuth{Server: "r.example", Username: "u", Password: "p4ss-w0rd"}}
	sealed, err := SealRelease(rcpt, in)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hunter2-very-secret", "p4ss-w0rd", id} {
		if strings.Contains(sealed, secret) {
			t.Fatalf("the sealed value contains %q", secret)
		}
	}
	out, err := OpenRelease(id, sealed)
	if err != nil {
		t.Fatal(err)
	}
	if out.Env["DB_PASSWORD"] != "hunter2-very-secret" || out.RegistryAuth.Password != "p4ss-w0rd" {
		t.Fatalf("opened %+v", out)
	}
	other, _, _ := NewKey()
	if _, err := OpenRelease(other, sealed); err == nil || strings.Contains(err.Error(), other) {
		t.Fatalf("opened with another key, or the error shows the key: %v", err)
	}
	if s := in.RegistryAuth.String(); strings.Contains(s, "p4ss") {
		t.Errorf("RegistryAuth.String shows the password: %s", s)
	}
	if s, err := SealRelease(rcpt, Release{}); err != nil || s != "" {
		t.Errorf("sealing nothing: %q %v", s, err)
	}
}

func TestLoadIdentityRefusesReadableFiles(t *testing.T) {
	t.Parallel()
	id, _, _ := NewKey()
	p := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a 0644 key: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadIdentity(p); err != nil || got != id {
		t.Fatalf("a 0600 key: %v", err)
	}
}
