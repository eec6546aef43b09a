#!/usr/bin/env bash
# CTest's python_test (issue 23): builds and installs the Python package into the project's venv
# (python/install.sh), then runs its pytest suite. Arguments: the source root, the package's build
# folder (reused), the build's `wavg` (the suite compares the online bank with `wavg average`).
set -euo pipefail
root=$1 build=$2 cli=$3
bash "$root/python/install.sh" "$root" "$build"
cd "$build"  # not the source root: `import wavg` must find the installed package
WAVG_CLI=$cli exec "$root/.venv/bin/python" -m pytest -q -p no:cacheprovider "$root/tests/python"
