//! Data, the read-only baseline and the copy-baseline group shared by `benches/` and
//! `examples/roofline.rs`.
#![allow(dead_code)]

/// `n` values near 1e4 (|mean|/σ ≈ 3.5e4) from a xorshift generator: deterministic, cheap.
pub fn data(n: usize) -> Vec<f32> {
    let mut s = 0x1234_5678_u32;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            1.0e4 + (s as f32 / u32::MAX as f32 - 0.5)
        })
        .collect()
}

/// Read-only pass over the bits of `x`: 4 × 16 lanes of XOR, so it runs at load bandwidth.
pub fn xor_fold(x: &[f32]) -> u32 {
    let (chunks, tail) = x.as_chunks::<64>();
    let mut acc = [0u32; 64];
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a ^= v.to_bits();
        }
    }
    let head = acc.iter().fold(0, |a, b| a ^ b);
    tail.iter().fold(head, |a, v| a ^ v.to_bits())
}

/// Times `iters` calls of `f` inside `pool`, entering the pool once: what a caller already
/// running on the pool's threads sees, without `install`'s cost per call (10–25 µs here).
pub fn in_pool<R>(
    pool: &rayon::ThreadPool,
    iters: u64,
    mut f: impl FnMut() -> R + Send,
) -> std::time::Duration {
    pool.install(|| {
        let start = std::time::Instant::now();
        for _ in 0..iters {
            std::hint::black_box(f());
        }
        start.elapsed()
    })
}

/// The rayon pool sizes to measure: `SIMDNORM_BENCH_THREADS=1,2,4` (default 1 and 2).
pub fn threads() -> Vec<usize> {
    std::env::var("SIMDNORM_BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2])
}

/// The (rows, hidden) shapes of the LayerNorm / RMSNorm benches (issue 3), shared by
/// `benches/ops.rs` and the candle comparison in `benches/peers`.
pub const ROW_SHAPES: [(usize, usize); 6] = [
    (1, 4096),
    (8, 4096),
    (128, 4096),
    (4096, 4096),
    (16384, 1024),
    (65536, 256),
];

/// The BatchNorm / GroupNorm benches' inputs (issue 4), shared by `benches/ops.rs` and
/// `benches/paired.rs`: name, layout, channels.
pub const CHANNEL_SHAPES: [(&str, simdnorm::Layout, usize); 3] = [
    ("65536x256", simdnorm::Layout::Nc { n: 65536 }, 256),
    (
        "32x64x56x56",
        simdnorm::Layout::Nchw { n: 32, hw: 3136 },
        64,
    ),
    (
        "32x3136x64_nhwc",
        simdnorm::Layout::Nhwc { n: 32, hw: 3136 },
        64,
    ),
];

/// `(n, hw)` of a layout (`hw = 1` for `Nc`).
pub fn n_hw(layout: simdnorm::Layout) -> (usize, usize) {
    match layout {
        simdnorm::Layout::Nc { n } => (n, 1),
        simdnorm::Layout::Nchw { n, hw } | simdnorm::Layout::Nhwc { n, hw } => (n, hw),
    }
}

/// A rayon pool of `t` threads.
pub fn pool(t: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build()
        .unwrap()
}

/// A criterion group `name` counting `bytes` per call with `samples` samples, opened with the
/// baseline its ratios are read against: `dst.copy_from_slice(src)` on the caller's thread.
pub fn group_with_copy<'c, T: Copy>(
    c: &'c mut criterion::Criterion,
    name: String,
    bytes: usize,
    samples: usize,
    src: &[T],
    dst: &mut [T],
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(criterion::Throughput::Bytes(bytes as u64));
    g.sample_size(samples);
    g.bench_function("copy", |b| {
        b.iter(|| dst.copy_from_slice(std::hint::black_box(src)))
    });
    g
}
