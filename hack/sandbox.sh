#!/usr/bin/env bash
# `sudo make sandbox`: install what the sandbox needs, build, bring the local
# sandbox up and run the main job: a cluster created, grown, listed and
# served through its Reserved IP.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin:/root/go/bin"
if [ "$(id -u)" != 0 ]; then echo "make sandbox needs root (network namespaces): sudo make sandbox" >&2; exit 2; fi

make --no-print-directory deps-sandbox
make --no-print-directory build
dynia=bin/dynia

# Every step is safe to re-run: `sandbox up` reuses a running sandbox,
# create-ha finds the cluster, and nodes are added only up to three.
# The docker runtime (a dockerd per droplet) runs demo-app:v1 from the
# sandbox's registry on every node; `dynia app deploy` rolls out others.
$dynia sandbox up
status=$($dynia sandbox status -o json)
field() { printf '%s\n' "$status" | sed -n "s/.*\"$1\": \"\([^\"]*\)\".*/\1/p" | head -1; }
registry=$(field registry)
# The sandbox's Cloudflare zone (dns_zones.cloudflare) and its ACME CA's root.
domain="demo.$(field cloudflare)"
root_ca=$(field acme_root_ca)
# One command: the droplet, the Reserved IP, the app, the A record on the sandbox's Cloudflare
# and a certificate from the sandbox's Pebble.
$dynia node create-ha --name demo --region nyc3 --size s-1vcpu-1gb --image "$registry/demo-app:v1" \
  --dns-provider cloudflare --dns-record "$domain" --domain "$domain"
have=$($dynia node list --name demo --no-header --format '{{.ID}}' | grep -c . || true)
if [ "$have" -lt 3 ]; then
  $dynia node add --name demo --count $((3 - have))
fi
$dynia node list --name demo

rip=$($dynia cluster get --name demo -o json | sed -n 's/.*"reserved_ip": "\([^"]*\)".*/\1/p')
if [ -z "$rip" ]; then echo "make sandbox: cluster demo has no Reserved IP" >&2; exit 1; fi
# Bounded: 30 tries, one a second.
for i in $(seq 1 30); do
  curl -s --max-time 2 -o /dev/null "http://$rip/" && break
  if [ "$i" = 30 ]; then echo "make sandbox: the Reserved IP $rip did not answer in 30 s" >&2; exit 1; fi
  sleep 1
done
https=(curl -sS --max-time 5 --cacert "$root_ca" --resolve "$domain:443:$rip")
echo
echo "Requests to https://$domain/ through the Reserved IP $rip, as a browser resolving $domain would"
echo "(each line: the node that answered, and its release):"
echo "  ${https[*]} https://$domain/"
failed=0
for _ in $(seq 1 9); do
  "${https[@]}" "https://$domain/" || { echo "(no answer)"; failed=$((failed + 1)); }
done
if [ "$failed" -gt 0 ]; then echo "make sandbox: $failed of 9 HTTPS requests got no answer" >&2; exit 1; fi
redirect=$(curl -s --max-time 5 -o /dev/null -w '%{http_code} %{redirect_url}' -H "Host: $domain" "http://$rip/")
echo "Plain HTTP: $redirect"
echo
echo "Next: bin/dynia app deploy --name demo --image $registry/demo-app:v2 | bin/dynia app status --name demo"
echo "      bin/dynia node list --name demo | bin/dynia sandbox status | docs/sandbox.md (break things) | bin/dynia sandbox down"
