#!/usr/bin/env bash
# Every test: unit, end-to-end, interop (official Lark Node SDK), then the
# whole suite again under ASan+UBSan, the server under valgrind, then a short
# libFuzzer run per target.
# Usage: scripts/test.sh [--quick]   (--quick: the plain build only)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test

echo "== build (RelWithDebInfo) and test"
scripts/build.sh build
(cd build && ctest --output-on-failure -j2)
[ "${1:-}" = --quick ] && exit 0

echo "== build Release (-O3 warnings differ; the benchmark uses this build)"
CG_BUILD_TYPE=Release scripts/build.sh build-release -DCG_BUILD_TESTS=OFF

echo "== build with ASan+UBSan (clang) and test"
CC=clang-14 scripts/build.sh build-asan -DCG_ASAN=ON -DCG_UBSAN=ON
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j2)

echo "== valgrind memcheck on the real server"
scripts/valgrind_smoke.sh

echo "== fuzz (libFuzzer, ${CG_FUZZ_SECONDS:-30} s per target)"
CC=clang-14 scripts/build.sh build-fuzz -DCG_FUZZ=ON -DCG_BUILD_TESTS=OFF
for f in build-fuzz/tests/fuzz/fuzz_*; do
  [ -x "$f" ] || continue
  name=$(basename "$f"); corpus=tests/fuzz/corpus/${name#fuzz_}
  work=$(mktemp -d); cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  "$f" -max_total_time="${CG_FUZZ_SECONDS:-30}" -max_len=65536 "$work" >"$work.log" 2>&1 \
    || { tail -50 "$work.log"; echo "fuzz: $name found a crash"; exit 1; }
  echo "fuzz: $name $(grep -o 'stat::number_of_executed_units: [0-9]*' "$work.log" || tail -1 "$work.log")"
  rm -rf "$work" "$work.log"
done
echo "all tests passed"
