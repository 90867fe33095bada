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

$dynia sandbox up
$dynia node create-ha --name demo --region nyc3 --size s-1vcpu-1gb
$dynia node add --name demo --count 2
$dynia node list --name demo

rip=$($dynia cluster get --name demo -o json | sed -n 's/.*"reserved_ip": "\([^"]*\)".*/\1/p')
echo
echo "Requests to the Reserved IP http://$rip/ (each line: the node that answered):"
for _ in $(seq 1 9); do
  curl -s --max-time 2 "http://$rip/" || echo "(no answer)"
done
echo
echo "Next: bin/dynia node list --name demo | bin/dynia sandbox status | docs/sandbox.md (break things) | bin/dynia sandbox down"
