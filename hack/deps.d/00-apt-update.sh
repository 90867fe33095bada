#!/usr/bin/env bash
# Refresh apt's package lists once a day at most: a fresh Debian machine has
# none, and every later deps script installs by package name.
set -euo pipefail
stamp=/var/lib/apt/periodic/dynia-update-stamp
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' 2>/dev/null | head -1)
if [[ -n $lists && -f $stamp && -n $(find "$stamp" -mmin -1440 2>/dev/null) ]]; then
	exit 0
fi
echo "apt-get update"
apt-get update -q
mkdir -p "$(dirname "$stamp")"
touch "$stamp"
