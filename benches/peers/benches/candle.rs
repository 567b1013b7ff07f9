//! LayerNorm (weight and bias) and RMSNorm (weight), f32, simdnorm against candle's fused CPU
//! ops (`candle_nn::ops::layer_norm` / `rms_norm`) and `copy_from_slice` of the same bytes,
//! in one run, for the shapes of `benches/ops.rs`, in rayon pools of 1 and 2 threads (candle
//! runs its rows with rayon's `par_chunks`, so the pool bounds both).
//!
//! candle returns a new tensor per call: its times include allocating the output (for
//! DRAM-sized outputs, the page faults of a fresh buffer), which is how its API is used.
//! simdnorm writes into a preallocated output.

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use simdnorm::{LayerNorm, RmsNorm};
use std::hint::black_box;

#[path = "../../support/mod.rs"]
mod support;
use support::{data, in_pool};

fn threads() -> Vec<usize> {
    std::env::var("SIMDNORM_BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2])
}

fn bench(c: &mut Criterion) {
    let shapes = [
        (1usize, 4096usize),
        (8, 4096),
        (128, 4096),
        (4096, 4096),
        (16384, 1024),
        (65536, 256),
    ];
    for (rows, n) in shapes {
        let x = data(rows * n);
        let (w, b) = (data(n), data(n));
        let mut y = vec![0.0f32; x.len()];
        let dev = Device::Cpu;
        let xt = Tensor::from_slice(&x, (rows, n), &dev).unwrap();
        let (wt, bt) = (
            Tensor::from_slice(&w, n, &dev).unwrap(),
            Tensor::from_slice(&b, n, &dev).unwrap(),
        );
        for t in threads() {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            let mut g = c.benchmark_group(format!("peers/f32/{rows}x{n}/threads{t}"));
            g.throughput(Throughput::Bytes((2 * x.len() * 4) as u64));
            if x.len() >= 1 << 20 {
                g.sample_size(10);
            }
            g.bench_function("copy", |bn| bn.iter(|| y.copy_from_slice(black_box(&x))));
            let ln = LayerNorm::new(n).weight(&w).bias(&b);
            let rms = RmsNorm::new(n).weight(&w);
            g.bench_function("simdnorm_layer_norm", |bn| {
                bn.iter_custom(|k| in_pool(&p, k, || ln.forward(black_box(&x), &mut y).unwrap()))
            });
            g.bench_function("candle_layer_norm", |bn| {
                bn.iter_custom(|k| {
                    in_pool(&p, k, || {
                        candle_nn::ops::layer_norm(black_box(&xt), &wt, &bt, 1e-5).unwrap()
                    })
                })
            });
            g.bench_function("simdnorm_rms_norm", |bn| {
                bn.iter_custom(|k| in_pool(&p, k, || rms.forward(black_box(&x), &mut y).unwrap()))
            });
            g.bench_function("candle_rms_norm", |bn| {
                bn.iter_custom(|k| {
                    in_pool(&p, k, || {
                        candle_nn::ops::rms_norm(black_box(&xt), &wt, 1e-5).unwrap()
                    })
                })
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
