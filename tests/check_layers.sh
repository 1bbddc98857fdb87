#!/usr/bin/env bash
# Layers run one way: core <- ops <- flows <- frontends <- tools.  Fails, naming file and line,
# when a file includes a header from a layer above its own.
#   tests/check_layers.sh [SOURCE_ROOT]     check the tree (default: this checkout)
#   tests/check_layers.sh --self-test       plant a back-edge in a scratch tree; must be caught
set -euo pipefail
layers=(core ops flows frontends tools)

check_tree() {
  local root=$1 found=0
  for ((i = 0; i < ${#layers[@]}; i++)); do
    local above=("${layers[@]:i+1}")
    [ ${#above[@]} -gt 0 ] || continue
    local pat
    pat=$(IFS='|'; echo "${above[*]}")
    local hits
    hits=$(cd "$root" && grep -rnE "^[[:space:]]*#[[:space:]]*include[[:space:]]+[\"<]($pat)/" \
             "${layers[i]}" --include='*.c' --include='*.h' --include='*.def' || true)
    if [ -n "$hits" ]; then
      echo "back-edge: ${layers[i]}/ includes from a layer above it ($pat):" >&2
      echo "$hits" >&2
      found=1
    fi
  done
  return $found
}

if [ "${1:-}" = "--self-test" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  mkdir -p "$scratch"/{core/ir,ops,flows,frontends,tools}
  echo '#include "core/status.h"' >"$scratch/ops/ok.c"
  check_tree "$scratch" 2>/dev/null || { echo "self-test: a clean tree was rejected" >&2; exit 1; }
  echo '#include "flows/flow.h"' >"$scratch/core/ir/bad.c"
  if check_tree "$scratch" 2>/dev/null; then
    echo "self-test: core/ir/bad.c includes flows/ and was not caught" >&2
    exit 1
  fi
  echo "self-test: ok"
  exit 0
fi

root=${1:-"$(cd "$(dirname "$0")/.." && pwd)"}
check_tree "$root"
echo "layers: ok (core <- ops <- flows <- frontends <- tools)"
