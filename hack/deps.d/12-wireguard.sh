#!/usr/bin/env bash
# WireGuard for the VRRP mesh (docs/pull.md "Mesh"): wireguard-tools (`wg`,
# which operators use to inspect the mesh and which the node image ships) on
# every machine, and wireguard-go, the userspace implementation the sandbox
# and the integration tests run, since their kernel may lack the wireguard
# module. Idempotent: installs only what is missing.
set -euo pipefail
pkgs=(wireguard-go wireguard-tools nftables)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
	fi
fi
