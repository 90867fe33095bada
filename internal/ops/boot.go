package ops

import (
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/signing"
)

// BootSpec is what every new droplet boots with, as the CLI resolved it
// from its flags, environment and context before the operation began.
type BootSpec struct {
	// StateURL is the state's location (s3://bucket/prefix or file://DIR).
	StateURL string
	// Node is pull.json as every node gets it, less the fields of one
	// node (cluster, node id, minimum state generation): the Spaces
	// endpoint and region as droplets see them, path style, the DO API
	// and metadata URLs ("" for DigitalOcean's own).
	Node nodeconfig.Config
	// NodeToken is the DO token droplets get (a node token, or with
	// --allow-operator-token the CLI's own), read once per run so the
	// droplets get the token that was checked.
	NodeToken string
	// OperatorSpacesKeyID and OperatorSpacesSecret are the CLI's own Spaces
	// key: the nodes of a cluster made before cluster keys get it.
	OperatorSpacesKeyID, OperatorSpacesSecret string
	// ClusterKey returns the cluster's age identity and recipient for st
	// (the key file's; "" for a cluster made before cluster keys); create
	// makes one when neither the state nor the file has one.
	ClusterKey func(st *cluster.State, create bool) (identity, recipient string, err error)
	// PullBinary is the dynia-pull a bootstrap cluster's droplets download
	// ("" when none was found), PullVersion its release.
	PullBinary, PullVersion string
	// StuckAfter is how old a droplet still "new" must be to count as one
	// that never becomes active (default StuckDropletAge).
	StuckAfter time.Duration
}

// StuckDropletAge: a droplet still "new" this long after its creation never
// becomes active. DigitalOcean's droplets are usually active within a
// minute or two (no documented bound); --timeout is 10 minutes.
const StuckDropletAge = 10 * time.Minute

// NodeTokenScopes are the scopes of a least-privilege node token: DO grants
// reserved_ip:update only together with these reads
// (https://docs.digitalocean.com/reference/api/scopes/).
var NodeTokenScopes = []string{"reserved_ip:update", "reserved_ip:read", "droplet:read", "regions:read", "sizes:read", "actions:read", "image:read"}

// NodeTokenHint says, on one line, how to give nodes a token of their own.
var NodeTokenHint = "make a custom-scoped DigitalOcean token with " + strings.Join(NodeTokenScopes, " ") +
	" (choosing reserved_ip:update adds the reads) and give it with --node-token-file FILE (mode 0600) or node_token_file in the context," +
	" or pass --allow-operator-token to give droplets your own token"

// CheckNodeToken asks DigitalOcean, with cl built on the node token,
// whether the token can make the reads dynia-pull needs
// (cloud.CheckNodeToken: two GETs). A token DO refuses (401) or one lacking
// a scope (403) is an *InputError, before anything is written. One that can
// also read the account (a scope no node token needs: a full-access token,
// most likely) gets a warning.
func CheckNodeToken(ctx context.Context, cl *cloud.Client, r Reporter) error {
	err := cl.CheckNodeToken(ctx)
	var ae *cloud.APIError
	switch {
	case err == nil:
		if _, err := cl.Account(ctx); err == nil {
			r.Info("warning: the node token can read your account, which nodes never need: is it a full-access token? A node token needs only %s", strings.Join(NodeTokenScopes, " "))
		}
		return nil
	case errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized:
		return Inputf("--node-token-file: DigitalOcean refuses the node token (401 Unauthorized: wrong, expired or revoked); %s", NodeTokenHint)
	case errors.As(err, &ae) && ae.StatusCode == http.StatusForbidden:
		return Inputf("--node-token-file: the node token lacks a scope nodes need (403 on %s); %s", ae.Op, NodeTokenHint)
	}
	return fmt.Errorf("check the node token: %w", err)
}

// Boot is what one run's new droplets' user-data carries.
type Boot struct {
	spec                   *BootSpec
	spacesID, spacesSecret string
	// clusterKey is the cluster's age identity ("" for a cluster made
	// before cluster keys).
	clusterKey string
	// Bootstrap clusters (stock image): where droplets fetch dynia-pull.
	bootstrap        bool
	pullURL, pullSHA string
}

// IsBootstrapImage: a distribution slug means no dynia snapshot, so the
// droplet installs everything at first boot.
func IsBootstrapImage(image string) bool { return strings.HasSuffix(image, "-x64") }

// pullBinaryKey is where the CLI uploads dynia-pull for bootstrap droplets.
func pullBinaryKey(version string) string {
	return "bin/dynia-pull-" + version + "-linux-" + runtime.GOARCH
}

// DryRunBoot is the boot a dry run shows: a stand-in for the nodes' Spaces
// key create-ha would mint, and a placeholder download URL; nothing is
// minted, uploaded or called.
func DryRunBoot(spec *BootSpec, st *cluster.State) (Boot, error) {
	boot := Boot{spec: spec, bootstrap: IsBootstrapImage(st.Image)}
	if StateBucket(spec.StateURL) != "" {
		boot.spacesID, boot.spacesSecret = "MINTED-BY-CREATE-HA", "minted-by-create-ha"
	}
	if !boot.bootstrap {
		return boot, nil
	}
	var err error
	if _, boot.pullSHA, err = readPullBinary(spec); err != nil {
		return boot, err
	}
	boot.pullURL = "https://presigned-url.invalid/" + pullBinaryKey(spec.PullVersion)
	return boot, nil
}

// readPullBinary reads the dynia-pull a bootstrap cluster's droplets
// download, and its SHA-256 in hex (what they check it against).
func readPullBinary(spec *BootSpec) (bin []byte, sha string, err error) {
	if spec.PullBinary == "" {
		return nil, "", fmt.Errorf("--bootstrap needs the dynia-pull binary next to dynia or on PATH (make build puts both in bin/)")
	}
	if bin, err = os.ReadFile(spec.PullBinary); err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(bin)
	return bin, hex.EncodeToString(sum[:]), nil
}

// prepareBoot loads the cluster key and the nodes' own Spaces key (minted
// at the first droplet, NodeSpacesKey) and, for a bootstrap cluster,
// uploads dynia-pull to the bucket (only when its content changed: Spaces
// limits writes per object) and presigns a GET for the droplets.
func prepareBoot(ctx context.Context, d Deps, st *cluster.State) (Boot, error) {
	spec := d.Boot
	if spec == nil {
		return Boot{}, fmt.Errorf("cluster %s: a node to provision, but no node token was loaded: re-run the command", st.Name)
	}
	boot := Boot{spec: spec, bootstrap: IsBootstrapImage(st.Image)}
	var err error
	if boot.clusterKey, _, err = spec.ClusterKey(st, false); err != nil {
		return boot, err
	}
	if boot.spacesID, boot.spacesSecret, err = NodeSpacesKey(ctx, d, st, boot.clusterKey); err != nil {
		return boot, err
	}
	if !boot.bootstrap {
		return boot, nil
	}
	var bin []byte
	if bin, boot.pullSHA, err = readPullBinary(spec); err != nil {
		return boot, err
	}
	key := pullBinaryKey(spec.PullVersion)
	md := md5.Sum(bin)
	etag := `"` + hex.EncodeToString(md[:]) + `"`
	b := d.Store.B
	err = d.Report.Step("upload dynia-pull for first boot", func() (string, error) {
		infos, err := b.List(ctx, key)
		if err != nil {
			return "", err
		}
		for _, in := range infos {
			if in.Key == key && in.ETag == etag {
				return key + " (unchanged)", nil
			}
		}
		_, err = b.Put(ctx, key, bin, bucket.Cond{})
		return fmt.Sprintf("%s (%d bytes)", key, len(bin)), err
	})
	if err != nil {
		return boot, err
	}
	ps, ok := b.(bucket.Presigner)
	if !ok {
		return boot, fmt.Errorf("--bootstrap needs an S3/Spaces state store (droplets download dynia-pull through a presigned URL); %s cannot presign", b)
	}
	// Droplets fetch it within minutes of creation; a day is generous.
	boot.pullURL, err = ps.PresignGet(ctx, key, 24*time.Hour)
	return boot, err
}

// UserData renders one node's cloud-init: with the state's public key
// (the node applies only states it signed) and the node's report key
// (nil: a node that writes unsigned reports, as before signing).
func UserData(st *cluster.State, nodeID string, boot Boot, reportKey ed25519.PrivateKey) ([]byte, error) {
	spec := boot.spec
	node := spec.Node
	node.Cluster, node.NodeID, node.StateURL = st.Name, nodeID, spec.StateURL
	p := cloudinit.Params{
		Mode:                  cloudinit.Snapshot,
		Cluster:               st.Name,
		NodeID:                nodeID,
		Hostname:              cluster.Hostname(st.Name, nodeID),
		Node:                  node,
		SpacesAccessKeyID:     boot.spacesID,
		SpacesSecretAccessKey: boot.spacesSecret,
		DOToken:               spec.NodeToken,
		ClusterKey:            boot.clusterKey,
		StatePublicKey:        st.SigningKey,
	}
	if reportKey != nil {
		p.ReportKey = signing.PrivateKeyString(reportKey)
	}
	if st.SigningKey != "" {
		// The droplet will never apply a state older than this one: an
		// old signed state put back while it boots is refused (replay).
		p.Node.MinStateGeneration = st.Generation
	}
	// A node of its own image (a replacement's snapshot) boots from it
	// even in a cluster made with --bootstrap.
	image := st.Image
	if n := st.Node(nodeID); n != nil {
		image = n.ImageOr(st.Image)
	}
	p.Image = image
	if boot.bootstrap && IsBootstrapImage(image) {
		p.Mode = cloudinit.Bootstrap
		p.Distro = image
		p.PullBinaryURL, p.PullBinarySHA256 = boot.pullURL, boot.pullSHA
	}
	return cloudinit.Render(p)
}

// CheckCatalog validates --region and --size against the API (read-only
// calls, before anything is created).
func CheckCatalog(ctx context.Context, cl *cloud.Client, region, size string) error {
	regions, err := cl.ListRegions(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, r := range regions {
		if r.Slug == region {
			found = true
		}
	}
	if !found {
		return Inputf("--region %q: not a DigitalOcean region", region)
	}
	sizes, err := cl.ListSizes(ctx)
	if err != nil {
		return err
	}
	for _, s := range sizes {
		if s.Slug == size {
			return nil
		}
	}
	return Inputf("--size %q: not a DigitalOcean droplet size", size)
}

// ResolveImage picks the droplet image: image as given (an id, or a
// snapshot name looked up), else the newest dynia-node-* snapshot.
func ResolveImage(ctx context.Context, cl *cloud.Client, image, region string, bootstrap bool) (string, error) {
	switch {
	case bootstrap:
		return BootstrapImage, nil
	case image == "":
		img, err := cl.FindSnapshot(ctx, SnapshotPrefix, region)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(img.ID), nil
	case IsDigits(image) || strings.HasSuffix(image, "-x64"):
		return image, nil
	default:
		img, err := cl.FindSnapshot(ctx, image, region)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(img.ID), nil
	}
}

// IsDigits says whether s is a number (an image id).
func IsDigits(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}
