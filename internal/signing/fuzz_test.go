package signing

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzOpen: whatever bytes sit in the bucket, Open accepts only what the
// key signed — a payload one of the seeds signed, byte for byte — and
// nothing panics. Unwrap returns a document that is not an envelope as
// it is.
func FuzzOpen(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))
	signed := map[string]bool{}
	for _, p := range []string{`{"schema_version": 1, "generation": 7}`, `{"node_id": "amber-fox"}`, `[1, 2]`, `"x"`} {
		for _, kind := range []string{KindState, KindReport} {
			b, err := Seal(kind, key, []byte(p))
			if err != nil {
				f.Fatal(err)
			}
			signed[kind+"\x00"+p] = true
			f.Add(b)
			f.Add(bytes.Replace(b, []byte("7"), []byte("8"), 1))
		}
	}
	f.Add([]byte(`{"schema_version": 1}`))
	f.Add([]byte(`{"dynia_signed": "state", "signature": "", "payload": {}}`))
	f.Add([]byte(`{"dynia_signed": null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, kind := range []string{KindState, KindReport} {
			payload, err := Open(kind, b, Public(key))
			if err == nil && !signed[kind+"\x00"+string(payload)] {
				t.Fatalf("Open accepted a %s payload the key never signed: %q", kind, payload)
			}
		}
		payload, isEnvelope, err := Unwrap(b)
		if err == nil && !isEnvelope && !bytes.Equal(payload, b) {
			t.Fatal("Unwrap changed a document that is not an envelope")
		}
	})
}
