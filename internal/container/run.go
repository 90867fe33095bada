package container

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// startAttempts bounds the retries when a picked host port turns out to be
// taken between the pick and Docker's bind.
const startAttempts = 5

// Start creates and starts the Spec's container and returns it. The image
// must be present (Pull). Re-runnable: a running container of the same
// release and digest is returned as it is; a stopped one of that name is
// replaced. The container is published on Spec.BindIP only, with restart
// policy unless-stopped, the memory and pids limits, capped logs, an init
// process and no-new-privileges; see the package doc.
func (r *Runtime) Start(ctx context.Context, spec Spec) (Instance, error) {
	if err := spec.Validate(); err != nil {
		return Instance{}, err
	}
	if err := r.ready(ctx); err != nil {
		return Instance{}, err
	}
	ref, _ := ParseDigestRef(spec.Image)
	name := Name(spec.Release, ref.Digest)
	fail := func(err error) (Instance, error) {
		return Instance{}, fmt.Errorf("start %s (release %d, %s): %w", name, spec.Release, ref, err)
	}

	switch old, err := r.inspect(ctx, name); {
	case err == nil && old.Running() && old.Cluster == spec.Cluster && old.Digest == ref.Digest:
		r.log.Info("release container already running", "container", name, "addr", old.HostAddr.String())
		return old, nil
	case err == nil:
		// A leftover of an earlier attempt (stopped, or not ours): replace it.
		if _, err := r.cli.ContainerRemove(ctx, old.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fail(fmt.Errorf("remove the earlier container of that name: %w", err))
		}
	case !cerrdefs.IsNotFound(err):
		return fail(err)
	}
	present, err := r.imagePresent(ctx, ref.String())
	if err != nil {
		return fail(err)
	}
	if !present {
		return fail(errors.New("image not present: pull it first"))
	}

	tried := map[uint16]bool{}
	var lastErr error
	for attempt := 0; attempt < startAttempts; attempt++ {
		port := spec.HostPort
		if port == 0 {
			if port, err = r.freePort(ctx, spec.BindIP, tried); err != nil {
				return fail(err)
			}
		}
		id, err := r.create(ctx, name, spec, port)
		if err != nil {
			return fail(err)
		}
		_, err = r.cli.ContainerStart(ctx, id, client.ContainerStartOptions{})
		if err == nil {
			inst, err := r.inspect(ctx, id)
			if err != nil {
				return fail(err)
			}
			r.log.Info("started release container", "container", name, "release", spec.Release, "image", ref.String(), "addr", inst.HostAddr.String())
			return inst, nil
		}
		lastErr = err
		// The container exists but never ran: remove it, whatever comes next.
		if _, rmErr := r.cli.ContainerRemove(context.WithoutCancel(ctx), id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); rmErr != nil && !cerrdefs.IsNotFound(rmErr) {
			r.log.Warn("remove a container that failed to start", "container", name, "err", rmErr)
		}
		if spec.HostPort != 0 || !isPortConflict(err) {
			break
		}
		tried[port] = true
		r.log.Info("host port taken, picking another", "container", name, "port", port)
	}
	return fail(lastErr)
}

// create is the container create call; see Start for the choices.
func (r *Runtime) create(ctx context.Context, name string, spec Spec, hostPort uint16) (string, error) {
	cport, _ := network.PortFrom(spec.ContainerPort, network.TCP)
	memory := spec.Memory
	if memory == 0 {
		memory = DefaultMemory
	}
	pids := spec.PidsLimit
	if pids == 0 {
		pids = DefaultPidsLimit
	}
	init := true
	hc := &container.HostConfig{
		NetworkMode: "bridge",
		PortBindings: network.PortMap{
			cport: {{HostIP: spec.BindIP, HostPort: strconv.Itoa(int(hostPort))}},
		},
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		LogConfig: container.LogConfig{
			Type:   LogDriver,
			Config: map[string]string{"max-size": LogMaxSize, "max-file": LogMaxFile},
		},
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory, // memory+swap = memory: no swap on top
			PidsLimit:  &pids,
		},
		Privileged:     false,
		SecurityOpt:    []string{"no-new-privileges:true"},
		Init:           &init,
		ReadonlyRootfs: spec.ReadOnlyRootfs,
	}
	if spec.ReadOnlyRootfs {
		hc.Tmpfs = map[string]string{"/tmp": "rw,nosuid,nodev,size=64m"}
	}
	cfg := &container.Config{
		Image:        spec.Image,
		Env:          spec.env(),
		Labels:       spec.Labels(),
		ExposedPorts: network.PortSet{cport: {}},
	}
	if len(spec.Cmd) > 0 {
		cfg.Cmd = spec.Cmd
	}
	res, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: hc})
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	for _, w := range res.Warnings {
		r.log.Warn("docker create warning", "container", name, "warning", w)
	}
	return res.ID, nil
}

// isPortConflict recognises dockerd's refusals of a taken host port: its
// own allocator ("port is already allocated") or docker-proxy's bind
// ("address already in use").
func isPortConflict(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use")
}

// freePort picks a host port for bindIP in the Runtime's range that no
// container publishes (running or not), that was not tried, and that no
// process of this network namespace listens on.
func (r *Runtime) freePort(ctx context.Context, bindIP netip.Addr, tried map[uint16]bool) (uint16, error) {
	taken, err := r.publishedPorts(ctx, bindIP)
	if err != nil {
		return 0, err
	}
	start := r.ports.First + uint16(rand.IntN(r.ports.Size()))
	return PickPort(r.ports, start, func(p uint16) bool {
		return taken[p] || tried[p] || !listenable(bindIP, p)
	})
}

// publishedPorts are the host ports any container binds on ip or on the
// unspecified address, from each container's port bindings (which a
// stopped container keeps).
func (r *Runtime) publishedPorts(ctx context.Context, ip netip.Addr) (map[uint16]bool, error) {
	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	taken := map[uint16]bool{}
	for _, c := range list.Items {
		for _, p := range c.Ports {
			if p.PublicPort != 0 && (!p.IP.IsValid() || p.IP.IsUnspecified() || p.IP == ip) {
				taken[p.PublicPort] = true
			}
		}
		if c.State == container.StateRunning {
			continue // its bindings are in Ports
		}
		ins, err := r.cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			continue // removed meanwhile
		}
		if hc := ins.Container.HostConfig; hc != nil {
			for _, bs := range hc.PortBindings {
				for _, b := range bs {
					n, err := strconv.ParseUint(b.HostPort, 10, 16)
					if err == nil && (!b.HostIP.IsValid() || b.HostIP.IsUnspecified() || b.HostIP == ip) {
						taken[uint16(n)] = true
					}
				}
			}
		}
	}
	return taken, nil
}

// listenable reports whether a TCP listener could bind ip:port here. When
// ip is not an address of this network namespace (a caller outside
// dockerd's namespace, as in the tests) it cannot tell and says yes; Docker
// then has the last word (isPortConflict).
func listenable(ip netip.Addr, port uint16) bool {
	l, err := net.Listen("tcp", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		return errors.Is(err, syscall.EADDRNOTAVAIL)
	}
	_ = l.Close() // only probing
	return true
}

// Stop stops inst: SIGTERM, then SIGKILL after grace (rounded up to whole
// seconds, Docker's unit). A stopped container stays stopped across a
// dockerd restart or a reboot (unless-stopped). A container that is gone
// or already stopped is not an error.
func (r *Runtime) Stop(ctx context.Context, inst Instance, grace time.Duration) error {
	if err := r.ready(ctx); err != nil {
		return err
	}
	secs := int(math.Ceil(grace.Seconds()))
	if secs < 0 {
		secs = 0
	}
	_, err := r.cli.ContainerStop(ctx, inst.ID, client.ContainerStopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop %s: %w", inst.Name, err)
	}
	r.log.Info("stopped release container", "container", inst.Name, "release", inst.Release)
	return nil
}

// Remove deletes a stopped inst and its anonymous volumes. A running
// container is refused (Stop it first); one already gone is not an error.
func (r *Runtime) Remove(ctx context.Context, inst Instance) error {
	if err := r.ready(ctx); err != nil {
		return err
	}
	_, err := r.cli.ContainerRemove(ctx, inst.ID, client.ContainerRemoveOptions{RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", inst.Name, err)
	}
	r.log.Info("removed release container", "container", inst.Name, "release", inst.Release)
	return nil
}

// List returns the dynia containers of cluster ("" for every cluster),
// running or not, newest release first.
func (r *Runtime) List(ctx context.Context, cluster string) ([]Instance, error) {
	if err := r.ready(ctx); err != nil {
		return nil, err
	}
	label := LabelCluster
	if cluster != "" {
		label += "=" + cluster
	}
	list, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("list containers of cluster %q: %w", cluster, err)
	}
	out := make([]Instance, 0, len(list.Items))
	for _, c := range list.Items {
		inst, err := r.inspect(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, inst)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Release != out[j].Release {
			return out[i].Release > out[j].Release
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// Inspect returns the current state of inst (by ID, else by name).
func (r *Runtime) Inspect(ctx context.Context, inst Instance) (Instance, error) {
	if err := r.ready(ctx); err != nil {
		return Instance{}, err
	}
	id := inst.ID
	if id == "" {
		id = inst.Name
	}
	return r.inspect(ctx, id)
}

// inspect reads one container into an Instance. Errors keep the API's
// class (cerrdefs.IsNotFound).
func (r *Runtime) inspect(ctx context.Context, idOrName string) (Instance, error) {
	res, err := r.cli.ContainerInspect(ctx, idOrName, client.ContainerInspectOptions{})
	if err != nil {
		return Instance{}, fmt.Errorf("inspect container %s: %w", idOrName, err)
	}
	return instanceOf(res.Container), nil
}

// instanceOf maps Docker's inspect answer; the environment is left out.
func instanceOf(c container.InspectResponse) Instance {
	inst := Instance{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/"), RestartCount: c.RestartCount}
	if c.Config != nil {
		m, _, _ := ParseLabels(c.Config.Labels) // damaged labels: the fields that parsed
		inst.Cluster, inst.Node, inst.Release, inst.Image, inst.Digest = m.Cluster, m.Node, m.Release, m.Image, m.Digest
	}
	if s := c.State; s != nil {
		inst.State = string(s.Status)
		inst.ExitCode = s.ExitCode
		inst.OOMKilled = s.OOMKilled
		inst.StartedAt = dockerTime(s.StartedAt)
		inst.FinishedAt = dockerTime(s.FinishedAt)
		if s.Health != nil {
			inst.Health = string(s.Health.Status)
		}
	}
	if hc := c.HostConfig; hc != nil {
		for _, bs := range hc.PortBindings {
			for _, b := range bs {
				if n, err := strconv.ParseUint(b.HostPort, 10, 16); err == nil && b.HostIP.IsValid() {
					inst.HostAddr = netip.AddrPortFrom(b.HostIP, uint16(n))
				}
			}
		}
	}
	return inst
}

// dockerTime parses Docker's RFC 3339 times; its "never" is year 1.
func dockerTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}
