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

// FindDrift runs checks in order and returns their drifts, in that order;
// without checks it runs repair-ha's (DriftChecks).
func FindDrift(ctx context.Context, d Deps, st *cluster.State, checks ...Check) ([]Drift, error) {
	if len(checks) == 0 {
		checks = DriftChecks()
	}
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

// DriftChecks are repair-ha's checks, one per resource, in the order their
// drifts are reported and fixed: nodes left provisioning, droplets, the
// VPC, the Reserved IP, the nodes' failover readiness, the firewall. The
// two that read the nodes' reports share one gathering of the evidence
// (GatherEvidence), made when the Reserved IP's check runs.
func DriftChecks() []Check {
	m := &evidenceMemo{}
	return []Check{
		CheckProvisioning,
		CheckDroplets,
		CheckVPC,
		m.checkReservedIP,
		m.checkFailover,
		CheckFirewall,
	}
}

// evidenceMemo gathers the evidence once for the checks that share it.
type evidenceMemo struct{ ev *Evidence }

func (m *evidenceMemo) get(ctx context.Context, d Deps, st *cluster.State) (*Evidence, error) {
	if m.ev != nil {
		return m.ev, nil
	}
	var err error
	m.ev, err = GatherEvidence(ctx, d.Store, d.Cloud, st)
	return m.ev, err
}

// CheckReservedIP: the Reserved IP must be on a node that serves, and the
// state's active node must be its holder (ripDrift). It reads the nodes'
// reports, the cluster's droplets and the IP's holder (GatherEvidence).
func CheckReservedIP(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	return (&evidenceMemo{}).checkReservedIP(ctx, d, st)
}

func (m *evidenceMemo) checkReservedIP(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	e, err := m.get(ctx, d, st)
	if err != nil || st.ReservedIP == "" {
		return nil, err
	}
	return ripDrift(d, st, e)
}

// checkFailover: every ready node must be able to move the Reserved IP to
// itself, as its fresh report says (failoverDrift).
func (m *evidenceMemo) checkFailover(ctx context.Context, d Deps, st *cluster.State) ([]Drift, error) {
	e, err := m.get(ctx, d, st)
	if err != nil {
		return nil, err
	}
	return failoverDrift(st, e), nil
}

// failoverDrift: a ready node whose fresh report says it cannot move the
// Reserved IP to itself (its token, most likely).
func failoverDrift(st *cluster.State, ev *Evidence) []Drift {
	var out []Drift
	for _, n := range st.Nodes {
		r := ev.Report(n.ID)
		if n.Lifecycle != cluster.Ready || r == nil || !ev.Fresh(r) || r.Failover.Ready || r.Failover.CheckedAt == nil {
			continue
		}
		out = append(out, Drift{
			What: fmt.Sprintf("node %s cannot move the Reserved IP to itself: %s", n.ID, r.Failover.Error),
			Fix: "none automatic: give the node a working token (a token with reserved_ip:update and its reads, in " +
				"/etc/dynia/do-token on the droplet); the node picks a replaced file up without a restart",
		})
	}
	return out
}

// ripDrift compares where the Reserved IP is with where it belongs. It
// never moves the IP away from a node that serves, and never to a node not
// proven to serve now (droplet active, fresh report, app healthy, peers'
// checks passing): a healthy holder stays and the state follows it (a
// failover the state missed, fixed without any API call); a holder that
// does not serve loses the IP to the serving node the state prefers (its
// active node, else the highest priority); when no node is proven to
// serve, nothing moves.
func ripDrift(d Deps, st *cluster.State, ev *Evidence) ([]Drift, error) {
	if !ev.HolderKnown {
		if errors.Is(ev.APIErr, cloud.ErrNotFound) {
			return []Drift{{What: fmt.Sprintf("Reserved IP %s no longer exists", st.ReservedIP), Fix: "none automatic: re-run create-ha after clearing it"}}, nil
		}
		return nil, ev.APIErr
	}
	holder := ev.HolderNode()
	if holder != nil {
		if why := ev.Refused(holder.ID); why != "" {
			// Someone other than the holder wrote its report: whatever it
			// claims (or hides), it is no ground for moving the IP.
			return []Drift{{
				What: fmt.Sprintf("Reserved IP %s is on %s, whose report is not believed (%s)", st.ReservedIP, holder.ID, why),
				Fix:  "none automatic: the IP stays; find out who writes that report (docs/security.md)",
			}}, nil
		}
	}
	if serves(ev, holder) {
		return followHolder(d, st, ev, holder), nil
	}
	return moveToServing(d, st, ev, holder), nil
}

// serves says whether n is a ready node the evidence shows serving.
func serves(ev *Evidence, n *cluster.Node) bool {
	return n != nil && n.Lifecycle == cluster.Ready && ev.Of(*n).Health.Serves()
}

// describe is a node with its health: "brave-panda (down: no report)".
func describe(ev *Evidence, n *cluster.Node) string {
	h := ev.Of(*n)
	if h.Reason == "" {
		return fmt.Sprintf("%s (%s)", n.ID, h.Health)
	}
	return fmt.Sprintf("%s (%s: %s)", n.ID, h.Health, h.Reason)
}

// followHolder: the holder serves, so it stays; the state follows it when
// it calls another node active.
func followHolder(d Deps, st *cluster.State, ev *Evidence, holder *cluster.Node) []Drift {
	active := st.Active()
	if active != nil && active.ID == holder.ID {
		return nil
	}
	what := fmt.Sprintf("state behind a failover: Reserved IP %s is on %s, which serves", st.ReservedIP, describe(ev, holder))
	if active != nil {
		what += fmt.Sprintf("; the state's active node is %s", describe(ev, active))
	}
	return []Drift{{
		What: what,
		Fix:  "record " + holder.ID + " as the active node (the Reserved IP stays where it is)",
		Do:   RecordActive(d, st.Name, holder.ID),
	}}
}

// moveToServing: the holder does not serve; the IP goes to the serving
// node the state prefers, or stays when none is proven to serve.
func moveToServing(d Deps, st *cluster.State, ev *Evidence, holder *cluster.Node) []Drift {
	active := st.Active()
	where := fmt.Sprintf("droplet %d, not a node of the cluster", ev.Holder)
	switch {
	case ev.Holder == 0:
		where = "no droplet"
	case holder != nil:
		where = describe(ev, holder)
	}
	var target *cluster.Node
	if serves(ev, active) {
		target = active
	} else {
		for _, n := range cluster.SortedByPriority(st.Nodes) {
			if serves(ev, st.Node(n.ID)) {
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
				return nil
			}
			return []Drift{{
				What: fmt.Sprintf("Reserved IP %s is on %s, not on the state's active node %s; no node is proven to serve, so it stays where it is",
					st.ReservedIP, where, ActiveID(st)),
				Fix: "record " + holder.ID + " as the active node (the Reserved IP stays where it is)",
				Do:  RecordActive(d, st.Name, holder.ID),
			}}
		}
		return []Drift{{
			What: fmt.Sprintf("Reserved IP %s is on %s, and no node is proven to serve", st.ReservedIP, where),
			Fix:  "none automatic: bring a node back or add one (`dynia node add`)",
		}}
	}
	tnode := target.ID
	return []Drift{{
		What: fmt.Sprintf("Reserved IP %s is on %s; %s serves", st.ReservedIP, where, describe(ev, target)),
		Fix:  "assign it to " + tnode + " and record " + tnode + " as the active node",
		Do:   func(ctx context.Context) error { return Promote(ctx, d, st.Name, tnode) },
	}}
}
