#!/usr/bin/env bash
# README's main-job command: installs what is missing, builds an optimised flowgrad and runs the
# main example (until the training command lands: a graph whose gradients the engine derives,
# runs and checks against central differences).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
"$top/tools/setup.sh" "$build" -Dbuildtype=release -Dtests=false
ninja -C "$build" >/dev/null
"$build/examples/softplus_gradcheck"
