package pull

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"syscall"
	"time"

	"github.com/dynia/dynia/internal/cluster"
	"github.com/dynia/dynia/internal/container"
	"github.com/dynia/dynia/internal/secrets"
)

// dockerApp runs releases as containers (internal/container) on the node's
// dockerd.
type dockerApp struct {
	rt      *container.Runtime
	cluster string
	node    string
	log     *slog.Logger
	// blockMetadata keeps containers away from 169.254.169.254 (the
	// metadata service serves user-data, which carries the node's
	// secrets): installed before every start, idempotent.
	blockMetadata func(ctx context.Context) error
}

func newDockerApp(host, clusterName, nodeID string, log *slog.Logger) (*dockerApp, error) {
	rt, err := container.New(container.Options{Host: host, Logger: log})
	if err != nil {
		return nil, err
	}
	return &dockerApp{rt: rt, cluster: clusterName, node: nodeID, log: log,
		blockMetadata: func(ctx context.Context) error { return container.BlockMetadata(ctx, nil) }}, nil
}

func (a *dockerApp) Instances(ctx context.Context) ([]appInstance, error) {
	insts, err := a.rt.List(ctx, a.cluster)
	if err != nil {
		return nil, err
	}
	var out []appInstance
	for _, i := range insts {
		if !i.Running() || (i.Node != "" && i.Node != a.node) {
			continue
		}
		out = append(out, dockerInstance(i))
	}
	return out, nil
}

func dockerInstance(i container.Instance) appInstance {
	return appInstance{Release: i.Release, Image: i.Image, Addr: i.HostAddr, ID: i.ID, Since: i.StartedAt}
}

func (a *dockerApp) Start(ctx context.Context, rel cluster.Release, sec secrets.Release, bind netip.Addr) (appInstance, error) {
	if err := a.blockMetadata(ctx); err != nil {
		// Never run the app where it could read the node's user-data.
		return appInstance{}, &appFailure{Reason: "block the metadata service from containers: " + err.Error(), Retry: true}
	}
	var auth container.Auth
	if ra := sec.RegistryAuth; ra != nil {
		auth = container.Auth{Username: ra.Username, Password: ra.Password, IdentityToken: ra.IdentityToken}
	}
	if _, err := a.rt.Pull(ctx, rel.Image, auth); err != nil {
		// A registry that is down now may answer later; refused
		// credentials will not, and stay reported until a new release.
		return appInstance{}, &appFailure{Reason: err.Error(), Retry: !errors.Is(err, container.ErrRegistryAuth)}
	}
	env := map[string]string{}
	for k, v := range rel.Env {
		env[k] = v
	}
	for k, v := range sec.Env {
		env[k] = v
	}
	for k, v := range appEnv(a.node, rel, netip.AddrPort{}) {
		if v != "" {
			env[k] = v
		}
	}
	inst, err := a.rt.Start(ctx, container.Spec{Cluster: a.cluster, Node: a.node, Release: rel.Number, Image: rel.Image,
		BindIP: bind, ContainerPort: uint16(rel.Port), Env: env})
	if err != nil {
		// Bad spec aside, a start that fails is Docker's trouble, not
		// the release's.
		return appInstance{}, &appFailure{Reason: err.Error(), Retry: !errors.Is(err, container.ErrInvalidSpec)}
	}
	if err := a.rt.WaitHealthy(ctx, inst, rel.HealthPath, rel.HealthTimeout()); err != nil {
		f := healthFailure(err)
		if f.Logs == nil {
			if lines, lerr := a.rt.Logs(ctx, inst, 20); lerr == nil {
				f.Logs = lines
			}
		}
		// The failed release never serves: remove it (its lines are kept
		// in the report).
		cctx := context.WithoutCancel(ctx)
		if serr := a.rt.Stop(cctx, inst, time.Second); serr != nil {
			a.log.Warn("stop the failed release", "release", rel.Number, "err", serr)
		} else if rerr := a.rt.Remove(cctx, inst); rerr != nil {
			a.log.Warn("remove the failed release", "release", rel.Number, "err", rerr)
		}
		return appInstance{}, f
	}
	return dockerInstance(inst), nil
}

// healthFailure classifies a failed wait for a new container's health: a
// container that crashed or never answered 200 (*container.UnhealthyError)
// is the release's fault and is not retried, unless SIGKILL from outside
// ended it (status 137, 128+9, and not the memory limit: an operator, a
// host OOM kill, the fault suite); anything else is Docker's trouble
// (dockerd restarting, its socket gone: "Cannot connect to the Docker
// daemon") and is retried with backoff. Taking either for a bad release
// left a node without its app until a new release.
func healthFailure(err error) *appFailure {
	var ue *container.UnhealthyError
	if errors.As(err, &ue) {
		killed := ue.Exited && ue.ExitCode == 128+int(syscall.SIGKILL) && !ue.OOMKilled
		return &appFailure{Reason: ue.Reason, Logs: ue.Logs, Retry: killed}
	}
	return &appFailure{Reason: err.Error(), Retry: !errors.Is(err, container.ErrInvalidSpec)}
}

func (a *dockerApp) Stop(ctx context.Context, inst appInstance) error {
	return a.rt.Stop(ctx, container.Instance{ID: inst.ID}, appStopGrace)
}

func (a *dockerApp) Healthy(ctx context.Context, inst appInstance, path string) bool {
	return probeHealth(ctx, inst.Addr, path)
}

func (a *dockerApp) GC(ctx context.Context, keep []cluster.Release) error {
	var refs []string
	for _, r := range keep {
		refs = append(refs, r.Image)
	}
	res, err := a.rt.GC(ctx, refs)
	if err != nil {
		return err
	}
	if len(res.Containers)+len(res.Images) > 0 {
		a.log.Info("garbage-collected old releases", "containers", len(res.Containers), "images", len(res.Images))
	}
	return nil
}

// String names the runtime in logs.
func (a *dockerApp) String() string { return fmt.Sprintf("docker (%s)", a.cluster) }
