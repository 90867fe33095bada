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
	ev, err := gatherEvidence(ctx, store, cl, st)
	if err != nil {
		return nil, err
	}
	if st.ReservedIP != "" {
		d, err := ripDrift(ctx, store, cl, st, ev)
		if err != nil {
			return nil, err
		}
		out = append(out, d...)
	}
	for _, n := range st.Nodes {
		r := ev.Report(n.ID)
		if n.Lifecycle != cluster.Ready || r == nil || !ev.fresh(r) || r.Failover.Ready || r.Failover.CheckedAt == nil {
			continue
		}
		out = append(out, drift{
			What: fmt.Sprintf("node %s cannot move the Reserved IP to itself: %s", n.ID, r.Failover.Error),
			Fix: "none automatic: give the node a working token (a token with reserved_ip:update and its reads, in " +
				"/etc/dynia/do-token on the droplet); the node picks a replaced file up without a restart",
		})
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
					fw, _, err := cl.EnsureFirewall(ctx, firewallSpec(st))
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

// ripDrift compares where the Reserved IP is with where it belongs. It
// never moves the IP away from a node that serves, and never to a node not
// proven to serve now (droplet active, fresh report, app healthy, peers'
// checks passing): a healthy holder stays and the state follows it (a
// failover the state missed, fixed without any API call); a holder that
// does not serve loses the IP to the serving node the state prefers (its
// active node, else the highest priority); when no node is proven to
// serve, nothing moves.
func ripDrift(ctx context.Context, store *cluster.Store, cl *cloud.Client, st *cluster.State, ev *Evidence) ([]drift, error) {
	name := st.Name
	if !ev.HolderKnown {
		if errors.Is(ev.APIErr, cloud.ErrNotFound) {
			return []drift{{What: fmt.Sprintf("Reserved IP %s no longer exists", st.ReservedIP), Fix: "none automatic: re-run create-ha after clearing it"}}, nil
		}
		return nil, ev.APIErr
	}
	active := st.Active()
	holder := ev.HolderNode()
	if holder != nil {
		if why := ev.Refused(holder.ID); why != "" {
			// Someone other than the holder wrote its report: whatever it
			// claims (or hides), it is no ground for moving the IP.
			return []drift{{
				What: fmt.Sprintf("Reserved IP %s is on %s, whose report is not believed (%s)", st.ReservedIP, holder.ID, why),
				Fix:  "none automatic: the IP stays; find out who writes that report (docs/security.md)",
			}}, nil
		}
	}
	describe := func(n *cluster.Node) string {
		h := ev.Of(*n)
		if h.Reason == "" {
			return fmt.Sprintf("%s (%s)", n.ID, h.Health)
		}
		return fmt.Sprintf("%s (%s: %s)", n.ID, h.Health, h.Reason)
	}
	serves := func(n *cluster.Node) bool {
		return n != nil && n.Lifecycle == cluster.Ready && ev.Of(*n).Health.Serves()
	}
	if serves(holder) {
		if active != nil && active.ID == holder.ID {
			return nil, nil
		}
		what := fmt.Sprintf("state behind a failover: Reserved IP %s is on %s, which serves", st.ReservedIP, describe(holder))
		if active != nil {
			what += fmt.Sprintf("; the state's active node is %s", describe(active))
		}
		tnode := holder.ID
		return []drift{{
			What: what,
			Fix:  "record " + tnode + " as the active node (the Reserved IP stays where it is)",
			do: func(ctx context.Context) error {
				_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, tnode) })
				return err
			},
		}}, nil
	}
	where := fmt.Sprintf("droplet %d, not a node of the cluster", ev.Holder)
	switch {
	case ev.Holder == 0:
		where = "no droplet"
	case holder != nil:
		where = describe(holder)
	}
	var target *cluster.Node
	if serves(active) {
		target = active
	} else {
		for _, n := range cluster.SortedByPriority(st.Nodes) {
			if serves(st.Node(n.ID)) {
				target = st.Node(n.ID)
				break
			}
		}
	}
	if target == nil {
		if holder != nil && holder.Lifecycle == cluster.Ready && ev.Of(*holder).Health != HealthDown {
			// Nobody is proven to serve, the holder included (a cluster
			// still starting, reports not flowing): moving the IP between
			// nodes none of which is known to serve would only add a
			// failover. The state follows placement.
			if active != nil && active.ID == holder.ID {
				return nil, nil
			}
			tnode := holder.ID
			return []drift{{
				What: fmt.Sprintf("Reserved IP %s is on %s, not on the state's active node %s; no node is proven to serve, so it stays where it is",
					st.ReservedIP, where, activeID(st)),
				Fix: "record " + tnode + " as the active node (the Reserved IP stays where it is)",
				do: func(ctx context.Context) error {
					_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, tnode) })
					return err
				},
			}}, nil
		}
		return []drift{{
			What: fmt.Sprintf("Reserved IP %s is on %s, and no node is proven to serve", st.ReservedIP, where),
			Fix:  "none automatic: bring a node back or add one (`dynia node add`)",
		}}, nil
	}
	tid, tnode := target.DropletID, target.ID
	return []drift{{
		What: fmt.Sprintf("Reserved IP %s is on %s; %s serves", st.ReservedIP, where, describe(target)),
		Fix:  "assign it to " + tnode + " and record " + tnode + " as the active node",
		do: func(ctx context.Context) error {
			if err := cl.AssignReservedIP(ctx, st.ReservedIP, tid); err != nil {
				return err
			}
			_, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) { return cluster.MakeActive(s, tnode) })
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
	if o.Force {
		if err := f.checkRepairNodeToken(ctx, o); err != nil {
			return err
		}
	}
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

// checkRepairNodeToken: --force creates droplets for nodes left
// provisioning, so with such nodes in the state it needs a node token (or
// --allow-operator-token), checked before any API call, like create-ha's.
// The state is only read.
func (f *Factory) checkRepairNodeToken(ctx context.Context, o *RepairOptions) error {
	f.nodeTokenFile, f.allowOperatorToken = o.NodeTokenFile, o.AllowOperatorToken
	store, err := f.Store(ctx)
	if err != nil {
		return err
	}
	st, _, err := store.Load(ctx, o.Name)
	if err != nil {
		return err
	}
	provisioning := false
	for _, n := range st.Nodes {
		provisioning = provisioning || n.Lifecycle == cluster.Provisioning
	}
	if !provisioning && o.NodeTokenFile == "" {
		return nil
	}
	p := NewProgress(f.IO, f.Global.Output == "json")
	s, err := f.loadNodeSecrets(p)
	if err != nil {
		return err
	}
	return f.checkNodeToken(ctx, s, p)
}
