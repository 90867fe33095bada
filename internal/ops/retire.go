package ops

import (
	"context"
	"fmt"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
)

// RemoveNode drains node id, hands the Reserved IP on if it holds it,
// destroys its droplet and removes it from the state (RetireNode). The node
// stays in the state (lifecycle removing) until its droplet is gone, so a
// re-run after a crash finds it there and finishes. The token is checked
// with a read before the first write.
func RemoveNode(ctx context.Context, d Deps, st *cluster.State, id string) (*cluster.State, error) {
	if err := CheckCloud(ctx, d.Cloud, st.Name); err != nil {
		return nil, err
	}
	return RetireNode(ctx, d, st, id, func(s *cluster.State) (*cluster.State, error) {
		return cluster.RemoveNode(s, id)
	})
}

// RetireNode takes node id out of service and destroys it: the Reserved IP
// moves to the next node if id is active, id is drained (every other ready
// node applied that), marked removing, its droplets destroyed, its report
// deleted, and last the state's final write (forget: cluster.RemoveNode, or
// cluster.FinishReplacement) runs. Every step looks first, so a re-run
// after a crash at any point finishes.
func RetireNode(ctx context.Context, d Deps, st *cluster.State, id string, forget func(*cluster.State) (*cluster.State, error)) (*cluster.State, error) {
	name := st.Name
	n := st.Node(id)
	if n == nil {
		// Gone already (a re-run, or removed by hand): only the final
		// write may be left, e.g. a replacement still naming it.
		return d.Store.Update(ctx, name, forget)
	}
	var steps []Step
	if n.Role == cluster.RoleActive && len(st.Nodes) > 1 {
		next := cluster.NextActive(st, n.ID)
		if next == nil {
			return nil, fmt.Errorf("node %s is active and no other node is ready to take the Reserved IP", n.ID)
		}
		steps = append(steps, Step{"move the Reserved IP to " + next.ID, func(ctx context.Context) (string, error) {
			return "", Promote(ctx, d, name, next.ID)
		}})
	}
	// A node already removing was drained by the run that marked it.
	if len(st.Nodes) > 1 && n.Lifecycle != cluster.Removing {
		steps = append(steps, Step{"drain " + n.ID, func(ctx context.Context) (string, error) {
			drained, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
				return cluster.MarkDraining(s, id)
			})
			if err != nil {
				return "", err
			}
			return "", d.Nodes.WaitOthers(ctx, drained, id)
		}})
	}
	steps = append(steps,
		Step{"", func(ctx context.Context) (string, error) {
			_, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
				return cluster.MarkRemoving(s, id)
			})
			return "", err
		}},
		Step{"", func(ctx context.Context) (string, error) {
			ds, err := d.Cloud.ListDropletsByTag(ctx, cloud.NodeTag(id))
			if err != nil {
				return "", err
			}
			var mine []cloud.Droplet
			for _, dr := range ds {
				if hasTag(dr.Tags, cloud.ClusterTag(name)) {
					mine = append(mine, dr)
				}
			}
			return "", DestroyDroplets(ctx, d, mine)
		}},
		// The report goes while the node is still in the state (removing),
		// so that a failure here is finished by a re-run, which finds the
		// node there. dynia-pull writes no report once it sees its node
		// removing or gone, so a late one from a droplet still shutting
		// down does not bring it back.
		Step{"delete the report of " + n.ID, func(ctx context.Context) (string, error) {
			if err := d.Store.B.Delete(ctx, cluster.StatusKey(name, id)); err != nil {
				return "", fmt.Errorf("delete the report of node %s: %w", id, err)
			}
			return "", nil
		}},
		Step{"remove " + n.ID + " from the state", func(ctx context.Context) (string, error) {
			var err error
			st, err = d.Store.Update(ctx, name, forget)
			return "", err
		}},
	)
	if err := Run(ctx, d.Report, steps...); err != nil {
		return nil, err
	}
	return st, nil
}

// DestroyDroplets deletes ds, one reported step each.
func DestroyDroplets(ctx context.Context, d Deps, ds []cloud.Droplet) error {
	for _, dr := range ds {
		if err := d.Report.Step(fmt.Sprintf("destroy droplet %d (%s)", dr.ID, dr.Name), func() (string, error) {
			return "", d.Cloud.DeleteDroplet(ctx, dr.ID)
		}); err != nil {
			return err
		}
	}
	return nil
}

// Promote assigns the Reserved IP to node nodeID's droplet and then records
// it as the active node (top priority), so state and IP holder agree at
// the end. A node that is not in the state, or not ready, is an
// *InputError.
func Promote(ctx context.Context, d Deps, name, nodeID string) error {
	st, _, err := d.Store.Load(ctx, name)
	if err != nil {
		return err
	}
	n := st.Node(nodeID)
	if n == nil {
		return Inputf("--node %q: not a node of cluster %s", nodeID, name)
	}
	if n.Lifecycle != cluster.Ready || n.DropletID == 0 {
		return Inputf("--node %q: is %s; only a ready node can become active", nodeID, n.Lifecycle)
	}
	if st.ReservedIP != "" {
		r, err := d.Cloud.GetReservedIP(ctx, st.ReservedIP)
		if err != nil {
			return err
		}
		if r.DropletID != n.DropletID {
			if err := d.Cloud.AssignReservedIP(ctx, st.ReservedIP, n.DropletID); err != nil {
				return err
			}
		}
	}
	_, err = d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
		return cluster.MakeActive(s, nodeID)
	})
	return err
}

// MakeActive makes node id the cluster's active node: the Reserved IP
// moves to it (Promote), one reported step; it returns the state after.
func MakeActive(ctx context.Context, d Deps, st *cluster.State, id string) (*cluster.State, error) {
	if err := d.Report.Step("make "+id+" active", func() (string, error) {
		return st.ReservedIP, Promote(ctx, d, st.Name, id)
	}); err != nil {
		return nil, err
	}
	st, _, err := d.Store.Load(ctx, st.Name)
	return st, err
}
