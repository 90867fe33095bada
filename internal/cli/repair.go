package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// errDrift makes `repair-ha --check-only` exit 1 when it found something.
var errDrift = errors.New("drift found")

// driftChecks are repair-ha's checks, one per resource, in the order their
// drifts are reported and fixed: nodes left provisioning, droplets, the
// VPC, the Reserved IP, the nodes' failover readiness, the firewall. The
// two that read the nodes' reports share one gathering of the evidence.
func driftChecks() []ops.Check {
	var ev *ops.Evidence
	evidence := func(ctx context.Context, d ops.Deps, st *cluster.State) (*ops.Evidence, error) {
		if ev != nil {
			return ev, nil
		}
		var err error
		ev, err = ops.GatherEvidence(ctx, d.Store, d.Cloud, st)
		return ev, err
	}
	return []ops.Check{
		ops.CheckProvisioning,
		ops.CheckDroplets,
		ops.CheckVPC,
		func(ctx context.Context, d ops.Deps, st *cluster.State) ([]ops.Drift, error) {
			e, err := evidence(ctx, d, st)
			if err != nil || st.ReservedIP == "" {
				return nil, err
			}
			return ripDrift(d, st, e)
		},
		func(ctx context.Context, d ops.Deps, st *cluster.State) ([]ops.Drift, error) {
			e, err := evidence(ctx, d, st)
			if err != nil {
				return nil, err
			}
			return failoverDrift(st, e), nil
		},
		ops.CheckFirewall,
	}
}

// failoverDrift: a ready node whose fresh report says it cannot move the
// Reserved IP to itself (its token, most likely).
func failoverDrift(st *cluster.State, ev *ops.Evidence) []ops.Drift {
	var out []ops.Drift
	for _, n := range st.Nodes {
		r := ev.Report(n.ID)
		if n.Lifecycle != cluster.Ready || r == nil || !ev.Fresh(r) || r.Failover.Ready || r.Failover.CheckedAt == nil {
			continue
		}
		out = append(out, ops.Drift{
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
func ripDrift(d ops.Deps, st *cluster.State, ev *ops.Evidence) ([]ops.Drift, error) {
	if !ev.HolderKnown {
		if errors.Is(ev.APIErr, cloud.ErrNotFound) {
			return []ops.Drift{{What: fmt.Sprintf("Reserved IP %s no longer exists", st.ReservedIP), Fix: "none automatic: re-run create-ha after clearing it"}}, nil
		}
		return nil, ev.APIErr
	}
	holder := ev.HolderNode()
	if holder != nil {
		if why := ev.Refused(holder.ID); why != "" {
			// Someone other than the holder wrote its report: whatever it
			// claims (or hides), it is no ground for moving the IP.
			return []ops.Drift{{
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
func serves(ev *ops.Evidence, n *cluster.Node) bool {
	return n != nil && n.Lifecycle == cluster.Ready && ev.Of(*n).Health.Serves()
}

// describe is a node with its health: "brave-panda (down: no report)".
func describe(ev *ops.Evidence, n *cluster.Node) string {
	h := ev.Of(*n)
	if h.Reason == "" {
		return fmt.Sprintf("%s (%s)", n.ID, h.Health)
	}
	return fmt.Sprintf("%s (%s: %s)", n.ID, h.Health, h.Reason)
}

// followHolder: the holder serves, so it stays; the state follows it when
// it calls another node active.
func followHolder(d ops.Deps, st *cluster.State, ev *ops.Evidence, holder *cluster.Node) []ops.Drift {
	active := st.Active()
	if active != nil && active.ID == holder.ID {
		return nil
	}
	what := fmt.Sprintf("state behind a failover: Reserved IP %s is on %s, which serves", st.ReservedIP, describe(ev, holder))
	if active != nil {
		what += fmt.Sprintf("; the state's active node is %s", describe(ev, active))
	}
	return []ops.Drift{{
		What: what,
		Fix:  "record " + holder.ID + " as the active node (the Reserved IP stays where it is)",
		Do:   ops.RecordActive(d, st.Name, holder.ID),
	}}
}

// moveToServing: the holder does not serve; the IP goes to the serving
// node the state prefers, or stays when none is proven to serve.
func moveToServing(d ops.Deps, st *cluster.State, ev *ops.Evidence, holder *cluster.Node) []ops.Drift {
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
		if holder != nil && holder.Lifecycle == cluster.Ready && ev.Of(*holder).Health != ops.HealthDown {
			// Nobody is proven to serve, the holder included (a cluster
			// still starting, reports not flowing): moving the IP between
			// nodes none of which is known to serve would only add a
			// failover. The state follows placement.
			if active != nil && active.ID == holder.ID {
				return nil
			}
			return []ops.Drift{{
				What: fmt.Sprintf("Reserved IP %s is on %s, not on the state's active node %s; no node is proven to serve, so it stays where it is",
					st.ReservedIP, where, activeID(st)),
				Fix: "record " + holder.ID + " as the active node (the Reserved IP stays where it is)",
				Do:  ops.RecordActive(d, st.Name, holder.ID),
			}}
		}
		return []ops.Drift{{
			What: fmt.Sprintf("Reserved IP %s is on %s, and no node is proven to serve", st.ReservedIP, where),
			Fix:  "none automatic: bring a node back or add one (`dynia node add`)",
		}}
	}
	tid, tnode := target.DropletID, target.ID
	record := ops.RecordActive(d, st.Name, tnode)
	return []ops.Drift{{
		What: fmt.Sprintf("Reserved IP %s is on %s; %s serves", st.ReservedIP, where, describe(ev, target)),
		Fix:  "assign it to " + tnode + " and record " + tnode + " as the active node",
		Do: func(ctx context.Context) error {
			if err := d.Cloud.AssignReservedIP(ctx, st.ReservedIP, tid); err != nil {
				return err
			}
			return record(ctx)
		},
	}}
}

// repairHA finds the drift (driftChecks) and prints it, or with --force
// fixes what can be fixed (ops.Repair).
func repairHA(ctx context.Context, f *Factory, o *RepairOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var boot *ops.BootSpec
	if o.Force {
		var err error
		if boot, err = repairBoot(ctx, f, o); err != nil {
			return err
		}
	}
	store, st, cl, err := f.openCluster(ctx, o.Name, o.Force)
	if err != nil {
		return err
	}
	// The fixes' own steps (provisioning) report as every command's do;
	// the drifts' steps below always print.
	d := deps(store, cl, NewProgress(f.IO, f.Global.Output == "json"), boot)
	drifts, err := ops.FindDrift(ctx, d, st, driftChecks()...)
	if err != nil {
		return cliError(err)
	}
	if f.Global.Output == "json" && o.CheckOnly {
		if err := printDriftJSON(f, o.Name, drifts); err != nil {
			return err
		}
	}
	if len(drifts) == 0 {
		if f.Global.Output != "json" {
			fmt.Fprintf(f.IO.Out, "cluster %s: no drift\n", o.Name)
		}
		return nil
	}
	if o.CheckOnly {
		if f.Global.Output != "json" {
			for _, d := range drifts {
				fmt.Fprintf(f.IO.Out, "drift: %s → fix: %s\n", d.What, d.Fix)
			}
		}
		return fmt.Errorf("cluster %s: %d drift(s); run with --force to fix: %w", o.Name, len(drifts), errDrift)
	}
	manual, err := ops.Repair(ctx, reporter{NewProgress(f.IO, false)}, drifts)
	if err != nil {
		return cliError(err)
	}
	if st, _, err = store.Load(ctx, o.Name); err != nil {
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

func printDriftJSON(f *Factory, name string, drifts []ops.Drift) error {
	type row struct{ Drift, Fix string }
	rs := []row{}
	for _, d := range drifts {
		rs = append(rs, row{d.What, d.Fix})
	}
	return writeJSON(f.IO.Out, map[string]any{"cluster": name, "drift": rs})
}

// repairBoot: --force creates droplets for nodes left provisioning, so
// with such nodes in the state it needs a node token (or
// --allow-operator-token), checked before any API call, like create-ha's.
// The state is only read. nil when no droplet will be made.
func repairBoot(ctx context.Context, f *Factory, o *RepairOptions) (*ops.BootSpec, error) {
	_, st, err := f.loadState(ctx, o.Name)
	if err != nil {
		return nil, err
	}
	provisioning := false
	for _, n := range st.Nodes {
		provisioning = provisioning || n.Lifecycle == cluster.Provisioning
	}
	if !provisioning && o.NodeTokenFile == "" {
		return nil, nil
	}
	p := NewProgress(f.IO, f.Global.Output == "json")
	token, err := loadNodeToken(f, o.NodeTokenFile, o.AllowOperatorToken, p)
	if err != nil {
		return nil, err
	}
	if err := checkNodeToken(ctx, f, token, p); err != nil {
		return nil, err
	}
	return bootSpec(f, token)
}
