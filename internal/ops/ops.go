// Package ops holds dynia's operations on a cluster — create-ha, add,
// remove, make-active, repair, destroy, node replace and cluster upgrade,
// and the observed health they decide by (GatherEvidence) — as functions over
// explicit dependencies: the state store (*cluster.Store), the DigitalOcean
// client (*cloud.Client), what new droplets boot with (BootSpec) and a step
// reporter. It parses no flags and knows no output formats or exit codes
// (package cli keeps those) and imports no cobra. Its bad-input errors
// (InputError) name the flag a user gave, since the CLI prints them as
// they are.
//
// A multi-step operation is a list of named Steps run in order by Run: the
// first failure stops the rest and names its step. Every step looks before
// it creates (droplets are tagged with their node's id at creation and
// adopted by tag, every state write carries an operation id), so running an
// operation again after a crash finishes what the crashed run left.
package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/dynia/dynia/internal/cloud"
	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/nodeconfig"
)

// Reporter shows an operation's steps as they run; the CLI's Progress is
// one. Step runs fn under name and returns its error; the string fn
// returns is a detail for the report ("10.0.0.0/20 (created)").
type Reporter interface {
	Step(name string, fn func() (string, error)) error
	Info(format string, args ...any)
}

// Step is one named step of an operation. A step without a Name runs
// without being reported (a bookkeeping write between two visible steps).
type Step struct {
	Name string
	Run  func(ctx context.Context) (string, error)
}

// StepError is the error of the step that stopped an operation. Its text
// is the step's error as is (the CLI prints one line, and the reporter has
// already named the step); Step names it for callers and tests.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Run runs steps in order through r: the first that fails stops the rest
// and is returned as a *StepError naming it. A cancelled ctx stops Run
// before the next step.
func Run(ctx context.Context, r Reporter, steps ...Step) error {
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return &StepError{Step: s.Name, Err: err}
		}
		var err error
		if s.Name == "" {
			_, err = s.Run(ctx)
		} else {
			err = r.Step(s.Name, func() (string, error) { return s.Run(ctx) })
		}
		if err != nil {
			return &StepError{Step: s.Name, Err: err}
		}
	}
	return nil
}

// Deps are what an operation acts on.
type Deps struct {
	Store  *cluster.Store
	Cloud  *cloud.Client
	Report Reporter
	// Boot is what new droplets get; nil for operations that create none.
	Boot *BootSpec
	// Nodes waits on what the nodes report; nil for operations that
	// drain no node.
	Nodes Watcher
}

// Watcher waits on the nodes' reports (the CLI reads and verifies them).
type Watcher interface {
	// WaitOthers returns once every ready node of st other than id (the
	// node being drained) reports st's generation applied.
	WaitOthers(ctx context.Context, st *cluster.State, id string) error
}

// InputError is bad input found while an operation runs (an unknown
// region, a node token DigitalOcean refuses): one line naming the flag and
// the value. The CLI turns it into its usage error (exit 2).
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

// Inputf builds an *InputError.
func Inputf(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// SnapshotPrefix is the name prefix of node images built by packer/.
const SnapshotPrefix = "dynia-node-"

// BootstrapImage is the stock image --bootstrap droplets start from.
const BootstrapImage = "debian-12-x64"

// ResourceName names the firewall of a cluster.
func ResourceName(cluster string) string { return "dynia-" + cluster }

// VPCName names the cluster's VPC; DO wants VPC names unique per account,
// so the region is part of it.
func VPCName(cluster, region string) string { return "dynia-" + cluster + "-" + region }

// NodeTags are set at droplet creation, so a crash right after the create
// still leaves a droplet that re-running the command finds and adopts.
func NodeTags(clusterName, nodeID string) []string {
	return []string{"dynia", cloud.ClusterTag(clusterName), cloud.NodeTag(nodeID)}
}

// FirewallSpec is the cluster's firewall as the state describes it; every
// operation that creates or repairs the firewall builds it here.
func FirewallSpec(st *cluster.State) cloud.FirewallSpec {
	return cloud.FirewallSpec{
		Name: ResourceName(st.Name), Tag: cloud.ClusterTag(st.Name), AdminCIDRs: slices.Clone(st.AdminCIDRs),
		AppPort: st.App.Port, MeshPort: nodeconfig.DefaultMeshPort,
	}
}

// Reuse says whether a resource was created or found: "ID (created)".
func Reuse(what string, created bool) string {
	if created {
		return what + " (created)"
	}
	return what + " (reused)"
}

// IgnoreNotFound is err, or nil when it is DO's 404.
func IgnoreNotFound(err error) error {
	if errors.Is(err, cloud.ErrNotFound) {
		return nil
	}
	return err
}

func hasTag(tags []string, t string) bool { return slices.Contains(tags, t) }

// nodeIDFromTags is the node id of a droplet's dynia:node:<id> tag.
func nodeIDFromTags(tags []string) string {
	for _, t := range tags {
		if id, ok := strings.CutPrefix(t, "dynia:node:"); ok {
			return id
		}
	}
	return ""
}

// CheckCloud makes one read-only call with the client's token (the
// cluster's droplets, by tag) before an operation's first state write: a
// token DigitalOcean refuses then fails the operation with nothing written,
// instead of after a write the operation cannot finish (a node left
// provisioning).
func CheckCloud(ctx context.Context, cl *cloud.Client, name string) error {
	_, err := cl.ListDropletsByTag(ctx, cloud.ClusterTag(name))
	return err
}
