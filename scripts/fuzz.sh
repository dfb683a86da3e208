#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for a bounded time; fails on any crash, panic, hang or
# leak of memory past the limit. Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 60).
# FUZZ_TARGETS="cursor multipart" narrows the run. See docs/testing.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
read -r -a targets <<<"${FUZZ_TARGETS:-multipart tus_headers scan_signatures scan_zip cursor}"

# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer=…, sancov passes); the one
# stable toolchain accepts them when told it is bootstrapping.
export RUSTC_BOOTSTRAP=1
# The fuzz crate is its own workspace with its own (instrumented) build.
export CARGO_TARGET_DIR="$PWD/fuzz/target"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi

# No AddressSanitizer: the crate forbids unsafe code, so it would only slow the build
# and the runs; panics, overflows (debug assertions on), hangs and memory are what we look for.
flags=(--sanitizer none --debug-assertions)
logs=fuzz/target/logs
mkdir -p "$logs"
started=$SECONDS
if ! cargo fuzz build "${flags[@]}" >"$logs/build.log" 2>&1; then
  tail -n 40 "$logs/build.log"
  echo "fuzz: the targets do not build"
  exit 1
fi
echo "fuzz: targets built in $((SECONDS - started))s"
failed=0
for target in "${targets[@]}"; do
  # New inputs go to a scratch corpus; the committed seeds in fuzz/corpus stay as they are.
  scratch=fuzz/target/corpus/$target
  mkdir -p "$scratch" "fuzz/corpus/$target"
  log=$logs/$target.log
  if cargo fuzz run "${flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    echo "fuzz $target: ok, ${runs:-?} runs in ${seconds}s"
  else
    echo "fuzz $target: FAILED (log $log; the input is in fuzz/artifacts/$target/)"
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 || tail -n 30 "$log"
    failed=1
  fi
done
exit "$failed"
