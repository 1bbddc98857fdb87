#!/usr/bin/env bash
# README's test command: installs what is missing, builds from scratch with -Werror under
# AddressSanitizer + UndefinedBehaviorSanitizer, and runs the whole criterion suite and the Python
# binding's pytest suite (its torch tests need python3-torch: FG_TEST_TORCH=1 installs it), an
# install check, then every libFuzzer target of tests/fuzz/ for FG_FUZZ_SECONDS (20) each.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build-test"
"$top/tools/setup.sh" "$build" -Dwerror=true -Db_sanitize=address,undefined -Dbuildtype=debugoptimized
ninja -C "$build" >/dev/null
meson test -C "$build" --num-processes "$(nproc)" --print-errorlogs

# Install into a staging directory and use the installed tree as a user would: every installed
# header compiles, an example and the example plugin build with pkg-config's flags alone, the
# example runs, and the installed `flowgrad list` loads the plugin.  Quiet unless it fails.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
log="$stage/log"
install_fail() { echo "install check: $*" >&2; cat "$log" >&2; exit 1; }
meson install -C "$build" --no-rebuild --quiet --destdir "$root" >"$log" 2>&1 ||
  install_fail "meson install failed"
pc=$(find "$root" -name flowgrad.pc -print -quit)
bin=$(find "$root" -path '*/bin/flowgrad' -print -quit)
[ -n "$pc" ] && [ -n "$bin" ] || install_fail "flowgrad.pc or the flowgrad command is missing"
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH="${pc%/*}" PKG_CONFIG_SYSROOT_DIR="$root"
cflags=$(pkg-config --cflags flowgrad 2>"$log") && libs=$(pkg-config --libs flowgrad 2>"$log") ||
  install_fail "pkg-config cannot use the installed flowgrad.pc"
# the installed library is this sanitized build's: what uses it is built with the same flags
cc=(cc -std=c17 -Wall -Wextra -Werror -fsanitize=address,undefined -fno-sanitize-recover=all)
run=(env LD_LIBRARY_PATH="$libdir" ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1
     LSAN_OPTIONS="suppressions=$top/tests/lsan.supp")
# every installed header compiles on its own and the umbrella header includes it; as the umbrella
# includes the public headers only, a private header that got installed fails here too
headers=$(find "$root" -name '*.h' -path '*/include/flowgrad/*' ! -name flowgrad.h |
          sed 's|.*/include/flowgrad/||' | sort)
umbrella=$(find "$root" -path '*/include/flowgrad/flowgrad.h' -print -quit)
[ -n "$umbrella" ] || install_fail "include/flowgrad/flowgrad.h is not installed"
for h in $headers; do
  grep -q "^#include \"$h\"" "$umbrella" ||
    install_fail "$h is installed but flowgrad.h does not include it (private, or missing there)"
  printf '#include "%s"\nint main(void) { return 0; }\n' "$h" >"$stage/one.c"
  "${cc[@]}" $cflags -fsyntax-only "$stage/one.c" >"$log" 2>&1 || install_fail "$h does not compile alone"
done
printf '#include <flowgrad/flowgrad.h>\n' >"$stage/headers.c"
cp "$top/examples/softplus_gradcheck.c" "$top/examples/plugin_sinh_arcsinh.c" "$stage/"
"${cc[@]}" $cflags -fsyntax-only "$stage/headers.c" >"$log" 2>&1 ||
  install_fail "the installed headers do not compile"
"${cc[@]}" $cflags "$stage/softplus_gradcheck.c" $libs -o "$stage/example" >"$log" 2>&1 ||
  install_fail "examples/softplus_gradcheck.c does not build against the installed tree"
"${cc[@]}" $cflags -shared -fPIC "$stage/plugin_sinh_arcsinh.c" -lm -o "$stage/plugin.so" \
  >"$log" 2>&1 || install_fail "examples/plugin_sinh_arcsinh.c does not build as a plugin"
"${run[@]}" "$stage/example" >"$log" 2>&1 || install_fail "the installed example failed"
"${run[@]}" "$bin" list --plugin "$stage/plugin.so" >"$log" 2>&1 && grep -q '^sinh_arcsinh ' "$log" ||
  install_fail "the installed flowgrad command (list --plugin) did not load the plugin"
# the Python package (python3-dev and python3-numpy are installed above, so it is built): it is
# installed into /usr/bin/python3's site directory and works from there against the installed
# library (this build is sanitized: the uninstrumented interpreter preloads the runtimes)
ext=$(find "$root" -path '*-packages/flowgrad/_flowgrad*.so' -print -quit)
[ -n "$ext" ] || install_fail "the Python binding was not built or not installed"
env PYTHONPATH="$(dirname "$(dirname "$ext")")" LD_LIBRARY_PATH="$libdir" PYTHONDONTWRITEBYTECODE=1 \
    LD_PRELOAD="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)" \
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1 /usr/bin/python3 -c '
import sys, flowgrad
flow = flowgrad.Flow.from_spec(sys.argv[1])
assert flow.log_prob([[0.0, 0.5]]).shape == (1,) and flowgrad.__file__.startswith(sys.argv[2])
' "$top/examples/moons.flow" "$root" >"$log" 2>&1 || install_fail "the installed Python package does not work"
echo "install check: ok ($(find "$root" -type f | wc -l) files installed and used)"

# Fuzzing (README.md, "Fuzzing"): the targets of tests/fuzz/, built with clang and libFuzzer
# under ASan + UBSan in ./build-fuzz (the library instrumented for coverage), each run from its
# seed corpus (never written to: new inputs stay in build-fuzz) for FG_FUZZ_SECONDS.  A crash,
# a sanitizer report, a leak or an allocation past the limits fails its test; the input that
# did it is written as build-fuzz/tests/fuzz/crash-<target>-*.
fuzz="$top/build-fuzz"
# the install check pointed pkg-config at the staged tree: the fuzz build takes the system's
# packages (MPI's headers are found through pkg-config only)
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
CC=clang "$top/tools/setup.sh" "$fuzz" -Dfuzz=true -Dfuzz_seconds="${FG_FUZZ_SECONDS:-20}" \
  -Dtests=false -Dpython_binding=disabled -Dwerror=true -Db_sanitize=address,undefined \
  -Db_lundef=false -Dbuildtype=debugoptimized
ninja -C "$fuzz" >/dev/null
meson test -C "$fuzz" --suite fuzz --num-processes "$(nproc)" --print-errorlogs
