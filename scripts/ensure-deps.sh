#!/usr/bin/env bash
# Installs what building and testing queuexec needs, when it is missing. Safe to run repeatedly.
#   - cmake and libsimde-dev: the embedded JavaScript engine (QuickJS via deno_core) builds WAMR
#     with cmake and uses the system simde headers instead of cloning them.
#   - Node.js and npm: the npm packages and their tests.
#   - Python 3 with pip and venv: the Python wheel and its tests.
set -euo pipefail

need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
[ -f /usr/include/simde/x86/sse2.h ] || [ -d /usr/include/simde ] || need_apt+=(libsimde-dev)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip python3-venv)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ensure-deps: installing ${need_apt[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      echo "ensure-deps: need root (or sudo) to install: ${need_apt[*]}" >&2
      exit 1
    fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "ensure-deps: cargo is missing; install Rust (https://rustup.rs) and run this again" >&2
  exit 1
fi
