#!/usr/bin/env bash
# Installs what scripts/bench.sh compares queuexec against, outside the tracked files:
#   redis-server (apt), bullmq + ioredis + piscina (npm, into bench/.deps/), celery[redis] and
#   matplotlib (pip, into the venv bench/.venv/, which also gets the queuexec wheel), and
#   linux-perf for profiling (apt, optional). Both folders are ignored by git. Quiet when all is
#   there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
say() { echo "bench-deps: $*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v perf >/dev/null 2>&1 || need_apt+=(linux-perf)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (apt)"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

mkdir -p "$here/.deps"
if [ ! -d "$here/.deps/node_modules/bullmq" ] || [ ! -d "$here/.deps/node_modules/piscina" ]; then
  say "installing bullmq 6.7, ioredis, piscina (npm, into bench/.deps)"
  [ -f "$here/.deps/package.json" ] || echo '{"name":"queuexec-bench-peers","private":true}' >"$here/.deps/package.json"
  (cd "$here/.deps" && npm install --no-audit --no-fund --no-progress --silent bullmq@6.7.0 ioredis@5 piscina@4 >/dev/null)
fi

if [ ! -x "$here/.venv/bin/python" ]; then
  say "making bench/.venv"
  python3 -m venv "$here/.venv"
fi
if ! "$here/.venv/bin/python" -c 'import celery, redis, matplotlib, maturin' >/dev/null 2>&1; then
  say "installing celery[redis], matplotlib, maturin (pip, into bench/.venv)"
  "$here/.venv/bin/pip" install -q --disable-pip-version-check 'celery[redis]==5.*' matplotlib 'maturin>=1.5,<2'
fi
