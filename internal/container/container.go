// Package container is the Docker runtime dynia-pull uses to run a
// cluster's app on a node: pull a release's image by digest, start it bound
// to the node's private address on a free host port, wait until its health
// path answers 200, list, stop, remove and garbage-collect releases, and keep
// containers away from the DigitalOcean metadata service.
//
// It speaks the Docker Engine API (https://docs.docker.com/engine/api/)
// through github.com/moby/moby/client, negotiating the API version with the
// daemon on first use: Debian 12's docker.io 20.10 speaks 1.41, the client
// down to MinAPIVersion (1.40). Every container it starts is named
// dynia-app-r<release>-<12 hex of the digest> and labelled (LabelCluster,
// LabelRelease, …) so List and GC find dynia's containers and nothing else.
//
// Choices (docs/container.md explains them): restart policy
// "unless-stopped" (after a power cycle the running release comes back, a
// release dynia stopped does not); memory capped (DefaultMemory) with no
// swap on top; the "local" log driver capped at 3 × 10 MB; no privileged
// mode, no host network, no-new-privileges, an init process. The
// environment of Spec.Env may hold secrets: it is visible to whoever can run
// `docker inspect` on the node (root), and is never put in a label, a log
// line, an error or an Instance.
//
// The package links no CLI code: dynia-pull embeds it.
package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/versions"
)

// DefaultHost is the Docker API endpoint of the node's dockerd.
const DefaultHost = "unix:///var/run/docker.sock"

// MinAPIVersion is the oldest Engine API version this package works with:
// the oldest the pinned client (github.com/moby/moby/client v0.6.2)
// negotiates down to. Debian 12's dockerd 20.10 speaks 1.41.
const MinAPIVersion = client.MinAPIVersion

// Options configure New. The zero value talks to DefaultHost.
type Options struct {
	// Host is the Docker API endpoint, "unix:///path" or "tcp://host:port";
	// "" means DefaultHost. DOCKER_HOST and DOCKER_API_VERSION in the
	// environment are ignored on purpose: dynia-pull drives the node's own
	// dockerd and negotiates.
	Host string
	// Logger receives one line per pull, start, stop, removal; nil discards.
	Logger *slog.Logger
	// Ports is the host port range Start picks free ports from when a Spec
	// has no HostPort; the zero value means DefaultPorts.
	Ports PortRange
	// HealthClient makes WaitHealthy's requests; nil means a client with a
	// 2 s timeout per request and no keep-alive.
	HealthClient *http.Client
}

// Runtime drives one Docker Engine. It is safe for concurrent use.
type Runtime struct {
	cli    *client.Client
	host   string
	log    *slog.Logger
	ports  PortRange
	health *http.Client

	mu         sync.Mutex
	apiVersion string // negotiated; "" until the first successful ping
}

// New returns a Runtime for opts.Host. It does not contact the daemon:
// the API version is negotiated on the first call that needs it, so
// dynia-pull can start before dockerd.
func New(opts Options) (*Runtime, error) {
	host := opts.Host
	if host == "" {
		host = DefaultHost
	}
	ports := opts.Ports
	if ports == (PortRange{}) {
		ports = DefaultPorts
	}
	if err := ports.Validate(); err != nil {
		return nil, err
	}
	cli, err := client.New(client.WithHost(host))
	if err != nil {
		return nil, fmt.Errorf("docker client for %s: %w", host, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	hc := opts.HealthClient
	if hc == nil {
		hc = &http.Client{
			Timeout:   2 * time.Second,
			Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
			// A health path answers itself; a redirect is not a 200.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Runtime{cli: cli, host: host, log: log, ports: ports, health: hc}, nil
}

// Close releases the client's idle connections.
func (r *Runtime) Close() error { return r.cli.Close() }

// APIVersion negotiates (once) and returns the Engine API version in use:
// the lower of the daemon's and the client's maximum. It fails when the
// daemon is unreachable or older than MinAPIVersion.
func (r *Runtime) APIVersion(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.apiVersion != "" {
		return r.apiVersion, nil
	}
	// The client negotiates lazily too, but ignores a failed ping and then
	// speaks its own maximum (1.56), which a 20.10 daemon refuses with a
	// confusing "client version is too new"; negotiating here first turns
	// that into "daemon unreachable" until it answers.
	ping, err := r.cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true, ForceNegotiate: true})
	if err != nil {
		return "", fmt.Errorf("docker at %s: negotiate API version: %w", r.host, err)
	}
	v := r.cli.ClientVersion()
	if versions.LessThan(v, MinAPIVersion) {
		return "", fmt.Errorf("docker at %s speaks Engine API %s, need at least %s", r.host, ping.APIVersion, MinAPIVersion)
	}
	r.apiVersion = v
	return v, nil
}

// ready makes sure the API version is negotiated before a request.
func (r *Runtime) ready(ctx context.Context) error {
	_, err := r.APIVersion(ctx)
	return err
}

// ErrInvalidSpec wraps every validation error of a Spec or a reference:
// bad input, found before any API call.
var ErrInvalidSpec = errors.New("invalid container spec")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidSpec, fmt.Sprintf(format, args...))
}
