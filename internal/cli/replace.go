package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// Replacing a node (`node replace`) and every node (`cluster upgrade`) is
// built from the commands' own steps: the replacement is a node added to
// the state (carrying `replaces: <old id>`) and provisioned like `node add`
// does (ops.ProvisionNodes), the Reserved IP moves to it like `make-active`
// does (ops.Promote) when the old node holds it, and the old node is retired
// like `node remove` does (ops.RetireNode). Each step looks before it acts, so
// a re-run after a crash finds the replacement in the state and finishes
// it instead of creating a second one.

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
	st, err := replaceOne(ctx, deps(store, cl, p, boot), o.Name, o.Node, image, o.HealthTimeout, p)
	if err != nil {
		return err
	}
	return printCluster(f, st)
}

// ReplacementUnhealthyError is a replacement that did not serve in time:
// the old node was left as it was, serving.
type ReplacementUnhealthyError struct {
	Cluster, Old, New string
	Err               error
}

func (e *ReplacementUnhealthyError) Error() string {
	return fmt.Sprintf("replacement %s of node %s did not become healthy: %v; %s still serves, nothing was moved or destroyed: "+
		"re-run the same command to keep waiting, or `dynia node remove --name %s --node %s --yes` to drop the replacement",
		e.New, e.Old, e.Err, e.Old, e.Cluster, e.New)
}

func (e *ReplacementUnhealthyError) Unwrap() error { return e.Err }

// replaceOne replaces node old with a node made from image: it adds (or
// finds, after a crash) the replacement, provisions it, waits until it
// serves and reports healthy (at most health), moves the Reserved IP to it
// if old holds it, then drains and destroys old; the replacement takes
// old's priority. When the replacement does not serve in time it returns a
// *ReplacementUnhealthyError and old is untouched.
func replaceOne(ctx context.Context, d ops.Deps, name, old, image string, health time.Duration, p *Progress) (*cluster.State, error) {
	store, cl := d.Store, d.Cloud
	var repl string
	if err := p.Step("replacement for "+old, func() (string, error) {
		resumed := false
		_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
			next, id, err := cluster.AddReplacement(s, old, image, cluster.NewNamer(0), time.Now())
			repl, resumed = id, errors.Is(err, cluster.ErrNoChange)
			return next, err
		})
		if resumed {
			return repl + " (resumed)", err
		}
		return repl + " (image " + image + ")", err
	}); err != nil {
		return nil, err
	}
	if _, err := ops.ProvisionNodes(ctx, d, name, []string{repl}); err != nil {
		return nil, fmt.Errorf("%w (replacement %s of %s is in the state; re-run the same command to finish it)", err, repl, old)
	}
	if err := p.Step(repl+" serves", func() (string, error) {
		hctx, cancel := context.WithTimeout(ctx, health)
		defer cancel()
		return "", waitServing(hctx, store, cl, name, repl, p)
	}); err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		return nil, &ReplacementUnhealthyError{Cluster: name, Old: old, New: repl, Err: err}
	}
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	if o := st.Node(old); o != nil && o.Lifecycle != cluster.Removing {
		holds := o.Role == cluster.RoleActive
		if st.ReservedIP != "" && o.DropletID != 0 {
			r, err := cl.GetReservedIP(ctx, st.ReservedIP)
			if err != nil {
				return nil, err
			}
			holds = holds || r.DropletID == o.DropletID
		}
		if holds {
			if err := p.Step("move the Reserved IP to "+repl, func() (string, error) {
				return st.ReservedIP, cliError(ops.Promote(ctx, d, name, repl))
			}); err != nil {
				return nil, err
			}
			if st, _, err = store.Load(ctx, name); err != nil {
				return nil, err
			}
		}
	}
	st, err = ops.RetireNode(ctx, d, st, old, func(s *cluster.State) (*cluster.State, error) {
		return cluster.FinishReplacement(s, old)
	})
	return st, cliError(err)
}

// waitServing polls until node id serves: the CLI's health verdict on it is
// up (droplet active, fresh report, app healthy, the newest generation
// applied, failover ready) and no peer's HAProxy checks it DOWN, with at
// least one checking it UP once peers report their backends.
func waitServing(ctx context.Context, store *cluster.Store, cl *cloud.Client, name, id string, p *Progress) error {
	said := ""
	return pollUntil(ctx, func() (bool, string, error) {
		st, _, err := store.Load(ctx, name)
		if err != nil {
			return false, "", err
		}
		n := st.Node(id)
		if n == nil {
			return false, "", fmt.Errorf("node %s is no longer in the state", id)
		}
		ev, err := ops.GatherEvidence(ctx, store, cl, st)
		if err != nil {
			return false, "", err
		}
		h := ev.Of(*n)
		why := string(h.Health)
		if h.Reason != "" {
			why += ": " + h.Reason
		}
		if h.Health == ops.HealthUp {
			up, down := ev.PeersSee(id)
			if down == 0 && (up > 0 || !ev.PeersCheck(id)) {
				return true, "", nil
			}
			why = fmt.Sprintf("peers' health checks: %d up, %d down", up, down)
		}
		if why != said {
			said = why
			p.Info("  waiting for %s: %s", id, why)
		}
		return false, fmt.Sprintf("node %s is not serving (%s)", id, why), nil
	})
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
	// The cluster's image first: nodes added from now on get it too.
	err = p.Step("cluster image "+image, func() (string, error) {
		_, err := store.Update(pctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
			if s.Image == image {
				return nil, cluster.ErrNoChange
			}
			s.Image = image
			return s, nil
		})
		return "", err
	})
	cancel()
	if err != nil {
		return err
	}
	start := time.Now()
	replaced := 0
	st0, _, err := store.Load(ctx, o.Name)
	if err != nil {
		return err
	}
	// Each node is replaced once, plus a replacement a crashed run left:
	// past that the loop is not converging (a droplet that never reports
	// the image asked for), and must not create droplets for ever.
	limit := len(st0.Nodes) + 1
	for {
		nctx, cancel := context.WithTimeout(ctx, o.Timeout)
		old, img, err := nextReplacement(nctx, store, cl, o.Name, image, p)
		if err == nil && old != "" {
			_, err = replaceOne(nctx, deps(store, cl, p, boot), o.Name, old, img, o.HealthTimeout, p)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("upgrade of %s halted after %d replacement(s): %w", o.Name, replaced, err)
		}
		if old == "" {
			break
		}
		replaced++
		if replaced >= limit {
			if next, _, err := nextReplacement(ctx, store, cl, o.Name, image, p); err != nil || next != "" {
				return fmt.Errorf("upgrade of %s halted after %d replacement(s): nodes still not on image %s (next: %q, %v); the droplets do not report the image asked for", o.Name, replaced, image, next, err)
			}
			break
		}
	}
	p.Info("cluster %s: every node on image %s (%d replaced in %v)", o.Name, image, replaced, time.Since(start).Round(time.Second))
	st, _, err := store.Load(ctx, o.Name)
	if err != nil {
		return err
	}
	return printCluster(f, st)
}

// nextReplacement picks the next node `cluster upgrade` replaces and the
// image to make its replacement from: a replacement a crashed run left
// under way first (with its own image); else a ready node whose droplet is
// not on image, standbys first (lowest priority first), the Reserved IP's
// holder last. "" when every node is on image.
func nextReplacement(ctx context.Context, store *cluster.Store, cl *cloud.Client, name, image string, p *Progress) (string, string, error) {
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return "", "", err
	}
	for _, n := range st.Nodes {
		if n.Replaces != "" {
			p.Info("resuming the replacement of %s by %s", n.Replaces, n.ID)
			return n.Replaces, n.ImageOr(st.Image), nil
		}
	}
	ds, err := cl.ListDropletsByTag(ctx, cloud.ClusterTag(name))
	if err != nil {
		return "", "", err
	}
	imageOf := map[int]int{}
	for _, d := range ds {
		imageOf[d.ID] = d.ImageID
	}
	holder := 0
	if st.ReservedIP != "" {
		r, err := cl.GetReservedIP(ctx, st.ReservedIP)
		if err != nil {
			return "", "", err
		}
		holder = r.DropletID
	}
	var todo []cluster.Node
	var skipped []string
	for _, n := range st.Nodes {
		if n.DropletID != 0 && strconv.Itoa(imageOf[n.DropletID]) == image {
			continue
		}
		if n.DropletID == 0 || n.Lifecycle != cluster.Ready {
			p.Info("node %s is %s: not replaced (finish or undo what left it so, then re-run)", n.ID, n.Lifecycle)
			skipped = append(skipped, fmt.Sprintf("%s (%s)", n.ID, n.Lifecycle))
			continue
		}
		todo = append(todo, n)
	}
	if len(todo) == 0 && len(skipped) > 0 {
		// Not "every node on image": say which are not, and fail.
		return "", "", fmt.Errorf("node(s) %s are not on image %s and not ready to be replaced: finish or undo what left them so (node list, repair-ha), then re-run", strings.Join(skipped, ", "), image)
	}
	if len(todo) == 0 {
		return "", "", nil
	}
	last := func(n cluster.Node) bool { return n.DropletID == holder || n.Role == cluster.RoleActive }
	sort.SliceStable(todo, func(i, j int) bool {
		if li, lj := last(todo[i]), last(todo[j]); li != lj {
			return lj
		}
		return todo[i].Priority < todo[j].Priority
	})
	return todo[0].ID, image, nil
}
