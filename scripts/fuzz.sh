#!/usr/bin/env bash
# Coverage-guided fuzzing, bounded: builds every cargo-fuzz target in fuzz/
# and runs each for SECONDS (default 60) with libFuzzer. Exits non-zero on
# the first target that crashes (a panic, a failed check, a timeout or an
# out-of-memory), after printing the saved crash input and how to replay it.
#
#   scripts/fuzz.sh [SECONDS]                 every target
#   FUZZ_TARGETS="decode config_file web_config" scripts/fuzz.sh 30
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, sancov passes);
# the machine has only a stable toolchain, which accepts them with
# RUSTC_BOOTSTRAP=1. Targets are built as cargo-fuzz does by default:
# optimised, with debug assertions, overflow checks and AddressSanitizer.
#
# Seeds are fuzz/corpus/<target> (committed, read only here); what the fuzzer
# learns goes to fuzz/target/corpus/<target> (ignored, kept between runs on
# one machine); crash inputs to fuzz/artifacts/<target> (ignored: each crash
# becomes a regression test in src/).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: $0 [SECONDS]   (whole seconds per target, at least 1)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi
export RUSTC_BOOTSTRAP=1

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
echo "== cargo fuzz build (${targets[*]})"
cargo fuzz build

for target in "${targets[@]}"; do
  work="fuzz/target/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  mkdir -p "$work" "$artifacts"
  marker="$(mktemp)"
  log="fuzz/target/fuzz-$target.log"
  echo "== fuzz $target for ${seconds}s"
  status=0
  # -timeout: an input that takes this long counts as a crash (a hang);
  # -rss_limit_mb: so does using more memory than this.
  cargo fuzz run "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  # Progress lines are many; show the last status line and the final stats.
  grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
  if [ "$status" -ne 0 ] && grep -q 'failed to build fuzz script' "$log"; then
    tail -n 60 "$log"
    echo "== $target did not build (exit $status); full log: $log"
    rm -f "$marker"
    exit 1
  fi
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "== FUZZ CRASH in $target (exit $status); full log: $log"
    found=0
    while IFS= read -r input; do
      found=1
      echo "crash input: $input"
      echo "  replay:   RUSTC_BOOTSTRAP=1 cargo fuzz run $target $input"
      echo "  minimise: RUSTC_BOOTSTRAP=1 cargo fuzz tmin $target $input"
    done < <(find "$artifacts" -type f -newer "$marker" ! -name 'slow-unit-*' | sort)
    [ "$found" -eq 1 ] || echo "no crash input was saved (see the log above)"
    rm -f "$marker"
    exit 1
  fi
  rm -f "$marker"
done
echo "== fuzzing passed: ${targets[*]} (${seconds}s each)"
