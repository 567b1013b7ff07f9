//! BatchNorm (train, eval, masked; Nc, Nchw, Nhwc) and GroupNorm / InstanceNorm against the
//! oracle, running statistics over several batches, edge semantics, bad inputs, determinism.

mod common;

use common::{Rng, from_f64, storage_ulp, tol};
use proptest::prelude::*;
use simdnorm::oracle::{self, RefSet};
use simdnorm::{BatchNorm, Element, Float, GroupNorm, Layout, NormError, RunningStats};

/// K of the golden tolerance rule (tests/data/GOLDEN.md), as in norm_ops.rs: outputs within
/// `8·ε·s` of the reference, `s = |w|·(1 + |x̂| + |μ|·r) + |b|`. Each output is
/// `((x − p) − m)·(a·w) + b` with `x − p` exact or one rounding, `m` within a few ε·σ, `a`
/// (from f64) and `a·w` one rounding each, and one fma: about 5 roundings of terms bounded by
/// `s`, plus the statistics' own error (≤ 2ε relative in `r`). The mean is held to the moment
/// kernels' tolerance (`common::tol`, relative to |mean| + σ) and its error carried into
/// `y` as `δμ·r·|w|`: BatchNorm's column means come from Welford down the rows, whose
/// rounding grows like √rows (9.3 ε·σ seen on 95 rows of f64: a CI failure at K = 8).
const K: f64 = 8.0;

/// Checks outputs and statistics: element `i` is normalized by set `set(i)` (None: padding,
/// must be exactly 0) with the weight and bias of channel `ch(i)`.
#[allow(clippy::too_many_arguments)]
fn check<T: Element>(
    x: &[T],
    y: &[T],
    ry: &[f64],
    sets: &[RefSet],
    set: impl Fn(usize) -> Option<usize>,
    ch: impl Fn(usize) -> usize,
    w: &[T],
    b: &[T],
    mean: &[T::Acc],
    rstd: &[T::Acc],
    what: &str,
) {
    let e = T::Acc::EPSILON.to_f64();
    // σ of each set around the reference mean
    let mut ss = vec![(0.0f64, 0usize); sets.len()];
    for (i, v) in x.iter().enumerate() {
        if let Some(s) = set(i) {
            ss[s].0 += (v.to_acc().to_f64() - sets[s].mean).powi(2);
            ss[s].1 += 1;
        }
    }
    for (s, r) in sets.iter().enumerate() {
        if r.mean.is_nan() {
            assert!(
                mean[s].is_nan() && rstd[s].is_nan(),
                "{what}: set {s} not NaN"
            );
            continue;
        }
        let sigma = (ss[s].0 / ss[s].1 as f64).sqrt();
        let got = mean[s].to_f64();
        // the moment kernels' own tolerance (tests/common: 17 ε for f32, 45 ε for f64,
        // relative to |mean| + σ): BatchNorm's column means come from Welford down the rows,
        // whose rounding grows like √rows (measured 9.3 ε·σ on 95 rows of f64, beyond K)
        assert!(
            (got - r.mean).abs() <= tol::<T::Acc>() * (r.mean.abs() + sigma),
            "{what}: set {s} mean {got} vs {}",
            r.mean
        );
        let kappa = r.mean.abs() * r.rstd;
        let got = rstd[s].to_f64();
        assert!(
            (got - r.rstd).abs() <= K * e * r.rstd * (1.0 + e * kappa * kappa),
            "{what}: set {s} rstd {got} vs {}",
            r.rstd
        );
    }
    for (i, v) in y.iter().enumerate() {
        let got = v.to_acc().to_f64();
        let Some(s) = set(i) else {
            assert_eq!(got.to_bits(), 0, "{what}: padding y[{i}] = {got}");
            continue;
        };
        let (mu, r) = (sets[s].mean, sets[s].rstd);
        if mu.is_nan() {
            assert!(got.is_nan(), "{what}: y[{i}] of a NaN set is {got}");
            continue;
        }
        let c = ch(i);
        let wc = w.get(c).map_or(1.0, |v| v.to_acc().to_f64());
        let bc = b.get(c).map_or(0.0, |v| v.to_acc().to_f64());
        let xhat = (x[i].to_acc().to_f64() - mu) * r;
        let sc = wc.abs() * (1.0 + xhat.abs() + mu.abs() * r) + bc.abs();
        // plus the mean's own error (checked above) carried through: δμ·r·|w|
        let sigma = (ss[s].0 / ss[s].1 as f64).sqrt();
        let carried = tol::<T::Acc>() * (mu.abs() + sigma) * r * wc.abs();
        let tol = storage_ulp::<T>(ry[i]) + K * e * sc + carried;
        assert!(
            (got - ry[i]).abs() <= tol,
            "{what}: y[{i}] = {got}, reference {} (tol {tol:e})",
            ry[i]
        );
    }
}

/// Channel of element `i` for a layout with `c` channels.
fn channel(layout: Layout, c: usize, i: usize) -> usize {
    match layout {
        Layout::Nchw { hw, .. } => (i / hw) % c,
        _ => i % c,
    }
}

/// Input with per-channel offsets up to `offset`·σ and per-channel scales.
fn data<T: Element>(rng: &mut Rng, layout: Layout, c: usize, offset: f64, scale: f64) -> Vec<T> {
    let (n, hw) = match layout {
        Layout::Nc { n } => (n, 1),
        Layout::Nchw { n, hw } | Layout::Nhwc { n, hw } => (n, hw),
    };
    let chans: Vec<(f64, f64)> = (0..c)
        .map(|_| (offset * rng.sym(), scale * (1.0 + rng.sym().abs())))
        .collect();
    (0..n * c * hw)
        .map(|i| {
            let (m, s) = chans[channel(layout, c, i)];
            from_f64::<T>(s * (m + rng.normal()))
        })
        .collect()
}

fn layout_of(kind: u8, n: usize, hw: usize) -> Layout {
    match kind {
        0 => Layout::Nc { n },
        1 => Layout::Nchw { n, hw },
        _ => Layout::Nhwc { n, hw },
    }
}

#[allow(clippy::too_many_arguments)]
fn bn_train_case<T: Element>(
    layout: Layout,
    c: usize,
    affine: bool,
    eps: f64,
    offset: f64,
    scale: f64,
    seed: u64,
) {
    let mut rng = Rng(seed);
    let x: Vec<T> = data(&mut rng, layout, c, offset, scale);
    let (w, b): (Vec<T>, Vec<T>) = if affine {
        (
            (0..c).map(|_| from_f64(rng.normal())).collect(),
            (0..c).map(|_| from_f64(rng.normal())).collect(),
        )
    } else {
        (vec![], vec![])
    };
    let mut bn = BatchNorm::new(c).eps(eps);
    if affine {
        bn = bn.weight(&w).bias(&b);
    }
    let (n, hw, last) = match layout {
        Layout::Nc { n } => (n, 1, true),
        Layout::Nchw { n, hw } => (n, hw, false),
        Layout::Nhwc { n, hw } => (n, hw, true),
    };
    let (ry, sets) = oracle::batch_norm(&x, n, c, hw, last, None, &w, &b, eps);
    let mut y = vec![T::from_acc(T::Acc::NAN); x.len()];
    let (mut mean, mut inv) = (vec![T::Acc::NAN; c], vec![T::Acc::NAN; c]);
    bn.forward_train(&x, layout, &mut y, None, &mut mean, &mut inv)
        .unwrap();
    let what = format!("{layout:?} c={c} eps={eps} offset={offset:e} scale={scale:e}");
    check(
        &x,
        &y,
        &ry,
        &sets,
        |i| Some(channel(layout, c, i)),
        |i| channel(layout, c, i),
        &w,
        &b,
        &mean,
        &inv,
        &what,
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Every layout, channel counts across the lane width (1..=40: every remainder of 16),
    /// odd spatial sizes, per-channel |mean|/σ up to 1e6 and scales 1e-30..1e30.
    #[test]
    fn batch_norm_train_matches_oracle(
        kind in 0u8..3, n in 1usize..6, c in 1usize..41, hw in 1usize..24,
        affine: bool, eps in prop_oneof![Just(0.0), Just(1e-5), 0.0f64..1.0],
        offset in prop_oneof![Just(0.0), Just(1e3), Just(1e6)],
        scale_exp in -30i32..31, seed: u64,
    ) {
        let (n, hw) = (n + 1, hw); // n·hw ≥ 2 in training
        let layout = layout_of(kind, n, hw);
        let scale = 10f64.powi(scale_exp);
        bn_train_case::<f32>(layout, c, affine, eps, offset, scale, seed);
        bn_train_case::<f64>(layout, c, affine, eps, offset, 10f64.powi(scale_exp * 5), seed);
    }

    /// Eval: `y = (x − rm)/sqrt(rv + eps)·w + b` per channel in every layout, below and
    /// above the 64 rows from which `Nc` / `Nhwc` plans are built for all channels at once.
    #[test]
    fn batch_norm_eval_matches_formula(
        kind in 0u8..3, n in prop_oneof![1usize..5, 63usize..67], c in 1usize..41,
        hw in 1usize..20, seed: u64,
    ) {
        let layout = layout_of(kind, n, hw);
        let mut rng = Rng(seed);
        let x: Vec<f32> = data(&mut rng, layout, c, 10.0, 1.0);
        let rm: Vec<f32> = (0..c).map(|_| 10.0 * rng.sym() as f32).collect();
        let rv: Vec<f32> = (0..c).map(|_| rng.sym().abs() as f32 * 4.0).collect();
        let w: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
        let mut y = vec![f32::NAN; x.len()];
        BatchNorm::new(c).weight(&w).bias(&b)
            .forward_eval(&x, layout, &rm, &rv, &mut y).unwrap();
        let e = f32::EPSILON as f64;
        for (i, v) in y.iter().enumerate() {
            let j = channel(layout, c, i);
            let (mu, r) = (rm[j] as f64, 1.0 / (rv[j] as f64 + 1e-5).sqrt());
            let xhat = (x[i] as f64 - mu) * r;
            let want = xhat * w[j] as f64 + b[j] as f64;
            let s = (w[j] as f64).abs() * (1.0 + xhat.abs() + mu.abs() * r) + (b[j] as f64).abs();
            prop_assert!((*v as f64 - want).abs() <= K * e * s, "y[{}] = {} vs {}", i, v, want);
        }
    }

    /// Masked BatchNorm equals the statistics of the valid positions alone; padding is 0.
    #[test]
    fn masked_batch_norm_uses_valid_positions_only(
        n in 1usize..6, c in 1usize..20, hw in 1usize..40, seed: u64, offset in 0.0f64..1e4,
    ) {
        let mut rng = Rng(seed);
        let layout = Layout::Nchw { n, hw };
        let x: Vec<f32> = data(&mut rng, layout, c, offset, 1.0);
        let mut lengths: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % (hw + 1)).collect();
        lengths[0] = lengths[0].max(2.min(hw));
        prop_assume!(lengths.iter().sum::<usize>() >= 2);
        let w: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
        let b: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
        let (ry, sets) = oracle::batch_norm(&x, n, c, hw, false, Some(&lengths), &w, &b, 1e-5);
        // the statistics of the valid values gathered into a compact tensor
        for (ch, set) in sets.iter().enumerate() {
            let valid: Vec<f32> = (0..n)
                .flat_map(|i| x[(i * c + ch) * hw..][..lengths[i]].to_vec())
                .collect();
            let m = oracle::moments(&valid);
            prop_assert_eq!(m.mean, set.mean);
        }
        let mut y = vec![f32::NAN; x.len()];
        let (mut mean, mut inv) = (vec![f32::NAN; c], vec![f32::NAN; c]);
        let (mut rm, mut rv, mut nbt) = (vec![0.0f32; c], vec![1.0f32; c], 0u64);
        BatchNorm::new(c).weight(&w).bias(&b).forward_train_masked(
            &x, n, hw, &lengths, &mut y,
            Some(RunningStats { mean: &mut rm, var: &mut rv, num_batches_tracked: &mut nbt }),
            &mut mean, &mut inv,
        ).unwrap();
        let set = |i: usize| (i % hw < lengths[i / (c * hw)]).then_some((i / hw) % c);
        check(&x, &y, &ry, &sets, set, |i| (i / hw) % c, &w, &b, &mean, &inv, "masked");
        for (j, s) in sets.iter().enumerate() {
            let want = 0.9 + 0.1 * s.var_unbiased;
            prop_assert!((rv[j] as f64 - want).abs() <= 4.0 * f32::EPSILON as f64 * want.abs().max(1.0));
        }
    }

    /// GroupNorm with groups ∈ {1, 2, C} (and any divisor), against the oracle.
    #[test]
    fn group_norm_matches_oracle(
        n in 1usize..4, cpg in 1usize..6, g_kind in 0u8..3, hw in 1usize..40,
        affine: bool, offset in prop_oneof![Just(0.0), Just(1e4)], seed: u64,
    ) {
        let groups = [1, 2, 3][g_kind as usize];
        let c = groups * cpg;
        let mut rng = Rng(seed);
        let layout = Layout::Nchw { n, hw };
        let x: Vec<f32> = data(&mut rng, layout, c, offset, 1.0);
        let (w, b): (Vec<f32>, Vec<f32>) = if affine {
            ((0..c).map(|_| rng.normal() as f32).collect(), (0..c).map(|_| rng.normal() as f32).collect())
        } else {
            (vec![], vec![])
        };
        for (gn, g) in [(GroupNorm::new(groups, c), groups), (GroupNorm::instance(c), c)] {
            let gn = if affine { gn.weight(&w).bias(&b) } else { gn };
            let (ry, sets) = oracle::group_norm(&x, n, c, hw, g, &w, &b, 1e-5);
            let mut y = vec![f32::NAN; x.len()];
            let (mut mean, mut rstd) = (vec![f32::NAN; n * g], vec![f32::NAN; n * g]);
            gn.forward_with_stats(&x, n, hw, &mut y, &mut mean, &mut rstd).unwrap();
            let set = |i: usize| Some(i / (c * hw) * g + (i / hw) % c / (c / g));
            check(&x, &y, &ry, &sets, set, |i| (i / hw) % c, &w, &b, &mean, &rstd, "group norm");
        }
    }
}

/// Running statistics over several batches, both momentum modes, against PyTorch's update
/// rule applied to the oracle's batch statistics in f64.
#[test]
fn running_statistics_follow_pytorch_rules() {
    for momentum in [Some(0.1), Some(1.0), Some(0.0), None] {
        for layout in [
            Layout::Nc { n: 7 },
            Layout::Nchw { n: 3, hw: 5 },
            Layout::Nhwc { n: 2, hw: 9 },
        ] {
            let c = 19;
            let bn = BatchNorm::<f64>::new(c).momentum(momentum);
            let (mut rm, mut rv, mut nbt) = (vec![0.5; c], vec![2.0; c], 3u64);
            let (mut em, mut ev) = (rm.clone(), rv.clone());
            let mut rng = Rng(42);
            for batch in 0..4 {
                let x: Vec<f64> = data(&mut rng, layout, c, 3.0, 1.0);
                let (n, hw, last) = match layout {
                    Layout::Nc { n } => (n, 1, true),
                    Layout::Nchw { n, hw } => (n, hw, false),
                    Layout::Nhwc { n, hw } => (n, hw, true),
                };
                let (_, sets) = oracle::batch_norm::<f64>(&x, n, c, hw, last, None, &[], &[], 1e-5);
                let mut y = vec![0.0; x.len()];
                let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
                let running = RunningStats {
                    mean: &mut rm,
                    var: &mut rv,
                    num_batches_tracked: &mut nbt,
                };
                bn.forward_train(&x, layout, &mut y, Some(running), &mut sm, &mut si)
                    .unwrap();
                assert_eq!(nbt, 4 + batch, "num_batches_tracked");
                let f = momentum.unwrap_or(1.0 / nbt as f64);
                for j in 0..c {
                    em[j] = (1.0 - f) * em[j] + f * sets[j].mean;
                    ev[j] = (1.0 - f) * ev[j] + f * sets[j].var_unbiased;
                    let tol = 16.0 * f64::EPSILON * (em[j].abs() + ev[j].abs() + 1.0);
                    assert!((rm[j] - em[j]).abs() <= tol, "{momentum:?} {layout:?} mean");
                    assert!((rv[j] - ev[j]).abs() <= tol, "{momentum:?} {layout:?} var");
                }
            }
        }
    }
}

/// Constant channels at large magnitude give exactly the bias, with eps = 0 (InvStd rule);
/// a NaN stays in its channel; values near f32::MAX normalize like their rescaled copy.
#[test]
fn edge_semantics() {
    let (n, c, hw) = (4, 5, 7);
    for layout in [
        Layout::Nc { n: n * hw },
        Layout::Nchw { n, hw },
        Layout::Nhwc { n, hw },
    ] {
        let mut rng = Rng(7);
        let mut x: Vec<f32> = data(&mut rng, layout, c, 1.0, 1.0);
        for (i, v) in x.iter_mut().enumerate() {
            match channel(layout, c, i) {
                1 => *v = 3.0e37,
                2 => *v *= 2.5e37, // |v| ≤ 11 here: up to ~2.8e38
                _ => {}
            }
        }
        let b = [1.0f32, 2.0, 3.0, 4.0, 5.0];
        let bn = BatchNorm::new(c).eps(0.0).bias(&b);
        let mut y = vec![f32::NAN; x.len()];
        let (mut mean, mut inv) = ([0.0f32; 5], [0.0f32; 5]);
        bn.forward_train(&x, layout, &mut y, None, &mut mean, &mut inv)
            .unwrap();
        // channel 1: constant at 3e37 → exactly its bias; channel 2: |x| up to ~3e38, finite
        for (i, v) in y.iter().enumerate() {
            match channel(layout, c, i) {
                1 => assert_eq!(*v, 2.0, "{layout:?} constant channel"),
                _ => assert!(v.is_finite(), "{layout:?} y[{i}] = {v}"),
            }
        }
        assert_eq!((mean[1], inv[1]), (3.0e37, 0.0));
        // the huge channel normalizes as its copy scaled by 2^-100 does
        let scaled: Vec<f32> = x.iter().map(|v| v * 2f32.powi(-100)).collect();
        let mut y2 = vec![f32::NAN; x.len()];
        bn.forward_train(&scaled, layout, &mut y2, None, &mut mean, &mut inv)
            .unwrap();
        for i in (0..x.len()).filter(|&i| channel(layout, c, i) == 2) {
            assert!(
                (y[i] - y2[i]).abs() <= 1e-5 * (1.0 + y2[i].abs()),
                "{layout:?} rescaled"
            );
        }
        // NaN in channel 3 → channel 3 NaN, others untouched
        let i3 = (0..x.len()).find(|&i| channel(layout, c, i) == 3).unwrap();
        x[i3] = f32::NAN;
        let mut y3 = vec![0.0f32; x.len()];
        bn.forward_train(&x, layout, &mut y3, None, &mut mean, &mut inv)
            .unwrap();
        for i in 0..x.len() {
            let ch = channel(layout, c, i);
            assert_eq!(y3[i].is_nan(), ch == 3, "{layout:?} NaN confinement at {i}");
            if ch != 3 {
                assert_eq!(y3[i].to_bits(), y[i].to_bits(), "{layout:?} other channels");
            }
        }
        assert!(mean[3].is_nan() && inv[3].is_nan() && !mean[0].is_nan());
    }
    // GroupNorm: a constant group gives exactly the biases; NaN stays in its (sample, group)
    let mut x = vec![1.0e30f32; 2 * 4 * 3];
    x[0] = 5.0;
    x[13] = f32::NAN; // sample 1, channel 0
    let b = [1.0f32, 2.0, 3.0, 4.0];
    let mut y = vec![0.0f32; x.len()];
    GroupNorm::new(2, 4)
        .eps(0.0)
        .bias(&b)
        .forward(&x, 2, 3, &mut y)
        .unwrap();
    assert_eq!(&y[6..12], &[3.0, 3.0, 3.0, 4.0, 4.0, 4.0]);
    assert!(y[12..18].iter().all(|v| v.is_nan()));
    assert!(y[..6].iter().all(|v| v.is_finite()) && y[18..].iter().all(|v| v.is_finite()));
}

/// Channels the fast path's `m2 = 0` sends to the rescue, side by side in one vector of
/// channels: constant ones (0, ±0 mixed, 5, −3e37, a subnormal) keep the fast path's moments
/// (every value is the pilot) and give exactly the bias; zeros with one tiny value, and a
/// channel of σ 1e-20, must be recomputed at a scale: with eps = 0 their outputs are the
/// oracle's O(1) values, not the 0 of a constant channel. Training BatchNorm in every
/// layout (columns, short and long `Nchw` segments) and InstanceNorm (rows), f32 and f64,
/// against the oracle; and the same without the rescued channels (the constant ones alone).
#[test]
fn constant_channels_keep_the_fast_path_and_tiny_ones_are_rescued() {
    fn case<T: Element>(layout: Layout, tiny: f64, sub: f64, rescued: bool) {
        let c = 20;
        let (n, hw) = match layout {
            Layout::Nc { n } => (n, 1),
            Layout::Nchw { n, hw } | Layout::Nhwc { n, hw } => (n, hw),
        };
        let mut rng = Rng(21);
        let mut x: Vec<T> = data(&mut rng, layout, c, 1.0, 1.0);
        for (i, v) in x.iter_mut().enumerate() {
            let first = i < c * hw
                && match layout {
                    Layout::Nchw { .. } => i % hw == hw / 2,
                    _ => true,
                };
            *v = from_f64(match channel(layout, c, i) {
                0 => 0.0,
                1 => [0.0, -0.0][i % 2],
                2 => 5.0,
                3 => -3.0e37,
                4 => sub,
                5 if rescued && first => tiny,
                5 if rescued => 0.0,
                6 if rescued => 1.0e-20 * (1.0 + rng.normal()),
                _ => continue,
            });
        }
        let b: Vec<T> = (0..c).map(|j| from_f64(j as f64 + 1.0)).collect();
        let w: Vec<T> = vec![from_f64(1.0); c];
        for eps in [0.0, 1e-5] {
            let what = format!("{} {layout:?} eps {eps}", std::any::type_name::<T>());
            let bn = BatchNorm::new(c).eps(eps).weight(&w).bias(&b);
            let (ry, sets) = oracle::batch_norm(
                &x,
                n,
                c,
                hw,
                !matches!(layout, Layout::Nchw { .. }),
                None,
                &w,
                &b,
                eps,
            );
            let mut y = vec![from_f64::<T>(f64::NAN); x.len()];
            let (mut mean, mut inv) = (vec![T::Acc::NAN; c], vec![T::Acc::NAN; c]);
            bn.forward_train(&x, layout, &mut y, None, &mut mean, &mut inv)
                .unwrap();
            let ch = |i: usize| channel(layout, c, i);
            check(
                &x,
                &y,
                &ry,
                &sets,
                |i| Some(ch(i)),
                ch,
                &w,
                &b,
                &mean,
                &inv,
                &what,
            );
            for (i, v) in y.iter().enumerate() {
                let j = ch(i);
                if j < 5 {
                    assert_eq!(
                        v.to_acc().to_f64(),
                        j as f64 + 1.0,
                        "{what}: constant channel {j}"
                    );
                }
                // the smallest |x̂| of a channel of N values with one spike: 1/√(N − 1)
                if j == 5 && rescued && eps == 0.0 {
                    let low = 0.5 / ((n * hw) as f64).sqrt();
                    let d = (v.to_acc().to_f64() - (j as f64 + 1.0)).abs();
                    assert!(d > low, "{what}: tiny channel {j} at {i}: {d}");
                }
            }
            let Layout::Nchw { .. } = layout else {
                continue;
            };
            // InstanceNorm: each (sample, channel) a row of `hw` values
            let inorm = GroupNorm::instance(c).eps(eps).weight(&w).bias(&b);
            let (ry, sets) = oracle::group_norm(&x, n, c, hw, c, &w, &b, eps);
            let (mut mean, mut rstd) = (vec![T::Acc::NAN; n * c], vec![T::Acc::NAN; n * c]);
            inorm
                .forward_with_stats(&x, n, hw, &mut y, &mut mean, &mut rstd)
                .unwrap();
            check(
                &x,
                &y,
                &ry,
                &sets,
                |i| Some(i / hw),
                ch,
                &w,
                &b,
                &mean,
                &rstd,
                &what,
            );
            for (i, v) in y.iter().enumerate() {
                if ch(i) < 5 {
                    assert_eq!(
                        v.to_acc().to_f64(),
                        ch(i) as f64 + 1.0,
                        "{what}: constant row {i}"
                    );
                }
            }
            let spike = hw / 2 + 5 * hw;
            if rescued && eps == 0.0 {
                assert!(y[spike].to_acc().to_f64() > 6.0 + 1.0, "{what}: tiny row");
            }
        }
    }
    // (48, 20) and Nhwc (4, 9, 20): 20 channels are read 12 rows at a time
    // (`columns::folded`), which keeps constant channels but hands any other rescue on
    for layout in [
        Layout::Nc { n: 40 },
        Layout::Nc { n: 48 },
        Layout::Nchw { n: 6, hw: 5 },
        Layout::Nchw { n: 3, hw: 70 },
        Layout::Nhwc { n: 4, hw: 9 },
    ] {
        for rescued in [true, false] {
            case::<f32>(layout, 1.0e-30, 1.0e-40, rescued);
            case::<f64>(layout, 1.0e-150, 1.0e-310, rescued);
        }
    }
}

/// Eval with running statistics PyTorch would turn into NaN or a zero scale: a NaN or
/// negative running variance (`1/sqrt(var + eps)` is NaN) or a NaN running mean makes that
/// channel's outputs NaN and no other's; an infinite variance scales by 0 (outputs = bias);
/// zero variance with eps = 0 gives the bias (the InvStd rule). Every layout, f32 and f64.
#[test]
fn eval_with_non_finite_running_statistics() {
    fn case<T: Element>() {
        let (n, c, hw) = (3, 6, 5);
        let nan = T::Acc::NAN;
        let inf = T::Acc::from_f64(f64::INFINITY);
        let one = T::Acc::ONE;
        let rm = [
            T::Acc::ZERO,
            T::Acc::ZERO,
            T::Acc::ZERO,
            nan,
            T::Acc::ZERO,
            one,
        ];
        let rv = [one, nan, -one, one, inf, T::Acc::ZERO];
        let w: Vec<T> = (0..c)
            .map(|j| T::from_acc(T::Acc::from_f64(j as f64 + 2.0)))
            .collect();
        let b: Vec<T> = (0..c)
            .map(|j| T::from_acc(T::Acc::from_f64(j as f64 - 0.5)))
            .collect();
        for layout in [
            Layout::Nc { n: n * hw },
            Layout::Nchw { n, hw },
            Layout::Nhwc { n, hw },
        ] {
            let mut rng = Rng(3);
            let x: Vec<T> = data(&mut rng, layout, c, 1.0, 1.0);
            let mut y = vec![T::from_acc(T::Acc::ZERO); x.len()];
            BatchNorm::new(c)
                .eps(0.0)
                .weight(&w)
                .bias(&b)
                .forward_eval(&x, layout, &rm, &rv, &mut y)
                .unwrap();
            for (i, v) in y.iter().enumerate() {
                let (j, v) = (channel(layout, c, i), v.to_acc().to_f64());
                match j {
                    1..=3 => assert!(v.is_nan(), "{layout:?} channel {j}: {v}"),
                    4 | 5 => assert_eq!(v, j as f64 - 0.5, "{layout:?} channel {j}"),
                    _ => assert!(v.is_finite(), "{layout:?} channel {j}: {v}"),
                }
            }
        }
    }
    case::<f32>();
    case::<f64>();
}

/// Training inputs large enough (≥ 32 MiB) that the normalize pass takes the rows read last
/// first (`tuning::LLC_REUSE_BYTES`): every output is its channel's
/// `(x − mean)·invstd·w + b` with the statistics returned, in every layout (a row normalized
/// with another row's channel, or skipped, fails), and the statistics match a call on the
/// same data with one thread more (bitwise).
#[test]
fn large_training_inputs_normalize_every_row() {
    let (c, hw) = (64, 4096);
    let n = (32 << 20) / 4 / (c * hw) + 1; // 33 samples: 34.6 MB of f32
    let mut rng = Rng(11);
    let w: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
    let b: Vec<f32> = (0..c).map(|_| rng.normal() as f32).collect();
    for layout in [
        Layout::Nc { n: n * hw },
        Layout::Nchw { n, hw },
        Layout::Nhwc { n, hw },
    ] {
        let x: Vec<f32> = data(&mut rng, layout, c, 3.0, 1.0);
        let mut y = vec![f32::NAN; x.len()];
        let (mut mean, mut inv) = (vec![0.0f32; c], vec![0.0f32; c]);
        let bn = BatchNorm::new(c).weight(&w).bias(&b);
        bn.forward_train(&x, layout, &mut y, None, &mut mean, &mut inv)
            .unwrap();
        let e = f32::EPSILON as f64;
        for (i, (v, xi)) in y.iter().zip(&x).enumerate() {
            let j = channel(layout, c, i);
            let (mu, r) = (mean[j] as f64, inv[j] as f64);
            let xhat = (*xi as f64 - mu) * r;
            let want = xhat * w[j] as f64 + b[j] as f64;
            let s = (w[j] as f64).abs() * (1.0 + xhat.abs() + mu.abs() * r) + (b[j] as f64).abs();
            assert!(
                (*v as f64 - want).abs() <= K * e * s,
                "{layout:?} y[{i}] = {v} vs {want}"
            );
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut y2 = vec![f32::NAN; x.len()];
        let (mut mean2, mut inv2) = (vec![0.0f32; c], vec![0.0f32; c]);
        pool.install(|| bn.forward_train(&x, layout, &mut y2, None, &mut mean2, &mut inv2))
            .unwrap();
        assert!(
            y2 == y && mean2 == mean && inv2 == inv,
            "{layout:?} 2 threads"
        );
    }
}

#[test]
fn bad_inputs_are_errors_and_write_nothing() {
    let x = vec![1.0f32; 24];
    let (w3, w4) = ([1.0f32; 3], [1.0f32; 4]);
    let sentinel = 7.0f32;
    let train = |bn: BatchNorm<'_, f32>, layout: Layout, x: &[f32], ylen: usize, c: usize| {
        let mut y = vec![sentinel; ylen];
        let (mut m, mut s) = (vec![sentinel; c], vec![sentinel; c]);
        let r = bn.forward_train(x, layout, &mut y, None, &mut m, &mut s);
        assert!(y.iter().chain(&m).chain(&s).all(|v| *v == sentinel));
        r
    };
    let nc6 = Layout::Nc { n: 6 };
    assert_eq!(
        train(BatchNorm::new(4), Layout::Nc { n: 5 }, &x, 24, 4),
        Err(NormError::LengthMismatch {
            arg: "x",
            expected: 20,
            actual: 24
        })
    );
    assert_eq!(
        train(BatchNorm::new(4), nc6, &x, 23, 4),
        Err(NormError::LengthMismatch {
            arg: "y",
            expected: 24,
            actual: 23
        })
    );
    assert_eq!(
        train(BatchNorm::new(4).weight(&w3), nc6, &x, 24, 4),
        Err(NormError::LengthMismatch {
            arg: "weight",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        train(BatchNorm::new(4).bias(&w3), nc6, &x, 24, 4),
        Err(NormError::LengthMismatch {
            arg: "bias",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        train(BatchNorm::new(4), nc6, &x, 24, 3),
        Err(NormError::LengthMismatch {
            arg: "saved_mean",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        train(BatchNorm::new(0), Layout::Nc { n: 6 }, &[], 0, 0),
        Err(NormError::ZeroLength { arg: "channels" })
    );
    assert_eq!(
        train(BatchNorm::new(4), Layout::Nchw { n: 6, hw: 0 }, &[], 0, 4),
        Err(NormError::ZeroLength { arg: "hw" })
    );
    assert_eq!(
        train(BatchNorm::new(24), Layout::Nc { n: 1 }, &x, 24, 24),
        Err(NormError::TooFewValues { per_channel: 1 })
    );
    for eps in [-1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            train(BatchNorm::new(4).eps(eps), nc6, &x, 24, 4),
            Err(NormError::InvalidEps(_))
        ));
    }
    for m in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(
            train(BatchNorm::new(4).momentum(Some(m)), nc6, &x, 24, 4),
            Err(NormError::InvalidMomentum(_))
        ));
    }
    // a huge layout whose element count overflows usize is a length mismatch, not a panic
    assert!(matches!(
        train(
            BatchNorm::new(4),
            Layout::Nchw {
                n: usize::MAX,
                hw: 3
            },
            &x,
            24,
            4
        ),
        Err(NormError::LengthMismatch { arg: "x", .. })
    ));
    // running buffers
    let (mut rm, mut rv, mut nbt) = (vec![sentinel; 3], vec![sentinel; 4], 9u64);
    let mut y = vec![sentinel; 24];
    let (mut m, mut s) = (vec![sentinel; 4], vec![sentinel; 4]);
    let running = RunningStats {
        mean: &mut rm,
        var: &mut rv,
        num_batches_tracked: &mut nbt,
    };
    assert_eq!(
        BatchNorm::new(4).forward_train(&x, nc6, &mut y, Some(running), &mut m, &mut s),
        Err(NormError::LengthMismatch {
            arg: "running.mean",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(nbt, 9);
    assert!(
        y.iter()
            .chain(&m)
            .chain(&rm)
            .chain(&rv)
            .all(|v| *v == sentinel)
    );
    // masked: lengths
    let masked = |lengths: &[usize]| {
        let mut y = vec![sentinel; 24];
        let (mut m, mut s) = (vec![sentinel; 4], vec![sentinel; 4]);
        let r =
            BatchNorm::new(4).forward_train_masked(&x, 2, 3, lengths, &mut y, None, &mut m, &mut s);
        assert!(y.iter().chain(&m).chain(&s).all(|v| *v == sentinel));
        r
    };
    assert_eq!(
        masked(&[3]),
        Err(NormError::LengthMismatch {
            arg: "lengths",
            expected: 2,
            actual: 1
        })
    );
    assert_eq!(
        masked(&[3, 4]),
        Err(NormError::LengthOutOfRange {
            index: 1,
            length: 4,
            max: 3
        })
    );
    assert_eq!(
        masked(&[1, 0]),
        Err(NormError::TooFewValues { per_channel: 1 })
    );
    // eval
    let mut y = vec![sentinel; 24];
    assert_eq!(
        BatchNorm::new(4).forward_eval(&x, nc6, &w4, &w3, &mut y),
        Err(NormError::LengthMismatch {
            arg: "running_var",
            expected: 4,
            actual: 3
        })
    );
    assert!(y.iter().all(|v| *v == sentinel));
    // GroupNorm
    let gn = |g: GroupNorm<'_, f32>, n: usize, hw: usize, ylen: usize, stats: usize| {
        let mut y = vec![sentinel; ylen];
        let (mut m, mut s) = (vec![sentinel; stats], vec![sentinel; stats]);
        let r = g.forward_with_stats(&x, n, hw, &mut y, &mut m, &mut s);
        assert!(y.iter().chain(&m).chain(&s).all(|v| *v == sentinel));
        r
    };
    assert_eq!(
        gn(GroupNorm::new(3, 4), 2, 3, 24, 6),
        Err(NormError::InvalidGroups {
            groups: 3,
            channels: 4
        })
    );
    assert_eq!(
        gn(GroupNorm::new(0, 4), 2, 3, 24, 0),
        Err(NormError::InvalidGroups {
            groups: 0,
            channels: 4
        })
    );
    assert_eq!(
        gn(GroupNorm::new(2, 4), 2, 3, 24, 3),
        Err(NormError::LengthMismatch {
            arg: "mean",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        gn(GroupNorm::new(2, 4), 2, 2, 24, 4),
        Err(NormError::LengthMismatch {
            arg: "x",
            expected: 16,
            actual: 24
        })
    );
    assert_eq!(
        gn(GroupNorm::new(2, 4).weight(&w3), 2, 3, 24, 4),
        Err(NormError::LengthMismatch {
            arg: "weight",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        gn(GroupNorm::new(2, 4), 0, 3, 24, 0),
        Err(NormError::ZeroLength { arg: "n" })
    );
    assert!(matches!(
        gn(GroupNorm::new(2, 4).eps(-1.0), 2, 3, 24, 4),
        Err(NormError::InvalidEps(_))
    ));
}

/// Bitwise identical results for pools of 1, 2, 3 and 8 threads, on inputs large enough to
/// be split (every layout, masked, GroupNorm).
#[test]
fn deterministic_across_thread_counts() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out: Vec<Vec<u64>> = Vec::new();
            let c = 24;
            for layout in [
                Layout::Nc { n: 20000 },
                Layout::Nchw { n: 40, hw: 700 },
                Layout::Nhwc { n: 8, hw: 2500 },
            ] {
                let mut rng = Rng(5);
                let x: Vec<f32> = data(&mut rng, layout, c, 100.0, 1.0);
                let mut y = vec![0.0f32; x.len()];
                let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
                BatchNorm::new(c)
                    .forward_train(&x, layout, &mut y, None, &mut m, &mut s)
                    .unwrap();
                out.push(
                    y.iter()
                        .chain(&m)
                        .chain(&s)
                        .map(|v| v.to_bits() as u64)
                        .collect(),
                );
                let rm = vec![1.0f32; c];
                BatchNorm::new(c)
                    .forward_eval(&x, layout, &rm, &rm, &mut y)
                    .unwrap();
                out.push(y.iter().map(|v| v.to_bits() as u64).collect());
                if let Layout::Nchw { n, hw } = layout {
                    let lengths: Vec<usize> = (0..n).map(|i| (i * 37) % (hw + 1)).collect();
                    BatchNorm::new(c)
                        .forward_train_masked(&x, n, hw, &lengths, &mut y, None, &mut m, &mut s)
                        .unwrap();
                    out.push(
                        y.iter()
                            .chain(&m)
                            .chain(&s)
                            .map(|v| v.to_bits() as u64)
                            .collect(),
                    );
                    let (mut gm, mut gs) = (vec![0.0f32; n * 4], vec![0.0f32; n * 4]);
                    GroupNorm::new(4, c)
                        .forward_with_stats(&x, n, hw, &mut y, &mut gm, &mut gs)
                        .unwrap();
                    out.push(
                        y.iter()
                            .chain(&gm)
                            .chain(&gs)
                            .map(|v| v.to_bits() as u64)
                            .collect(),
                    );
                }
            }
            out
        })
    };
    let one = run(1);
    for t in [2, 3, 8] {
        assert!(run(t) == one, "{t} threads differ from 1");
    }
}
