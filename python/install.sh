#!/usr/bin/env bash
# Builds and installs the Python package into the project's venv: pip install . through
# scikit-build-core, without build isolation (torch is never a build requirement) and under the
# constraint scripts/setup.sh writes (torch pinned to the installed one). Arguments: the source
# root, the package's build folder (reused: the libraries are rebuilt only when they change).
set -euo pipefail
root=$1 build=$2
venv=$root/.venv
[[ -x $venv/bin/python && -f $venv/constraints.txt ]] || {
  echo "wavg: error: $venv (with constraints.txt) is missing: run scripts/setup.sh" >&2; exit 1; }
"$venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --no-deps \
  -c "$venv/constraints.txt" --config-settings=build-dir="$build" "$root"
