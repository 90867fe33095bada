#!/usr/bin/env bash
# Measures dynia-pull convergence latency (1, 3, 10 nodes) and idle RSS/CPU
# in network namespaces with real haproxy, keepalived and versitygw. Root.
# Prints BENCH lines; copy them into docs/benchmarks.md ("dynia-pull").
set -euo pipefail
cd "$(dirname "$0")/.."
DYNIA_BENCH=1 go test ./internal/pull/ -run '^TestBenchPull$' -count=1 -v -timeout 30m | grep -E '^BENCH|^(ok|FAIL|---)'
