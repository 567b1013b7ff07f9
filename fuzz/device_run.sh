#!/usr/bin/env bash
# Runs the prebuilt fuzz binaries (.fuzzbin/<target>, stripped `cargo fuzz build` outputs)
# on a many-core machine without cargo: every target at once, JOBS processes each for SECONDS,
# then merges each corpus to a minimal one and packs corpora, artifacts and stats into
# $OUT/fuzz.tgz. Used on the 16-core device machine; fuzz/run.sh is the local equivalent.
#   bash fuzz/device_run.sh SECONDS JOBS
set -u
secs=${1:-300}; jobs=${2:-2}
root=$(pwd); bin=$root/.fuzzbin; cd "$root/fuzz"
targets=${TARGETS:-"moments layer_norm rms_norm batch_norm group_norm backward half"}
nproc; uname -m; grep -m1 "model name" /proc/cpuinfo
for t in $targets; do
  mkdir -p corpus/$t artifacts/$t run/$t
  (cd run/$t && "$bin/$t" "$root/fuzz/corpus/$t" -jobs=$jobs -workers=$jobs \
     -max_total_time=$secs -print_final_stats=1 -artifact_prefix="$root/fuzz/artifacts/$t/" \
     >/dev/null 2>&1) &
done
wait
mkdir -p min stats
for t in $targets; do
  cat run/$t/fuzz-*.log | grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss|panicked|SUMMARY" > stats/$t.txt
  grep -h -A3 "panicked" run/$t/fuzz-*.log | head -20 >> stats/$t.txt
  mkdir -p min/$t
  "$bin/$t" -merge=1 min/$t corpus/$t >/dev/null 2>&1
  echo "$t: corpus $(ls corpus/$t | wc -l) -> $(ls min/$t | wc -l), artifacts $(ls artifacts/$t | wc -l)" | tee -a stats/summary.txt
done
tar czf "$OUT/fuzz.tgz" min artifacts stats
