package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/report"
)

// NodeRow is one node as `node list` and `cluster get` show it. JSON names
// are a public surface: add fields, never rename.
type NodeRow struct {
	ID        string `json:"id"`
	Role      string `json:"role"`
	Priority  int    `json:"priority"`
	PublicIP  string `json:"public_ip"`
	PrivateIP string `json:"private_ip"`
	// Status is the lifecycle of a node that is not ready, else Health.
	Status    string `json:"status"`
	DropletID int    `json:"droplet_id"`
	Lifecycle string `json:"lifecycle"`
	// Health is the node's observed health (ops.Evidence.Of) and HealthReason
	// the evidence for it.
	Health       ops.Health `json:"health"`
	HealthReason string     `json:"health_reason,omitempty"`
	// DropletStatus is DO's (new, active, off, archive; "" unknown).
	DropletStatus string `json:"droplet_status,omitempty"`
	// HoldsReservedIP: the DO API says the Reserved IP is on this droplet.
	HoldsReservedIP bool   `json:"holds_reserved_ip"`
	VRRPState       string `json:"vrrp_state,omitempty"`
	FailoverReady   bool   `json:"failover_ready"`
	Applied         int64  `json:"applied_generation"`
	LastError       string `json:"last_error,omitempty"`
	// Report says whether the node's report is believed: "verified"
	// (signed with the report key the state holds for the node),
	// "unsigned" (a node made before report signing: believed as before),
	// "invalid" (not signed with its key: forged or replaced; nothing
	// acts on it, HealthReason says why), "" (no report).
	Report string `json:"report,omitempty"`
	// StateSignature is what the node reports about the state: "verified"
	// or "unchecked" (a node made before state signing).
	StateSignature string `json:"state_signature,omitempty"`
	// StateError is why the node refuses the state in the bucket (not
	// signed with the cluster's key, or older than what it applied).
	StateError string `json:"state_error,omitempty"`
	// Version is the node's dynia-pull version and Image the droplet image
	// it was created from, as its report says ("": no report, or a node
	// that does not say).
	Version string `json:"version,omitempty"`
	Image   string `json:"image,omitempty"`
	// UpgradeRequired is the dynia-pull version the state needs while
	// this older node refuses it (health upgrade-required).
	UpgradeRequired string `json:"upgrade_required,omitempty"`
}

// ClusterView is `cluster get`'s JSON.
type ClusterView struct {
	Name       string `json:"name"`
	Region     string `json:"region"`
	Size       string `json:"size"`
	Image      string `json:"image"`
	ReservedIP string `json:"reserved_ip"`
	ActiveNode string `json:"active_node"`
	// Holder is the node the DO API says holds the Reserved IP ("" when
	// unknown or unassigned); Masters are the nodes reporting VRRP MASTER.
	Holder     string   `json:"reserved_ip_holder,omitempty"`
	Masters    []string `json:"vrrp_masters,omitempty"`
	RoleNote   string   `json:"role_note,omitempty"`
	Generation int64    `json:"generation"`
	VPCID      string   `json:"vpc_id"`
	FirewallID string   `json:"firewall_id"`
	AdminCIDRs []string `json:"admin_cidrs,omitempty"`
	// MinPullVersion is the state's min_pull_version; VersionNote says
	// when the nodes run more than one dynia-pull version.
	MinPullVersion string `json:"min_pull_version,omitempty"`
	VersionNote    string `json:"version_note,omitempty"`
	// Health sums up the nodes' (clusterHealth: up, degraded, down,
	// unknown) and NodesServing counts those that serve (absent: none);
	// both only where the nodes' health was observed (cluster list,
	// cluster get), not in a command's result.
	Health       ops.Health `json:"health,omitempty"`
	NodesServing int        `json:"nodes_serving,omitempty"`
	Nodes        []NodeRow  `json:"nodes"`
}

// rows is the node table from the evidence.
func rows(st *cluster.State, e *ops.Evidence) []NodeRow {
	out := []NodeRow{}
	for _, n := range cluster.SortedByPriority(st.Nodes) {
		status, h := e.Status(n)
		row := NodeRow{
			ID: n.ID, Role: string(n.Role), Priority: n.Priority, PublicIP: n.PublicIP, PrivateIP: n.PrivateIP,
			Status: status, DropletID: n.DropletID, Lifecycle: string(n.Lifecycle),
			Health: h.Health, HealthReason: h.Reason,
			HoldsReservedIP: e.HolderKnown && e.Holder != 0 && e.Holder == n.DropletID,
		}
		if d, ok := e.Droplet(n.DropletID); ok {
			row.DropletStatus = d.Status
		}
		if r := e.Report(n.ID); r != nil {
			row.VRRPState, row.Applied, row.LastError = r.VRRPState, r.AppliedGeneration, r.LastError
			row.FailoverReady = r.Failover.Ready
			row.StateSignature, row.StateError = r.StateSignature, r.StateError
			row.Version, row.Image, row.UpgradeRequired = r.Version, r.Image, r.UpgradeRequired
			row.Report = "verified"
			if n.ReportKey == "" {
				row.Report = "unsigned"
			}
		} else if e.Refused(n.ID) != "" {
			row.Report = "invalid"
		}
		out = append(out, row)
	}
	return out
}

// roleNote is one line when the roles as they are differ from the state:
// the Reserved IP elsewhere than on the active node, or not on a node at
// all, or several VRRP MASTERs ("" when all agree).
func roleNote(st *cluster.State, e *ops.Evidence) string {
	if st.ReservedIP == "" {
		return ""
	}
	if !e.HolderKnown {
		return fmt.Sprintf("Reserved IP %s: holder unknown (%v)", st.ReservedIP, e.APIErr)
	}
	holder := e.HolderNode()
	active := st.Active()
	masters := vrrpMasters(st, e)
	switch {
	case e.Holder == 0:
		return fmt.Sprintf("Reserved IP %s is not assigned to any droplet (run `dynia node repair-ha --name %s`)", st.ReservedIP, st.Name)
	case holder == nil:
		return fmt.Sprintf("Reserved IP %s is on droplet %d, which is not a node of cluster %s (run `dynia node repair-ha --name %s`)", st.ReservedIP, e.Holder, st.Name, st.Name)
	case active == nil || active.ID != holder.ID:
		h := e.Of(*holder)
		if h.Health.Serves() {
			return fmt.Sprintf("Reserved IP %s is on %s, not on the state's active node %s: the state is behind a failover (any write, e.g. `dynia node repair-ha --name %s --force`, records %s as active)",
				st.ReservedIP, holder.ID, ops.ActiveID(st), st.Name, holder.ID)
		}
		return fmt.Sprintf("Reserved IP %s is on %s, which is %s (%s), not on the state's active node %s (run `dynia node repair-ha --name %s`)",
			st.ReservedIP, holder.ID, h.Health, h.Reason, ops.ActiveID(st), st.Name)
	case len(masters) > 1:
		return fmt.Sprintf("Reserved IP %s is on %s, but %d nodes report VRRP MASTER (%v): VRRP between them is cut", st.ReservedIP, holder.ID, len(masters), masters)
	}
	return ""
}

func vrrpMasters(st *cluster.State, e *ops.Evidence) []string {
	var out []string
	for _, n := range cluster.SortedByPriority(st.Nodes) {
		if r := e.Report(n.ID); r != nil && e.Fresh(r) && r.VRRPState == report.VRRPMaster {
			out = append(out, n.ID)
		}
	}
	return out
}

// observe gathers the evidence for a cluster: reports always, the DO half
// when a token is configured. A token DigitalOcean refuses is an error
// (exit 4), not a table without its DO half: the user has a token, and it
// is wrong.
func observe(ctx context.Context, f *Factory, store *cluster.Store, st *cluster.State) (*ops.Evidence, error) {
	cl, err := f.Cloud()
	if err != nil {
		cl = nil // no token: the table still shows what the reports say
	}
	e, err := ops.GatherEvidence(ctx, store, cl, st)
	if err != nil {
		return nil, err
	}
	var ae *cloud.AuthError
	if errors.As(e.APIErr, &ae) {
		return nil, e.APIErr
	}
	return e, nil
}

// nodeColumns are `node list`'s table (NodeRow's fields; -o json has all).
var nodeColumns = []column{
	{"ID", "NODE ID"}, {"Role", "ROLE"}, {"Priority", "PRIORITY"}, {"PublicIP", "PUBLIC IP"}, {"PrivateIP", "PRIVATE IP"},
	{"Status", "STATUS"}, {"VRRP", "VRRP"}, {"ReservedIP", "RESERVED IP"}, {"Version", "VERSION"},
}

func listNodes(ctx context.Context, f *Factory, o *ListOptions) error {
	store, st, err := f.loadState(ctx, o.Name)
	if err != nil {
		return err
	}
	e, err := observe(ctx, f, store, st)
	if err != nil {
		return err
	}
	rs := rows(st, e)
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, rs)
	}
	if err := writeNodeTable(f.IO.Out, f.IO.OutTTY, rs, o.Table); err != nil {
		return err
	}
	// Why each node that is not up is what it is, and what differs from
	// the state, on stderr: stdout stays the table.
	for _, r := range rs {
		if r.Health != ops.HealthUp && r.HealthReason != "" {
			fmt.Fprintf(f.IO.ErrOut, "%s: %s: %s\n", r.ID, r.Health, r.HealthReason)
		}
	}
	if note := roleNote(st, e); note != "" {
		fmt.Fprintln(f.IO.ErrOut, "note: "+note)
	}
	if note := versionsNote(rs); note != "" {
		fmt.Fprintln(f.IO.ErrOut, "note: "+note)
	}
	return nil
}

// writeNodeTable prints rs as `node list`'s table.
func writeNodeTable(w io.Writer, aligned bool, rs []NodeRow, o TableOptions) error {
	t, err := newTable(nodeColumns, o)
	if err != nil {
		return err
	}
	for _, r := range rs {
		holds := "-"
		if r.HoldsReservedIP {
			holds = "holds"
		}
		t.row(r.ID, r.Role, strconv.Itoa(r.Priority), dash(r.PublicIP), dash(r.PrivateIP),
			r.Status, dash(r.VRRPState), holds, dash(shortVersion(r.Version)))
	}
	return t.write(w, aligned)
}

// clusterColumns are `cluster list`'s table.
var clusterColumns = []column{
	{"Name", "NAME"}, {"Region", "REGION"}, {"Nodes", "NODES"}, {"ReservedIP", "RESERVED IP"},
	{"ActiveNode", "ACTIVE NODE"}, {"Health", "HEALTH"},
}

// clusterHealth sums up the nodes' health as `node list` computes it: up
// when every node is up, down when none serves (the app is unreachable),
// else degraded; serving counts the nodes that serve.
func clusterHealth(rs []NodeRow) (h ops.Health, serving int) {
	up := 0
	for _, r := range rs {
		if r.Health.Serves() {
			serving++
		}
		if r.Health == ops.HealthUp {
			up++
		}
	}
	switch {
	case len(rs) == 0:
		return ops.HealthUnknown, 0
	case up == len(rs):
		return ops.HealthUp, serving
	case serving == 0:
		return ops.HealthDown, 0
	}
	return ops.HealthDegraded, serving
}

// healthCell is the HEALTH column: the word, and how many nodes serve
// when not all are up.
func healthCell(v ClusterView) string {
	if v.Health == ops.HealthUp || v.Health == ops.HealthUnknown || v.Health == "" {
		return dash(string(v.Health))
	}
	return fmt.Sprintf("%s (%d/%d serve)", v.Health, v.NodesServing, len(v.Nodes))
}

// listClusters is `cluster list`: per cluster one state read plus what
// health needs (each node's report; with a token, the cluster's droplets
// and the Reserved IP's holder: two DO reads).
func listClusters(ctx context.Context, f *Factory, o TableOptions) error {
	store, err := f.Store(ctx)
	if err != nil {
		return err
	}
	names, err := store.List(ctx)
	if err != nil {
		return err
	}
	views := []ClusterView{}
	for _, n := range names {
		st, _, err := store.Load(ctx, n)
		if err != nil {
			return err
		}
		e, err := observe(ctx, f, store, st)
		if err != nil {
			return err
		}
		views = append(views, viewOf(st, rows(st, e)))
	}
	if f.Global.Output == "json" {
		return writeJSON(f.IO.Out, views)
	}
	return writeClusterTable(f.IO.Out, f.IO.OutTTY, views, o)
}

// writeClusterTable prints vs as `cluster list`'s table.
func writeClusterTable(w io.Writer, aligned bool, vs []ClusterView, o TableOptions) error {
	t, err := newTable(clusterColumns, o)
	if err != nil {
		return err
	}
	for _, v := range vs {
		t.row(v.Name, v.Region, strconv.Itoa(len(v.Nodes)), dash(v.ReservedIP), v.ActiveNode, healthCell(v))
	}
	return t.write(w, aligned)
}

// shortVersion keeps the table's VERSION column narrow: a report's version
// may be up to MaxReportText long (-o json has it whole).
func shortVersion(v string) string {
	const max = 40
	if r := []rune(v); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return v
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
		st.Name, len(st.Nodes), ops.ActiveID(st), dash(st.ReservedIP), st.Generation)
	return nil
}

func viewOf(st *cluster.State, rs []NodeRow) ClusterView {
	v := ClusterView{
		Name: st.Name, Region: st.Region, Size: st.Size, Image: st.Image, ReservedIP: st.ReservedIP,
		ActiveNode: ops.ActiveID(st), Generation: st.Generation, VPCID: st.VPC.ID, FirewallID: st.FirewallID, Nodes: rs,
		AdminCIDRs: st.AdminCIDRs, MinPullVersion: st.MinPullVersion,
	}
	if v.Nodes != nil {
		v.Health, v.NodesServing = clusterHealth(v.Nodes)
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
