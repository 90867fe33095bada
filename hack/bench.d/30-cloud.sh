#!/usr/bin/env bash
# DigitalOcean API calls per operation (against the simulator).
set -euo pipefail
cd "$(dirname "$0")/../.."
go test ./internal/cloud -run XXX -bench . -benchtime 20x -count=1 | grep -E 'Benchmark|ok'
