#!/usr/bin/env bash
# The quick-start demo: one master and local worker processes on loopback run a Monte Carlo
# estimate of pi. Builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build -q -p queuexec-cli
exec target/debug/queuexec demo "$@"
