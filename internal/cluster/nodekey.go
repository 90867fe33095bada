package cluster

import (
	"regexp"
	"strings"
)

// NodeSpacesKey is the Spaces access key the cluster's nodes read the state
// and write their reports with: minted by create-ha through DO's Spaces
// keys API with one grant, readwrite on the state's bucket, so a node never
// holds the operator's key. The state carries the access key id and the
// secret sealed to the cluster key (SecretsRecipient), never the secret in
// the clear; the CLI opens it for every droplet it creates.
type NodeSpacesKey struct {
	// Name is the key's name at DO: dynia-<cluster>-<8 hex of the state
	// URL>, so a re-run finds a key a crashed run minted.
	Name string `json:"name"`
	// AccessKeyID is the key's access key id (public: it names the key).
	AccessKeyID string `json:"access_key_id"`
	// Bucket is the one bucket the key's readwrite grant names.
	Bucket string `json:"bucket"`
	// SealedSecret is the secret access key, age-encrypted to the cluster
	// key, armored.
	SealedSecret string `json:"sealed_secret"`
}

var (
	// DO access key ids are 20 upper-case alphanumerics; other S3 stores
	// (the sandbox's versitygw) take any printable token, so only the
	// character set and a bound are checked.
	accessKeyIDRE = regexp.MustCompile(`^[A-Za-z0-9_+=.@-]{1,128}$`)
	// S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens.
	bucketNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
)

// validateNodeSpacesKey checks node_spaces_key when present: every field
// set, the secret sealed (an age armored file), never in the clear.
func (s *State) validateNodeSpacesKey() error {
	k := s.NodeSpacesKey
	if k == nil {
		return nil
	}
	if k.Name == "" || len(k.Name) > 128 || strings.ContainsAny(k.Name, "\r\n") {
		return fieldErr("node_spaces_key.name", k.Name, "must be 1-128 characters on one line")
	}
	if !accessKeyIDRE.MatchString(k.AccessKeyID) {
		return fieldErr("node_spaces_key.access_key_id", k.AccessKeyID, "not an access key id")
	}
	if !bucketNameRE.MatchString(k.Bucket) {
		return fieldErr("node_spaces_key.bucket", k.Bucket, "not a bucket name")
	}
	// Never echo the value: if it is not sealed, it may be the secret.
	if !strings.HasPrefix(k.SealedSecret, "-----BEGIN AGE ENCRYPTED FILE-----") || len(k.SealedSecret) > 4<<10 {
		return fieldErr("node_spaces_key.sealed_secret", "", "must be sealed to the cluster key (an armored age file of at most 4 KiB)")
	}
	if s.SecretsRecipient == "" {
		return fieldErr("node_spaces_key", k.AccessKeyID, "sealed, but the state has no secrets_recipient")
	}
	return nil
}
