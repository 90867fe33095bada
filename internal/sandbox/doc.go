// Package sandbox turns one Linux machine into a small DigitalOcean: the DO
// API and metadata simulators (internal/dosim), an S3 store (versitygw), a
// container registry (docker-registry) with the demo app's images, and
// droplets that are network namespaces running the real dynia-pull (with
// HAProxy and keepalived) and, with Options.Runtime = RuntimeDocker, a
// Docker Engine of their own (internal/dockerd; docker.go), as a droplet
// from the node image does (registry.go has the registry and the images).
//
// Everything of the simulated cloud lives in one router namespace
// (<prefix>-rt) linked to the root namespace by one veth: the VPC bridges,
// 169.254.169.254, and the `dynia sandbox serve` process (Serve), which owns
// the simulator and reacts to its hooks by creating, powering and deleting
// droplet namespaces (<prefix>-d<ID>) and by moving Reserved IP routes.
// With Options.Firewalls = FirewallsEnforce, the cloud firewalls stored in
// the simulator are enforced in every droplet namespace with nftables, as
// DigitalOcean enforces them (firewall_render.go, firewall_apply.go).
// Up creates the router and starts Serve; Down removes everything either of
// them made, from what they recorded on disk, even after a crash.
// docs/sandbox.md has the network picture.
package sandbox
