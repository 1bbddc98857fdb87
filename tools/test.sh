#!/usr/bin/env bash
# README's test command: installs what is missing, builds from scratch with -Werror under
# AddressSanitizer + UndefinedBehaviorSanitizer, and runs the whole criterion suite.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build-test"
"$top/tools/setup.sh" "$build" -Dwerror=true -Db_sanitize=address,undefined -Dbuildtype=debugoptimized
ninja -C "$build" >/dev/null
meson test -C "$build" --num-processes "$(nproc)" --print-errorlogs
