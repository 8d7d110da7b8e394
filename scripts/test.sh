#!/usr/bin/env bash
# Runs every test of queuexec: lints, Rust (core, CLI, JS runtime), mDNS in network namespaces,
# the npm packages, the Python wheel and the cross-language tests (tests/python_interop, run by
# the Python step). Installs what it needs first (scripts/ensure-deps.sh).
#
# Builds the dependency tree twice and no more: once checked (clippy) and once built by
# `cargo build --workspace`, which the Rust tests, the Node addon (plain `cargo build -p
# queuexec-node`, no napi `--target` tree), the wheel (maturin in the same target dir and dev
# profile) and the CLI all reuse. Two things keep it so: every build runs in the Python test
# virtualenv with the PYO3_* variables maturin sets, and the Node and Python crates pin the
# features that the workspace as a whole resolves (see their Cargo.toml).
#
# Every test has a deadline: nextest's slow-timeout (.config/nextest.toml), node --test-timeout
# (bindings/node/package.json), pytest-timeout (pyproject.toml).
#
# Ends with "test.sh: N passed, N failed" counting its steps (each runner prints its own count above).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
started=$(date +%s)

passed=0
current=""
step_started=0
step_done() {
  if [ -n "$current" ]; then
    passed=$((passed + 1))
    printf '<== %s: ok in %ss\n' "$current" $(($(date +%s) - step_started)) >&2
  fi
}
step() {
  step_done
  current=$*
  step_started=$(date +%s)
  printf '\n==> %s\n' "$current" >&2
}
finish() {
  local rc=$?
  local wall=$(($(date +%s) - started))
  if [ "$rc" -eq 0 ]; then
    step_done
    printf '\ntest.sh: every step passed in %ss (wall)\n' "$wall"
    printf 'test.sh: %d passed, 0 failed\n' "$passed"
  else
    printf '\ntest.sh: step "%s" failed with exit code %d after %ss (wall)\n' "$current" "$rc" "$wall"
    printf 'test.sh: %d passed, 1 failed\n' "$passed"
  fi
}
trap finish EXIT

step "dependencies (scripts/ensure-deps.sh)"
bash scripts/ensure-deps.sh

step "Python virtualenv and npm tooling"
export QUEUEXEC_PY_VENV=${QUEUEXEC_PY_VENV:-$target/python-venv}
bash bindings/python/scripts/test.sh --venv-only
# The whole run happens inside the virtualenv, with the variables maturin gives pyo3's build
# scripts (PYO3_CONFIG_FILE too, once maturin has written it below): pyo3 then sees the same
# environment in every cargo invocation and is compiled once.
export VIRTUAL_ENV="$QUEUEXEC_PY_VENV" PATH="$QUEUEXEC_PY_VENV/bin:$PATH"
export PYO3_PYTHON="$QUEUEXEC_PY_VENV/bin/python" PYTHON_SYS_EXECUTABLE="$QUEUEXEC_PY_VENV/bin/python"
export PYO3_BUILD_EXTENSION_MODULE=1
PYO3_ENVIRONMENT_SIGNATURE=$(python -c 'import sys; print(f"cpython-{sys.version_info[0]}.{sys.version_info[1]}-64bit")')
export PYO3_ENVIRONMENT_SIGNATURE
# Scripts off: the addon is built below, after the Rust build it reuses.
npm install --no-audit --no-fund --ignore-scripts

step "format and lints (rustfmt, clippy, eslint, ruff)"
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
npx eslint
ruff check
ruff format --check

step "Rust build (the one build the tests, the addon, the wheel and the CLI share)"
# maturin first: it writes the pyo3 config file that the plain cargo builds must then name too.
maturin develop
pyver=$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
for config in "$target"/maturin/pyo3-config-*-"$pyver"*.txt; do
  [ -f "$config" ] && export PYO3_CONFIG_FILE="$config"
done
[ -n "${PYO3_CONFIG_FILE:-}" ] || echo "test.sh: maturin wrote no $target/maturin/pyo3-config-*-$pyver*.txt; pyo3 will be compiled again" >&2
cargo build --workspace

step "Rust tests (nextest)"
cargo nextest run --workspace
step "Rust doctests"
cargo test --workspace --doc

step "mDNS discovery, inside network namespaces made for the test"
if [ "$(id -u)" -eq 0 ]; then
  # As root (CI) namespaces must work: tests/netns-mdns.sh fails loudly when they cannot be made.
  bash tests/netns-mdns.sh "$target/debug/queuexec"
elif [ -n "${CI:-}" ]; then
  echo "netns-mdns: FAILED: CI must run as root to make network namespaces (ip netns add)" >&2
  exit 1
else
  echo "netns-mdns: NOT RUN: needs root for ip netns (run scripts/test.sh as root to include it)" >&2
fi

step "Reach across NATs: a relay, three NATs (one symmetric), inside network namespaces made for the test"
if [ "$(id -u)" -eq 0 ]; then
  # Its part e runs the npm packages: the addon is copied from the Rust build first.
  npm run build
  bash tests/netns-nat.sh "$target/debug/queuexec"
elif [ -n "${CI:-}" ]; then
  echo "netns-nat: FAILED: CI must run as root to make network namespaces (ip netns add)" >&2
  exit 1
else
  echo "netns-nat: NOT RUN: needs root for ip netns and iptables (run scripts/test.sh as root to include it)" >&2
fi

step "npm packages (addon copied from the Rust build, node --test)"
npm run build
npm test

step "dashboard in headless Chromium (tests/dashboard-browser.js, WebDriver)"
# Debian's chromium + chromedriver (scripts/ensure-deps.sh); the script ends itself after 280 s,
# and timeout(1) is the backstop. Its screenshot goes to $target/dashboard.png.
timeout --kill-after=10 330 node tests/dashboard-browser.js "$target/debug/queuexec"

step "Python wheel and the cross-language tests (tests/python_interop)"
bash bindings/python/scripts/test.sh
