#!/usr/bin/env bash
# dynia-pull convergence and idle footprint (root): see docs/benchmarks.md.
exec bash "$(dirname "$0")/../bench-pull.sh"
