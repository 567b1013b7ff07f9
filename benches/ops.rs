//! LayerNorm and RMSNorm forward against `copy_from_slice` of the same bytes (x → y),
//! measured in the same run. Throughput counts the bytes read once plus the bytes written.
//!
//! `cargo bench --bench ops`; `cargo bench --bench ops -- '4096x4096'` (one shape).
//! `SIMDNORM_BENCH_THREADS=1,2` chooses the pool sizes (default 1 and 2). The ops run on the
//! pool (`support::in_pool`: one `install` per sample).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

mod support;
use support::{data, in_pool};

use simdnorm::{LayerNorm, RmsNorm, oracle};

fn threads() -> Vec<usize> {
    std::env::var("SIMDNORM_BENCH_THREADS")
        .ok()
        .map(|s| s.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2])
}

fn bench_rows(c: &mut Criterion) {
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
        let w = data(n);
        let b = data(n);
        let mut y = vec![0.0f32; x.len()];
        for t in threads() {
            let p = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            let mut g = c.benchmark_group(format!("ops/f32/{rows}x{n}/threads{t}"));
            g.throughput(Throughput::Bytes((2 * x.len() * 4) as u64));
            if x.len() >= 1 << 20 {
                g.sample_size(10);
            }
            g.bench_function("copy", |bn| bn.iter(|| y.copy_from_slice(black_box(&x))));
            if t == 1 && x.len() <= 1 << 19 {
                g.bench_function("oracle_layer_norm", |bn| {
                    bn.iter(|| oracle::layer_norm(black_box(&x), n, &w, &b, 1e-5))
                });
            }
            let ln = LayerNorm::new(n).weight(&w).bias(&b);
            let rms = RmsNorm::new(n).weight(&w);
            g.bench_function("layer_norm", |bn| {
                bn.iter_custom(|k| in_pool(&p, k, || ln.forward(black_box(&x), &mut y).unwrap()))
            });
            g.bench_function("rms_norm", |bn| {
                bn.iter_custom(|k| in_pool(&p, k, || rms.forward(black_box(&x), &mut y).unwrap()))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench_rows);
criterion_main!(benches);
