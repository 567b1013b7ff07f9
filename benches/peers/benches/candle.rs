//! LayerNorm (weight and bias) and RMSNorm (weight), f32, simdnorm against candle's fused CPU
//! ops (`candle_nn::ops::layer_norm` / `rms_norm`) and `copy_from_slice` of the same bytes;
//! then BatchNorm and GroupNorm against `candle_nn::BatchNorm` / `GroupNorm` (below),
//! in one run, for the shapes of `benches/ops.rs`, in rayon pools of 1 and 2 threads (candle
//! runs its rows with rayon's `par_chunks`, so the pool bounds both).
//!
//! candle returns a new tensor per call: its times include allocating the output (for
//! DRAM-sized outputs, the page faults of a fresh buffer), which is how its API is used.
//! simdnorm writes into a preallocated output.

use candle_core::{Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use simdnorm::{LayerNorm, RmsNorm};
use std::hint::black_box;

#[path = "../../support/mod.rs"]
mod support;
use support::{ROW_SHAPES, data, group_with_copy, in_pool, pool, threads};

fn bench(c: &mut Criterion) {
    for (rows, n) in ROW_SHAPES {
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
            let p = pool(t);
            let samples = if x.len() >= 1 << 20 { 10 } else { 100 };
            let name = format!("peers/f32/{rows}x{n}/threads{t}");
            let mut g = group_with_copy(c, name, 2 * x.len() * 4, samples, &x, &mut y);
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

/// BatchNorm (train, eval) and GroupNorm, f32, on the layouts candle takes (channels second:
/// `Nc` and `Nchw`; candle has no channels-last BatchNorm): `candle_nn::BatchNorm`
/// (`forward_t`, training updates its running statistics as ours do) and `GroupNorm`.
fn bench_channels(c: &mut Criterion) {
    use candle_nn::{Module, ModuleT};
    use simdnorm::{BatchNorm, GroupNorm, Layout};
    let shapes = [
        ("65536x256", Layout::Nc { n: 65536 }, 256usize),
        ("32x64x56x56", Layout::Nchw { n: 32, hw: 3136 }, 64),
    ];
    for (name, layout, ch) in shapes {
        let (n, hw, dims) = match layout {
            Layout::Nc { n } => (n, 1, vec![n, ch]),
            Layout::Nchw { n, hw } => (n, hw, vec![n, ch, 56, 56]),
            Layout::Nhwc { .. } => unreachable!(),
        };
        let x = data(n * hw * ch);
        let (w, b) = (data(ch), data(ch));
        let (rm, rv) = (vec![1.0e4f32; ch], vec![0.1f32; ch]);
        let mut y = vec![0.0f32; x.len()];
        let (mut m, mut s) = (vec![0.0f32; ch], vec![0.0f32; ch]);
        let dev = Device::Cpu;
        let xt = Tensor::from_slice(&x, dims, &dev).unwrap();
        let t1 = |v: &[f32]| Tensor::from_slice(v, ch, &dev).unwrap();
        let cbn = candle_nn::BatchNorm::new(ch, t1(&rm), t1(&rv), t1(&w), t1(&b), 1e-5).unwrap();
        let cgn = candle_nn::GroupNorm::new(t1(&w), t1(&b), ch, 32, 1e-5).unwrap();
        for t in threads() {
            let p = pool(t);
            let group = format!("peers/bn/f32/{name}/threads{t}");
            let mut g = group_with_copy(c, group, 2 * x.len() * 4, 10, &x, &mut y);
            let op = BatchNorm::new(ch).weight(&w).bias(&b);
            g.bench_function("simdnorm_batch_norm_train", |bn| {
                bn.iter_custom(|k| {
                    in_pool(&p, k, || {
                        op.forward_train(black_box(&x), layout, &mut y, None, &mut m, &mut s)
                            .unwrap()
                    })
                })
            });
            g.bench_function("candle_batch_norm_train", |bn| {
                bn.iter_custom(|k| in_pool(&p, k, || cbn.forward_t(black_box(&xt), true).unwrap()))
            });
            g.bench_function("simdnorm_batch_norm_eval", |bn| {
                bn.iter_custom(|k| {
                    in_pool(&p, k, || {
                        op.forward_eval(black_box(&x), layout, &rm, &rv, &mut y)
                            .unwrap()
                    })
                })
            });
            g.bench_function("candle_batch_norm_eval", |bn| {
                bn.iter_custom(|k| in_pool(&p, k, || cbn.forward_t(black_box(&xt), false).unwrap()))
            });
            if let Layout::Nchw { n, hw } = layout {
                let gn = GroupNorm::new(32, ch).weight(&w).bias(&b);
                g.bench_function("simdnorm_group_norm32", |bn| {
                    bn.iter_custom(|k| {
                        in_pool(&p, k, || gn.forward(black_box(&x), n, hw, &mut y).unwrap())
                    })
                });
                g.bench_function("candle_group_norm32", |bn| {
                    bn.iter_custom(|k| in_pool(&p, k, || cgn.forward(black_box(&xt)).unwrap()))
                });
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench, bench_channels);
criterion_main!(benches);
