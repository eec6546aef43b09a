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

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ $status == "install ok installed" ]] || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: missing Debian packages: ${missing[*]}; run 'sudo scripts/setup.sh' (needs root)" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
