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
registry=$($dynia sandbox status -o json | sed -n 's/.*"registry": "\([^"]*\)".*/\1/p')
$dynia node create-ha --name demo --region nyc3 --size s-1vcpu-1gb --image "$registry/demo-app:v1"
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
echo
echo "Requests to the Reserved IP http://$rip/ (each line: the node that answered, and its release):"
failed=0
for _ in $(seq 1 9); do
  curl -s --max-time 2 "http://$rip/" || { echo "(no answer)"; failed=$((failed + 1)); }
done
echo
if [ "$failed" -gt 0 ]; then echo "make sandbox: $failed of 9 requests got no answer" >&2; exit 1; fi
echo "Next: bin/dynia app deploy --name demo --image $registry/demo-app:v2 | bin/dynia app status --name demo"
echo "      bin/dynia node list --name demo | bin/dynia sandbox status | docs/sandbox.md (break things) | bin/dynia sandbox down"
