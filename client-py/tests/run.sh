#!/usr/bin/env bash
# Build and install mitzo_client into a venv, then run its pytest suite
# against the real mitzod, `mypy --strict` on the typed example and the
# package, and stubtest of the hand-written stub against the compiled module.
#
#   client-py/tests/run.sh [pytest args...]
#
# Env: MITZO_BIN (the server binary; default <repo>/target/debug/mitzod,
# built if missing), MITZO_PY_VENV (default <repo>/target/py-venv),
# PYTHON (default python3), MITZO_PY_INSTALL_ONLY=1 (install, run nothing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
client="$(dirname "$here")"
repo="$(dirname "$client")"
venv="${MITZO_PY_VENV:-$repo/target/py-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest mypy
# Always rebuild: the installed wheel must be this checkout's code.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$client"

# Only the install (the e2e stage needs the `mitzo` command).
[ "${MITZO_PY_INSTALL_ONLY:-0}" = 1 ] && exit 0

status=0
# Run from the tests dir so `import mitzo_client` is the installed wheel,
# not the source tree (which has no compiled _native).
(cd "$here" && "$venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs "$@") || status=$?

echo "mypy --strict examples/typed_usage.py"
(cd "$client" && "$venv/bin/python" -m mypy --strict --no-incremental examples/typed_usage.py python/mitzo_client) || status=$?

# The hand-written stub against the compiled module (run outside the source
# tree, so the installed package is what is checked).
echo "python -m mypy.stubtest mitzo_client._native"
(cd "$here" && "$venv/bin/python" -m mypy.stubtest mitzo_client._native) || status=$?
exit "$status"
