#!/usr/bin/env bash
# queuexec beside BullMQ, Celery and Piscina in one run, on this machine (loopback only).
#
#   scripts/bench.sh            # the full run (20-40 minutes on 2 cores)
#   scripts/bench.sh --quick    # fewer jobs and samples: a few minutes
#   scripts/bench.sh --no-build # use the release artifacts already built
#   scripts/bench.sh --only S1,S2   # some scenarios only
#
# Installs what the build needs (scripts/ensure-deps.sh) and the peers outside the tracked files
# (bench/deps.sh: redis-server from apt, bullmq,
# ioredis and piscina from npm into bench/.deps, celery[redis] and matplotlib from pip into the
# venv bench/.venv), builds the release CLI, Node addon and wheel (the wheel into bench/.venv),
# starts its own redis-server on a free loopback port, runs S1-S6 (bench/driver.py), prints a
# table with ratios, and writes bench/results.json and bench/s6.png.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=1
args=()
for a in "$@"; do
  case "$a" in
    --no-build) build=0 ;;
    *) args+=("$a") ;;
  esac
done

# What building queuexec needs (cmake and libsimde-dev for the JS engine, a C compiler, Node,
# Python), then the peers it is compared against.
bash scripts/ensure-deps.sh
bash bench/deps.sh
# The workspace packages (the addon is built below, in release mode).
[ -d node_modules/queue-xec-master ] || npm install --ignore-scripts --no-audit --no-fund --silent

venv="$root/bench/.venv"
export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
export PYO3_PYTHON="$venv/bin/python" PYTHON_SYS_EXECUTABLE="$venv/bin/python" PYO3_BUILD_EXTENSION_MODULE=1
PYO3_ENVIRONMENT_SIGNATURE=$("$venv/bin/python" -c 'import sys; print(f"cpython-{sys.version_info[0]}.{sys.version_info[1]}-64bit")')
export PYO3_ENVIRONMENT_SIGNATURE
if [ "$build" = 1 ]; then
  echo "bench: building release artifacts (CLI, Node addon, wheel)" >&2
  # The CLI and the addon in one cargo invocation (they share their dependency tree); maturin
  # builds the wheel's library itself (its own flags) and installs it into bench/.venv.
  cargo build --release -p queuexec-cli -p queuexec-node
fi
# The addon and the editable wheel's library live in the source tree, where scripts/test.sh
# puts debug builds: put the release ones in place (with --no-build, cargo and maturin find
# them up to date and only copy them; the driver refuses a debug build either way).
node bindings/node/scripts/build-native.js --release
maturin develop --release
target=$(cargo metadata --format-version 1 --no-deps | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
export QUEUEXEC_BENCH_CLI="$target/release/queuexec"
[ -x "$QUEUEXEC_BENCH_CLI" ] || { echo "bench: no release CLI at $QUEUEXEC_BENCH_CLI (run without --no-build)" >&2; exit 1; }
exec "$venv/bin/python" bench/driver.py "${args[@]}"
