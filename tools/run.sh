#!/usr/bin/env bash
# README's main-job command: installs what is missing (Debian 12), builds an optimised flowgrad,
# trains the small Glow of examples/glow-fmnist.flow on Fashion-MNIST for FG_MAIN_MINUTES minutes
# (default 5) on every core, prints the test bits/dim, and writes run/samples.png,
# run/graph.dot + run/graph.svg and run/checkpoint.safetensors.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build"
"$top/tools/setup.sh" "$build" -Dbuildtype=release -Dtests=false
ninja -C "$build" >/dev/null
cd "$top"
"$build/tools/flowgrad" train examples/glow-fmnist.flow --minutes "${FG_MAIN_MINUTES:-5}" --out run
