#!/usr/bin/env bash
# cloud-init (Debian 12: 22.4) for `cloud-init schema --config-file`, which
# the cloudinit/ tests run on every user-data variant dynia renders.
set -euo pipefail
if [[ ${DYNIA_DEPS_PROFILE:-} == sandbox ]]; then
	exit 0
fi
if ! dpkg -s cloud-init >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cloud-init
fi
