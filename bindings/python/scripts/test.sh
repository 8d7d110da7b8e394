#!/usr/bin/env bash
# Tests of the Python wheel: builds the extension (dev profile, shared target dir) into a
# virtualenv, runs mypy, checks that the wheel installs into a clean virtualenv, then runs pytest
# over bindings/python/tests and the cross-language tests in tests/python_interop (which need the
# CLI, built here with `cargo build -p queuexec-cli`, and the npm workspace, installed here with
# `npm install` when node_modules lacks it).
#
#   bash bindings/python/scripts/test.sh [pytest args...]
#
# Installs maturin, pytest, pytest-timeout and mypy into the virtualenv when they are missing.
# QUEUEXEC_PY_VENV overrides the virtualenv (default: target/python-venv); PYTHON the interpreter
# that creates it. QUEUEXEC_PY_SKIP_WHEEL=1 skips the clean-virtualenv wheel check;
# QUEUEXEC_PY_SKIP_INTEROP=1 runs the Python suite only.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
venv=${QUEUEXEC_PY_VENV:-$target/python-venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import maturin, pytest, pytest_timeout, mypy" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin>=1.9.4,<2" "pytest>=7" pytest-timeout "mypy>=1.8"
fi

echo "== building queuexec._native (dev profile)"
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin develop --quiet
"$venv/bin/python" -c "import queuexec, sys; print('queuexec', queuexec.__version__, 'on Python', sys.version.split()[0])"

echo "== mypy (strict) over the package and the examples"
"$venv/bin/python" -m mypy

if [ "${QUEUEXEC_PY_SKIP_WHEEL:-0}" != 1 ]; then
    echo "== the wheel installs into a clean virtualenv"
    wheels=$(mktemp -d)
    clean=$(mktemp -d)
    trap 'rm -rf "$wheels" "$clean"' EXIT
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" maturin build --quiet --profile dev --out "$wheels"
    "$python" -m venv "$clean/venv"
    "$clean/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$wheels"/queuexec-*.whl
    (cd "$clean" && "$clean/venv/bin/python" - <<'PY'
import queuexec, pathlib, secrets
package = pathlib.Path(queuexec.__file__).parent
assert (package / "py.typed").exists() and (package / "_native.pyi").exists(), "typing files are in the wheel"
with queuexec.Master(token=secrets.token_hex(8), transfer_encrypt_token=secrets.token_hex(16), announce=False) as m:
    assert m.push({"hello": "wheel"}) and m.stats().queued == 1
print("wheel", queuexec.__version__, "installs and runs from", package)
PY
    )
fi

suites=(bindings/python/tests)
if [ "${QUEUEXEC_PY_SKIP_INTEROP:-0}" != 1 ]; then
    echo "== the other front ends for tests/python_interop: the CLI and the npm packages"
    cargo build --quiet -p queuexec-cli
    if [ ! -e node_modules/queue-xec-master ] || [ ! -e node_modules/queue-xec-worker ]; then
        npm install --no-audit --no-fund
    elif ! node -e "require('queuexec-native')" 2>/dev/null; then
        npm run build
    fi
    suites+=(tests/python_interop)
fi

echo "== pytest"
"$venv/bin/python" -m pytest -p no:cacheprovider --timeout=300 "${suites[@]}" "$@"
