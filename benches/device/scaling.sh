#!/usr/bin/env bash
# The throughput report at several pool sizes on a many-core machine without cargo (the
# device machine): runs prebuilt roofline binaries (target/device/roofline-v3: AVX2 build,
# roofline-v4: AVX-512 build), the AVX-512 one where the CPU has avx512f and avx512bw.
# Build them first (on the development machine):
#   for v in v3 v4; do RUSTFLAGS="-C target-cpu=x86-64-$v" CARGO_TARGET_DIR=target/dev-$v \
#     cargo build --release --example roofline; \
#     cp target/dev-$v/release/examples/roofline target/device/roofline-$v; done
#   bash benches/device/scaling.sh "1 2 4 8 16"      # writes $OUT/roofline-N.txt
set -u
threads=${1:-"1 2 4 8 16"}
out=${OUT:-/tmp}
bin=target/device/roofline-v3
if grep -q avx512bw /proc/cpuinfo && grep -q avx512f /proc/cpuinfo; then bin=target/device/roofline-v4; fi
{ nproc; grep -m1 "model name" /proc/cpuinfo; lscpu | grep -iE "cache|socket|numa|MHz"; free -g | head -2; echo "binary: $bin"; } | tee "$out/machine.txt"
for t in $threads; do
  "$bin" --threads "$t" > "$out/roofline-$t.txt" 2>&1
  echo "== $t thread(s): exit $?"; grep -E "layer_norm +4096x4096|group_norm|bn_train|moments +100000000" "$out/roofline-$t.txt"
done
