package ops

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
)

// Drift is one difference between the state and DigitalOcean (or the
// nodes' reports), with its fix: Do applies it (nil: no fix is safe to
// apply automatically; Fix says what to do by hand).
type Drift struct {
	What string
	Fix  string
	Do   func(ctx context.Context) error
}

// Check compares one kind of resource of cluster st with what exists and
// returns its drifts. It only reads.
type Check func(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error)

// FindDrift runs checks in order and returns their drifts, in that order.
func FindDrift(ctx context.Context, d Deps, st *cluster.State, checks ...Check) ([]Drift, error) {
	var out []Drift
	for _, c := range checks {
		ds, err := c(ctx, d, st)
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
	}
	return out, nil
}

// Repair applies each drift's fix as a step reported through r, in order;
// a drift without one is reported in its turn and counted in manual. The
// first fix that fails stops the rest.
func Repair(ctx context.Context, r Reporter, drifts []Drift) (manual int, err error) {
	var steps []Step
	for _, dr := range drifts {
		if dr.Do == nil {
			manual++
			steps = append(steps, Step{"", func(context.Context) (string, error) {
				r.Info("drift: %s (no automatic fix: %s)", dr.What, dr.Fix)
				return "", nil
			}})
			continue
		}
		steps = append(steps, Step{dr.Fix + " (" + dr.What + ")", func(ctx context.Context) (string, error) { return "", dr.Do(ctx) }})
	}
	return manual, Run(ctx, r, steps...)
}

// CheckProvisioning: nodes an interrupted create-ha or add left
// provisioning; the fix provisions them (ProvisionNodes, which adopts a
// droplet already tagged for the node).
func CheckProvisioning(_ context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	var out []Drift
	for _, n := range st.Nodes {
		if n.Lifecycle != cluster.Provisioning {
			continue
		}
		id := n.ID
		out = append(out, Drift{
			What: fmt.Sprintf("node %s is still provisioning (an interrupted create-ha or add?)", id),
			Fix:  "finish provisioning it",
			Do: func(ctx context.Context) error {
				_, err := ProvisionNodes(ctx, d, st.Name, []string{id})
				return err
			},
		})
	}
	return out, nil
}

// CheckDroplets compares the nodes' droplets with the droplets tagged for
// the cluster: a node whose droplet is gone is removed from the state
// (another node made active if it was); a droplet of a node whose id the
// state lacks is adopted; a droplet no node owns is destroyed.
func CheckDroplets(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	tagged, err := d.Cloud.ListDropletsByTag(ctx, cloud.ClusterTag(st.Name))
	if err != nil {
		return nil, err
	}
	byID := map[int]bool{}
	for _, dr := range tagged {
		byID[dr.ID] = true
	}
	var out []Drift
	for _, n := range st.Nodes {
		if n.DropletID != 0 && !byID[n.DropletID] {
			out = append(out, vanished(d, st.Name, n))
		}
	}
	for _, dr := range tagged {
		if x, ok := strayDroplet(d, st, dr); ok {
			out = append(out, x)
		}
	}
	return out, nil
}

// vanished is the drift of node n whose droplet no longer exists.
func vanished(d Deps, name string, n cluster.Node) Drift {
	id := n.ID
	return Drift{
		What: fmt.Sprintf("node %s: droplet %d no longer exists", n.ID, n.DropletID),
		Fix:  "remove the node from the state",
		Do: func(ctx context.Context) error {
			_, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
				if n := s.Node(id); n != nil && n.Role == cluster.RoleActive {
					if next := cluster.NextActive(s, id); next != nil {
						var err error
						if s, err = cluster.MakeActive(s, next.ID); err != nil {
							return nil, err
						}
					}
				}
				return removeEvenIfActive(s, id)
			})
			return err
		},
	}
}

// strayDroplet is the drift of a droplet tagged for the cluster that the
// state does not record as its node's (false: none).
func strayDroplet(d Deps, st *cluster.State, dr cloud.Droplet) (Drift, bool) {
	nodeID := nodeIDFromTags(dr.Tags)
	n := st.Node(nodeID)
	did := dr.ID
	switch {
	case n != nil && n.DropletID == dr.ID:
		return Drift{}, false
	case n != nil && n.DropletID == 0 && n.Lifecycle == cluster.Provisioning:
		// CheckProvisioning's fix adopts it by tag.
		return Drift{}, false
	case n != nil && n.DropletID == 0:
		return Drift{
			What: fmt.Sprintf("droplet %d (%s) belongs to node %s but the state lacks its id", dr.ID, dr.Name, nodeID),
			Fix:  "adopt it",
			Do: func(ctx context.Context) error {
				_, err := d.Store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) { return cluster.SetDroplet(s, nodeID, did) })
				return err
			},
		}, true
	}
	return Drift{
		What: fmt.Sprintf("droplet %d (%s) is tagged for %s but no node of the state owns it", dr.ID, dr.Name, st.Name),
		Fix:  "destroy the orphan droplet",
		Do:   func(ctx context.Context) error { return d.Cloud.DeleteDroplet(ctx, did) },
	}, true
}

// CheckVPC: the state's VPC must exist. DO cannot move a droplet into
// another VPC, and new nodes are created in the state's: a new VPC would
// mean replacing every node, which repair will not do on its own.
func CheckVPC(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	if st.VPC.ID == "" {
		return nil, nil
	}
	if _, err := d.Cloud.GetVPC(ctx, st.VPC.ID); err == nil || !errors.Is(err, cloud.ErrNotFound) {
		return nil, err
	}
	return []Drift{{
		What: fmt.Sprintf("VPC %s (%s) no longer exists", st.VPC.ID, st.VPC.CIDR),
		Fix: fmt.Sprintf("none automatic: droplets cannot move into a new VPC and `node add` needs this one; "+
			"re-create the cluster (`dynia cluster destroy --name %s --yes`, then `dynia node create-ha`)", st.Name),
	}}, nil
}

// CheckFirewall: the state's firewall must exist; the fix re-creates it
// from the state and records its id.
func CheckFirewall(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	if st.FirewallID == "" {
		return nil, nil
	}
	if _, err := d.Cloud.GetFirewall(ctx, st.FirewallID); err == nil || !errors.Is(err, cloud.ErrNotFound) {
		return nil, err
	}
	return []Drift{{
		What: fmt.Sprintf("firewall %s no longer exists", st.FirewallID),
		Fix:  "recreate it",
		Do: func(ctx context.Context) error {
			fw, _, err := d.Cloud.EnsureFirewall(ctx, FirewallSpec(st))
			if err != nil {
				return err
			}
			_, err = d.Store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
				s.FirewallID = fw.ID
				return s, nil
			})
			return err
		},
	}}, nil
}

// removeEvenIfActive drops a node whose droplet is gone, even if the state
// still calls it active (there is nothing left to hand over from).
func removeEvenIfActive(s *cluster.State, id string) (*cluster.State, error) {
	if n := s.Node(id); n != nil && n.Role == cluster.RoleActive {
		n.Role = cluster.RoleStandby
	}
	next, err := cluster.RemoveNode(s, id)
	if err != nil {
		return nil, err
	}
	if next.Active() == nil {
		if cand := cluster.NextActive(next, ""); cand != nil {
			return cluster.MakeActive(next, cand.ID)
		}
	}
	return next, nil
}

// RecordActive is a drift fix that records node id as the active node
// (the Reserved IP stays where it is).
func RecordActive(d Deps, name, id string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		_, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, id) })
		return err
	}
}
