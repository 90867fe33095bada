#!/usr/bin/env bash
# Packer v1.9.4 and packer-plugin-digitalocean v1.4.1, built from the Go module
# proxy by exact version (the proxy is the only reachable download site, and
# Debian's packer 1.6.6 cannot parse `required_plugins`), plus debootstrap for
# the image recipe test. Both binaries are cached under /root/.cache/dynia and
# installed as:
#   /usr/local/bin/packer
#   $PACKER_PLUGIN_PATH (default /root/.cache/dynia/packer-plugins)/github.com/digitalocean/digitalocean/
#       packer-plugin-digitalocean_v1.4.1_x5.0_linux_amd64 + _SHA256SUM
# A second run does nothing but stat files.
set -euo pipefail

# The sandbox does not build images.
if [[ ${DYNIA_DEPS_PROFILE:-} == sandbox ]]; then
	exit 0
fi

PACKER_VERSION=1.9.4
PLUGIN_VERSION=1.4.1
CACHE=/root/.cache/dynia
PLUGIN_DIR=${PACKER_PLUGIN_PATH:-$CACHE/packer-plugins}
PACKER_BIN=$CACHE/packer-v$PACKER_VERSION
PLUGIN_NAME=packer-plugin-digitalocean_v${PLUGIN_VERSION}_x5.0_linux_amd64
PLUGIN_DEST=$PLUGIN_DIR/github.com/digitalocean/digitalocean/$PLUGIN_NAME

export PATH=/usr/local/go/bin:$PATH
mkdir -p "$CACHE"

if ! command -v debootstrap >/dev/null; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y debootstrap
fi

# build_module MODULE@VERSION OUT: download one exact module version from the
# proxy (it refuses to list packer's versions, so never ask for @latest),
# copy it somewhere writable (the module cache is read-only) and build it.
build_module() {
	local mod=$1 out=$2 dir work
	dir=$(go mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [[ -z $dir ]]; then
		echo "40-packer: go mod download $mod gave no Dir" >&2
		return 1
	fi
	work=$(mktemp -d)
	trap 'chmod -R u+w "$work"; rm -rf "$work"' RETURN
	cp -r "$dir/." "$work/"
	chmod -R u+w "$work"
	# GOFLAGS=-mod=mod: the modules' go.sum may lack entries the newer
	# toolchain wants; GOTOOLCHAIN=local: build with the installed Go.
	(cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$out.tmp" .)
	mv "$out.tmp" "$out"
}

if [[ ! -x $PACKER_BIN ]]; then
	echo "40-packer: building packer v$PACKER_VERSION (about 2 minutes)" >&2
	build_module "github.com/hashicorp/packer@v$PACKER_VERSION" "$PACKER_BIN"
fi
if [[ "$(readlink -f /usr/local/bin/packer 2>/dev/null)" != "$PACKER_BIN" ]]; then
	ln -sf "$PACKER_BIN" /usr/local/bin/packer
fi

if [[ ! -x $PLUGIN_DEST || ! -s $PLUGIN_DEST"_SHA256SUM" ]]; then
	echo "40-packer: building packer-plugin-digitalocean v$PLUGIN_VERSION" >&2
	mkdir -p "$(dirname "$PLUGIN_DEST")"
	build_module "github.com/digitalocean/packer-plugin-digitalocean@v$PLUGIN_VERSION" "$PLUGIN_DEST"
	# Packer 1.9 refuses a plugin whose checksum file is missing or wrong.
	sha256sum "$PLUGIN_DEST" | cut -d' ' -f1 >"$PLUGIN_DEST"_SHA256SUM
fi
