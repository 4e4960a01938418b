#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 60), one after another, and exits
# non-zero if any target crashes, leaks, times out or fails to build.
#
#   bash fuzz/run.sh 20
#
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags
# (-Zsanitizer=address and the coverage passes). Installs cargo-fuzz if it is missing.
# New corpus entries go to fuzz/corpus/<target>/ (ignored by git); the committed seeds in
# fuzz/seeds/<target>/ are read too. A crashing input is saved under fuzz/artifacts/<target>/
# and its path printed; `cargo fuzz fmt <target> <file>` shows it, and
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>` replays it.
set -euo pipefail

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
export RUST_BACKTRACE=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Cargo caches what rustc answered to its probe with these flags, keyed without
# RUSTC_BOOTSTRAP: a cache written by a run without it makes every later build fail with
# "the option `Z` is only accepted on the nightly compiler". It is only a cache.
target_dir="${CARGO_TARGET_DIR:-target}"
rm -f "$target_dir/.rustc_info.json"

targets=(token_parse scope_parse attenuation store_path)

# token_parse's inputs reach past MAX_TOKEN_LEN (4096) so the length check is exercised.
max_len() {
  case "$1" in
    token_parse) echo 5000 ;;
    *) echo 4096 ;;
  esac
}

echo "== building fuzz targets"
cargo fuzz build

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  log="$(mktemp)"
  echo "== fuzzing $target for ${seconds}s"
  if cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$seconds" -max_len="$(max_len "$target")" \
      -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    echo "   $target: ok, ${runs:-?} executions"
  else
    failed+=("$target")
    echo "   $target: FAILED. The panic, if any:"
    grep -m 1 -A 4 -E "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer" "$log" | sed 's/^/   | /' || true
    echo "   The fuzzer's last lines:"
    tail -n 40 "$log" | sed 's/^/   | /'
  fi
  rm -f "$log"
done

if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no crash"
