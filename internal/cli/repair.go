package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
)

// drift is one difference between the state and DigitalOcean, with its fix.
type drift struct {
	What string
	Fix  string
	do   func(ctx context.Context) error
}

// errDrift makes `repair-ha --check-only` exit 1 when it found something.
var errDrift = errors.New("drift found")

// findDrift compares the state with DO: droplets by tag, the RIP holder,
// the firewall. Each drift carries the fix --force applies.
func findDrift(ctx context.Context, f *Factory, store *cluster.Store, cl *cloud.Client, st *cluster.State) ([]drift, error) {
	name := st.Name
	var out []drift
	// Nodes an interrupted create-ha or add left provisioning.
	for _, n := range st.Nodes {
		if n.Lifecycle != cluster.Provisioning {
			continue
		}
		id := n.ID
		out = append(out, drift{
			What: fmt.Sprintf("node %s is still provisioning (an interrupted create-ha or add?)", id),
			Fix:  "finish provisioning it",
			do: func(ctx context.Context) error {
				p := NewProgress(f.IO, f.Global.Output == "json")
				_, err := provisionNodes(ctx, f, store, cl, name, []string{id}, p)
				return err
			},
		})
	}
	tagged, err := cl.ListDropletsByTag(ctx, cloud.ClusterTag(name))
	if err != nil {
		return nil, err
	}
	byID := map[int]cloud.Droplet{}
	for _, d := range tagged {
		byID[d.ID] = d
	}
	vanished := map[string]bool{}
	for _, n := range st.Nodes {
		if n.DropletID == 0 {
			continue
		}
		if _, ok := byID[n.DropletID]; !ok {
			vanished[n.ID] = true
			id := n.ID
			out = append(out, drift{
				What: fmt.Sprintf("node %s: droplet %d no longer exists", n.ID, n.DropletID),
				Fix:  "remove the node from the state",
				do: func(ctx context.Context) error {
					_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
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
			})
		}
	}
	for _, d := range tagged {
		nodeID := nodeIDFromTags(d.Tags)
		n := st.Node(nodeID)
		switch {
		case n != nil && n.DropletID == d.ID:
		case n != nil && n.DropletID == 0 && n.Lifecycle == cluster.Provisioning:
			// The provisioning fix above adopts it by tag.
		case n != nil && n.DropletID == 0:
			did := d.ID
			out = append(out, drift{
				What: fmt.Sprintf("droplet %d (%s) belongs to node %s but the state lacks its id", d.ID, d.Name, nodeID),
				Fix:  "adopt it",
				do: func(ctx context.Context) error {
					_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.SetDroplet(s, nodeID, did) })
					return err
				},
			})
		default:
			did := d.ID
			out = append(out, drift{
				What: fmt.Sprintf("droplet %d (%s) is tagged for %s but no node of the state owns it", d.ID, d.Name, name),
				Fix:  "destroy the orphan droplet",
				do:   func(ctx context.Context) error { return cl.DeleteDroplet(ctx, did) },
			})
		}
	}
	// The Reserved IP belongs on the active node (or, if that one vanished,
	// on the next ready node by priority).
	if st.ReservedIP != "" {
		target := st.Active()
		if target == nil || vanished[target.ID] || target.DropletID == 0 {
			if target != nil {
				target = cluster.NextActive(st, target.ID)
			} else {
				target = cluster.NextActive(st, "")
			}
		}
		r, err := cl.GetReservedIP(ctx, st.ReservedIP)
		switch {
		case errors.Is(err, cloud.ErrNotFound):
			out = append(out, drift{What: fmt.Sprintf("Reserved IP %s no longer exists", st.ReservedIP), Fix: "none automatic: re-run create-ha after clearing it"})
		case err != nil:
			return nil, err
		case target != nil && r.DropletID != target.DropletID:
			tid, tnode := target.DropletID, target.ID
			out = append(out, drift{
				What: fmt.Sprintf("Reserved IP %s is on droplet %d, not on the active node %s (droplet %d)", st.ReservedIP, r.DropletID, tnode, tid),
				Fix:  "assign it to " + tnode,
				do: func(ctx context.Context) error {
					if err := cl.AssignReservedIP(ctx, st.ReservedIP, tid); err != nil {
						return err
					}
					_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, tnode) })
					return err
				},
			})
		}
	}
	if st.FirewallID != "" {
		if _, err := cl.GetFirewall(ctx, st.FirewallID); err != nil {
			if !errors.Is(err, cloud.ErrNotFound) {
				return nil, err
			}
			out = append(out, drift{
				What: fmt.Sprintf("firewall %s no longer exists", st.FirewallID),
				Fix:  "recreate it",
				do: func(ctx context.Context) error {
					fw, _, err := cl.EnsureFirewall(ctx, cloud.FirewallSpec{Name: resourceName(name), Tag: cloud.ClusterTag(name), VPCCIDR: st.VPC.CIDR})
					if err != nil {
						return err
					}
					_, err = store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
						s.FirewallID = fw.ID
						return s, nil
					})
					return err
				},
			})
		}
	}
	return out, nil
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

func nodeIDFromTags(tags []string) string {
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, "dynia:node:"); ok {
			return id
		}
	}
	return ""
}

func repairHA(ctx context.Context, f *Factory, o *RepairOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	store, st, cl, err := f.openCluster(ctx, o.Name, o.Force)
	if err != nil {
		return err
	}
	drifts, err := findDrift(ctx, f, store, cl, st)
	if err != nil {
		return err
	}
	if f.Global.Output == "json" && o.CheckOnly {
		type row struct{ Drift, Fix string }
		var rs []row
		for _, d := range drifts {
			rs = append(rs, row{d.What, d.Fix})
		}
		if rs == nil {
			rs = []row{}
		}
		if err := writeJSON(f.IO.Out, map[string]any{"cluster": o.Name, "drift": rs}); err != nil {
			return err
		}
	}
	if len(drifts) == 0 {
		if f.Global.Output != "json" {
			fmt.Fprintf(f.IO.Out, "cluster %s: no drift\n", o.Name)
		}
		return nil
	}
	p := NewProgress(f.IO, false)
	for _, d := range drifts {
		if o.CheckOnly {
			if f.Global.Output != "json" {
				fmt.Fprintf(f.IO.Out, "drift: %s → fix: %s\n", d.What, d.Fix)
			}
			continue
		}
		if d.do == nil {
			p.Info("drift: %s (no automatic fix)", d.What)
			continue
		}
		if err := p.Step(d.Fix+" ("+d.What+")", func() (string, error) { return "", d.do(ctx) }); err != nil {
			return err
		}
	}
	if o.CheckOnly {
		return fmt.Errorf("cluster %s: %d drift(s); run with --force to fix: %w", o.Name, len(drifts), errDrift)
	}
	st, _, err = store.Load(ctx, o.Name)
	if err != nil {
		return err
	}
	return printCluster(f, st)
}
