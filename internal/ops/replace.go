package ops

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/poll"
)

// Replacing a node (`node replace`) and every node (`cluster upgrade`) is
// built from the other operations' steps: the replacement is a node added
// to the state (carrying `replaces: <old id>`) and provisioned as AddNodes
// does (ProvisionNodes), the Reserved IP moves to it as make-active does
// (Promote) when the old node holds it, and the old node is retired as
// RemoveNode does (RetireNode). Each step looks before it acts, so a re-run
// after a crash finds the replacement in the state and finishes it instead
// of creating a second one.

// ReplaceOptions are ReplaceNode's inputs.
type ReplaceOptions struct {
	Name string
	// Node is the node to replace.
	Node string
	// Image is the snapshot id the replacement is made from.
	Image string
	// HealthTimeout bounds the wait for the replacement to serve.
	HealthTimeout time.Duration
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

// ReplaceNode replaces node o.Node with a node made from o.Image: it adds
// (or finds, after a crash) the replacement, provisions it, waits until it
// serves and reports healthy (at most o.HealthTimeout), moves the Reserved
// IP to it if the old node holds it, then drains and destroys the old
// node; the replacement takes its priority. When the replacement does not
// serve in time it returns a *ReplacementUnhealthyError and the old node is
// untouched. It returns the state at the end.
func ReplaceNode(ctx context.Context, d Deps, o ReplaceOptions) (*cluster.State, error) {
	name, old := o.Name, o.Node
	var repl string
	var st *cluster.State
	moving := false // the old node is no longer left as it was
	err := Run(ctx, d.Report,
		Step{"replacement for " + old, func(ctx context.Context) (string, error) {
			resumed := false
			_, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
				next, id, err := cluster.AddReplacement(s, old, o.Image, cluster.NewNamer(0), time.Now())
				repl, resumed = id, errors.Is(err, cluster.ErrNoChange)
				return next, err
			})
			if resumed {
				return repl + " (resumed)", err
			}
			return repl + " (image " + o.Image + ")", err
		}},
		Step{"", func(ctx context.Context) (string, error) {
			if _, err := ProvisionNodes(ctx, d, name, []string{repl}); err != nil {
				return "", fmt.Errorf("%w (replacement %s of %s is in the state; re-run the same command to finish it)", err, repl, old)
			}
			return "", nil
		}},
		// Reported under the replacement's name, known once the first
		// step ran.
		Step{"", func(ctx context.Context) (string, error) {
			return "", d.Report.Step(repl+" serves", func() (string, error) {
				hctx, cancel := context.WithTimeout(ctx, o.HealthTimeout)
				defer cancel()
				return "", waitServing(hctx, d, name, repl)
			})
		}},
		Step{"", func(ctx context.Context) (string, error) {
			moving = true
			var err error
			st, err = moveFromOld(ctx, d, name, old, repl)
			return "", err
		}},
		Step{"", func(ctx context.Context) (string, error) {
			var err error
			st, err = RetireNode(ctx, d, st, old, func(s *cluster.State) (*cluster.State, error) {
				return cluster.FinishReplacement(s, old)
			})
			return "", err
		}},
	)
	var unhealthy *ReplacementUnhealthyError
	if err != nil && repl != "" && !moving && (ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded)) && !errors.As(err, &unhealthy) {
		// The time ran out (the health wait's, or the command's, also
		// between steps) before the replacement was seen serving: the
		// old node is as it was, and a re-run keeps waiting.
		err = &ReplacementUnhealthyError{Cluster: name, Old: old, New: repl, Err: err}
	}
	if err != nil {
		return nil, err
	}
	return st, nil
}

// moveFromOld moves the Reserved IP to repl (Promote, a step) when node
// old, not yet being removed, is active or holds the IP, and returns the
// state then.
func moveFromOld(ctx context.Context, d Deps, name, old, repl string) (*cluster.State, error) {
	st, _, err := d.Store.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	o := st.Node(old)
	if o == nil || o.Lifecycle == cluster.Removing {
		return st, nil
	}
	holds := o.Role == cluster.RoleActive
	if st.ReservedIP != "" && o.DropletID != 0 {
		r, err := d.Cloud.GetReservedIP(ctx, st.ReservedIP)
		if err != nil {
			return nil, err
		}
		holds = holds || r.DropletID == o.DropletID
	}
	if !holds {
		return st, nil
	}
	if err := d.Report.Step("move the Reserved IP to "+repl, func() (string, error) {
		return st.ReservedIP, Promote(ctx, d, name, repl)
	}); err != nil {
		return nil, err
	}
	st, _, err = d.Store.Load(ctx, name)
	return st, err
}

// waitServing polls until node id serves: the health verdict on it is up
// (droplet active, fresh report, app healthy, the newest generation
// applied, failover ready) and no peer's HAProxy checks it DOWN, with at
// least one checking it UP once peers report their backends. Whenever the
// reason it does not serve yet changes, one Info line says so.
func waitServing(ctx context.Context, d Deps, name, id string) error {
	said := ""
	return PollUntil(ctx, func() (bool, string, error) {
		st, _, err := d.Store.Load(ctx, name)
		if err != nil {
			return false, "", err
		}
		n := st.Node(id)
		if n == nil {
			return false, "", fmt.Errorf("node %s is no longer in the state", id)
		}
		ev, err := GatherEvidence(ctx, d.Store, d.Cloud, st)
		if err != nil {
			return false, "", err
		}
		h := ev.Of(*n)
		why := string(h.Health)
		if h.Reason != "" {
			why += ": " + h.Reason
		}
		if h.Health == HealthUp {
			up, down := ev.PeersSee(id)
			if down == 0 && (up > 0 || !ev.PeersCheck(id)) {
				return true, "", nil
			}
			why = fmt.Sprintf("peers' health checks: %d up, %d down", up, down)
		}
		if why != said {
			said = why
			d.Report.Info("  waiting for %s: %s", id, why)
		}
		return false, fmt.Sprintf("node %s is not serving (%s)", id, why), nil
	})
}

// SetClusterImage records image as the cluster's image (a step), so nodes
// added from now on get it too; the image already recorded writes nothing.
func SetClusterImage(ctx context.Context, d Deps, name, image string) error {
	return d.Report.Step("cluster image "+image, func() (string, error) {
		_, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
			if s.Image == image {
				return nil, cluster.ErrNoChange
			}
			s.Image = image
			return s, nil
		})
		return "", err
	})
}

// UpgradeOptions are Upgrade's inputs.
type UpgradeOptions struct {
	Name string
	// Image is the snapshot id every node ends up on.
	Image string
	// HealthTimeout bounds each replacement's wait to serve; Timeout
	// bounds each replacement as a whole.
	HealthTimeout, Timeout time.Duration
}

// Upgrade replaces, one at a time (ReplaceNode), every node whose droplet
// is not on o.Image, in nextReplacement's order, and returns the state at
// the end. The cluster's image is SetClusterImage's to record first. A
// replacement that fails halts the upgrade with an error counting the
// replacements done; so does a loop that does not converge (more
// replacements than nodes plus one a crashed run left).
func Upgrade(ctx context.Context, d Deps, o UpgradeOptions) (*cluster.State, error) {
	start := time.Now()
	replaced := 0
	st0, _, err := d.Store.Load(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	// Each node is replaced once, plus a replacement a crashed run left:
	// past that the loop is not converging (a droplet that never reports
	// the image asked for), and must not create droplets for ever.
	limit := len(st0.Nodes) + 1
	for {
		nctx, cancel := context.WithTimeout(ctx, o.Timeout)
		old, img, err := nextReplacement(nctx, d, o.Name, o.Image)
		if err == nil && old != "" {
			_, err = ReplaceNode(nctx, d, ReplaceOptions{Name: o.Name, Node: old, Image: img, HealthTimeout: o.HealthTimeout})
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("upgrade of %s halted after %d replacement(s): %w", o.Name, replaced, err)
		}
		if old == "" {
			break
		}
		replaced++
		if replaced >= limit {
			if next, _, err := nextReplacement(ctx, d, o.Name, o.Image); err != nil || next != "" {
				return nil, fmt.Errorf("upgrade of %s halted after %d replacement(s): nodes still not on image %s (next: %q, %v); the droplets do not report the image asked for", o.Name, replaced, o.Image, next, err)
			}
			break
		}
	}
	d.Report.Info("cluster %s: every node on image %s (%d replaced in %v)", o.Name, o.Image, replaced, time.Since(start).Round(time.Second))
	st, _, err := d.Store.Load(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// nextReplacement picks the next node Upgrade replaces and the image to
// make its replacement from: a replacement a crashed run left under way
// first (with its own image); else a ready node whose droplet is not on
// image, standbys first (lowest priority first), the Reserved IP's holder
// last. "" when every node is on image.
func nextReplacement(ctx context.Context, d Deps, name, image string) (string, string, error) {
	st, _, err := d.Store.Load(ctx, name)
	if err != nil {
		return "", "", err
	}
	for _, n := range st.Nodes {
		if n.Replaces != "" {
			d.Report.Info("resuming the replacement of %s by %s", n.Replaces, n.ID)
			return n.Replaces, n.ImageOr(st.Image), nil
		}
	}
	ds, err := d.Cloud.ListDropletsByTag(ctx, cloud.ClusterTag(name))
	if err != nil {
		return "", "", err
	}
	imageOf := map[int]int{}
	for _, dr := range ds {
		imageOf[dr.ID] = dr.ImageID
	}
	holder := 0
	if st.ReservedIP != "" {
		r, err := d.Cloud.GetReservedIP(ctx, st.ReservedIP)
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
			d.Report.Info("node %s is %s: not replaced (finish or undo what left it so, then re-run)", n.ID, n.Lifecycle)
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

// PollUntil polls cond with backoff (250 ms to 2 s) until it holds or ctx
// ends; cond returns whether it holds and, when not, what is awaited. A
// cancelled wait is an error naming what it waited for; an error from cond
// stops the wait and is returned.
func PollUntil(ctx context.Context, cond func() (bool, string, error)) error {
	var what string
	err := poll.UntilBackoff(ctx, 250*time.Millisecond, 2*time.Second, func() error {
		ok, w, err := cond()
		switch {
		case err != nil:
			return poll.Stop(err)
		case !ok:
			what = w
			return errNotYet
		}
		return nil
	})
	if errors.Is(err, errNotYet) {
		return fmt.Errorf("%s: %w", what, ctx.Err())
	}
	return err
}

// errNotYet is PollUntil's condition not holding yet.
var errNotYet = errors.New("not yet")
