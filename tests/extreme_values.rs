//! Extreme values across the whole f32 exponent range, for every op (issue: fuzzing and the
//! robustness contract):
//! * scaling a row / channel / group by 2^k, k from −126 to +126, gives bit-identical outputs
//!   when eps = 0 (statistics scale exactly; rescue paths rescale by powers of two);
//! * |x| near f32::MAX never gives Inf/NaN statistics or outputs;
//! * subnormal-only data normalizes as its copy scaled up by an exact power of two does;
//! * weights so small that rstd·w is subnormal keep full relative precision (fuzz regression).

use proptest::prelude::*;
use simdnorm::{BatchNorm, GroupNorm, LayerNorm, Layout, RmsNorm};

/// Values in [1, 2)·±1 from a seed: every value normal, any scale 2^k with |k| ≤ 126 keeps
/// them normal and exact.
fn data(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let m = 1.0 + (s >> 40) as f32 / (1u64 << 24) as f32;
            if s & 1 == 0 { m } else { -m }
        })
        .collect()
}

fn scaled(x: &[f32], k: i32) -> Vec<f32> {
    // 2^k as a product of two normal factors (2^±126 alone is fine; this keeps it general)
    let (a, b) = (2f32.powi(k / 2), 2f32.powi(k - k / 2));
    x.iter().map(|v| v * a * b).collect()
}

/// All four ops (LN, RMS, BN train Nchw and Nc, GN) with eps = 0 on `x` of shape (4, 3, 10).
fn outputs(x: &[f32]) -> Vec<u32> {
    let (n, c, hw) = (4, 3, 10);
    let w: Vec<f32> = (0..30).map(|i| 0.5 + i as f32 * 0.125).collect();
    let b: Vec<f32> = (0..30).map(|i| i as f32 - 7.0).collect();
    let mut out = Vec::new();
    let mut y = vec![0.0f32; x.len()];
    LayerNorm::new(30)
        .eps(0.0)
        .weight(&w)
        .bias(&b)
        .forward(x, &mut y)
        .unwrap();
    out.extend(y.iter().map(|v| v.to_bits()));
    RmsNorm::new(30)
        .eps(0.0)
        .weight(&w)
        .forward(x, &mut y)
        .unwrap();
    out.extend(y.iter().map(|v| v.to_bits()));
    let bn = BatchNorm::new(c).eps(0.0).weight(&w[..c]).bias(&b[..c]);
    let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
    for layout in [
        Layout::Nchw { n, hw },
        Layout::Nc { n: n * hw },
        Layout::Nhwc { n, hw },
    ] {
        bn.forward_train(x, layout, &mut y, None, &mut m, &mut s)
            .unwrap();
        out.extend(y.iter().map(|v| v.to_bits()));
    }
    GroupNorm::new(3, c)
        .eps(0.0)
        .weight(&w[..c])
        .bias(&b[..c])
        .forward(x, n, hw, &mut y)
        .unwrap();
    out.extend(y.iter().map(|v| v.to_bits()));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// op(2^k·x) == op(x) bit for bit for every op, k over the whole normal exponent range.
    #[test]
    fn every_op_is_scale_invariant_over_the_exponent_range(seed: u64, k in -125i32..=126) {
        let x = data(seed, 120);
        prop_assert_eq!(outputs(&x), outputs(&scaled(&x, k)));
    }

    /// Subnormal-only data (x·2^-140: few significant bits left) normalizes exactly as its copy
    /// scaled back up by 2^140 (an exact scaling of the subnormal values themselves).
    #[test]
    fn subnormal_data_behaves_as_its_rescaled_copy(seed: u64, k in 127i32..=148) {
        let x = data(seed, 120);
        let sub = scaled(&x, -k);
        prop_assert!(sub.iter().all(|v| v.abs() < f32::MIN_POSITIVE));
        let up = scaled(&sub, 120); // exact: back to normal values
        prop_assert_eq!(outputs(&sub), outputs(&up));
    }

    /// Values near ±f32::MAX: finite statistics and outputs everywhere.
    #[test]
    fn values_near_f32_max_stay_finite(seed: u64, k in 124i32..=127) {
        let x: Vec<f32> = scaled(&data(seed, 120), k).iter().map(|v| v.clamp(-f32::MAX, f32::MAX)).collect();
        let (mut y, mut m, mut r) = (vec![0.0f32; 120], vec![0.0f32; 4], vec![0.0f32; 4]);
        LayerNorm::new(30).eps(0.0).forward_with_stats(&x, &mut y, &mut m, &mut r).unwrap();
        prop_assert!(y.iter().chain(&m).chain(&r).all(|v| v.is_finite()));
        RmsNorm::new(30).eps(0.0).forward_with_stats(&x, &mut y, &mut r).unwrap();
        prop_assert!(y.iter().chain(&r).all(|v| v.is_finite()));
        let (mut bm, mut bs) = (vec![0.0f32; 3], vec![0.0f32; 3]);
        for layout in [Layout::Nchw { n: 4, hw: 10 }, Layout::Nc { n: 40 }] {
            BatchNorm::new(3).eps(0.0).forward_train(&x, layout, &mut y, None, &mut bm, &mut bs).unwrap();
            prop_assert!(y.iter().chain(&bm).chain(&bs).all(|v| v.is_finite()));
        }
        let (mut gm, mut gs) = (vec![0.0f32; 4], vec![0.0f32; 4]);
        GroupNorm::new(1, 3).eps(0.0).forward_with_stats(&x, 4, 10, &mut y, &mut gm, &mut gs).unwrap();
        prop_assert!(y.iter().chain(&gm).chain(&gs).all(|v| v.is_finite()));
    }
}

/// Fuzz regression (batch_norm, group_norm): a weight of 6.4e-41 made rstd·w subnormal; folded
/// into one factor it kept ~13 bits (5e-6 relative error on a normal output). The weight is
/// now applied after rstd there.
#[test]
fn subnormal_products_of_rstd_and_weight_keep_precision() {
    let w = [6.4e-41f32, 1.2e-39, 1.0];
    let x = [1.0e30f32, 2.0e30, -3.0e29, 1.0, 2.0, 3.0, -0.5, 0.25, 0.0];
    let (rm, rv) = ([0.5f32; 3], [2.0f32; 3]);
    let mut y = [0.0f32; 9];
    BatchNorm::new(3)
        .eps(1.0)
        .weight(&w)
        .forward_eval(&x, Layout::Nchw { n: 1, hw: 3 }, &rm, &rv, &mut y)
        .unwrap();
    for (i, v) in y.iter().enumerate() {
        let j = i / 3;
        let want = (x[i] as f64 - 0.5) / 3f64.sqrt() * w[j] as f64;
        let tol = 4.0 * f32::EPSILON as f64 * want.abs() + 1.5e-45;
        assert!((*v as f64 - want).abs() <= tol, "y[{i}] = {v}, want {want}");
    }
    let mut g = [0.0f32; 9];
    GroupNorm::instance(3)
        .eps(0.0)
        .weight(&w)
        .forward(&x, 1, 3, &mut g)
        .unwrap();
    assert!(g[0] != 0.0 && g.iter().all(|v| v.is_finite()));
    let xs: Vec<f64> = x[..3].iter().map(|v| *v as f64).collect();
    let mean = xs.iter().sum::<f64>() / 3.0;
    let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 3.0;
    // a subnormal output: 4ε relative plus one spacing of the subnormal range
    let want = (xs[0] - mean) / var.sqrt() * w[0] as f64;
    let tol = 4.0 * f32::EPSILON as f64 * want.abs() + 1.5e-45;
    let err = (g[0] as f64 - want).abs();
    assert!(err <= tol, "{:e} vs {want:e} (tol {tol:e})", g[0] as f64);
}
