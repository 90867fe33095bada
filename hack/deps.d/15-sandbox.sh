#!/usr/bin/env bash
# What `dynia sandbox` needs on the machine (internal/sandbox): ip (netns,
# veth, bridge, routes), nsenter (serve in the router namespace), sysctl,
# iptables (cutting VRRP in the failure tests), nft (the cloud firewall
# model, `--firewalls enforce`), curl, unshare (checking rendered nftables
# rulesets in a throwaway namespace). Installs only what is
# missing; quick when everything is there. versitygw: 20-versitygw.sh.
set -euo pipefail
declare -A need=([ip]=iproute2 [iptables]=iptables [curl]=curl [nsenter]=util-linux [unshare]=util-linux [sysctl]=procps [nft]=nftables)
missing=()
for cmd in "${!need[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if ((${#missing[@]})); then
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
		apt-get update
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
	fi
fi
