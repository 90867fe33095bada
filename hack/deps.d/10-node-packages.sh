#!/usr/bin/env bash
# Node packages dynia-pull drives and its integration tests use.
set -euo pipefail
pkgs=(haproxy keepalived iproute2 iptables curl procps)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
	DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi
