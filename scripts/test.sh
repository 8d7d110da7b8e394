#!/usr/bin/env bash
# Runs every test of queuexec: Rust (core, CLI, JS runtime), the npm packages, the Python wheel,
# and the cross-language tests. Installs what it needs first. QUEUEXEC_SLOW=1 adds slow suites.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh

step() { printf '\n==> %s\n' "$*" >&2; }

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets -q -- -D warnings

step "Rust tests"
cargo test --workspace

step "mDNS discovery, inside network namespaces made for the test"
if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1; then
  bash tests/netns-mdns.sh target/debug/queuexec
else
  echo "netns-mdns: skipped (needs root and iproute2's ip netns)"
fi

if [ -f bindings/node/package.json ]; then
  step "npm packages"
  npm install --no-audit --no-fund
  npm test
fi

if [ -f bindings/python/scripts/test.sh ]; then
  step "Python wheel"
  bash bindings/python/scripts/test.sh
fi

if [ -f tests/run.sh ]; then
  step "cross-language tests"
  bash tests/run.sh
fi
