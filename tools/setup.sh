#!/usr/bin/env bash
# Installs the Debian 12 packages flowgrad builds with (idempotent: quiet and quick when they
# are present) and configures a build directory.
#   tools/setup.sh [BUILD_DIR] [meson options...]
set -euo pipefail

packages=(gcc meson ninja-build pkg-config libffi-dev libgraphviz-dev graphviz libxxhash-dev
          libcriterion-dev libopenblas-dev libdnnl-dev libpng-dev zlib1g-dev
          libcjson-dev dataset-fashion-mnist
          openmpi-bin libopenmpi-dev  # data-parallel training under mpirun (optional in meson)
          python3-dev python3-numpy python3-pytest  # the Python binding and its tests
          clang libclang-rt-14-dev)                 # the libFuzzer targets (tests/fuzz/)
# The binding's converter tests compare with the PyTorch reference and skip themselves without
# torch; FG_TEST_TORCH=1 installs it too (169 packages, about 570 MB on disk).
if [ "${FG_TEST_TORCH:-0}" = 1 ]; then
  packages+=(python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-"$top/build"}
shift || true
# Configure from scratch so a stale directory never hides a broken build.
rm -rf "$build"
meson setup "$build" "$top" "$@" >/dev/null
echo "setup: configured $build"
