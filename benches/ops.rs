//! LayerNorm, RMSNorm, BatchNorm (train, eval) and GroupNorm forward against
//! `copy_from_slice` of the same bytes (x → y) and a read-only pass (`read`), measured in the
//! same run. Throughput counts the bytes read once plus the bytes written.
//!
//! `cargo bench --bench ops`; `cargo bench --bench ops -- '4096x4096'` (one shape).
//! `SIMDNORM_BENCH_THREADS=1,2` chooses the pool sizes (default 1 and 2). The ops run on the
//! pool (`support::in_pool`: one `install` per sample).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

mod support;
use support::{
    CHANNEL_SHAPES, ROW_SHAPES, data, group_with_copy, in_pool, n_hw, pool, threads, xor_fold,
};

use simdnorm::{BatchNorm, GroupNorm, LayerNorm, Layout, RmsNorm, oracle};

fn bench_rows(c: &mut Criterion) {
    for (rows, n) in ROW_SHAPES {
        let x = data(rows * n);
        let w = data(n);
        let b = data(n);
        let mut y = vec![0.0f32; x.len()];
        for t in threads() {
            let p = pool(t);
            let samples = if x.len() >= 1 << 20 { 10 } else { 100 };
            let name = format!("ops/f32/{rows}x{n}/threads{t}");
            let mut g = group_with_copy(c, name, 2 * x.len() * 4, samples, &x, &mut y);
            if t == 1 && x.len() <= 1 << 19 {
                g.bench_function("oracle_layer_norm", |bn| {
                    bn.iter(|| oracle::layer_norm(black_box(&x), n, &w, &b, 1e-5))
                });
            }
            if t == 1 {
                // the affine steps alone (no statistics): floors for layer_norm / rms_norm
                g.bench_function("floor_affine_wb", |bn| {
                    bn.iter(|| affine_rows(black_box(&x), &w, Some(&b), &mut y))
                });
                g.bench_function("floor_affine_w", |bn| {
                    bn.iter(|| affine_rows(black_box(&x), &w, None, &mut y))
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

fn bench_channels(c: &mut Criterion) {
    for (name, layout, ch) in CHANNEL_SHAPES {
        let (n, hw) = n_hw(layout);
        let x = data(n * hw * ch);
        let (w, b) = (data(ch), data(ch));
        let (rm, rv) = (vec![1.0e4f32; ch], vec![0.1f32; ch]);
        let mut y = vec![0.0f32; x.len()];
        let (mut m, mut s) = (vec![0.0f32; ch], vec![0.0f32; ch]);
        for t in threads() {
            let p = pool(t);
            let group = format!("bn/f32/{name}/threads{t}");
            let mut g = group_with_copy(c, group, 2 * x.len() * 4, 20, &x, &mut y);
            g.bench_function("read", |bn| bn.iter(|| xor_fold(black_box(&x))));
            if t == 1 && matches!(layout, Layout::Nchw { .. }) {
                g.sample_size(10);
                g.bench_function("oracle_batch_norm", |bn| {
                    bn.iter(|| {
                        oracle::batch_norm(black_box(&x), n, ch, hw, false, None, &w, &b, 1e-5)
                    })
                });
                g.sample_size(20);
            }
            let bn_op = BatchNorm::new(ch).weight(&w).bias(&b);
            g.bench_function("batch_norm_train", |bn| {
                bn.iter_custom(|k| {
                    in_pool(&p, k, || {
                        bn_op
                            .forward_train(black_box(&x), layout, &mut y, None, &mut m, &mut s)
                            .unwrap()
                    })
                })
            });
            g.bench_function("batch_norm_eval", |bn| {
                bn.iter_custom(|k| {
                    in_pool(&p, k, || {
                        bn_op
                            .forward_eval(black_box(&x), layout, &rm, &rv, &mut y)
                            .unwrap()
                    })
                })
            });
            if let Layout::Nchw { n, hw } = layout {
                let gn = GroupNorm::new(32, ch).weight(&w).bias(&b);
                g.bench_function("group_norm32", |bn| {
                    bn.iter_custom(|k| {
                        in_pool(&p, k, || gn.forward(black_box(&x), n, hw, &mut y).unwrap())
                    })
                });
            }
            g.finish();
        }
    }
}

/// Backward passes: read x and dy, write dx. The copy baseline moves the same bytes: a
/// `copy_from_slice` of 1.5 × the elements (reads 1.5, writes 1.5).
fn bench_backward(c: &mut Criterion) {
    let shapes = [
        ("ln_rms/4096x4096", 4096usize, 4096usize, None),
        ("ln_rms/65536x256", 65536, 256, None),
        ("bn/65536x256", 65536, 256, Some(Layout::Nc { n: 65536 })),
        (
            "bn/32x64x56x56",
            32 * 3136,
            64,
            Some(Layout::Nchw { n: 32, hw: 3136 }),
        ),
    ];
    for (name, rows, n, layout) in shapes {
        let len = rows * n;
        let (x, dy, w) = (data(len), data(len), data(n));
        let big = data(len + len / 2);
        let mut dst = vec![0.0f32; big.len()];
        let mut dx = vec![0.0f32; len];
        let (mut y, mut m, mut s) = (vec![0.0f32; len], vec![0.0f32; rows], vec![0.0f32; rows]);
        let (mut dw, mut db) = (vec![0.0f32; n], vec![0.0f32; n]);
        for t in threads() {
            let p = pool(t);
            let group = format!("backward/f32/{name}/threads{t}");
            let mut g = group_with_copy(c, group, 3 * len * 4, 20, &big, &mut dst);
            match layout {
                None => {
                    let ln = LayerNorm::new(n).weight(&w);
                    ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
                    g.bench_function("layer_norm_backward", |bn| {
                        bn.iter_custom(|k| {
                            in_pool(&p, k, || {
                                ln.backward(
                                    black_box(&dy),
                                    &x,
                                    &m,
                                    &s,
                                    &mut dx,
                                    Some(&mut dw),
                                    Some(&mut db),
                                )
                                .unwrap()
                            })
                        })
                    });
                    let rms = RmsNorm::new(n).weight(&w);
                    g.bench_function("rms_norm_backward", |bn| {
                        bn.iter_custom(|k| {
                            in_pool(&p, k, || {
                                rms.backward(black_box(&dy), &x, &s, &mut dx, Some(&mut dw))
                                    .unwrap()
                            })
                        })
                    });
                }
                Some(layout) => {
                    let bn_op = BatchNorm::new(n).weight(&w);
                    let (sm, si) = (&mut m[..n], &mut s[..n]);
                    bn_op
                        .forward_train(&x, layout, &mut y, None, sm, si)
                        .unwrap();
                    let (sm, si) = (&m[..n], &s[..n]);
                    g.bench_function("batch_norm_backward", |bn| {
                        bn.iter_custom(|k| {
                            in_pool(&p, k, || {
                                bn_op
                                    .backward_train(
                                        black_box(&dy),
                                        &x,
                                        layout,
                                        sm,
                                        si,
                                        &mut dx,
                                        Some(&mut dw),
                                        Some(&mut db),
                                    )
                                    .unwrap()
                            })
                        })
                    });
                }
            }
            g.finish();
        }
    }
}

/// Half storage (f32 accumulation): LayerNorm, RMSNorm and BatchNorm eval against a copy of
/// the same half bytes. Centred data (the 1e4 offset of `data` is below half resolution).
fn bench_half(c: &mut Criterion) {
    fn run<T: simdnorm::Element>(c: &mut Criterion, dtype: &str) {
        use simdnorm::Float;
        let conv = |v: Vec<f32>| -> Vec<T> {
            v.into_iter()
                .map(|x| T::from_acc(T::Acc::from_f64(x as f64 - 1.0e4)))
                .collect()
        };
        for (rows, n) in [(128usize, 4096usize), (4096, 4096)] {
            let (x, w, b) = (conv(data(rows * n)), conv(data(n)), conv(data(n)));
            let mut y = x.clone();
            let (rm, rv) = (
                vec![T::Acc::from_f64(0.0); n],
                vec![T::Acc::from_f64(0.1); n],
            );
            for t in threads() {
                let p = pool(t);
                let samples = if rows * n >= 1 << 20 { 10 } else { 50 };
                let (name, bytes) = (
                    format!("half/{dtype}/{rows}x{n}/threads{t}"),
                    2 * x.len() * size_of::<T>(),
                );
                let mut g = group_with_copy(c, name, bytes, samples, &x, &mut y);
                let ln = LayerNorm::new(n).weight(&w).bias(&b);
                g.bench_function("layer_norm", |bn| {
                    bn.iter_custom(|k| {
                        in_pool(&p, k, || ln.forward(black_box(&x), &mut y).unwrap())
                    })
                });
                let rms = RmsNorm::new(n).weight(&w);
                g.bench_function("rms_norm", |bn| {
                    bn.iter_custom(|k| {
                        in_pool(&p, k, || rms.forward(black_box(&x), &mut y).unwrap())
                    })
                });
                let bn_op = BatchNorm::new(n).weight(&w).bias(&b);
                g.bench_function("batch_norm_eval", |bn| {
                    bn.iter_custom(|k| {
                        in_pool(&p, k, || {
                            bn_op
                                .forward_eval(
                                    black_box(&x),
                                    Layout::Nc { n: rows },
                                    &rm,
                                    &rv,
                                    &mut y,
                                )
                                .unwrap()
                        })
                    })
                });
                g.finish();
            }
        }
    }
    run::<half::bf16>(c, "bf16");
    run::<half::f16>(c, "f16");
}

/// `y = x·w + b` row by row (`w`, `b`: one row's values; `b = None`: `y = x·w`): the
/// per-feature affine step of LayerNorm (RMSNorm) alone, without statistics — the least work
/// any op with a per-feature weight does per row, as a floor to read the ops against.
/// `f32x16` vectors with the stores on 64-byte boundaries (scalar ends), as the ops store.
fn affine_rows(x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    use wide::f32x16;
    let n = w.len();
    for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let h = ((64 - y.as_ptr() as usize % 64) % 64 / 4).min(n);
        let body = (n - h) / 16 * 16;
        let scalar = |i: usize| x[i].mul_add(w[i], b.map_or(0.0, |b| b[i]));
        for i in (0..h).chain(h + body..n) {
            y[i] = scalar(i);
        }
        let (yv, _) = y[h..h + body].as_chunks_mut::<16>();
        let (xv, _) = x[h..h + body].as_chunks::<16>();
        let (wv, _) = w[h..h + body].as_chunks::<16>();
        match b {
            Some(b) => {
                let (bv, _) = b[h..h + body].as_chunks::<16>();
                for (((y, x), w), b) in yv.iter_mut().zip(xv).zip(wv).zip(bv) {
                    let v = f32x16::from(*x).mul_add(f32x16::from(*w), f32x16::from(*b));
                    *y = v.to_array();
                }
            }
            None => {
                for ((y, x), w) in yv.iter_mut().zip(xv).zip(wv) {
                    *y = (f32x16::from(*x) * f32x16::from(*w)).to_array();
                }
            }
        }
    }
}

criterion_group!(
    benches,
    bench_rows,
    bench_channels,
    bench_backward,
    bench_half
);
criterion_main!(benches);
