//! The issues' "Done means" ratios, measured in pairs: every call of an op is timed right
//! after one call of its baseline on the same bytes, and criterion's value is the op's time in
//! units of that baseline's (`1.25 ×` = the op takes 1.25 baseline times; its bandwidth is
//! 80 % of the baseline's). Baselines: `copy_from_slice` of the op's input into its output
//! (for backward passes, of 1.5 × the elements: reads x and dy, writes dx); for BatchNorm
//! training, a read-only pass over x plus that copy (the op's minimal traffic).
//!
//! Why pairs: this machine's bandwidth drifts 20–40 % between minutes at DRAM sizes, and
//! `benches/ops.rs` measures an op and its `copy` up to a minute apart, so its ratios carry
//! the drift (three runs gave 70–78 % for one op whose ratio here stays within a few %).
//! Timed in pairs, each ratio compares two calls made milliseconds apart. Both calls of a
//! pair run on a thread of the op's pool (one `install` per sample); the baseline is always
//! single-threaded, as in `benches/ops.rs`.
//!
//! `cargo bench --bench paired`; one family: `cargo bench --bench paired -- 'paired/bn'`.
//! `SIMDNORM_BENCH_THREADS=1,2` chooses the pool sizes (default 1 and 2).

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;

mod support;
use support::{CHANNEL_SHAPES, ROW_SHAPES, data, n_hw, pool, threads, xor_fold};

use simdnorm::{BatchNorm, Element, Float, GroupNorm, LayerNorm, Layout, RmsNorm};

/// Criterion's value: the sum over a sample's iterations of `op time / baseline time`.
struct BaselineUnits;

impl Measurement for BaselineUnits {
    type Intermediate = ();
    type Value = f64;

    // Values come from `iter_custom` ([`pairs`]); nothing is measured between start and end.
    fn start(&self) {}
    fn end(&self, _: ()) -> f64 {
        0.0
    }
    fn add(&self, a: &f64, b: &f64) -> f64 {
        a + b
    }
    fn zero(&self) -> f64 {
        0.0
    }
    fn to_f64(&self, v: &f64) -> f64 {
        *v
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &BaselineUnitsFormatter
    }
}

/// Prints ratios as `1.250 ×` (criterion divides by the iterations: the mean ratio).
struct BaselineUnitsFormatter;

impl ValueFormatter for BaselineUnitsFormatter {
    fn format_value(&self, v: f64) -> String {
        format!("{v:.3} × baseline ({:.0} % of its bandwidth)", 100.0 / v)
    }
    fn format_throughput(&self, _: &Throughput, v: f64) -> String {
        self.format_value(v)
    }
    fn scale_values(&self, _: f64, _: &mut [f64]) -> &'static str {
        "× baseline"
    }
    fn scale_throughputs(&self, _: f64, _: &Throughput, _: &mut [f64]) -> &'static str {
        "× baseline"
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "baseline_units"
    }
}

/// `iters` pairs (baseline, then op) on a thread of `pool`; the sum of the time ratios.
fn pairs(
    pool: &rayon::ThreadPool,
    iters: u64,
    base: &mut (impl FnMut() + Send),
    op: &mut (impl FnMut() + Send),
) -> f64 {
    pool.install(|| {
        let mut units = 0.0;
        for _ in 0..iters {
            let t = Instant::now();
            base();
            let tb = t.elapsed().as_secs_f64();
            let t = Instant::now();
            op();
            units += t.elapsed().as_secs_f64() / tb;
        }
        units
    })
}

type Group<'c> = BenchmarkGroup<'c, BaselineUnits>;

/// A group with `samples` samples (10 for DRAM-sized inputs, where one pair takes ~15 ms).
fn group<'c>(c: &'c mut Criterion<BaselineUnits>, name: String, elems: usize) -> Group<'c> {
    let mut g = c.benchmark_group(name);
    g.sample_size(if elems >= 1 << 20 { 10 } else { 50 });
    g
}

/// LayerNorm (weight and bias) and RMSNorm (weight) forward against a copy x → y.
fn rows(c: &mut Criterion<BaselineUnits>) {
    for (rows, n) in ROW_SHAPES {
        let (x, w, b) = (data(rows * n), data(n), data(n));
        let mut y = vec![0.0f32; x.len()];
        let mut y2 = vec![0.0f32; x.len()];
        for t in threads() {
            let p = pool(t);
            let mut g = group(c, format!("paired/rows/f32/{rows}x{n}/threads{t}"), x.len());
            let mut copy = || y2.copy_from_slice(black_box(&x));
            let ln = LayerNorm::new(n).weight(&w).bias(&b);
            g.bench_function("layer_norm", |bn| {
                bn.iter_custom(|k| {
                    pairs(&p, k, &mut copy, &mut || {
                        ln.forward(black_box(&x), &mut y).unwrap()
                    })
                })
            });
            let rms = RmsNorm::new(n).weight(&w);
            g.bench_function("rms_norm", |bn| {
                bn.iter_custom(|k| {
                    pairs(&p, k, &mut copy, &mut || {
                        rms.forward(black_box(&x), &mut y).unwrap()
                    })
                })
            });
            g.finish();
        }
    }
}

/// BatchNorm training (against read + copy), eval and GroupNorm (against copy).
fn channels(c: &mut Criterion<BaselineUnits>) {
    for (name, layout, ch) in CHANNEL_SHAPES {
        let (n, hw) = n_hw(layout);
        let x = data(n * hw * ch);
        let (w, b) = (data(ch), data(ch));
        let (rm, rv) = (vec![1.0e4f32; ch], vec![0.1f32; ch]);
        let (mut y, mut y2) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        let (mut m, mut s) = (vec![0.0f32; ch], vec![0.0f32; ch]);
        for t in threads() {
            let p = pool(t);
            let mut g = group(c, format!("paired/bn/f32/{name}/threads{t}"), x.len());
            let bn_op = BatchNorm::new(ch).weight(&w).bias(&b);
            g.bench_function("batch_norm_train_vs_read_copy", |bn| {
                bn.iter_custom(|k| {
                    pairs(
                        &p,
                        k,
                        &mut || {
                            black_box(xor_fold(black_box(&x)));
                            y2.copy_from_slice(black_box(&x));
                        },
                        &mut || {
                            bn_op
                                .forward_train(black_box(&x), layout, &mut y, None, &mut m, &mut s)
                                .unwrap()
                        },
                    )
                })
            });
            let mut copy = || y2.copy_from_slice(black_box(&x));
            g.bench_function("batch_norm_eval", |bn| {
                bn.iter_custom(|k| {
                    pairs(&p, k, &mut copy, &mut || {
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
                        pairs(&p, k, &mut copy, &mut || {
                            gn.forward(black_box(&x), n, hw, &mut y).unwrap()
                        })
                    })
                });
            }
            g.finish();
        }
    }
}

/// LayerNorm and RMSNorm backward (dweight, dbias asked for) against a copy of 1.5 × the
/// elements.
fn backward(c: &mut Criterion<BaselineUnits>) {
    for (rows, n) in [(4096usize, 4096usize), (65536, 256)] {
        let len = rows * n;
        let (x, dy, w) = (data(len), data(len), data(n));
        let big = data(len + len / 2);
        let mut dst = vec![0.0f32; big.len()];
        let (mut y, mut dx) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (mut m, mut s) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        let (mut dw, mut db) = (vec![0.0f32; n], vec![0.0f32; n]);
        let ln = LayerNorm::new(n).weight(&w);
        ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
        let rms = RmsNorm::new(n).weight(&w);
        for t in threads() {
            let p = pool(t);
            let mut g = group(c, format!("paired/backward/f32/{rows}x{n}/threads{t}"), len);
            let mut copy = || dst.copy_from_slice(black_box(&big));
            g.bench_function("layer_norm_backward", |bn| {
                bn.iter_custom(|k| {
                    pairs(&p, k, &mut copy, &mut || {
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
            g.bench_function("rms_norm_backward", |bn| {
                bn.iter_custom(|k| {
                    pairs(&p, k, &mut copy, &mut || {
                        rms.backward(black_box(&dy), &x, &s, &mut dx, Some(&mut dw))
                            .unwrap()
                    })
                })
            });
            g.finish();
        }
    }
}

/// Half storage: LayerNorm and RMSNorm against a copy of the same half bytes, and (128 rows)
/// against the same op in f32 on the same shape (issue 6: at most 1.3 × the f32 time).
fn half(c: &mut Criterion<BaselineUnits>) {
    fn run<T: Element>(c: &mut Criterion<BaselineUnits>, dtype: &str) {
        let conv = centred::<T>;
        for (rows, n) in [(128usize, 4096usize), (4096, 4096)] {
            let (xf, wf, bf) = (data(rows * n), data(n), data(n));
            let (x, w, b) = (conv(&xf), conv(&wf), conv(&bf));
            let (mut y, mut y2) = (x.clone(), x.clone());
            let mut yf = xf.clone();
            // the f32 op sees centred data too
            let xf: Vec<f32> = xf.iter().map(|v| v - 1.0e4).collect();
            for t in threads() {
                let p = pool(t);
                let name = format!("paired/half/{dtype}/{rows}x{n}/threads{t}");
                let mut g = group(c, name, x.len());
                let mut copy = || y2.copy_from_slice(black_box(&x));
                let ln = LayerNorm::new(n).weight(&w).bias(&b);
                let rms = RmsNorm::new(n).weight(&w);
                g.bench_function("layer_norm", |bn| {
                    bn.iter_custom(|k| {
                        pairs(&p, k, &mut copy, &mut || {
                            ln.forward(black_box(&x), &mut y).unwrap()
                        })
                    })
                });
                g.bench_function("rms_norm", |bn| {
                    bn.iter_custom(|k| {
                        pairs(&p, k, &mut copy, &mut || {
                            rms.forward(black_box(&x), &mut y).unwrap()
                        })
                    })
                });
                if rows == 128 && t == 1 {
                    let (lnf, rmsf) = (
                        LayerNorm::new(n).weight(&wf).bias(&bf),
                        RmsNorm::new(n).weight(&wf),
                    );
                    g.bench_function("layer_norm_vs_f32", |bn| {
                        bn.iter_custom(|k| {
                            pairs(
                                &p,
                                k,
                                &mut || lnf.forward(black_box(&xf), &mut yf).unwrap(),
                                &mut || ln.forward(black_box(&x), &mut y).unwrap(),
                            )
                        })
                    });
                    g.bench_function("rms_norm_vs_f32", |bn| {
                        bn.iter_custom(|k| {
                            pairs(
                                &p,
                                k,
                                &mut || rmsf.forward(black_box(&xf), &mut yf).unwrap(),
                                &mut || rms.forward(black_box(&x), &mut y).unwrap(),
                            )
                        })
                    });
                }
                g.finish();
            }
        }
    }
    run::<half::bf16>(c, "bf16");
    run::<half::f16>(c, "f16");
}

/// `data`'s values less its 1e4 offset, stored as `T` (at 1e4 a half type's resolution would
/// make every row constant).
fn centred<T: Element>(v: &[f32]) -> Vec<T> {
    v.iter()
        .map(|&x| T::from_acc(T::Acc::from_f64(x as f64 - 1.0e4)))
        .collect()
}

/// BatchNorm eval on `(N, C)` inputs of each shape, stored as `T`, against a copy.
fn bn_eval_nc<T: Element>(
    c: &mut Criterion<BaselineUnits>,
    family: &str,
    dtype: &str,
    shapes: &[(usize, usize)],
) {
    for &(n, ch) in shapes {
        let (x, w, b) = (
            centred::<T>(&data(n * ch)),
            centred::<T>(&data(ch)),
            centred::<T>(&data(ch)),
        );
        let (rm, rv) = (vec![T::Acc::ZERO; ch], vec![T::Acc::from_f64(0.1); ch]);
        let (mut y, mut y2) = (x.clone(), x.clone());
        let bn_op = BatchNorm::new(ch).weight(&w).bias(&b);
        for t in threads() {
            let p = pool(t);
            let name = format!("paired/{family}/{dtype}/{n}x{ch}/threads{t}");
            let mut g = group(c, name, x.len());
            let mut copy = || y2.copy_from_slice(black_box(&x));
            g.bench_function("batch_norm_eval", |bn| {
                bn.iter_custom(|k| {
                    pairs(&p, k, &mut copy, &mut || {
                        bn_op
                            .forward_eval(black_box(&x), Layout::Nc { n }, &rm, &rv, &mut y)
                            .unwrap()
                    })
                })
            });
            g.finish();
        }
    }
}

/// BatchNorm eval on `(N, C)` rows that are not a whole number of vectors (C = 1000: the
/// column plans' period is two rows), f32 and the half types, against a copy.
fn odd_channels(c: &mut Criterion<BaselineUnits>) {
    let shapes = [(16384, 1000)];
    bn_eval_nc::<f32>(c, "bn_eval_odd", "f32", &shapes);
    bn_eval_nc::<half::bf16>(c, "bn_eval_odd", "bf16", &shapes);
    bn_eval_nc::<half::f16>(c, "bn_eval_odd", "f16", &shapes);
}

/// BatchNorm eval on a few rows of many channels (BatchNorm1d at decode-sized batches),
/// where computing the per-channel plans is most of the call: f32 and bf16, against a copy.
fn small_batches(c: &mut Criterion<BaselineUnits>) {
    let shapes = [(1, 4096), (8, 4096), (48, 1000)];
    bn_eval_nc::<f32>(c, "bn_eval_small", "f32", &shapes);
    bn_eval_nc::<half::bf16>(c, "bn_eval_small", "bf16", &shapes);
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(BaselineUnits);
    targets = rows, channels, backward, half, odd_channels, small_batches
}
criterion_main!(benches);
