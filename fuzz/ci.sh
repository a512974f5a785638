#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each one briefly from its seed corpus (and the
# regression inputs of fuzz/regressions/), failing on any crash, hang or allocation over
# the targets' bound. Called by .ci/run; runnable from any directory:
#
#   bash fuzz/ci.sh [SECONDS_PER_TARGET]      (default 20)
#
# The run works on a scratch copy of the corpus, so it leaves the repository clean; a
# crashing input is saved under fuzz/artifacts/TARGET/ (ignored by git) and can be
# replayed with `cargo +nightly fuzz run TARGET FILE`, or on stable with
# `cargo run --manifest-path fuzz/Cargo.toml --example replay -- TARGET FILE`.
set -euo pipefail

secs="${1:-20}"
case "$secs" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;;
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "skipping fuzz runs: no nightly toolchain (cargo-fuzz needs one; rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

start=$(date +%s)
cargo +nightly fuzz build
echo "fuzz targets built in $(( $(date +%s) - start ))s"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/durus-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT

# Per-target libFuzzer options beyond the common ones.
extra_opts() {
  case "$1" in
    # Room for a few dozen blocks behind the 4 KiB header.
    journal_open) echo "-max_len=16384" ;;
    *) echo "" ;;
  esac
}

failed=()
for target in $(cargo +nightly fuzz list); do
  corpus="$scratch/$target"
  mkdir -p "$corpus"
  if compgen -G "fuzz/corpus/$target/seed-*" >/dev/null; then
    cp fuzz/corpus/"$target"/seed-* "$corpus"/
  fi
  dirs=("$corpus")
  if [ -d "fuzz/regressions/$target" ]; then
    dirs+=("fuzz/regressions/$target")
  fi
  log="$scratch/$target.log"
  # shellcheck disable=SC2046 # extra_opts is a list of words
  if cargo +nightly fuzz run "$target" "${dirs[@]}" -- \
      -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
      $(extra_opts "$target") >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$target")
  fi
  # libFuzzer's last words: "Done N runs in S second(s)" and the final coverage line.
  runs=$(grep -oE "^Done [0-9]+ runs in [0-9]+ second" "$log" | tail -1 | awk "{print \$2}" || true)
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+ corp: [0-9]+" "$log" | tail -1 || true)
  echo "fuzz $target: $status, ${runs:-?} runs in ${secs}s (${cov:-no stats})"
  if [ "$status" != ok ]; then
    echo "---- last lines of the $target run ----"
    grep -vE "^\s+(at |[0-9]+: )" "$log" | cut -c1-300 | tail -40
    echo "----"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs saved under fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: all targets passed ($(( $(date +%s) - start ))s in all)"
