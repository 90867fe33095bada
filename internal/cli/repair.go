package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// drift is one difference between the state and DigitalOcean, with its fix.
type drift struct {
	What string
	Fix  string
	do   func(ctx context.Context) error
}

// errDrift makes `repair-ha --check-only` exit 1 when it found something.
var errDrift = errors.New("drift found")

// findDrift compares the state with DO and the node reports: droplets by
// tag, the VPC, the RIP holder against the node that should hold it, the
// firewall. Each drift carries the fix --force applies (nil do: none safe).
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
	if st.VPC.ID != "" {
		if _, err := cl.GetVPC(ctx, st.VPC.ID); err != nil {
			if !errors.Is(err, cloud.ErrNotFound) {
				return nil, err
			}
			// DO cannot move a droplet into another VPC, and new nodes are
			// created in the state's: a new VPC would mean replacing every
			// node, which repair-ha will not do on its own.
			out = append(out, drift{
				What: fmt.Sprintf("VPC %s (%s) no longer exists", st.VPC.ID, st.VPC.CIDR),
				Fix: fmt.Sprintf("none automatic: droplets cannot move into a new VPC and `node add` needs this one; "+
					"re-create the cluster (`dynia cluster destroy --name %s --confirm`, then `dynia node create-ha`)", name),
			})
		}
	}
	// The Reserved IP belongs on the active node while it serves; if its
	// droplet is gone or its report says it is not up, on the ready node
	// with the highest priority that is up, which then becomes active.
	if st.ReservedIP != "" {
		r, err := cl.GetReservedIP(ctx, st.ReservedIP)
		target, why := ripTarget(ctx, store, st, vanished, r.DropletID)
		active := st.Active()
		switch {
		case errors.Is(err, cloud.ErrNotFound):
			out = append(out, drift{What: fmt.Sprintf("Reserved IP %s no longer exists", st.ReservedIP), Fix: "none automatic: re-run create-ha after clearing it"})
		case err != nil:
			return nil, err
		case target == nil:
			out = append(out, drift{What: fmt.Sprintf("no ready node can hold the Reserved IP %s", st.ReservedIP), Fix: "none automatic: add a node (`dynia node add`)"})
		case r.DropletID != target.DropletID:
			tid, tnode := target.DropletID, target.ID
			what := fmt.Sprintf("Reserved IP %s is on droplet %d, not on the active node %s (droplet %d)", st.ReservedIP, r.DropletID, tnode, tid)
			if why != "" {
				what = fmt.Sprintf("Reserved IP %s is on droplet %d and %s; node %s (droplet %d) should hold it", st.ReservedIP, r.DropletID, why, tnode, tid)
			}
			out = append(out, drift{
				What: what,
				Fix:  "assign it to " + tnode + " and make it the active node",
				do: func(ctx context.Context) error {
					if err := cl.AssignReservedIP(ctx, st.ReservedIP, tid); err != nil {
						return err
					}
					_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, tnode) })
					return err
				},
			})
		case active == nil || active.ID != target.ID:
			// The IP already sits on the node that should be active (a
			// failover the state did not record): the state follows it.
			tnode := target.ID
			what := fmt.Sprintf("the state has no active node, but Reserved IP %s is on node %s", st.ReservedIP, tnode)
			if active != nil {
				what = fmt.Sprintf("the state calls %s active, but Reserved IP %s is on node %s", active.ID, st.ReservedIP, tnode)
				if why != "" {
					what += " (" + why + ")"
				}
			}
			out = append(out, drift{
				What: what,
				Fix:  "make " + tnode + " the active node in the state",
				do: func(ctx context.Context) error {
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
					fw, _, err := cl.EnsureFirewall(ctx, cloud.FirewallSpec{Name: resourceName(name), Tag: cloud.ClusterTag(name),
						AppPort: st.App.Port, MeshPort: nodeconfig.DefaultMeshPort})
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

// ripTarget is the node the Reserved IP belongs on, and when that is not the
// state's active node, why: the active node while its report says up; else
// the highest-priority ready node whose report says up; else (no report says
// up: a cluster still starting, or reports not flowing) the ready node that
// holds it now (holder, a droplet id), then the active node if its droplet
// exists, then the highest-priority ready node whose droplet does. Moving
// the IP between nodes none of which is known to serve would only add a
// failover.
func ripTarget(ctx context.Context, store *cluster.Store, st *cluster.State, vanished map[string]bool, holder int) (*cluster.Node, string) {
	now := time.Now()
	status := map[string]string{}
	candidate := func(n *cluster.Node) bool {
		return n != nil && n.Lifecycle == cluster.Ready && n.DropletID != 0 && !vanished[n.ID]
	}
	for _, n := range st.Nodes {
		if !candidate(&n) {
			continue
		}
		// An unreadable report counts as not up, like a missing one.
		if r, err := readReport(ctx, store, st.Name, n.ID); err == nil {
			status[n.ID] = nodeStatus(n, r, st.Generation, now)
		} else {
			status[n.ID] = "unreadable report"
		}
	}
	up := func(n *cluster.Node) bool { return candidate(n) && strings.HasPrefix(status[n.ID], "up") }
	active := st.Active()
	if up(active) {
		return active, ""
	}
	why := "the state has no active node"
	switch {
	case active == nil:
	case vanished[active.ID] || active.DropletID == 0:
		why = fmt.Sprintf("the active node %s has no droplet", active.ID)
	case active.Lifecycle != cluster.Ready:
		why = fmt.Sprintf("the active node %s is %s", active.ID, active.Lifecycle)
	default:
		why = fmt.Sprintf("the active node %s is %s", active.ID, status[active.ID])
	}
	byPriority := cluster.SortedByPriority(st.Nodes)
	for _, n := range byPriority {
		if up(st.Node(n.ID)) {
			return st.Node(n.ID), why
		}
	}
	for i := range st.Nodes {
		if n := &st.Nodes[i]; holder != 0 && n.DropletID == holder && candidate(n) {
			return n, "no node reports up, so it stays where it is"
		}
	}
	if candidate(active) {
		return active, ""
	}
	for _, n := range byPriority {
		if candidate(st.Node(n.ID)) {
			return st.Node(n.ID), why
		}
	}
	return nil, why
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
	manual := 0
	for _, d := range drifts {
		if o.CheckOnly {
			if f.Global.Output != "json" {
				fmt.Fprintf(f.IO.Out, "drift: %s → fix: %s\n", d.What, d.Fix)
			}
			continue
		}
		if d.do == nil {
			p.Info("drift: %s (no automatic fix: %s)", d.What, d.Fix)
			manual++
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
	if err := printCluster(f, st); err != nil {
		return err
	}
	if manual > 0 {
		return fmt.Errorf("cluster %s: %d drift(s) need manual action (see above): %w", o.Name, manual, errDrift)
	}
	return nil
}
