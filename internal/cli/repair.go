package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
)

// errDrift makes `repair-ha --check-only` exit 1 when it found something.
var errDrift = errors.New("drift found")

// repairHA finds the drift (ops.DriftChecks) and prints it, or with --force
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
	drifts, err := ops.FindDrift(ctx, d, st)
	if err != nil {
		return err
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
	manual, err := ops.Repair(ctx, NewProgress(f.IO, false), drifts)
	if err != nil {
		return err
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
