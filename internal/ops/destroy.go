package ops

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
)

// DestroyOptions are destroy's inputs.
type DestroyOptions struct {
	// StateURL is the state's location: the nodes' Spaces key is named
	// after it.
	StateURL string
	// DeleteDNS deletes the cluster's DNS record if dynia created it (nil:
	// none); it runs once no droplet is left.
	DeleteDNS func(ctx context.Context, st *cluster.State) error
}

// Destroy removes what cluster st made, found by tag and by the state's
// ids: the Reserved IP (before the droplets: once they are gone, an IP the
// state never recorded is no longer recognisable as the cluster's), the
// droplets, the nodes' Spaces key, the DNS record, the firewall, the VPC,
// and the state last, so an interrupted destroy can re-run.
func Destroy(ctx context.Context, d Deps, st *cluster.State, o DestroyOptions) error {
	cl := d.Cloud
	ds, err := cl.ListDropletsByTag(ctx, cloud.ClusterTag(st.Name))
	if err != nil {
		return err
	}
	ips, err := ClusterReservedIPs(ctx, cl, st, ds)
	if err != nil {
		return err
	}
	var steps []Step
	for _, ip := range ips {
		steps = append(steps, Step{"release Reserved IP " + ip, func(ctx context.Context) (string, error) {
			err := cl.DeleteReservedIP(ctx, ip)
			if errors.Is(err, cloud.ErrNotFound) {
				return "already gone", nil
			}
			return "", err
		}})
	}
	steps = append(steps,
		Step{"", func(ctx context.Context) (string, error) { return "", DestroyDroplets(ctx, d, ds) }},
		// The nodes' Spaces key once no droplet holds it.
		Step{"", func(ctx context.Context) (string, error) { return "", deleteNodeSpacesKeys(ctx, d, o.StateURL, st) }},
		Step{"", func(ctx context.Context) (string, error) {
			if o.DeleteDNS == nil {
				return "", nil
			}
			return "", o.DeleteDNS(ctx, st)
		}},
		Step{"", func(ctx context.Context) (string, error) { return "", deleteFirewalls(ctx, d, st) }},
	)
	if st.VPC.ID != "" && st.VPC.Created {
		steps = append(steps, Step{"VPC " + st.VPC.ID, func(ctx context.Context) (string, error) {
			return "", deleteVPC(ctx, cl, st.VPC.ID)
		}})
	}
	steps = append(steps, Step{"state", func(ctx context.Context) (string, error) { return "", d.Store.Delete(ctx, st.Name) }})
	return Run(ctx, d.Report, steps...)
}

func deleteFirewalls(ctx context.Context, d Deps, st *cluster.State) error {
	fws, err := ClusterFirewalls(ctx, d.Cloud, st)
	if err != nil {
		return err
	}
	for _, id := range fws {
		if err := d.Report.Step("firewall "+id, func() (string, error) { return "", IgnoreNotFound(d.Cloud.DeleteFirewall(ctx, id)) }); err != nil {
			return err
		}
	}
	return nil
}

// deleteVPC deletes the VPC, waiting while DO refuses because droplets are
// still leaving it (backoff 250 ms to 2 s, until ctx ends).
func deleteVPC(ctx context.Context, cl *cloud.Client, id string) error {
	return PollUntil(ctx, func() (bool, string, error) {
		err := IgnoreNotFound(cl.DeleteVPC(ctx, id))
		switch {
		case err != nil && strings.Contains(err.Error(), "default VPC"):
			// DO makes the first VPC of a region its default and never
			// deletes a default VPC; it costs nothing to keep.
			return true, "", nil
		case errors.Is(err, cloud.ErrUnprocessable):
			return false, "VPC still has members", nil
		}
		return err == nil, "", err
	})
}

// ClusterReservedIPs is the state's Reserved IP plus any held by one of the
// cluster's droplets ds: create-ha creates the IP assigned to its droplet,
// so one it made but died before recording sits on a droplet tagged for
// the cluster.
func ClusterReservedIPs(ctx context.Context, cl *cloud.Client, st *cluster.State, ds []cloud.Droplet) ([]string, error) {
	var out []string
	if st.ReservedIP != "" {
		out = append(out, st.ReservedIP)
	}
	mine := map[int]bool{}
	for _, d := range ds {
		mine[d.ID] = true
	}
	rips, err := cl.ListReservedIPs(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rips {
		if r.DropletID != 0 && mine[r.DropletID] && !slices.Contains(out, r.IP) {
			out = append(out, r.IP)
		}
	}
	return out, nil
}

// ClusterFirewalls is the state's firewall plus one found by the name
// create-ha gives it that targets the cluster's tag (one made by a
// create-ha that died before recording it). The tag check keeps a user's
// firewall that merely shares the name out of it.
func ClusterFirewalls(ctx context.Context, cl *cloud.Client, st *cluster.State) ([]string, error) {
	var out []string
	if st.FirewallID != "" {
		out = append(out, st.FirewallID)
	}
	fws, err := cl.ListFirewalls(ctx)
	if err != nil {
		return nil, err
	}
	for _, fw := range fws {
		if fw.Name == ResourceName(st.Name) && slices.Contains(fw.Tags, cloud.ClusterTag(st.Name)) && !slices.Contains(out, fw.ID) {
			out = append(out, fw.ID)
		}
	}
	return out, nil
}
