#!/usr/bin/env bash
# make image-check: every check of the node image recipe, with missing
# prerequisites as failures (DYNIA_REQUIRE_INTEGRATION=1), verbose.
#   packer/   packer fmt -check and validate with the real Packer 1.9.4 + DO
#             plugin 1.4.1; provision.sh run for real in a debootstrapped
#             bookworm root (root needed), then create-ha's snapshot-mode
#             user-data applied to it and `dynia-pull check` run there; a
#             --bootstrap first boot (download, sha256, tampered download).
#   cloudinit/ golden user-data, Mask, Parse, and `cloud-init schema` on
#             every rendered variant.
# Prerequisites: `make deps` (hack/deps.d/40-packer.sh, 30-cloudinit.sh).
# About 70 s warm; the first run debootstraps and caches the base root.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin:/root/go/bin
export PACKER_PLUGIN_PATH=${PACKER_PLUGIN_PATH:-/root/.cache/dynia/packer-plugins}
export DYNIA_REQUIRE_INTEGRATION=1
export CGO_ENABLED=0

for s in cloudinit/files/provision.sh cloudinit/files/bootstrap.sh; do
	bash -n "$s"
done
go test -count=1 -v -timeout 15m ./packer/ ./cloudinit/
