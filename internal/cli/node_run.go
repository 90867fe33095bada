package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
	"github.com/dynia/dynia/internal/signing"
)

// createHA creates (or resumes creating) a one-node cluster. Every step
// looks before it creates, so re-running after a crash or Ctrl-C finishes
// the job without duplicating anything.
func createHA(ctx context.Context, f *Factory, o *CreateOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	if o.DryRun {
		return createDryRun(ctx, f, o, p)
	}
	// Everything that can be bad input is checked before the first write:
	// the flags (Validate), the node token (its file first, before any API
	// call; then two read-only GETs with it), an existing cluster's region
	// and size (a read of the state), region and size against the catalog
	// (read-only GETs). Only then does the write probe run.
	if err := f.checkStateReachableByDroplets(); err != nil {
		return err
	}
	var app *release
	if o.App.Image != "" {
		var err error
		if app, err = o.App.parse(f.insecureRegistries()); err != nil {
			return err
		}
	}
	var tlsSettings *cluster.TLS
	if len(o.TLS.Domains) > 0 {
		var err error
		if tlsSettings, err = o.TLS.settings(f); err != nil {
			return err
		}
	}
	// The node token before any API call: droplets never get the CLI's own
	// token unless asked to. prepareBoot gets this load, not a new read.
	f.nodeTokenFile, f.allowOperatorToken = o.NodeTokenFile, o.AllowOperatorToken
	nodeSecrets, err := f.loadNodeSecrets(p)
	if err != nil {
		return err
	}
	if o.DNS.Record != "" {
		if err := f.checkDNSCredentials(o.DNS.Provider); err != nil {
			return err
		}
	}
	cl, err := f.Cloud()
	if err != nil {
		return err
	}
	store, err := f.Store(ctx)
	if err != nil {
		return err
	}
	// State first: it names the node, so the droplet can be tagged with
	// its id at creation and adopted if this run dies.
	st, _, err := store.Load(ctx, o.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, cluster.ErrClusterNotFound) {
		return err
	}
	if exists && (st.Region != o.Region || st.Size != o.Size) {
		return usagef("--region %q/--size %q: cluster %s exists with region %s and size %s", o.Region, o.Size, o.Name, st.Region, st.Size)
	}
	// One step, so a refused node token is the only line printed.
	if err := p.Step("region, size and node token", func() (string, error) {
		if err := checkCatalog(ctx, cl, o.Region, o.Size); err != nil {
			return "", err
		}
		return o.Region + ", " + o.Size, f.checkNodeToken(ctx, nodeSecrets, p)
	}); err != nil {
		return err
	}
	if _, err := f.WritableStore(ctx); err != nil {
		return err
	}
	if exists {
		p.Info("cluster %s exists (generation %d): resuming", o.Name, st.Generation)
	} else {
		var image string
		if err := p.Step("image", func() (string, error) {
			image, err = resolveImage(ctx, cl, o.Image, o.Region, o.Bootstrap)
			return image, err
		}); err != nil {
			return err
		}
		st = cluster.New(o.Name, o.Region, o.Size, image, time.Now())
		st, _, err = cluster.AddNodes(st, 1, cluster.NewNamer(0), time.Now())
		if err != nil {
			return err
		}
		if err := p.Step("cluster state", func() (string, error) {
			return store.B.String(), store.Create(ctx, st)
		}); err != nil {
			return err
		}
	}

	// The cluster key seals the app's secrets; nodes get it in their
	// user-data, so it exists before the first droplet.
	if err := p.Step("cluster key", func() (string, error) {
		_, rcpt, err := f.clusterKey(st, true)
		if err != nil {
			return "", err
		}
		st, err = store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
			if s.SecretsRecipient == rcpt {
				return nil, cluster.ErrNoChange
			}
			s.SecretsRecipient = rcpt
			return s, nil
		})
		return rcpt, err
	}); err != nil {
		return err
	}

	var vpc cloud.VPC
	var vpcCreated bool
	if err := p.Step("VPC", func() (string, error) {
		var created bool
		vpc, created, err = cl.EnsureVPC(ctx, vpcName(o.Name, o.Region), o.Region, "")
		// A VPC found with dynia's marker was made by an earlier run that
		// may have died before recording it: it is ours to delete too.
		vpcCreated = created || vpc.Dynia
		return reuse(vpc.ID+" "+vpc.IPRange, created), err
	}); err != nil {
		return err
	}
	// The VPC and, when given, the admin CIDRs go into the state first: the
	// firewall is built from the state, so a re-run without --admin-cidr
	// keeps the SSH rule instead of dropping it.
	st, err = store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
		want := cluster.VPC{ID: vpc.ID, CIDR: vpc.IPRange, Created: s.VPC.Created || vpcCreated}
		if s.VPC == want && (o.AdminCIDRs == nil || slices.Equal(s.AdminCIDRs, o.AdminCIDRs)) {
			return nil, cluster.ErrNoChange
		}
		s.VPC = want
		if o.AdminCIDRs != nil {
			s.AdminCIDRs = slices.Clone(o.AdminCIDRs)
		}
		return s, nil
	})
	if err != nil {
		return err
	}
	var fw cloud.Firewall
	if err := p.Step("firewall", func() (string, error) {
		var created bool
		fw, created, err = cl.EnsureFirewall(ctx, firewallSpec(st))
		return reuse(fw.ID, created), err
	}); err != nil {
		return err
	}
	if _, err := store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
		if s.FirewallID == fw.ID {
			return nil, cluster.ErrNoChange
		}
		s.FirewallID = fw.ID
		return s, nil
	}); err != nil {
		return err
	}

	st, err = provisionNodes(ctx, f, store, cl, o.Name, nil, p)
	if err != nil {
		return err
	}
	active := st.Active()
	if active == nil || active.DropletID == 0 {
		return fmt.Errorf("cluster %s has no active node with a droplet; run `dynia node repair-ha --name %s --force`", o.Name, o.Name)
	}
	if err := p.Step("reserved IP", func() (string, error) {
		ip, note, err := ensureReservedIP(ctx, cl, st, active.DropletID)
		if err != nil {
			return "", err
		}
		st, err = store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
			if s.ReservedIP == ip {
				return nil, cluster.ErrNoChange
			}
			s.ReservedIP = ip
			return s, nil
		})
		return ip + " → " + active.ID + note, err
	}); err != nil {
		return err
	}
	if o.DNS.Record != "" {
		if st, err = setDNS(ctx, f, p, store, cl, st, o.DNS); err != nil {
			return err
		}
	}
	if !o.NoWait {
		if err := waitApplied(ctx, f, store, st, p); err != nil {
			return err
		}
	}
	// Once the cluster serves: the app, then HTTPS for it.
	if app != nil && (st.App.CurrentRelease() == nil || st.App.CurrentRelease().Tag != app.ref) {
		if err := releaseApp(ctx, f, p, store, cl, st, app, !o.NoWait); err != nil {
			return err
		}
		if st, _, err = store.Load(ctx, o.Name); err != nil {
			return err
		}
	}
	if tlsSettings != nil {
		if st, err = enableTLS(ctx, f, p, store, st, tlsSettings, !o.NoWait); err != nil {
			return err
		}
	}
	return printCluster(f, st)
}

// firewallSpec is the cluster's firewall as the state describes it; every
// command that creates or repairs the firewall builds it here.
func firewallSpec(st *cluster.State) cloud.FirewallSpec {
	return cloud.FirewallSpec{
		Name: resourceName(st.Name), Tag: cloud.ClusterTag(st.Name), AdminCIDRs: slices.Clone(st.AdminCIDRs),
		AppPort: st.App.Port, MeshPort: nodeconfig.DefaultMeshPort,
	}
}

func reuse(what string, created bool) string {
	if created {
		return what + " (created)"
	}
	return what + " (reused)"
}

// ensureReservedIP finds the cluster's RIP (the state's, else one already on
// the droplet) or creates one assigned to dropletID, and makes sure it is
// assigned there.
func ensureReservedIP(ctx context.Context, cl *cloud.Client, st *cluster.State, dropletID int) (string, string, error) {
	ip := st.ReservedIP
	if ip == "" {
		rips, err := cl.ListReservedIPs(ctx)
		if err != nil {
			return "", "", err
		}
		for _, r := range rips {
			if r.DropletID == dropletID {
				return r.IP, " (reused)", nil
			}
		}
		r, err := cl.CreateReservedIP(ctx, dropletID)
		if err != nil {
			return "", "", err
		}
		return r.IP, " (created)", nil
	}
	r, err := cl.GetReservedIP(ctx, ip)
	if err != nil {
		return "", "", err
	}
	if r.DropletID == dropletID {
		return ip, " (reused)", nil
	}
	if err := cl.AssignReservedIP(ctx, ip, dropletID); err != nil {
		return "", "", err
	}
	return ip, " (reassigned)", nil
}

func createDryRun(ctx context.Context, f *Factory, o *CreateOptions, p *Progress) error {
	f.nodeTokenFile, f.allowOperatorToken = o.NodeTokenFile, o.AllowOperatorToken
	image := o.Image
	if o.Bootstrap {
		image = BootstrapImage
	}
	st := cluster.New(o.Name, o.Region, o.Size, image, time.Now())
	st, ids, err := cluster.AddNodes(st, 1, cluster.NewNamer(0), time.Now())
	if err != nil {
		return err
	}
	boot, err := f.prepareBoot(ctx, nil, nil, st, p, true)
	if err != nil {
		return err
	}
	// The keys the real run would use: the state key if this machine has
	// one already (else a stand-in: the real one is made at the first
	// write), and a stand-in report key (masked below anyway). Nothing is
	// written.
	stateKey, _, err := f.stateKeys().SigningKey(o.Name, false)
	if err != nil {
		return err
	}
	reportKey, err := signing.NewKey()
	if err != nil {
		return err
	}
	if stateKey == nil {
		stateKey = reportKey
	}
	st.SigningKey = signing.PublicKeyString(signing.Public(stateKey))
	ud, err := f.userData(st, ids[0], boot, reportKey)
	if err != nil {
		return err
	}
	if image == "" {
		image = "newest " + SnapshotPrefix + "* snapshot in " + o.Region
	}
	w := f.IO.Out
	fmt.Fprintf(w, "Plan for cluster %s (dry run: nothing is created):\n", o.Name)
	fmt.Fprintf(w, "  1. state object %s\n", cluster.StateKey(o.Name))
	fmt.Fprintf(w, "  2. VPC %s (reused if it exists)\n", vpcName(o.Name, o.Region))
	fmt.Fprintf(w, "  3. firewall %s on tag %s\n", resourceName(o.Name), cloud.ClusterTag(o.Name))
	fmt.Fprintf(w, "  4. droplet %s (%s, %s) tagged %v\n", cluster.Hostname(o.Name, ids[0]), o.Size, image, nodeTags(o.Name, ids[0]))
	fmt.Fprintf(w, "  5. Reserved IP created assigned to it; node %s active, priority %d\n", ids[0], st.Nodes[0].Priority)
	if o.DNS.Record != "" {
		fmt.Fprintf(w, "  6. DNS A record %s (%s) pointing at the Reserved IP\n", o.DNS.Record, o.DNS.Provider)
	}
	fmt.Fprintf(w, "User-data (%d bytes, secrets masked):\n", len(ud))
	_, err = w.Write(maskUserData(ud))
	return err
}

// addNodes adds o.Count nodes: ids and priorities by CAS first, droplets
// next (tagged with their ids), then waits for every node to apply.
func addNodes(ctx context.Context, f *Factory, o *AddOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	if err := f.checkStateReachableByDroplets(); err != nil {
		return err
	}
	f.nodeTokenFile, f.allowOperatorToken = o.NodeTokenFile, o.AllowOperatorToken
	nodeSecrets, err := f.loadNodeSecrets(p)
	if err != nil {
		return err
	}
	// An unknown cluster is bad input reported before any API call; then
	// the node token is checked, before anything is written.
	if s, err := f.Store(ctx); err != nil {
		return err
	} else if _, _, err := s.Load(ctx, o.Name); err != nil {
		return err
	}
	if err := f.checkNodeToken(ctx, nodeSecrets, p); err != nil {
		return err
	}
	store, _, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	stateURL, _ := f.StateURL()
	jdir := f.journalDir()
	j, err := resumeAdd(jdir, stateURL, o.Name, o.Count)
	if err != nil {
		return err
	}
	if j != nil && !unfinished(ctx, store, o.Name, j.Nodes) {
		j.release(true) // finished meanwhile (repair-ha): nothing to resume
		j = nil
	}
	var added []string
	if j != nil {
		added = j.Nodes
		p.Info("resuming an interrupted `node add --count %d`: nodes %v", o.Count, added)
		// Ids the crashed run journaled but never wrote to the state are
		// added now; the rest are already there.
		if _, err := store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.AddNamedNodes(s, added, time.Now())
		}); err != nil {
			j.release(false)
			return err
		}
	} else {
		if j, err = newAddJournal(jdir, stateURL, o.Name, o.Count); err != nil {
			return err
		}
		if err := p.Step(fmt.Sprintf("add %d node(s) to the state", o.Count), func() (string, error) {
			_, err := store.Update(ctx, o.Name, func(s *cluster.State) (*cluster.State, error) {
				next, ids, err := cluster.AddNodes(s, o.Count, cluster.NewNamer(0), time.Now())
				if err != nil {
					return nil, err
				}
				// Journal the ids before the state names them, so a crash
				// after the write still knows which nodes this add owns.
				if err := j.record(ids); err != nil {
					return nil, fmt.Errorf("add journal: %w", err)
				}
				added = ids
				return next, nil
			})
			return fmt.Sprint(added), err
		}); err != nil {
			j.release(false)
			return err
		}
	}
	st, err := provisionNodes(ctx, f, store, cl, o.Name, added, p)
	if err != nil {
		j.release(false)
		return fmt.Errorf("%w (nodes %v are in the state; re-run the same command, or `dynia node repair-ha --name %s --force`, to finish them)", err, added, o.Name)
	}
	j.release(true)
	if !o.NoWait {
		if err := waitApplied(ctx, f, store, st, p); err != nil {
			return err
		}
	}
	return printCluster(f, st)
}

// removeNode drains a node, hands the RIP on if it holds it, destroys its
// droplet and removes it from the state. The node stays in the state
// (lifecycle removing) until its droplet is gone, so a re-run after a crash
// finds it there and finishes, and an id the state does not know is bad
// input, reported before any API call.
func removeNode(ctx context.Context, f *Factory, o *RemoveOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	store, st, cl, err := f.openClusterNode(ctx, o.Name, o.Node, true)
	if err != nil {
		return err
	}
	if len(st.Nodes) == 1 && !o.Force {
		return usagef("--node %q: the last node of %s; use --force (or `dynia cluster destroy`)", o.Node, o.Name)
	}
	st, err = retireNode(ctx, store, cl, st, o.Node, p, func(s *cluster.State) (*cluster.State, error) {
		return cluster.RemoveNode(s, o.Node)
	})
	if err != nil {
		return err
	}
	return printCluster(f, st)
}

// retireNode takes node id out of service and destroys it: the Reserved IP
// moves to the next node if id is active, id is drained (every other ready
// node applied that), marked removing, its droplets destroyed, and last
// the state's final write (forget: RemoveNode, or FinishReplacement) runs.
// Every step looks first, so a re-run after a crash at any point finishes.
func retireNode(ctx context.Context, store *cluster.Store, cl *cloud.Client, st *cluster.State, id string, p *Progress,
	forget func(*cluster.State) (*cluster.State, error)) (*cluster.State, error) {
	name := st.Name
	n := st.Node(id)
	if n == nil {
		// Gone already (a re-run, or removed by hand): only the final
		// write may be left, e.g. a replacement still naming it.
		return store.Update(ctx, name, forget)
	}
	var err error
	if n.Role == cluster.RoleActive && len(st.Nodes) > 1 {
		next := cluster.NextActive(st, n.ID)
		if next == nil {
			return nil, fmt.Errorf("node %s is active and no other node is ready to take the Reserved IP", n.ID)
		}
		if err := p.Step("move the Reserved IP to "+next.ID, func() (string, error) {
			return "", promote(ctx, store, cl, name, next.ID)
		}); err != nil {
			return nil, err
		}
	}
	// A node already removing was drained by the run that marked it.
	if len(st.Nodes) > 1 && n.Lifecycle != cluster.Removing {
		if err := p.Step("drain "+n.ID, func() (string, error) {
			st, err = store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
				return cluster.MarkDraining(s, id)
			})
			if err != nil {
				return "", err
			}
			return "", waitOthers(ctx, store, st, id, p)
		}); err != nil {
			return nil, err
		}
	}
	if _, err := store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
		return cluster.MarkRemoving(s, id)
	}); err != nil {
		return nil, err
	}
	ds, err := cl.ListDropletsByTag(ctx, cloud.NodeTag(id))
	if err != nil {
		return nil, err
	}
	var mine []cloud.Droplet
	for _, d := range ds {
		if hasTag(d.Tags, cloud.ClusterTag(name)) {
			mine = append(mine, d)
		}
	}
	if err := destroyDroplets(ctx, cl, mine, p); err != nil {
		return nil, err
	}
	// The report goes while the node is still in the state (removing), so
	// that a failure here is finished by a re-run, which finds the node
	// there. dynia-pull writes no report once it sees its node removing
	// or gone, so a late one from a droplet still shutting down does not
	// bring it back.
	if err := p.Step("delete the report of "+n.ID, func() (string, error) {
		if err := store.B.Delete(ctx, cluster.StatusKey(name, id)); err != nil {
			return "", fmt.Errorf("delete the report of node %s: %w", id, err)
		}
		return "", nil
	}); err != nil {
		return nil, err
	}
	if err := p.Step("remove "+n.ID+" from the state", func() (string, error) {
		st, err = store.Update(ctx, name, forget)
		return "", err
	}); err != nil {
		return nil, err
	}
	return st, nil
}

func destroyDroplets(ctx context.Context, cl *cloud.Client, ds []cloud.Droplet, p *Progress) error {
	for _, d := range ds {
		if err := p.Step(fmt.Sprintf("destroy droplet %d (%s)", d.ID, d.Name), func() (string, error) {
			return "", cl.DeleteDroplet(ctx, d.ID)
		}); err != nil {
			return err
		}
	}
	return nil
}

// promote assigns the RIP to the node's droplet and then records it as the
// active node (top priority), so state and RIP holder agree at the end.
func promote(ctx context.Context, store *cluster.Store, cl *cloud.Client, name, nodeID string) error {
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return err
	}
	n := st.Node(nodeID)
	if n == nil {
		return usagef("--node %q: not a node of cluster %s", nodeID, name)
	}
	if n.Lifecycle != cluster.Ready || n.DropletID == 0 {
		return usagef("--node %q: is %s; only a ready node can become active", nodeID, n.Lifecycle)
	}
	if st.ReservedIP != "" {
		r, err := cl.GetReservedIP(ctx, st.ReservedIP)
		if err != nil {
			return err
		}
		if r.DropletID != n.DropletID {
			if err := cl.AssignReservedIP(ctx, st.ReservedIP, n.DropletID); err != nil {
				return err
			}
		}
	}
	_, err = store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
		return cluster.MakeActive(s, nodeID)
	})
	return err
}

func makeActive(ctx context.Context, f *Factory, o *MakeActiveOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	store, st, cl, err := f.openClusterNode(ctx, o.Name, o.Node, true)
	if err != nil {
		return err
	}
	if err := p.Step("make "+o.Node+" active", func() (string, error) {
		return st.ReservedIP, promote(ctx, store, cl, o.Name, o.Node)
	}); err != nil {
		return err
	}
	st, _, err = store.Load(ctx, o.Name)
	if err != nil {
		return err
	}
	return printCluster(f, st)
}

// unfinished reports whether any of the nodes is missing from the state or
// still provisioning: what a resumed add has left to do.
func unfinished(ctx context.Context, store *cluster.Store, name string, ids []string) bool {
	st, _, err := store.Load(ctx, name)
	if err != nil {
		return true // let the resume path report the error
	}
	for _, id := range ids {
		if n := st.Node(id); n == nil || n.Lifecycle == cluster.Provisioning {
			return true
		}
	}
	return false
}
