#!/usr/bin/env bash
# The quick-start demo: one master and local worker processes on loopback run a Monte Carlo
# estimate of pi. Builds what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
# --workspace, like scripts/test.sh: the CLI alone resolves some dependencies' features differently
# and would compile them again.
cargo build -q --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/debug/queuexec" demo "$@"
