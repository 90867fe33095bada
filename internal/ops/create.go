package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
)

// CreateHAOptions are create-ha's inputs, checked for shape by the caller.
type CreateHAOptions struct {
	Name, Region, Size string
	// Image is --image (a snapshot id or name; "" the newest dynia-node-*
	// snapshot); Bootstrap starts from the stock image instead.
	Image     string
	Bootstrap bool
	// AdminCIDRs, when not nil, replace the state's SSH sources.
	AdminCIDRs []string
	// CheckNodeToken asks DigitalOcean about the node token (nil: not
	// checked, e.g. droplets get the CLI's own token).
	CheckNodeToken func(ctx context.Context) error
	// RequireSafe is the bucket's conditional-write probe; it runs after
	// the read-only checks, before the first write (nil: none).
	RequireSafe func(ctx context.Context) error
}

// CreateHA creates (or resumes creating) a one-node cluster: the state,
// the cluster key, the VPC, the firewall, the node's droplet and the
// Reserved IP on it. Everything that can be bad input (an existing
// cluster's region and size, region and size against the catalog, the node
// token) is checked with reads before the first write. Every step looks
// before it creates, so re-running after a crash or Ctrl-C finishes the
// job without duplicating anything. It returns the state at the end.
func CreateHA(ctx context.Context, d Deps, o CreateHAOptions) (*cluster.State, error) {
	// State first: it names the node, so the droplet can be tagged with its
	// id at creation and adopted if this run dies.
	st, _, err := d.Store.Load(ctx, o.Name)
	exists := err == nil
	if err != nil && !errors.Is(err, cluster.ErrClusterNotFound) {
		return nil, err
	}
	if exists && (st.Region != o.Region || st.Size != o.Size) {
		return nil, Inputf("--region %q/--size %q: cluster %s exists with region %s and size %s", o.Region, o.Size, o.Name, st.Region, st.Size)
	}
	c := &creation{d: d, o: o, st: st}
	steps := []Step{
		// One step, so a refused node token is the only line printed.
		{"region, size and node token", c.checkInputs},
		{"", func(ctx context.Context) (string, error) {
			if o.RequireSafe == nil {
				return "", nil
			}
			return "", o.RequireSafe(ctx)
		}},
	}
	if exists {
		d.Report.Info("cluster %s exists (generation %d): resuming", o.Name, st.Generation)
	} else {
		steps = append(steps, Step{"image", c.image}, Step{"cluster state", c.createState})
	}
	steps = append(steps,
		// The cluster key seals the app's secrets; nodes get it in their
		// user-data, so it exists before the first droplet.
		Step{"cluster key", c.clusterKey},
		Step{"VPC", c.vpc},
		Step{"", c.recordVPC},
		Step{"firewall", c.firewall},
		Step{"", c.recordFirewall},
		Step{"", c.provision},
		Step{"reserved IP", c.reservedIP},
	)
	if err := Run(ctx, d.Report, steps...); err != nil {
		return nil, err
	}
	return c.st, nil
}

// creation is one CreateHA run: its steps share the state as it evolves.
type creation struct {
	d          Deps
	o          CreateHAOptions
	st         *cluster.State
	imageID    string
	vpcID      string
	vpcCIDR    string
	vpcCreated bool
	fwID       string
}

func (c *creation) checkInputs(ctx context.Context) (string, error) {
	if err := CheckCatalog(ctx, c.d.Cloud, c.o.Region, c.o.Size); err != nil {
		return "", err
	}
	if c.o.CheckNodeToken != nil {
		if err := c.o.CheckNodeToken(ctx); err != nil {
			return "", err
		}
	}
	return c.o.Region + ", " + c.o.Size, nil
}

func (c *creation) image(ctx context.Context) (string, error) {
	var err error
	c.imageID, err = ResolveImage(ctx, c.d.Cloud, c.o.Image, c.o.Region, c.o.Bootstrap)
	return c.imageID, err
}

func (c *creation) createState(ctx context.Context) (string, error) {
	st := cluster.New(c.o.Name, c.o.Region, c.o.Size, c.imageID, time.Now())
	st, _, err := cluster.AddNodes(st, 1, cluster.NewNamer(0), time.Now())
	if err != nil {
		return "", err
	}
	c.st = st
	return c.d.Store.B.String(), c.d.Store.Create(ctx, st)
}

func (c *creation) clusterKey(ctx context.Context) (string, error) {
	_, rcpt, err := c.d.Boot.ClusterKey(c.st, true)
	if err != nil {
		return "", err
	}
	c.st, err = c.d.Store.Update(ctx, c.o.Name, func(s *cluster.State) (*cluster.State, error) {
		if s.SecretsRecipient == rcpt {
			return nil, cluster.ErrNoChange
		}
		s.SecretsRecipient = rcpt
		return s, nil
	})
	return rcpt, err
}

func (c *creation) vpc(ctx context.Context) (string, error) {
	vpc, created, err := c.d.Cloud.EnsureVPC(ctx, VPCName(c.o.Name, c.o.Region), c.o.Region, "")
	// A VPC found with dynia's marker was made by an earlier run that may
	// have died before recording it: it is ours to delete too.
	c.vpcID, c.vpcCIDR, c.vpcCreated = vpc.ID, vpc.IPRange, created || vpc.Dynia
	return Reuse(vpc.ID+" "+vpc.IPRange, created), err
}

// recordVPC puts the VPC and, when given, the admin CIDRs into the state
// first: the firewall is built from the state, so a re-run without
// --admin-cidr keeps the SSH rule instead of dropping it.
func (c *creation) recordVPC(ctx context.Context) (string, error) {
	var err error
	c.st, err = c.d.Store.Update(ctx, c.o.Name, func(s *cluster.State) (*cluster.State, error) {
		want := cluster.VPC{ID: c.vpcID, CIDR: c.vpcCIDR, Created: s.VPC.Created || c.vpcCreated}
		if s.VPC == want && (c.o.AdminCIDRs == nil || slices.Equal(s.AdminCIDRs, c.o.AdminCIDRs)) {
			return nil, cluster.ErrNoChange
		}
		s.VPC = want
		if c.o.AdminCIDRs != nil {
			s.AdminCIDRs = slices.Clone(c.o.AdminCIDRs)
		}
		return s, nil
	})
	return "", err
}

func (c *creation) firewall(ctx context.Context) (string, error) {
	fw, created, err := c.d.Cloud.EnsureFirewall(ctx, FirewallSpec(c.st))
	c.fwID = fw.ID
	return Reuse(fw.ID, created), err
}

func (c *creation) recordFirewall(ctx context.Context) (string, error) {
	_, err := c.d.Store.Update(ctx, c.o.Name, func(s *cluster.State) (*cluster.State, error) {
		if s.FirewallID == c.fwID {
			return nil, cluster.ErrNoChange
		}
		s.FirewallID = c.fwID
		return s, nil
	})
	return "", err
}

func (c *creation) provision(ctx context.Context) (string, error) {
	var err error
	c.st, err = ProvisionNodes(ctx, c.d, c.o.Name, nil)
	if err != nil {
		return "", err
	}
	if a := c.st.Active(); a == nil || a.DropletID == 0 {
		return "", fmt.Errorf("cluster %s has no active node with a droplet; run `dynia node repair-ha --name %s --force`", c.o.Name, c.o.Name)
	}
	return "", nil
}

func (c *creation) reservedIP(ctx context.Context) (string, error) {
	active := c.st.Active()
	ip, note, err := EnsureReservedIP(ctx, c.d.Cloud, c.st, active.DropletID)
	if err != nil {
		return "", err
	}
	c.st, err = c.d.Store.Update(ctx, c.o.Name, func(s *cluster.State) (*cluster.State, error) {
		if s.ReservedIP == ip {
			return nil, cluster.ErrNoChange
		}
		s.ReservedIP = ip
		return s, nil
	})
	if errors.Is(err, cluster.ErrNoChange) {
		err = nil
	}
	return ip + " → " + active.ID + note, err
}

// EnsureReservedIP finds the cluster's Reserved IP (the state's, else one
// already on the droplet) or creates one assigned to dropletID, and makes
// sure it is assigned there. note says which: " (reused)", " (created)",
// " (reassigned)".
func EnsureReservedIP(ctx context.Context, cl *cloud.Client, st *cluster.State, dropletID int) (ip, note string, err error) {
	ip = st.ReservedIP
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

// Settings are `cluster update`'s changes; only those set are made.
type Settings struct {
	MinPullVersion string
	SetMinPull     bool
	AdminCIDRs     []string
	SetAdmin       bool
}

// UpdateSettings records the new settings in the state, then makes the
// firewall match the state (re-runnable: every step is idempotent). With
// admin CIDRs to apply, the DO token is checked with a read first.
func UpdateSettings(ctx context.Context, d Deps, st *cluster.State, o Settings) (*cluster.State, error) {
	var steps []Step
	if o.SetAdmin {
		// The firewall below needs the token: checked before any write.
		steps = append(steps, Step{"", func(ctx context.Context) (string, error) { return "", CheckCloud(ctx, d.Cloud, st.Name) }})
	}
	if o.SetMinPull {
		steps = append(steps, Step{fmt.Sprintf("min_pull_version %q in the state", o.MinPullVersion), func(ctx context.Context) (string, error) {
			var err error
			st, err = d.Store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
				return cluster.SetMinPullVersion(s, o.MinPullVersion)
			})
			return "", err
		}})
	}
	if o.SetAdmin {
		want := slices.Clone(o.AdminCIDRs)
		steps = append(steps,
			Step{fmt.Sprintf("admin CIDRs %v in the state", want), func(ctx context.Context) (string, error) {
				var err error
				st, err = d.Store.Update(ctx, st.Name, func(s *cluster.State) (*cluster.State, error) {
					if slices.Equal(s.AdminCIDRs, want) {
						return nil, cluster.ErrNoChange
					}
					s.AdminCIDRs = want
					return s, nil
				})
				return "", err
			}},
			Step{"firewall", func(ctx context.Context) (string, error) {
				fw, created, err := d.Cloud.EnsureFirewall(ctx, FirewallSpec(st))
				return Reuse(fw.ID, created), err
			}},
		)
	}
	if err := Run(ctx, d.Report, steps...); err != nil {
		return nil, err
	}
	return st, nil
}
