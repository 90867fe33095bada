package cli

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// `node replace` and `cluster upgrade`: the flags, the node token, the
// image chosen, then ops.ReplaceNode and ops.Upgrade (internal/ops
// replace.go: add, provision, serve, move the Reserved IP, retire).

// ReplaceOptions are `node replace`'s inputs.
type ReplaceOptions struct {
	Name  string
	Node  string
	Image string
	// HealthTimeout bounds the wait for the replacement to serve.
	HealthTimeout      time.Duration
	NodeTokenFile      string
	AllowOperatorToken bool
	Timeout            time.Duration
}

// Validate checks the flags' shapes before any I/O.
func (o *ReplaceOptions) Validate() error {
	if err := checkNameNode(o.Name, o.Node, o.Timeout); err != nil {
		return err
	}
	if err := checkImageFlag(o.Image); err != nil {
		return err
	}
	return checkHealthTimeout(o.HealthTimeout)
}

// UpgradeOptions are `cluster upgrade`'s inputs.
type UpgradeOptions struct {
	Name               string
	Image              string
	HealthTimeout      time.Duration
	NodeTokenFile      string
	AllowOperatorToken bool
	// Timeout bounds each node's replacement.
	Timeout time.Duration
}

// Validate checks the flags' shapes before any I/O.
func (o *UpgradeOptions) Validate() error {
	if err := checkName(o.Name); err != nil {
		return err
	}
	if err := checkTimeout(o.Timeout); err != nil {
		return err
	}
	if err := checkImageFlag(o.Image); err != nil {
		return err
	}
	return checkHealthTimeout(o.HealthTimeout)
}

func checkHealthTimeout(d time.Duration) error {
	if d <= 0 {
		return usagef("--health-timeout %q: must be positive", d)
	}
	return nil
}

// snapshotRE is what --image may be: a snapshot id, or a snapshot name
// (DigitalOcean's names are free text; dynia's are dynia-node-<version>).
var snapshotRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

func checkImageFlag(image string) error {
	switch {
	case image == "":
		return nil
	case !snapshotRE.MatchString(image):
		return usagef("--image %q: must be a snapshot id or name (letters, digits, '.', '_', '-')", image)
	case ops.IsBootstrapImage(image):
		return usagef("--image %q: a distribution image, not a dynia node snapshot", image)
	}
	return nil
}

// NewCmdNodeReplace is `dynia node replace`.
func NewCmdNodeReplace(f *Factory, runF func(*ReplaceOptions) error) *cobra.Command {
	o := &ReplaceOptions{}
	cmd := &cobra.Command{
		Use:   "replace --name N --node ID [--image IMG]",
		Short: "Replace a node with a new droplet (new image): it serves first, then the old one is drained and destroyed",
		Example: "  dynia node replace --name myapp --node brave-panda\n" +
			"  dynia node replace --name myapp --node brave-panda --image dynia-node-v1.4.0",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return replaceNode(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Name, "name", "", "cluster name")
	fl.StringVar(&o.Node, "node", "", "two-word id of the node to replace")
	fl.StringVar(&o.Image, "image", "", "the replacement's image: a snapshot id or name (default: the newest dynia-node-* snapshot in the region)")
	addReplaceFlags(cmd, &o.NodeTokenFile, &o.AllowOperatorToken, &o.HealthTimeout)
	fl.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long the whole replacement may take")
	return cmd
}

// NewCmdClusterUpgrade is `dynia cluster upgrade`.
func NewCmdClusterUpgrade(f *Factory, runF func(*UpgradeOptions) error) *cobra.Command {
	o := &UpgradeOptions{}
	cmd := &cobra.Command{
		Use:   "upgrade --name N [--image IMG]",
		Short: "Replace every node not on the image, one at a time, the Reserved IP's holder last",
		Long: "Replace every node whose droplet is not on the image, one at a time (standbys first, the Reserved IP's\n" +
			"holder last), as `dynia node replace` does. The cluster's image becomes IMG, so nodes added later get it too.\n" +
			"Halts, exit 1, when a replacement does not serve within --health-timeout: the old node keeps serving.\n" +
			"Re-run to resume: nodes already on the image are skipped, a replacement under way is finished.",
		Example: "  dynia cluster upgrade --name myapp\n  dynia cluster upgrade --name myapp --image dynia-node-v1.4.0",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(o)
			}
			return upgradeCluster(cmd.Context(), f, o)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.Name, "name", "", "cluster name")
	fl.StringVar(&o.Image, "image", "", "the image: a snapshot id or name (default: the newest dynia-node-* snapshot in the region)")
	addReplaceFlags(cmd, &o.NodeTokenFile, &o.AllowOperatorToken, &o.HealthTimeout)
	fl.DurationVar(&o.Timeout, "timeout", 10*time.Minute, "how long each node's replacement may take")
	return cmd
}

func addReplaceFlags(cmd *cobra.Command, tokenFile *string, allow *bool, health *time.Duration) {
	fl := cmd.Flags()
	fl.StringVar(tokenFile, "node-token-file", "", "file (0600) with the node token handed to droplets: "+nodeTokenScopesHelp+" (default: the context's node_token_file)")
	fl.BoolVar(allow, "allow-operator-token", false, "without a node token, give droplets your own DO token (unsafe: anything on a droplet can read it)")
	fl.DurationVar(health, "health-timeout", 5*time.Minute, "how long a replacement may take to serve and report healthy before the command halts")
}

// prepareReplace is what both commands do before their first write: the
// node token (file, then DigitalOcean's word on it), the cluster (and the
// node, when given) read from the state, the image resolved. Bad input is
// exit 2 with nothing written: only reads reach the bucket and the API. It
// returns the image and what the replacements boot with.
func prepareReplace(ctx context.Context, f *Factory, p *Progress, name, node, image, tokenFile string, allow bool) (string, *ops.BootSpec, error) {
	if err := f.checkStateReachableByDroplets(); err != nil {
		return "", nil, err
	}
	token, err := loadNodeToken(f, tokenFile, allow, p)
	if err != nil {
		return "", nil, err
	}
	_, st, cl, err := f.openClusterNode(ctx, name, node, false)
	if err != nil {
		return "", nil, err
	}
	if node != "" && st.Replacement(node) == nil {
		n := st.Node(node)
		if n.Replaces != "" {
			return "", nil, usagef("--node %q: is the replacement of %s, still under way; run `dynia node replace --name %s --node %s` to finish it", node, n.Replaces, name, n.Replaces)
		}
		if n.Lifecycle != cluster.Ready {
			return "", nil, usagef("--node %q: is %s; only a ready node can be replaced", node, n.Lifecycle)
		}
	}
	if err := checkNodeToken(ctx, f, token, p); err != nil {
		return "", nil, err
	}
	var id string
	err = p.Step("image", func() (string, error) {
		var err error
		id, err = pickImage(ctx, cl, image, st.Region)
		return id, err
	})
	if err != nil {
		return "", nil, err
	}
	boot, err := bootSpec(f, token)
	return id, boot, err
}

// pickImage resolves --image to a snapshot id usable in region: an id is
// read back (GET /v2/images/{id}), a name is the newest snapshot whose name
// starts with it, as create-ha's --snapshot; "" is the newest dynia-node-*
// snapshot. An image that does not exist or is not in the region is bad
// input (exit 2).
func pickImage(ctx context.Context, cl *cloud.Client, image, region string) (string, error) {
	if ops.IsDigits(image) {
		id, _ := strconv.Atoi(image)
		img, err := cl.GetImage(ctx, id)
		var ae *cloud.APIError
		if errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
			return "", usagef("--image %q: no such image", image)
		}
		if err != nil {
			return "", err
		}
		if img.Public || img.Type != "snapshot" {
			// A distribution image boots without dynia-pull: its node
			// could never serve, and the cluster's image would be it.
			return "", usagef("--image %q: %s is not a private snapshot (a dynia node image is one: `make image` builds it)", image, imageKind(img))
		}
		if !slices.Contains(img.Regions, region) {
			return "", usagef("--image %q: not available in %s (in %s)", image, region, strings.Join(img.Regions, ", "))
		}
		// The id as DO writes it ("0123" is image 123): what droplets
		// report is compared with it.
		return strconv.Itoa(img.ID), nil
	}
	id, err := ops.ResolveImage(ctx, cl, image, region, false)
	if errors.Is(err, cloud.ErrNoSnapshot) && image != "" {
		return "", usagef("--image %q: %v", image, err)
	}
	return id, err
}

// imageKind names an image's type for an error: "a public base image".
func imageKind(img cloud.Image) string {
	kind := img.Type
	if kind == "" {
		kind = "untyped"
	}
	if img.Public {
		return "a public " + kind + " image"
	}
	return "a " + kind + " image"
}

func replaceNode(ctx context.Context, f *Factory, o *ReplaceOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	image, boot, err := prepareReplace(ctx, f, p, o.Name, o.Node, o.Image, o.NodeTokenFile, o.AllowOperatorToken)
	if err != nil {
		return err
	}
	store, _, cl, err := f.openClusterNode(ctx, o.Name, o.Node, true)
	if err != nil {
		return err
	}
	st, err := ops.ReplaceNode(ctx, deps(store, cl, p, boot), ops.ReplaceOptions{Name: o.Name, Node: o.Node, Image: image, HealthTimeout: o.HealthTimeout})
	if err != nil {
		return err
	}
	return printCluster(f, st)
}

func upgradeCluster(ctx context.Context, f *Factory, o *UpgradeOptions) error {
	p := NewProgress(f.IO, f.Global.Output == "json")
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	image, boot, err := prepareReplace(pctx, f, p, o.Name, "", o.Image, o.NodeTokenFile, o.AllowOperatorToken)
	if err != nil {
		cancel()
		return err
	}
	store, _, cl, err := f.openCluster(pctx, o.Name, true)
	if err != nil {
		cancel()
		return err
	}
	d := deps(store, cl, p, boot)
	// The cluster's image first: nodes added from now on get it too.
	err = ops.SetClusterImage(pctx, d, o.Name, image)
	cancel()
	if err != nil {
		return err
	}
	st, err := ops.Upgrade(ctx, d, ops.UpgradeOptions{Name: o.Name, Image: image, HealthTimeout: o.HealthTimeout, Timeout: o.Timeout})
	if err != nil {
		return err
	}
	return printCluster(f, st)
}
