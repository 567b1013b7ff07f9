#!/usr/bin/env bash
# Builds and runs every fuzz target for SECONDS each (default 600), then minimizes each corpus
# into fuzz/corpus/<target>. Needs the nightly toolchain; installs cargo-fuzz if absent.
#   fuzz/run.sh [SECONDS] [JOBS]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
jobs=${2:-1}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v simdnorm-fuzz)
for t in $targets; do
  mkdir -p corpus/$t artifacts/$t
  echo "== $t: ${secs}s × ${jobs} job(s)"
  cargo +nightly fuzz run "$t" corpus/$t -- -max_total_time="$secs" -jobs="$jobs" \
    -workers="$jobs" -print_final_stats=1 -artifact_prefix=artifacts/$t/ 2>&1 |
    grep -E "stat::|Done|ERROR|SUMMARY" || true
  cargo +nightly fuzz cmin "$t" corpus/$t >/dev/null 2>&1 || true
  echo "   corpus: $(ls corpus/$t | wc -l) files"
done
