package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/secrets"
)

// The nodes' Spaces key. Nodes read the state and write their reports,
// logs and certificates in the state's bucket and need nothing else, so
// the first operation that creates a droplet mints them a key of their own
// through DO's Spaces keys API
// (https://docs.digitalocean.com/reference/api/digitalocean/#tag/Spaces-Keys)
// with one grant, readwrite on that bucket: a compromised droplet cannot
// read or write any other bucket, nor create one. DO scopes keys to
// buckets, not prefixes: clusters sharing a bucket can read and write each
// other's objects; one bucket per cluster isolates them.
//
// The state records the key's id and its secret sealed to the cluster key
// (cluster.NodeSpacesKey), so every machine that manages the cluster (it
// needs the cluster key anyway) can create droplets with it. The key's
// name is deterministic (NodeKeyName): a command that died between minting
// and recording leaves a key that the next mint finds and deletes.

// NodeKeyName is dynia-<cluster>-<8 hex of the state URL>: two buckets'
// (or prefixes') clusters of one name never share it.
func NodeKeyName(clusterName, stateURL string) string {
	sum := sha256.Sum256([]byte(stateURL))
	return "dynia-" + clusterName + "-" + hex.EncodeToString(sum[:4])
}

// StateBucket is the bucket of an s3:// state URL, "" for any other.
func StateBucket(stateURL string) string {
	rest, ok := strings.CutPrefix(stateURL, "s3://")
	if !ok {
		return ""
	}
	b, _, _ := strings.Cut(rest, "/")
	return b
}

// NodeSpacesKey returns the Spaces key new droplets get: the state's, once
// DO confirms it still exists; else a new one, minted, recorded with
// compare-and-swap (a concurrent command's key, recorded first, wins and
// ours is deleted), and then any other key of the same name deleted (what
// a crashed run minted but never recorded). A file:// state needs no key.
// A cluster made before cluster keys (identity "") cannot seal one: its
// nodes keep getting the CLI's Spaces key, with a warning.
func NodeSpacesKey(ctx context.Context, d Deps, st *cluster.State, identity string) (id, secret string, err error) {
	u := d.Boot.StateURL
	bucketName := StateBucket(u)
	if bucketName == "" {
		return "", "", nil
	}
	if identity == "" || st.SecretsRecipient == "" {
		d.Report.Info("warning: cluster %s predates cluster keys: its droplets get your own Spaces key (re-create the cluster to give them one limited to bucket %s)", st.Name, bucketName)
		return d.Boot.OperatorSpacesKeyID, d.Boot.OperatorSpacesSecret, nil
	}
	name := NodeKeyName(st.Name, u)
	prev := st.NodeSpacesKey
	cl := d.Cloud
	if prev != nil && prev.Bucket == bucketName {
		_, gerr := cl.GetSpacesKey(ctx, prev.AccessKeyID)
		switch {
		case gerr == nil:
			// A run that lost the race to record its key and died before
			// deleting it left one of this name: the state's key is the
			// one in use, so any other is an orphan. (A command minting
			// now, from an older state, loses to the recorded key and
			// deletes its own; deleting it first is harmless.)
			if err := deleteOtherNodeKeys(ctx, d, name, prev.AccessKeyID); err != nil {
				return "", "", err
			}
			return openNodeKey(identity, prev)
		case !errors.Is(gerr, cloud.ErrNotFound):
			return "", "", fmt.Errorf("nodes' Spaces key: %w", gerr)
		}
		d.Report.Info("the nodes' Spaces key %s no longer exists at DigitalOcean: minting a new one (droplets made with it cannot reach the bucket any more)", prev.AccessKeyID)
	}
	var rec *cluster.NodeSpacesKey
	err = d.Report.Step("nodes' Spaces key (readwrite on bucket "+bucketName+" only)", func() (string, error) {
		var detail string
		rec, detail, err = mintNodeKey(ctx, d, st, name, bucketName, prev)
		return detail, err
	})
	if err != nil {
		return "", "", err
	}
	if err := deleteOtherNodeKeys(ctx, d, name, rec.AccessKeyID); err != nil {
		return "", "", err
	}
	return openNodeKey(identity, rec)
}

// mintNodeKey creates a key named name for bucketName and records it in the
// state, unless another command recorded one since prev: then that one
// wins and ours is deleted.
func mintNodeKey(ctx context.Context, d Deps, st *cluster.State, name, bucketName string, prev *cluster.NodeSpacesKey) (*cluster.NodeSpacesKey, string, error) {
	k, err := d.Cloud.CreateSpacesKey(ctx, name, []cloud.SpacesGrant{{Bucket: bucketName, Permission: cloud.SpacesReadWrite}})
	if err != nil {
		if errors.Is(err, cloud.ErrAuth) {
			return nil, "", fmt.Errorf("%w (minting the nodes' Spaces key needs your token's spaces_key:create_credentials, spaces_key:read and spaces_key:delete scopes)", err)
		}
		return nil, "", err
	}
	sealed, err := secrets.Seal(st.SecretsRecipient, []byte(k.Secret))
	if err != nil {
		return nil, "", err
	}
	mine := &cluster.NodeSpacesKey{Name: name, AccessKeyID: k.AccessKey, Bucket: bucketName, SealedSecret: sealed}
	var winner *cluster.NodeSpacesKey
	_, err = d.Store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
		winner = nil
		if cur := s.NodeSpacesKey; cur != nil && cur.Bucket == bucketName && (prev == nil || cur.AccessKeyID != prev.AccessKeyID) {
			winner = cur
			return nil, cluster.ErrNoChange
		}
		s.NodeSpacesKey = mine
		return s, nil
	})
	if err != nil {
		// Recorded or not is unknown: the key stays, and the next mint
		// deletes it if the state does not name it.
		return nil, "", err
	}
	if winner != nil {
		if err := IgnoreNotFound(d.Cloud.DeleteSpacesKey(ctx, k.AccessKey)); err != nil {
			return nil, "", err
		}
		return winner, winner.AccessKeyID + " (another command's)", nil
	}
	return mine, k.AccessKey + " (created)", nil
}

func openNodeKey(identity string, k *cluster.NodeSpacesKey) (id, secret string, err error) {
	b, err := secrets.Open(identity, k.SealedSecret)
	if err != nil {
		return "", "", fmt.Errorf("nodes' Spaces key %s: %w", k.AccessKeyID, err)
	}
	return k.AccessKeyID, string(b), nil
}

// deleteOtherNodeKeys deletes the keys named name other than keep ("":
// all of them).
func deleteOtherNodeKeys(ctx context.Context, d Deps, name, keep string) error {
	keys, err := d.Cloud.ListSpacesKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if k.Name != name || k.AccessKey == keep {
			continue
		}
		if err := d.Report.Step("delete Spaces key "+k.AccessKey+" ("+name+")", func() (string, error) {
			return "", IgnoreNotFound(d.Cloud.DeleteSpacesKey(ctx, k.AccessKey))
		}); err != nil {
			return err
		}
	}
	return nil
}

// deleteNodeSpacesKeys is destroy's: the state's key and any other of its
// name. A file:// state has none. A cluster whose state names no key (made
// before nodes had their own, or whose droplets never got one) can be
// destroyed with a token that cannot list Spaces keys: then any key a
// crashed run left is reported, not deleted.
func deleteNodeSpacesKeys(ctx context.Context, d Deps, stateURL string, st *cluster.State) error {
	if k := st.NodeSpacesKey; k != nil {
		if err := d.Report.Step("nodes' Spaces key "+k.AccessKeyID, func() (string, error) {
			err := IgnoreNotFound(d.Cloud.DeleteSpacesKey(ctx, k.AccessKeyID))
			if errors.Is(err, cloud.ErrAuth) {
				return "", fmt.Errorf("%w (deleting the nodes' Spaces key needs your token's spaces_key:delete scope)", err)
			}
			return "", err
		}); err != nil {
			return err
		}
	}
	if StateBucket(stateURL) == "" {
		return nil
	}
	name := NodeKeyName(st.Name, stateURL)
	err := deleteOtherNodeKeys(ctx, d, name, "")
	if st.NodeSpacesKey == nil && errors.Is(err, cloud.ErrAuth) {
		d.Report.Info("warning: cannot list Spaces keys (your token lacks spaces_key:read): a key named %s that a crashed command left, if any, remains; delete it in the control panel", name)
		return nil
	}
	return err
}
