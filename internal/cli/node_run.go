package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/dynia/dynia/cloudinit"
	"github.com/dynia/dynia/internal/bucket"
	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/ops"
	"github.com/dynia/dynia/internal/signing"
)

// The run functions of `node create-ha|add|remove|make-active`: each checks
// what only the CLI can (files, credentials, the config), builds the
// operation's dependencies from the Factory, calls internal/ops and prints
// the result.

// createHA creates (or resumes creating) a one-node cluster (ops.CreateHA),
// then points DNS at it, waits for it to serve, deploys the app and
// enables HTTPS, as asked.
func createHA(ctx context.Context, f *Factory, o *CreateOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	if o.DryRun {
		return createDryRun(f, o, p)
	}
	// Everything that can be bad input is checked before the first write:
	// the flags (Validate), files (the app's image reference, the TLS
	// settings, the node token: before any API call), then in ops.CreateHA
	// the reads (the state, the catalog, the node token at DigitalOcean).
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
	token, err := loadNodeToken(f, o.NodeTokenFile, o.AllowOperatorToken, p)
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
	// Checked before the first write: the droplets of a --bootstrap cluster
	// fetch dynia-pull through a presigned URL, which a file:// state has
	// not (found only after the state, VPC and firewall were made, the
	// cluster could never boot a node).
	if _, ok := store.B.(bucket.Presigner); o.Bootstrap && !ok {
		return usagef("--bootstrap: droplets download dynia-pull through a presigned URL, and the state %s cannot presign one: use an S3/Spaces state", store.B)
	}
	boot, err := bootSpec(f, token)
	if err != nil {
		return err
	}
	st, err := ops.CreateHA(ctx, deps(store, cl, p, boot), ops.CreateHAOptions{
		Name: o.Name, Region: o.Region, Size: o.Size, Image: o.Image, Bootstrap: o.Bootstrap, AdminCIDRs: o.AdminCIDRs,
		CheckNodeToken: func(ctx context.Context) error { return checkNodeToken(ctx, f, token, p) },
		RequireSafe:    func(ctx context.Context) error { return bucket.RequireSafe(ctx, store.B, f.Global.AllowUnsafeWrites) },
	})
	if err != nil {
		return err
	}
	if st, err = afterCreate(ctx, f, o, p, store, cl, st, app, tlsSettings); err != nil {
		return err
	}
	return printCluster(f, st)
}

// afterCreate is what create-ha does once the cluster exists: the DNS
// record, the wait for the nodes to apply the state, then the app, then
// HTTPS for it.
func afterCreate(ctx context.Context, f *Factory, o *CreateOptions, p *Progress, store *cluster.Store, cl *cloud.Client,
	st *cluster.State, app *release, tlsSettings *cluster.TLS) (*cluster.State, error) {
	var err error
	if o.DNS.Record != "" {
		if st, err = setDNS(ctx, f, p, store, cl, st, o.DNS); err != nil {
			return nil, err
		}
	}
	if !o.NoWait {
		if err := ops.WaitApplied(ctx, store, st, p); err != nil {
			return nil, err
		}
	}
	if app != nil && (st.App.CurrentRelease() == nil || st.App.CurrentRelease().Tag != app.ref) {
		if err := releaseApp(ctx, f, p, store, cl, st, app, !o.NoWait); err != nil {
			return nil, err
		}
		if st, _, err = store.Load(ctx, o.Name); err != nil {
			return nil, err
		}
	}
	if tlsSettings != nil {
		if st, err = enableTLS(ctx, f, p, store, st, tlsSettings, !o.NoWait); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func createDryRun(f *Factory, o *CreateOptions, p *Progress) error {
	image := o.Image
	if o.Bootstrap {
		image = BootstrapImage
	}
	st := cluster.New(o.Name, o.Region, o.Size, image, time.Now())
	st, ids, err := cluster.AddNodes(st, 1, cluster.NewNamer(0), time.Now())
	if err != nil {
		return err
	}
	spec, err := nodeBoot(f, o.NodeTokenFile, o.AllowOperatorToken, p)
	if err != nil {
		return err
	}
	boot, err := ops.DryRunBoot(spec, st)
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
	ud, err := ops.UserData(st, ids[0], boot, reportKey)
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
	_, err = w.Write(cloudinit.Mask(ud))
	return err
}

// addNodes adds o.Count nodes (ops.AddNodes), then waits for every node to
// apply. An unknown cluster is bad input reported before any API call;
// then the node token is checked, before anything is written.
func addNodes(ctx context.Context, f *Factory, o *AddOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	if err := f.checkStateReachableByDroplets(); err != nil {
		return err
	}
	token, err := loadNodeToken(f, o.NodeTokenFile, o.AllowOperatorToken, p)
	if err != nil {
		return err
	}
	if s, err := f.Store(ctx); err != nil {
		return err
	} else if _, _, err := s.Load(ctx, o.Name); err != nil {
		return err
	}
	if err := checkNodeToken(ctx, f, token, p); err != nil {
		return err
	}
	boot, err := bootSpec(f, token)
	if err != nil {
		return err
	}
	store, _, cl, err := f.openCluster(ctx, o.Name, true)
	if err != nil {
		return err
	}
	st, _, err := ops.AddNodes(ctx, deps(store, cl, p, boot), ops.AddOptions{Name: o.Name, Count: o.Count, JournalDir: journalDir(f)})
	if err != nil {
		return err
	}
	if !o.NoWait {
		if err := ops.WaitApplied(ctx, store, st, p); err != nil {
			return err
		}
	}
	return printCluster(f, st)
}

// removeNode drains a node, hands the Reserved IP on if it holds it,
// destroys its droplet and removes it from the state (ops.RemoveNode). An
// id the state does not know, or the last node without --force, is bad
// input, reported before any API call or write.
func removeNode(ctx context.Context, f *Factory, o *RemoveOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	lastNode := func(st *cluster.State) error {
		if len(st.Nodes) == 1 && !o.Force {
			return usagef("--node %q: the last node of %s; use --force (or `dynia cluster destroy`)", o.Node, o.Name)
		}
		return nil
	}
	store, st, cl, err := f.openClusterNode(ctx, o.Name, o.Node, true, lastNode)
	if err != nil {
		return err
	}
	if st, err = ops.RemoveNode(ctx, deps(store, cl, p, nil), st, o.Node); err != nil {
		return err
	}
	return printCluster(f, st)
}

// makeActive moves the Reserved IP to a node and records it as the active
// node (ops.MakeActive).
func makeActive(ctx context.Context, f *Factory, o *MakeActiveOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	p := NewProgress(f.IO, f.Global.Output == "json")
	store, st, cl, err := f.openClusterNode(ctx, o.Name, o.Node, true)
	if err != nil {
		return err
	}
	if st, err = ops.MakeActive(ctx, deps(store, cl, p, nil), st, o.Node); err != nil {
		return err
	}
	return printCluster(f, st)
}
