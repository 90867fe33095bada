#!/usr/bin/env bash
# make image: build the dynia-node-<version>-<timestamp> snapshot on
# DigitalOcean with Packer (a real droplet is created, provisioned,
# snapshotted and destroyed; it costs a few cents).
#
# Needs DIGITALOCEAN_TOKEN, packer >= 1.9.4 and bin/dynia-pull (make build).
# Optional: DYNIA_IMAGE_REGION (default sgp1), DYNIA_IMAGE_SNAPSHOT_REGIONS
# (comma-separated further regions), DYNIA_IMAGE_BASE (debian-12-x64 |
# ubuntu-24-04-x64), DYNIA_IMAGE_SIZE. The version in the snapshot name is
# the one bin/dynia-pull reports, so name and content cannot disagree.
# DYNIA_PULL_BINARY overrides bin/dynia-pull; DYNIA_IMAGE_VALIDATE_ONLY=1
# stops after `packer validate` (no droplet is created).
set -euo pipefail
cd "$(dirname "$0")/.."
export CHECKPOINT_DISABLE=1

if [[ -z ${DIGITALOCEAN_TOKEN:-} ]]; then
	echo "image-build: DIGITALOCEAN_TOKEN is not set (a token with droplet, image and tag scopes)" >&2
	exit 2
fi
bin=${DYNIA_PULL_BINARY:-bin/dynia-pull}
if [[ ! -x $bin ]]; then
	echo "image-build: $bin missing: run make build" >&2
	exit 2
fi
version=$("$bin" version | awk '{print $NF}')
if [[ -z ${PACKER_PLUGIN_PATH:-} && -d /root/.cache/dynia/packer-plugins ]]; then
	export PACKER_PLUGIN_PATH=/root/.cache/dynia/packer-plugins
fi

vars=(-var "version=$version" -var "dynia_pull_binary=$bin")
[[ -n ${DYNIA_IMAGE_REGION:-} ]] && vars+=(-var "region=$DYNIA_IMAGE_REGION")
[[ -n ${DYNIA_IMAGE_BASE:-} ]] && vars+=(-var "base_image=$DYNIA_IMAGE_BASE")
[[ -n ${DYNIA_IMAGE_SIZE:-} ]] && vars+=(-var "size=$DYNIA_IMAGE_SIZE")
if [[ -n ${DYNIA_IMAGE_SNAPSHOT_REGIONS:-} ]]; then
	list=$(printf '%s' "$DYNIA_IMAGE_SNAPSHOT_REGIONS" | awk -F, '{for (i = 1; i <= NF; i++) printf "%s\"%s\"", (i > 1 ? "," : ""), $i}')
	vars+=(-var "snapshot_regions=[$list]")
fi

template=packer/dynia-node.pkr.hcl
# init installs the DO plugin when it is missing (from GitHub releases);
# it does nothing when PACKER_PLUGIN_PATH already satisfies the constraint.
packer init "$template"
packer validate "${vars[@]}" "$template"
if [[ ${DYNIA_IMAGE_VALIDATE_ONLY:-} == 1 ]]; then
	exit 0
fi
packer build -color=false "${vars[@]}" "$template"
echo "image-build: snapshot recorded in packer-manifest.json" >&2
