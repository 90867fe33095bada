package cloud

import (
	"context"

	"github.com/digitalocean/godo"
)

// Spaces access key permissions a grant may carry (DO API, Spaces Keys:
// https://docs.digitalocean.com/reference/api/digitalocean/#tag/Spaces-Keys).
// read: list and read one bucket's objects; readwrite: also write and
// delete them; fullaccess: every bucket of the account, creating and
// deleting buckets included (its grant names no bucket).
const (
	SpacesRead       = "read"
	SpacesReadWrite  = "readwrite"
	SpacesFullAccess = "fullaccess"
)

// SpacesGrant is one bucket a Spaces key may use, and how.
type SpacesGrant struct {
	Bucket     string
	Permission string
}

// SpacesKey is a Spaces access key. Secret is set only in CreateSpacesKey's
// answer: DO shows it once, at creation. Its String hides the secret.
type SpacesKey struct {
	Name      string
	AccessKey string
	Secret    string
	Grants    []SpacesGrant
}

// String names the key without its secret (a %v in a log is safe).
func (k SpacesKey) String() string {
	return "Spaces key " + k.Name + " (" + k.AccessKey + ")"
}

func fromGodoSpacesKey(k *godo.SpacesKey) SpacesKey {
	out := SpacesKey{Name: k.Name, AccessKey: k.AccessKey, Secret: k.SecretKey}
	for _, g := range k.Grants {
		if g != nil {
			out.Grants = append(out.Grants, SpacesGrant{Bucket: g.Bucket, Permission: string(g.Permission)})
		}
	}
	return out
}

// CreateSpacesKey mints a Spaces access key with the given grants
// (POST /v2/spaces/keys, scope spaces_key:create_credentials). The answer
// carries the secret, which DO never shows again.
func (c *Client) CreateSpacesKey(ctx context.Context, name string, grants []SpacesGrant) (SpacesKey, error) {
	req := &godo.SpacesKeyCreateRequest{Name: name, Grants: []*godo.Grant{}}
	for _, g := range grants {
		req.Grants = append(req.Grants, &godo.Grant{Bucket: g.Bucket, Permission: godo.SpacesKeyPermission(g.Permission)})
	}
	k, _, err := c.godo.SpacesKeys.Create(ctx, req)
	if err != nil {
		return SpacesKey{}, wrap("create Spaces key "+name, err)
	}
	out := fromGodoSpacesKey(k)
	c.log.Info("cloud: Spaces key created", "name", name, "access_key", out.AccessKey)
	return out, nil
}

// GetSpacesKey reads one key by its access key id (no secret); a missing
// one is ErrNotFound.
func (c *Client) GetSpacesKey(ctx context.Context, accessKey string) (SpacesKey, error) {
	k, _, err := c.godo.SpacesKeys.Get(ctx, accessKey)
	if err != nil {
		return SpacesKey{}, wrap("get Spaces key "+accessKey, err)
	}
	return fromGodoSpacesKey(k), nil
}

// ListSpacesKeys lists every Spaces key of the account (no secrets).
func (c *Client) ListSpacesKeys(ctx context.Context) ([]SpacesKey, error) {
	ks, err := listAll(ctx, func(opt *godo.ListOptions) ([]*godo.SpacesKey, *godo.Response, error) {
		return c.godo.SpacesKeys.List(ctx, opt)
	})
	if err != nil {
		return nil, wrap("list Spaces keys", err)
	}
	out := make([]SpacesKey, 0, len(ks))
	for _, k := range ks {
		if k != nil {
			out = append(out, fromGodoSpacesKey(k))
		}
	}
	return out, nil
}

// DeleteSpacesKey revokes a key; a key already gone is ErrNotFound.
func (c *Client) DeleteSpacesKey(ctx context.Context, accessKey string) error {
	_, err := c.godo.SpacesKeys.Delete(ctx, accessKey)
	if err != nil {
		return wrap("delete Spaces key "+accessKey, err)
	}
	c.log.Info("cloud: Spaces key deleted", "access_key", accessKey)
	return nil
}
