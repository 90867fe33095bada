#!/usr/bin/env bash
# docker.io (Debian 12: dockerd 20.10, Engine API 1.41, with containerd and
# runc) and docker-registry (distribution 2.8) for internal/container's and
# internal/demoimage's integration tests (internal/testutil.StartDockerd,
# StartRegistry) and for the sandbox (`sandbox up --runtime docker`: a dockerd
# per droplet, the registry in the router namespace; part of deps-sandbox).
#
# Neither uses the machine's own Docker: every test and every sandbox droplet
# starts its own dockerd in a network namespace of its own with its own
# data-root, exec-root, socket and containerd (internal/dockerd), and its own
# docker-registry. So this script installs the packages without starting or
# enabling their services:
#   - service starts are refused by a policy-rc.d (exit 101) for the length
#     of the install (one that already exists is left as it is);
#   - Debian's postinst enables docker.service, docker.socket,
#     containerd.service and docker-registry.service (deb-systemd-helper does
#     not ask policy-rc.d); for packages this run installed, those units are
#     disabled again, so a developer's own Docker setup is never changed;
#   - at the end it checks that no dockerd, containerd or docker-registry was
#     started by the install (a pid file or socket of the system services).
# Idempotent: with both packages installed it does nothing.
set -euo pipefail

pkgs=(docker.io docker-registry)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
((${#missing[@]})) || exit 0

policy=/usr/sbin/policy-rc.d
own_policy=false
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\n# dynia hack/deps.d/50-docker.sh: no service starts during install\nexit 101\n' >"$policy"
	chmod 0755 "$policy"
	own_policy=true
fi
cleanup() { if $own_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT

# A pid of the system daemons before the install (a developer's running
# Docker), so the check below blames only what this install started.
before=$(cat /run/docker.pid /run/containerd/containerd.pid /run/docker-registry.pid 2>/dev/null || true)

# --no-install-recommends: no needrestart (it restarts services on its own),
# no git, no apparmor.
# Another apt run on the machine holds the lock for a while: wait for it.
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	-o DPkg::Lock::Timeout=300 "${missing[@]}"

units=()
for p in "${missing[@]}"; do
	case $p in
	docker.io) units+=(docker.service docker.socket containerd.service) ;;
	docker-registry) units+=(docker-registry.service) ;;
	esac
done
# systemctl disable works without a running systemd (it edits symlinks);
# `systemctl` may not exist at all in a container.
if command -v systemctl >/dev/null 2>&1; then
	systemctl disable "${units[@]}" >/dev/null 2>&1 || true
fi

after=$(cat /run/docker.pid /run/containerd/containerd.pid /run/docker-registry.pid 2>/dev/null || true)
if [[ $after != "$before" ]]; then
	echo "50-docker: the install started a system daemon (pids: $after); tests do not use it, stop it by hand" >&2
	exit 1
fi
