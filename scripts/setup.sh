#!/usr/bin/env bash
# Installs everything wavg needs from Debian's archive (Debian 12, as root). Idempotent: when every
# package is already present it only checks and returns in about a second.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config ccache
  # libFuzzer targets (make fuzz)
  clang libclang-rt-14-dev
  # libraries
  libtorch-dev libopenblas0-pthread nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev
  # data parallel: c10d's ProcessGroupGloo.hpp includes Gloo's headers
  libgloo-dev
  # figures and independent references in tests
  gnuplot-nox python3 python3-numpy python3-torch
  # the Python package (python/wavg, issue 23): torch's pybind11 (2.10) and its pytest suite
  pybind11-dev python3-pytest
  # the benchmarks' own metric references: OGB's average precision, fastMRI's SSIM
  python3-sklearn python3-skimage
  # data sets (DESIGN.md §3)
  dataset-fashion-mnist wordnet-base dict-gcide
)

# PyPI packages for the tests' references (scripts/requirements-test.txt, every one pinned), in a
# venv over Debian's python3 (--system-site-packages, so python3-torch stays): .venv/bin/python.
# Every pip call runs with a constraints file that pins torch to the installed one: Debian's torch
# reports 1.13.0a0 (a pre-release), and any `torch>=...` requirement would otherwise fetch a 2.x wheel.
# A stamp of the requirements file makes the check take milliseconds when nothing changed.
setup_venv() {
  local root venv req stamp constraints
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv="$root/.venv"
  req="$root/scripts/requirements-test.txt"
  stamp="$venv/.wavg-requirements"
  if [[ -x $venv/bin/python ]] && cmp -s "$req" "$stamp"; then return 0; fi
  [[ -x $venv/bin/python ]] || /usr/bin/python3 -m venv --system-site-packages "$venv" || {
    echo "setup: error: could not create the venv $venv" >&2; return 1; }
  constraints="$venv/constraints.txt"
  /usr/bin/python3 -c 'import torch; print("torch==" + torch.__version__)' > "$constraints"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-deps -c "$constraints" -r "$req" || {
    echo "setup: error: pip could not install $req into $venv" >&2; return 1; }
  cp "$req" "$stamp"
}

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  setup_venv
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: missing Debian packages: ${missing[*]}; run 'sudo scripts/setup.sh' (needs root)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
setup_venv
