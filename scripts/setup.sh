#!/usr/bin/env bash
# Installs everything wavg needs from Debian's archive (Debian 12, as root). Idempotent: when every
# package is already present it only checks and returns in about a second.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake make pkg-config
  # libFuzzer targets (make fuzz)
  clang libclang-rt-14-dev
  # libraries
  libtorch-dev libopenblas0-pthread nlohmann-json3-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev
  # data parallel: c10d's ProcessGroupGloo.hpp includes Gloo's headers
  libgloo-dev
  # figures and independent references in tests
  gnuplot-nox python3 python3-numpy python3-torch
  # the benchmarks' own metric references: OGB's average precision, fastMRI's SSIM
  python3-sklearn python3-skimage
  # data sets (DESIGN.md §3)
  dataset-fashion-mnist wordnet-base dict-gcide
)

# The `schedulefree` package (PyPI), the reference of Schedule-Free AdamW in optim_breadth_test,
# in a venv over Debian's python3-torch: .venv/bin/python. Without it the test compares against a
# numpy transcription of the package's update instead.
setup_venv() {
  local root venv
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv="$root/.venv"
  "$venv/bin/python" -c 'import schedulefree' 2>/dev/null && return 0
  /usr/bin/python3 -m venv --system-site-packages "$venv" &&
    "$venv/bin/pip" install -q --no-deps schedulefree==1.4.1 ||
    echo "setup: warning: could not install schedulefree into $venv" >&2
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
