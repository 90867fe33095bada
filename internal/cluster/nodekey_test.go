package cluster

import (
	"strings"
	"testing"
)

// TestNodeSpacesKeyDecode: a state with the nodes' Spaces key round-trips;
// a key missing a field, with a bad id or bucket, with its secret in the
// clear, or without a cluster key to seal to, is refused naming the field,
// and the error never shows the secret.
func TestNodeSpacesKeyDecode(t *testing.T) {
	t.Parallel()
	// An id of the right shape, made here so no key-like literal is committed.
	keyID := "DO00" + strings.Repeat("X", 16)
	const sealed = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24ub3JnL3YxCg==\n-----END AGE ENCRYPTED FILE-----\n"
	good := func() *State {
		s := sample(t)
		s.SecretsRecipient = "age1" + strings.Repeat("q", 58)
		s.NodeSpacesKey = &NodeSpacesKey{Name: "dynia-myapp-0a1b2c3d", AccessKeyID: keyID, Bucket: "dynia-state", SealedSecret: sealed}
		return s
	}
	b, err := good().Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if *got.NodeSpacesKey != *good().NodeSpacesKey {
		t.Fatalf("round trip: %+v", got.NodeSpacesKey)
	}
	if c := got.Clone(); c.NodeSpacesKey == got.NodeSpacesKey {
		t.Error("Clone shares the node key")
	}
	for _, tc := range []struct {
		name    string
		change  func(k *NodeSpacesKey, s *State)
		wantErr string
	}{
		{"no name", func(k *NodeSpacesKey, _ *State) { k.Name = "" }, `node_spaces_key.name ""`},
		{"bad id", func(k *NodeSpacesKey, _ *State) { k.AccessKeyID = "DO00 ABC" }, `node_spaces_key.access_key_id "DO00 ABC"`},
		{"bad bucket", func(k *NodeSpacesKey, _ *State) { k.Bucket = "Dynia_State" }, `node_spaces_key.bucket "Dynia_State"`},
		{"secret in the clear", func(k *NodeSpacesKey, _ *State) { k.SealedSecret = "verysecretvalue" }, `node_spaces_key.sealed_secret "": must be sealed`},
		{"no cluster key", func(_ *NodeSpacesKey, s *State) { s.SecretsRecipient = "" }, `node_spaces_key "` + keyID + `": sealed, but the state has no secrets_recipient`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := good()
			tc.change(s.NodeSpacesKey, s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "verysecretvalue") {
				t.Fatal("the error shows the secret")
			}
		})
	}
}
