#!/usr/bin/env bash
# Tests of the Python wheel: builds the extension (dev profile, shared target dir) into a
# virtualenv, runs ruff and mypy, checks that the wheel installs into a clean virtualenv, then
# runs pytest over bindings/python/tests and the cross-language tests in tests/python_interop
# (which need the CLI, built here with `cargo build --workspace --bins`, and the npm workspace,
# installed here with `npm install` when node_modules lacks it).
#
#   bash bindings/python/scripts/test.sh [pytest args...]
#   bash bindings/python/scripts/test.sh --venv-only    # make the virtualenv and its tools, then stop
#
# Installs maturin, pytest, pytest-timeout, mypy and ruff into the virtualenv when they are
# missing. QUEUEXEC_PY_VENV overrides the virtualenv (default: target/python-venv); PYTHON the
# interpreter that creates it. QUEUEXEC_PY_SKIP_WHEEL=1 skips the clean-virtualenv wheel check;
# QUEUEXEC_PY_SKIP_INTEROP=1 runs the Python suite only.
#
# Every cargo build here runs inside the virtualenv with the same PYO3_* variables maturin sets,
# and the crate pins its features to the workspace's (bindings/python/Cargo.toml), so maturin
# reuses what `cargo build --workspace` compiled instead of compiling the tree again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
venv=${QUEUEXEC_PY_VENV:-$target/python-venv}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import maturin, pytest, pytest_timeout, mypy, ruff" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "maturin>=1.9.4,<2" "pytest>=7" "pytest-timeout>=2.3" "mypy>=1.8" "ruff>=0.17,<0.18"
fi
[ "${1:-}" = --venv-only ] && exit 0

export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH"
export PYO3_PYTHON="$venv/bin/python" PYTHON_SYS_EXECUTABLE="$venv/bin/python" PYO3_BUILD_EXTENSION_MODULE=1
PYO3_ENVIRONMENT_SIGNATURE=$("$venv/bin/python" -c 'import sys; print(f"cpython-{sys.version_info[0]}.{sys.version_info[1]}-64bit")')
export PYO3_ENVIRONMENT_SIGNATURE

echo "== ruff over the Python code (bindings/python, tests/)"
ruff check

echo "== building queuexec._native (dev profile)"
maturin develop
python -c "import queuexec, sys; print('queuexec', queuexec.__version__, 'on Python', sys.version.split()[0])"

echo "== mypy (strict) over the package and the examples"
python -m mypy

if [ "${QUEUEXEC_PY_SKIP_WHEEL:-0}" != 1 ]; then
    echo "== the wheel installs into a clean virtualenv"
    wheels=$(mktemp -d)
    clean=$(mktemp -d)
    trap 'rm -rf "$wheels" "$clean"' EXIT
    maturin build --profile dev --out "$wheels"
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
    # --workspace, not -p queuexec-cli: the CLI alone resolves syn with other features.
    cargo build --workspace --bins
    if [ ! -e node_modules/queue-xec-master ] || [ ! -e node_modules/queue-xec-worker ]; then
        npm install --no-audit --no-fund
    elif ! node -e "require('queuexec-native')" 2>/dev/null; then
        npm run build
    fi
    export QUEUEXEC_CLI=${QUEUEXEC_CLI:-$target/debug/queuexec}
    suites+=(tests/python_interop)
fi

echo "== pytest (a default deadline per test: [tool.pytest.ini_options] timeout in pyproject.toml)"
python -m pytest -p no:cacheprovider "${suites[@]}" "$@"
