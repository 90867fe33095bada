#!/usr/bin/env bash
# Reserved IP failover in the sandbox (root): power off the holder N times
# under a request loop, with instant and with 5 s simulated assignment.
set -euo pipefail
cd "$(dirname "$0")/../.."
DYNIA_BIN_DIR="$PWD/bin" go test ./e2e -run XXX -bench Failover -benchtime "${DYNIA_BENCH_N:-5}x" -count=1 -timeout 40m -v \
  | grep -E 'Benchmark|outages|ok|FAIL'
