package cli

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/dynia/dynia/internal/cluster"
)

// NodeRow is one node as `node list` and `cluster get` show it. JSON names
// are a public surface: add fields, never rename.
type NodeRow struct {
	ID        string `json:"id"`
	Role      string `json:"role"`
	Priority  int    `json:"priority"`
	PublicIP  string `json:"public_ip"`
	PrivateIP string `json:"private_ip"`
	Status    string `json:"status"`
	DropletID int    `json:"droplet_id"`
	Lifecycle string `json:"lifecycle"`
	VRRPState string `json:"vrrp_state,omitempty"`
	Applied   int64  `json:"applied_generation"`
	LastError string `json:"last_error,omitempty"`
}

// ClusterView is `cluster get`'s JSON.
type ClusterView struct {
	Name       string    `json:"name"`
	Region     string    `json:"region"`
	Size       string    `json:"size"`
	Image      string    `json:"image"`
	ReservedIP string    `json:"reserved_ip"`
	ActiveNode string    `json:"active_node"`
	Generation int64     `json:"generation"`
	VPCID      string    `json:"vpc_id"`
	FirewallID string    `json:"firewall_id"`
	Nodes      []NodeRow `json:"nodes"`
}

func rows(ctx context.Context, store *cluster.Store, st *cluster.State) ([]NodeRow, error) {
	now := time.Now()
	var out []NodeRow
	for _, n := range cluster.SortedByPriority(st.Nodes) {
		r, err := readReport(ctx, store, st.Name, n.ID)
		if err != nil {
			return nil, err
		}
		row := NodeRow{
			ID: n.ID, Role: string(n.Role), Priority: n.Priority, PublicIP: n.PublicIP, PrivateIP: n.PrivateIP,
			Status: nodeStatus(n, r, st.Generation, now), DropletID: n.DropletID, Lifecycle: string(n.Lifecycle),
		}
		if r != nil {
			row.VRRPState, row.Applied, row.LastError = r.VRRPState, r.AppliedGeneration, r.LastError
		}
		out = append(out, row)
	}
	return out, nil
}

func listNodes(ctx context.Context, f *Factory, o *ListOptions) error {
	store, err := f.Store(ctx)
	if err != nil {
		return err
	}
	st, _, err := store.Load(ctx, o.Name)
	if err != nil {
		return err
	}
	rs, err := rows(ctx, store, st)
	if err != nil {
		return err
	}
	if f.Global.Output == "json" {
		if rs == nil {
			rs = []NodeRow{}
		}
		return writeJSON(f.IO.Out, rs)
	}
	if o.Format != "" {
		tmpl, err := template.New("format").Option("missingkey=error").Parse(o.Format + "\n")
		if err != nil {
			return usagef("--format %q: %v", o.Format, err)
		}
		for _, r := range rs {
			if err := tmpl.Execute(f.IO.Out, r); err != nil {
				return usagef("--format %q: %v", o.Format, err)
			}
		}
		return nil
	}
	// Aligned on a terminal, tab-separated when piped (for cut/awk).
	var w interface {
		Write([]byte) (int, error)
	} = f.IO.Out
	var tw *tabwriter.Writer
	if f.IO.OutTTY {
		tw = tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
		w = tw
	}
	if !o.NoHeader {
		fmt.Fprintln(w, "NODE ID\tROLE\tPRIORITY\tPUBLIC IP\tPRIVATE IP\tSTATUS")
	}
	for _, r := range rs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Role, strconv.Itoa(r.Priority), dash(r.PublicIP), dash(r.PrivateIP), r.Status)
	}
	if tw != nil {
		_ = tw.Flush()
	}
	ripLine(ctx, f, st)
	return nil
}

// ripLine tells, on stderr, whether the Reserved IP is really on the node
// the state calls active (one read-only API call; skipped without a token).
func ripLine(ctx context.Context, f *Factory, st *cluster.State) {
	if st.ReservedIP == "" {
		return
	}
	active := st.Active()
	cl, err := f.Cloud()
	if err != nil {
		return
	}
	r, err := cl.GetReservedIP(ctx, st.ReservedIP)
	if err != nil {
		fmt.Fprintf(f.IO.ErrOut, "Reserved IP %s: could not check its holder: %v\n", st.ReservedIP, err)
		return
	}
	switch {
	case active != nil && r.DropletID == active.DropletID:
		fmt.Fprintf(f.IO.ErrOut, "Reserved IP %s → %s (matches the state)\n", st.ReservedIP, active.ID)
	case r.DropletID == 0:
		fmt.Fprintf(f.IO.ErrOut, "warning: Reserved IP %s is not assigned to any droplet; run `dynia node repair-ha --name %s`\n", st.ReservedIP, st.Name)
	default:
		holder := strconv.Itoa(r.DropletID)
		for _, n := range st.Nodes {
			if n.DropletID == r.DropletID {
				holder = n.ID
			}
		}
		fmt.Fprintf(f.IO.ErrOut, "note: Reserved IP %s is on %s, the state's active node is %s (failover happened, or run `dynia node repair-ha`)\n", st.ReservedIP, holder, activeID(st))
	}
}

func activeID(st *cluster.State) string {
	if a := st.Active(); a != nil {
		return a.ID
	}
	return "-"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printCluster prints the result of a command that changed the cluster.
func printCluster(f *Factory, st *cluster.State) error {
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, viewOf(st, nil))
	}
	fmt.Fprintf(f.IO.Out, "cluster %s: %d node(s), active %s, Reserved IP %s, generation %d\n",
		st.Name, len(st.Nodes), activeID(st), dash(st.ReservedIP), st.Generation)
	return nil
}

func viewOf(st *cluster.State, rs []NodeRow) ClusterView {
	v := ClusterView{
		Name: st.Name, Region: st.Region, Size: st.Size, Image: st.Image, ReservedIP: st.ReservedIP,
		ActiveNode: activeID(st), Generation: st.Generation, VPCID: st.VPC.ID, FirewallID: st.FirewallID, Nodes: rs,
	}
	if v.Nodes == nil {
		for _, n := range cluster.SortedByPriority(st.Nodes) {
			v.Nodes = append(v.Nodes, NodeRow{ID: n.ID, Role: string(n.Role), Priority: n.Priority, PublicIP: n.PublicIP,
				PrivateIP: n.PrivateIP, Status: string(n.Lifecycle), DropletID: n.DropletID, Lifecycle: string(n.Lifecycle)})
		}
	}
	if v.Nodes == nil {
		v.Nodes = []NodeRow{}
	}
	return v
}
