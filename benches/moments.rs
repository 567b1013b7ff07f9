//! Moment kernels against the bandwidth baselines of the same bytes, measured in one run:
//! `copy` (`copy_from_slice` into a preallocated buffer) and `read` (a read-only XOR fold of
//! the bits: what a single pass over the data cannot beat). Throughput is in bytes of input.
//!
//! Kernels and `read` run on the pool (`support::in_pool`: one `install` per sample, as a
//! caller already on the pool sees them); with more than one thread the `read` baseline is
//! itself split over the pool (the fair ceiling of a parallel reduction); `copy` stays
//! `copy_from_slice` on the caller's thread.
//!
//! `cargo bench --bench moments` (all); `cargo bench --bench moments -- 'f32/100000000'` (one).
//! Set `SIMDNORM_BENCH_THREADS=1,2` to choose the pool sizes (default 1 and 2).

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;

mod support;
use support::{data, group_with_copy, in_pool, pool, threads, xor_fold};

use simdnorm::{Moments, col_moments, moments, oracle, two_pass, welford};

/// The read baseline with `t` threads (called on the pool): the fold split over the pool in
/// 1 MiB pieces, serial below the kernels' own parallel threshold, as they are.
fn read(t: usize, x: &[f32]) -> u32 {
    use rayon::prelude::*;
    if t == 1 || x.len() < simdnorm::tuning::PAR_ELEMS {
        return xor_fold(x);
    }
    x.par_chunks(1 << 18)
        .map(xor_fold)
        .reduce(|| 0, |a, b| a ^ b)
}

fn bench_1d(c: &mut Criterion) {
    for &n in &[4096usize, 100_000, 1_000_000, 100_000_000] {
        let x = data(n);
        let mut dst = vec![0.0f32; n];
        for t in threads() {
            let p = pool(t);
            let samples = if n >= 1_000_000 { 10 } else { 100 };
            let name = format!("moments/f32/{n}/threads{t}");
            let mut g = group_with_copy(c, name, n * 4, samples, &x, &mut dst);
            g.bench_function("read", |b| {
                b.iter_custom(|k| in_pool(&p, k, || read(t, black_box(&x))))
            });
            if n <= 1_000_000 && t == 1 {
                g.bench_function("oracle", |b| b.iter(|| oracle::moments(black_box(&x))));
            }
            g.bench_function("welford", |b| {
                b.iter_custom(|k| in_pool(&p, k, || welford(black_box(&x))))
            });
            g.bench_function("two_pass", |b| {
                b.iter_custom(|k| in_pool(&p, k, || two_pass(black_box(&x))))
            });
            g.bench_function("moments", |b| {
                b.iter_custom(|k| in_pool(&p, k, || moments(black_box(&x))))
            });
            g.finish();
        }
    }
    let n = 1_000_000;
    let x: Vec<f64> = data(n).iter().map(|&v| v as f64).collect();
    let mut dst = vec![0.0f64; n];
    let name = format!("moments/f64/{n}/threads1");
    let mut g = group_with_copy(c, name, n * 8, 20, &x, &mut dst);
    let p = pool(1);
    g.bench_function("moments", |b| {
        b.iter_custom(|k| in_pool(&p, k, || moments(black_box(&x))))
    });
    g.bench_function("welford", |b| {
        b.iter_custom(|k| in_pool(&p, k, || welford(black_box(&x))))
    });
    g.finish();
}

fn bench_cols(c: &mut Criterion) {
    let (rows, cols) = (65536usize, 256usize);
    let x = data(rows * cols);
    let mut dst = vec![0.0f32; x.len()];
    let mut out = vec![Moments::<f32>::default(); cols];
    for t in threads() {
        let p = pool(t);
        let name = format!("col_moments/f32/{rows}x{cols}/threads{t}");
        let mut g = group_with_copy(c, name, x.len() * 4, 10, &x, &mut dst);
        g.bench_function("read", |b| {
            b.iter_custom(|k| in_pool(&p, k, || read(t, black_box(&x))))
        });
        if t == 1 {
            g.bench_function(BenchmarkId::new("oracle", "strided"), |b| {
                b.iter(|| oracle::col_moments(black_box(&x), cols))
            });
        }
        g.bench_function("simd", |b| {
            b.iter_custom(|k| {
                in_pool(&p, k, || {
                    col_moments(black_box(&x), cols, &mut out).unwrap()
                })
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench_1d, bench_cols);
criterion_main!(benches);
