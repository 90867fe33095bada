package ops

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/signing"
)

// ProvisionNodes makes sure the given provisioning nodes (all of them when
// only is nil) have a droplet, adopting one tagged with the node's id if a
// previous run created it, then waits for the droplets and records their
// addresses (lifecycle ready). Safe to re-run. An operation provisions only
// the nodes it added, so concurrent adds never create for each other.
func ProvisionNodes(ctx context.Context, d Deps, name string, only []string) (*cluster.State, error) {
	st, _, err := d.Store.Load(ctx, name)
	if err != nil {
		return nil, err
	}
	pv := &provisioner{d: d, name: name, st: st, pending: provisioning(st, only)}
	if len(pv.pending) == 0 {
		return st, nil
	}
	err = Run(ctx, d.Report,
		Step{"", pv.adopt},
		Step{"", pv.reportKeys},
		Step{"", pv.prepare},
		Step{fmt.Sprintf("droplets for %s", ids(pv.pending)), pv.create},
		Step{"", pv.record},
		Step{"droplets active", pv.waitActive},
		Step{"", pv.setNetworks},
	)
	if err != nil {
		return nil, err
	}
	return pv.st, nil
}

// provisioner is one ProvisionNodes run: its steps share what the earlier
// ones found.
type provisioner struct {
	d       Deps
	name    string
	st      *cluster.State
	pending []cluster.Node
	// dropletOf maps a pending node's id to its droplet's; toMake are the
	// nodes without one, adopted counts the droplets found.
	dropletOf   map[string]int
	toMake      []cluster.Node
	adopted     int
	reportKeyOf map[string]ed25519.PrivateKey
	boot        Boot
	droplets    []cloud.Droplet
}

func (pv *provisioner) adopt(ctx context.Context) (string, error) {
	var err error
	pv.dropletOf, pv.toMake, pv.adopted, err = adoptDroplets(ctx, pv.d, pv.name, pv.pending)
	return "", err
}

func (pv *provisioner) reportKeys(ctx context.Context) (string, error) {
	var err error
	pv.st, pv.reportKeyOf, err = newReportKeys(ctx, pv.d, pv.name, pv.st, pv.toMake)
	return "", err
}

func (pv *provisioner) prepare(ctx context.Context) (string, error) {
	var err error
	pv.boot, err = prepareBoot(ctx, pv.d, pv.st)
	return "", err
}

func (pv *provisioner) create(ctx context.Context) (string, error) {
	n, err := createDroplets(ctx, pv.d, pv.st, pv.toMake, pv.boot, pv.reportKeyOf, pv.dropletOf)
	if err != nil {
		// What was created is recorded even after a partial failure: the
		// next run adopts by tag anyway, but the state should say what
		// exists.
		_, _ = pv.record(ctx)
		return "", err
	}
	return fmt.Sprintf("%d created, %d adopted", n, pv.adopted), nil
}

// record writes each pending node's droplet id into the state.
func (pv *provisioner) record(ctx context.Context) (string, error) {
	var err error
	for id, did := range pv.dropletOf {
		if _, uerr := pv.d.Store.Update(ctx, pv.name, func(s *cluster.State) (*cluster.State, error) {
			return cluster.SetDroplet(s, id, did)
		}); uerr != nil && err == nil {
			err = uerr
		}
	}
	return "", err
}

// waitActive waits for the droplets to be active. When the operation's
// time runs out meanwhile, droplets that never became active are dropped
// (dropStuck).
func (pv *provisioner) waitActive(ctx context.Context) (string, error) {
	var idsToWait []int
	for _, n := range pv.pending {
		idsToWait = append(idsToWait, pv.dropletOf[n.ID])
	}
	var err error
	pv.droplets, err = pv.d.Cloud.WaitActive(ctx, idsToWait)
	if err != nil && ctx.Err() != nil {
		return "", dropStuck(ctx, pv.d, pv.name, pv.pending, pv.dropletOf, err)
	}
	return "", err
}

func (pv *provisioner) setNetworks(ctx context.Context) (string, error) {
	var err error
	pv.st, err = pv.d.Store.Update(ctx, pv.name, func(s *cluster.State) (*cluster.State, error) {
		return setNetworks(s, pv.pending, pv.dropletOf, pv.droplets)
	})
	return "", err
}

// provisioning is st's provisioning nodes among only (all when nil).
func provisioning(st *cluster.State, only []string) []cluster.Node {
	var pending []cluster.Node
	for _, n := range st.Nodes {
		if n.Lifecycle == cluster.Provisioning && (only == nil || slices.Contains(only, n.ID)) {
			pending = append(pending, n)
		}
	}
	return pending
}

// adoptDroplets finds the droplets a crashed run created for pending (by
// their node tag): dropletOf maps node id to droplet id; toMake are the
// nodes without one; adopted counts the droplets found. A droplet of an earlier run that never became active
// is deleted, so its node gets a new one.
func adoptDroplets(ctx context.Context, d Deps, name string, pending []cluster.Node) (dropletOf map[string]int, toMake []cluster.Node, adopted int, err error) {
	dropletOf = map[string]int{}
	// One list of the cluster's droplets (every droplet is tagged with
	// its cluster and its node at creation), not one per node.
	all, err := d.Cloud.ListDropletsByTag(ctx, cloud.ClusterTag(name))
	if err != nil {
		return nil, nil, 0, err
	}
	for _, n := range pending {
		for _, dr := range all {
			if nodeIDFromTags(dr.Tags) != n.ID {
				continue
			}
			if d.Boot.stuck(dr) {
				// Waiting for it again would never end.
				if err := d.Cloud.DeleteDroplet(ctx, dr.ID); err != nil {
					return nil, nil, 0, err
				}
				d.Report.Info("droplet %d (%s) is still new %v after its creation: it never became active; deleted, creating another",
					dr.ID, dr.Name, time.Since(dr.CreatedAt).Round(time.Second))
				continue
			}
			dropletOf[n.ID] = dr.ID
			adopted++
		}
		if dropletOf[n.ID] == 0 {
			toMake = append(toMake, n)
		}
	}
	return dropletOf, toMake, adopted, nil
}

// newReportKeys gives each node of toMake its own report key: the public
// half goes into the state before the droplet exists (a crash after the
// create adopts a droplet whose key the state already names), the private
// half only into that droplet's user-data. A node whose droplet a crashed
// run never created gets a new pair: the old private half is gone.
func newReportKeys(ctx context.Context, d Deps, name string, st *cluster.State, toMake []cluster.Node) (*cluster.State, map[string]ed25519.PrivateKey, error) {
	keys := map[string]ed25519.PrivateKey{}
	if len(toMake) == 0 {
		return st, keys, nil
	}
	pubs := map[string]string{}
	for _, n := range toMake {
		k, err := signing.NewKey()
		if err != nil {
			return nil, nil, err
		}
		keys[n.ID], pubs[n.ID] = k, signing.PublicKeyString(signing.Public(k))
	}
	// This write is signed like every other; for a cluster made before
	// state signing it is the first signed one.
	st, err := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
		return cluster.SetReportKeys(s, pubs)
	})
	return st, keys, err
}

// createDroplets creates toMake's droplets in one request, recording each
// created one in dropletOf (also after a partial failure); it returns how
// many were created.
func createDroplets(ctx context.Context, d Deps, st *cluster.State, toMake []cluster.Node, boot Boot,
	reportKeys map[string]ed25519.PrivateKey, dropletOf map[string]int) (int, error) {
	var toCreate []cloud.DropletSpec
	var createdFor []string
	for _, n := range toMake {
		ud, err := UserData(st, n.ID, boot, reportKeys[n.ID])
		if err != nil {
			return 0, err
		}
		toCreate = append(toCreate, cloud.DropletSpec{
			Name: cluster.Hostname(st.Name, n.ID), Region: st.Region, Size: st.Size, Image: n.ImageOr(st.Image),
			UserData: string(ud), VPCUUID: st.VPC.ID, Tags: NodeTags(st.Name, n.ID), Monitoring: true,
		})
		createdFor = append(createdFor, n.ID)
	}
	created, err := d.Cloud.CreateDroplets(ctx, toCreate)
	for _, dr := range created {
		for i, spec := range toCreate {
			if spec.Name == dr.Name {
				dropletOf[createdFor[i]] = dr.ID
			}
		}
	}
	return len(created), err
}

// setNetworks records the active droplets' addresses on their nodes.
func setNetworks(s *cluster.State, pending []cluster.Node, dropletOf map[string]int, droplets []cloud.Droplet) (*cluster.State, error) {
	changed := false
	for _, dr := range droplets {
		for _, n := range pending {
			if dropletOf[n.ID] != dr.ID {
				continue
			}
			next, err := cluster.SetNodeNetwork(s, n.ID, dr.ID, dr.PublicIP, dr.PrivateIP)
			if errors.Is(err, cluster.ErrNoChange) {
				continue
			}
			if err != nil {
				return nil, err
			}
			s, changed = next, true
		}
	}
	if !changed {
		return nil, cluster.ErrNoChange
	}
	return s, nil
}

func ids(nodes []cluster.Node) string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return strings.Join(out, ", ")
}

// stuck says whether d is a droplet that never became active.
func (s *BootSpec) stuck(d cloud.Droplet) bool {
	age := StuckDropletAge
	if s != nil && s.StuckAfter > 0 {
		age = s.StuckAfter
	}
	return d.Status == "new" && !d.CreatedAt.IsZero() && time.Since(d.CreatedAt) >= age
}

// dropStuck runs when the operation's time ran out waiting for droplets
// (ctx is done): every droplet of pending still "new" and old enough to be
// stuck is deleted and forgotten in the state (its node stays
// provisioning), so a re-run creates a new one instead of waiting for it
// again; a younger one is left for the re-run to wait for. The returned
// error names each, and wraps err.
func dropStuck(ctx context.Context, d Deps, name string, pending []cluster.Node, dropletOf map[string]int, err error) error {
	// The operation's own context has ended: the clean-up gets its own.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var notes []string
	for _, n := range pending {
		dr, gerr := d.Cloud.GetDroplet(cctx, dropletOf[n.ID])
		if gerr != nil || dr.Status != "new" {
			continue
		}
		notes = append(notes, dropOne(cctx, d, name, n.ID, dr))
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%s: %w", strings.Join(notes, "; "), err)
}

// dropOne deletes node id's droplet dr if it is stuck, and says what
// happened.
func dropOne(ctx context.Context, d Deps, name, id string, dr cloud.Droplet) string {
	age := time.Since(dr.CreatedAt).Round(time.Second)
	if !d.Boot.stuck(dr) {
		return fmt.Sprintf("droplet %d (%s) is still new after %v: re-run the same command to wait for it", dr.ID, dr.Name, age)
	}
	if derr := d.Cloud.DeleteDroplet(ctx, dr.ID); derr != nil {
		return fmt.Sprintf("droplet %d (%s) never became active (still new after %v) and could not be deleted: %v", dr.ID, dr.Name, age, derr)
	}
	if _, uerr := d.Store.Update(ctx, name, func(s *cluster.State) (*cluster.State, error) {
		return cluster.SetDroplet(s, id, 0)
	}); uerr != nil {
		return fmt.Sprintf("droplet %d (%s) never became active and was deleted; recording that failed: %v", dr.ID, dr.Name, uerr)
	}
	return fmt.Sprintf("droplet %d (%s) never became active (still new after %v): deleted; re-run the same command to create another", dr.ID, dr.Name, age)
}
