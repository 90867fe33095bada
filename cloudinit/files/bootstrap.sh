#!/bin/bash
# bootstrap.sh: first boot of a --bootstrap droplet (a stock debian-12-x64 or
# ubuntu-24-04-x64 image, no dynia snapshot). cloud-init's write_files put
# this script, provision.sh, the unit and the dynia config in place; runcmd
# runs this. It provisions the node exactly as the Packer image is
# provisioned, fetches the dynia-pull binary the CLI uploaded to the bucket
# through a presigned URL, checks its sha256, and starts it.
#
# The URL is a bearer credential until it expires, so it lives in a 0600 file
# (never on a command line, never in a log) and is deleted once used.
set -euo pipefail

DIR=/usr/local/lib/dynia
URL_FILE=/etc/dynia/pull-binary.url
SUM_FILE=/etc/dynia/pull-binary.sha256
DEST=/usr/local/bin/dynia-pull

DYNIA_PROVISION_MODE=bootstrap DYNIA_PULL_SRC= DYNIA_UNIT_SRC=$DIR/dynia-pull.service \
	"$DIR/provision.sh"

tmp=$(mktemp /usr/local/bin/.dynia-pull.XXXXXX)
trap 'rm -f "$tmp"' EXIT
echo "bootstrap: downloading dynia-pull" >&2
# curl reads the URL from a config file: `url = "..."`. A presigned URL has
# no quotes or backslashes (the CLI checks), so it needs no escaping.
printf 'url = "%s"\n' "$(cat "$URL_FILE")" |
	curl --fail --silent --show-error --location --retry 10 --retry-connrefused \
		--retry-delay 3 --max-time 300 --output "$tmp" --config -
echo "$(cat "$SUM_FILE")  $tmp" | sha256sum --check --quiet --strict -
chmod 0755 "$tmp"
mv -f "$tmp" "$DEST"
rm -f "$URL_FILE"
"$DEST" version >&2
if [[ -d /run/systemd/system ]]; then
	# --no-block: the unit is Type=notify, so a blocking start would hold
	# cloud-init until dynia-pull's READY=1 (up to TimeoutStartSec) and,
	# under set -e, fail it if dynia-pull exits first (systemd retries it).
	systemctl enable --now --no-block dynia-pull.service
	echo "bootstrap: dynia-pull starting" >&2
else
	# Not booted with systemd (the image test's chroot): enable only.
	systemctl enable dynia-pull.service
	echo "bootstrap: dynia-pull enabled (no running systemd to start it)" >&2
fi
