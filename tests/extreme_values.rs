//! Extreme values across the whole exponent range of f32 and of f64, for every op (issue:
//! fuzzing and the robustness contract):
//! * scaling a row / channel / group by 2^k, k over the whole normal exponent range (f32:
//!   −125..=126, f64: −1021..=1022), gives bit-identical outputs when eps = 0 (statistics
//!   scale exactly; rescue paths rescale by powers of two);
//! * |x| near the type's MAX never gives Inf/NaN statistics or outputs;
//! * subnormal-only data normalizes as its copy scaled up by an exact power of two does;
//! * f64 data at any magnitude with eps > 0 matches the oracle (where eps·4^k of a rescue
//!   scale would overflow, var + eps is eps);
//! * weights so small that rstd·w is subnormal keep full relative precision (fuzz regression).

mod common;

use common::{bits, from_f64};
use proptest::prelude::*;
use simdnorm::{BatchNorm, Element, Float, GroupNorm, LayerNorm, Layout, Moments, RmsNorm};

/// The two accumulating element types, as far as these tests need them.
trait Real: Element<Acc = Self> + Copy + PartialOrd + std::fmt::Debug {
    fn of(v: f64) -> Self;
    fn f64(self) -> f64;
    fn bits(self) -> u64;
    /// The value of `bits`.
    fn from_bits64(u: u64) -> Self;
    /// 2^k, `k` within the normal exponent range.
    fn exp2(k: i32) -> Self;
    fn mul(self, o: Self) -> Self;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                v as $t
            }
            fn f64(self) -> f64 {
                self as f64
            }
            fn bits(self) -> u64 {
                self.to_bits() as u64
            }
            fn from_bits64(u: u64) -> Self {
                <$t>::from_bits(u as _)
            }
            fn exp2(k: i32) -> Self {
                (2.0 as $t).powi(k)
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
        }
    };
}
real!(f32);
real!(f64);

/// Values in [1, 2)·±1 from a seed (24 significant bits, exact in f32 and f64): every value
/// normal, any scale 2^k within the type's normal exponent range keeps them normal and exact.
fn data<T: Real>(seed: u64, n: usize) -> Vec<T> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let m = 1.0 + (s >> 40) as f64 / (1u64 << 24) as f64;
            T::of(if s & 1 == 0 { m } else { -m })
        })
        .collect()
}

fn scaled<T: Real>(x: &[T], k: i32) -> Vec<T> {
    // 2^k as a product of two normal factors (2^±126 alone is fine; this keeps it general)
    let (a, b) = (T::exp2(k / 2), T::exp2(k - k / 2));
    x.iter().map(|v| v.mul(a).mul(b)).collect()
}

/// All four ops (LN, RMS, BN train Nchw, Nc and Nhwc, GN) with eps = 0 on `x` of shape
/// (4, 3, hw), LN and RMS over rows of `3·hw`.
fn outputs<T: Real>(x: &[T], hw: usize) -> Vec<u64> {
    let (n, c) = (4, 3);
    let len = c * hw;
    assert_eq!(x.len(), n * len);
    let w: Vec<T> = (0..len).map(|i| T::of(0.5 + i as f64 * 0.125)).collect();
    let b: Vec<T> = (0..len).map(|i| T::of(i as f64 - 7.0)).collect();
    let mut out = Vec::new();
    let mut y = vec![T::of(0.0); x.len()];
    LayerNorm::new(len)
        .eps(0.0)
        .weight(&w)
        .bias(&b)
        .forward(x, &mut y)
        .unwrap();
    out.extend(y.iter().map(|v| v.bits()));
    RmsNorm::new(len)
        .eps(0.0)
        .weight(&w)
        .forward(x, &mut y)
        .unwrap();
    out.extend(y.iter().map(|v| v.bits()));
    let bn = BatchNorm::new(c).eps(0.0).weight(&w[..c]).bias(&b[..c]);
    let (mut m, mut s) = (vec![T::of(0.0); c], vec![T::of(0.0); c]);
    for layout in [
        Layout::Nchw { n, hw },
        Layout::Nc { n: n * hw },
        Layout::Nhwc { n, hw },
    ] {
        bn.forward_train(x, layout, &mut y, None, &mut m, &mut s)
            .unwrap();
        out.extend(y.iter().map(|v| v.bits()));
    }
    GroupNorm::new(3, c)
        .eps(0.0)
        .weight(&w[..c])
        .bias(&b[..c])
        .forward(x, n, hw, &mut y)
        .unwrap();
    out.extend(y.iter().map(|v| v.bits()));
    out
}

/// Segment lengths `hw` of the cases (LN and RMS rows of `3·hw`): rows shorter than a vector,
/// of a few vectors, longer than a sub-block of the statistics pass, and of 3072 values (more
/// than a block; normalized two rows at a time where their streams fill L1).
const HW: [usize; 4] = [2, 10, 200, 1024];

/// `values_near_max_stay_finite`'s check: finite statistics and outputs of every op.
fn all_finite<T: Real>(x: &[T], hw: usize) -> bool {
    let (n, c) = (4, 3);
    let len = c * hw;
    let z = T::of(0.0);
    let fin = |v: &T| v.f64().is_finite();
    let (mut y, mut m, mut r) = (vec![z; x.len()], vec![z; n], vec![z; n]);
    LayerNorm::new(len)
        .eps(0.0)
        .forward_with_stats(x, &mut y, &mut m, &mut r)
        .unwrap();
    let mut ok = y.iter().chain(&m).chain(&r).all(fin);
    RmsNorm::new(len)
        .eps(0.0)
        .forward_with_stats(x, &mut y, &mut r)
        .unwrap();
    ok &= y.iter().chain(&r).all(fin);
    let (mut bm, mut bs) = (vec![z; c], vec![z; c]);
    for layout in [Layout::Nchw { n, hw }, Layout::Nc { n: n * hw }] {
        BatchNorm::new(c)
            .eps(0.0)
            .forward_train(x, layout, &mut y, None, &mut bm, &mut bs)
            .unwrap();
        ok &= y.iter().chain(&bm).chain(&bs).all(fin);
    }
    let (mut gm, mut gs) = (vec![z; n], vec![z; n]);
    GroupNorm::new(1, c)
        .eps(0.0)
        .forward_with_stats(x, n, hw, &mut y, &mut gm, &mut gs)
        .unwrap();
    ok & y.iter().chain(&gm).chain(&gs).all(fin)
}

/// The backward passes (LN, RMS, BN train in its three layouts, GN with 3 groups and with 1)
/// with eps = 0 on `x` of shape (4, 3, hw),
/// from the forward statistics of `x` and a fixed `dy`: `dx`, then `dweight` and `dbias`, as
/// bits.
fn gradients<T: Real>(x: &[T], hw: usize) -> (Vec<u64>, Vec<u64>) {
    let (n, c) = (4, 3);
    let len = c * hw;
    let z = T::of(0.0);
    let dy: Vec<T> = data::<T>(7, x.len());
    let w: Vec<T> = (0..len).map(|i| T::of(0.5 + i as f64 * 0.125)).collect();
    let b: Vec<T> = (0..len).map(|i| T::of(i as f64 - 7.0)).collect();
    let (mut dx_all, mut dp_all) = (Vec::new(), Vec::new());
    let (mut y, mut dx) = (vec![z; x.len()], vec![z; x.len()]);
    let (mut m, mut r) = (vec![z; n], vec![z; n]);
    let (mut dw, mut db) = (vec![z; len], vec![z; len]);
    let mut keep = |dx: &[T], dp: &[&[T]]| {
        dx_all.extend(dx.iter().map(|v| v.bits()));
        dp_all.extend(dp.iter().flat_map(|d| d.iter().map(|v| v.bits())));
    };
    let ln = LayerNorm::new(len).eps(0.0).weight(&w).bias(&b);
    ln.forward_with_stats(x, &mut y, &mut m, &mut r).unwrap();
    ln.backward(&dy, x, &m, &r, &mut dx, Some(&mut dw), Some(&mut db))
        .unwrap();
    keep(&dx, &[&dw, &db]);
    let rms = RmsNorm::new(len).eps(0.0).weight(&w);
    rms.forward_with_stats(x, &mut y, &mut r).unwrap();
    rms.backward(&dy, x, &r, &mut dx, Some(&mut dw)).unwrap();
    keep(&dx, &[&dw]);
    let bn = BatchNorm::new(c).eps(0.0).weight(&w[..c]).bias(&b[..c]);
    let (mut bm, mut bs) = (vec![z; c], vec![z; c]);
    for layout in [
        Layout::Nchw { n, hw },
        Layout::Nc { n: n * hw },
        Layout::Nhwc { n, hw },
    ] {
        bn.forward_train(x, layout, &mut y, None, &mut bm, &mut bs)
            .unwrap();
        let (dwc, dbc) = (&mut dw[..c], &mut db[..c]);
        bn.backward_train(
            &dy,
            x,
            layout,
            &bm,
            &bs,
            &mut dx,
            Some(&mut *dwc),
            Some(&mut *dbc),
        )
        .unwrap();
        keep(&dx, &[dwc, dbc]);
    }
    // a group a channel, and one group of all three (segments shorter than a vector: the
    // blocks of channels for hw = 10)
    for groups in [3, 1] {
        let gn = GroupNorm::new(groups, c)
            .eps(0.0)
            .weight(&w[..c])
            .bias(&b[..c]);
        let (mut gm, mut gs) = (vec![z; n * groups], vec![z; n * groups]);
        gn.forward_with_stats(x, n, hw, &mut y, &mut gm, &mut gs)
            .unwrap();
        let (dwc, dbc) = (&mut dw[..c], &mut db[..c]);
        gn.backward(
            &dy,
            x,
            n,
            hw,
            &gm,
            &gs,
            &mut dx,
            Some(&mut *dwc),
            Some(&mut *dbc),
        )
        .unwrap();
        keep(&dx, &[dwc, dbc]);
    }
    (dx_all, dp_all)
}

/// The values of `bits` times 2^k, as bits (exact where the results are normal).
fn times<T: Real>(bits: &[u64], k: i32) -> Vec<u64> {
    bits.iter()
        .map(|&u| T::from_bits64(u).mul(T::exp2(k)).bits())
        .collect()
}

/// `x` times 2^k in any element type (exact while the results are normal).
fn scaled_any<T: Element>(x: &[T], k: i32) -> Vec<T> {
    let (a, b) = (T::Acc::exp2i(k / 2), T::Acc::exp2i(k - k / 2));
    x.iter().map(|v| T::from_acc(v.to_acc() * a * b)).collect()
}

/// The ops `outputs` leaves out, any element type, eps = 0, on `x` of shape (4, 3, hw) and
/// `resid` of its length: `forward_add` (residual and output) of LN and RMS, masked
/// BatchNorm training (lengths 1, hw, 0, hw/2), GroupNorm with one group of three channels,
/// InstanceNorm; then, with `moments`, BatchNorm eval with running statistics from `x`'s own
/// and the moment functions' statistics (`row_moments` over rows of 3·hw, `col_moments` over 3 columns,
/// `moments`, `welford`, `two_pass`, streaming `Welford` with a merge), scaled back by
/// 2^-k / 4^-k (`unscale`) so that equal bits mean an exact scaling.
fn more_outputs<T: Element>(x: &[T], resid: &[T], hw: usize, k: i32, moments: bool) -> Vec<u64> {
    let (n, c) = (4, 3);
    let len = c * hw;
    let z = from_f64::<T>(0.0);
    let za = T::Acc::from_f64(0.0);
    let w: Vec<T> = (0..len).map(|i| from_f64(0.5 + i as f64 * 0.125)).collect();
    let b: Vec<T> = (0..len).map(|i| from_f64(i as f64 - 7.0)).collect();
    let mut out = Vec::new();
    let mut y = vec![z; x.len()];
    let mut r = resid.to_vec();
    LayerNorm::new(len)
        .eps(0.0)
        .weight(&w)
        .bias(&b)
        .forward_add(x, &mut r, &mut y)
        .unwrap();
    out.extend(bits(&y));
    // the residual sum scales with the data: compare it unscaled
    out.extend(bits(&scaled_any(&r, -k)));
    let mut r = resid.to_vec();
    RmsNorm::new(len)
        .eps(0.0)
        .weight(&w)
        .forward_add(x, &mut r, &mut y)
        .unwrap();
    out.extend(bits(&y));
    let bn = BatchNorm::new(c).eps(0.0).weight(&w[..c]).bias(&b[..c]);
    let layout = Layout::Nchw { n, hw };
    let (mut m, mut s) = (vec![za; c], vec![za; c]);
    bn.forward_train(x, layout, &mut y, None, &mut m, &mut s)
        .unwrap();
    let lengths = [1, hw, 0, hw.div_ceil(2)];
    bn.forward_train_masked(x, n, hw, &lengths, &mut y, None, &mut m, &mut s)
        .unwrap();
    out.extend(bits(&y));
    GroupNorm::new(1, c)
        .eps(0.0)
        .weight(&w[..c])
        .bias(&b[..c])
        .forward(x, n, hw, &mut y)
        .unwrap();
    out.extend(bits(&y));
    GroupNorm::instance(c)
        .eps(0.0)
        .forward(x, n, hw, &mut y)
        .unwrap();
    out.extend(bits(&y));
    if !moments {
        return out;
    }
    // running statistics as a model would hold them (the batch mean, the variance 1/s²:
    // ~4^k, so with the moments)
    bn.forward_train(x, layout, &mut y, None, &mut m, &mut s)
        .unwrap();
    let var: Vec<T::Acc> = s.iter().map(|v| T::Acc::ONE / (*v * *v)).collect();
    bn.forward_eval(x, layout, &m, &var, &mut y).unwrap();
    out.extend(bits(&y));
    let unscale = |m: &Moments<T::Acc>| {
        let mean = m.mean * T::Acc::exp2i(-k);
        let m2 = m.m2 * T::Acc::exp2i(-k) * T::Acc::exp2i(-k);
        [m.count, mean.to_f64().to_bits(), m2.to_f64().to_bits()]
    };
    let mut rows = vec![Moments::<T::Acc>::EMPTY; n];
    simdnorm::row_moments(x, len, &mut rows).unwrap();
    let mut cols = vec![Moments::<T::Acc>::EMPTY; c];
    simdnorm::col_moments(x, c, &mut cols).unwrap();
    let mut st = simdnorm::Welford::new();
    st.extend(&x[..x.len() / 3]);
    let mut st2 = simdnorm::Welford::new();
    st2.extend(&x[x.len() / 3..]);
    st.merge(&st2);
    let whole = [
        simdnorm::moments(x),
        simdnorm::welford(x),
        simdnorm::two_pass(x),
        st.moments(),
    ];
    for m in rows.iter().chain(&cols).chain(&whole) {
        out.extend(unscale(m));
    }
    out
}

/// [`more_outputs`] of `x` and of `x·2^k` (with the residual scaled alike) agree.
fn more_invariant<T: Element>(
    seed: u64,
    hw: usize,
    k: i32,
    moments: bool,
) -> Result<(), TestCaseError> {
    let x: Vec<T> = data::<f64>(seed, 12 * hw)
        .iter()
        .map(|v| from_f64(*v))
        .collect();
    let resid: Vec<T> = data::<f64>(seed ^ 5, 12 * hw)
        .iter()
        .map(|v| from_f64(*v * 0.75))
        .collect();
    let (sx, sr) = (scaled_any(&x, k), scaled_any(&resid, k));
    let (a, b) = (
        more_outputs(&x, &resid, hw, 0, moments),
        more_outputs(&sx, &sr, hw, k, moments),
    );
    prop_assert_eq!(a.len(), b.len());
    if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
        // which output: forward_add y and residual, RMS forward_add, masked BN, GN,
        // InstanceNorm, BN eval (each of x's length), then the moments
        let n = x.len();
        prop_assert!(
            false,
            "output {} (part {}, element {}): {:e} vs {:e}",
            i,
            i / n,
            i % n,
            f64::from_bits(a[i]),
            f64::from_bits(b[i])
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// op(2^k·x) == op(x) bit for bit for every op, k over the whole normal exponent range.
    #[test]
    fn every_op_is_scale_invariant_over_the_exponent_range(
        seed: u64,
        k in -125i32..=126,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        let x = data::<f32>(seed, 12 * hw);
        prop_assert_eq!(outputs(&x, hw), outputs(&scaled(&x, k), hw));
    }

    /// Subnormal-only data (x·2^-140: few significant bits left) normalizes exactly as its copy
    /// scaled back up by 2^140 (an exact scaling of the subnormal values themselves).
    #[test]
    fn subnormal_data_behaves_as_its_rescaled_copy(seed: u64, k in 127i32..=148) {
        let x = data::<f32>(seed, 120);
        let sub = scaled(&x, -k);
        prop_assert!(sub.iter().all(|v| v.abs() < f32::MIN_POSITIVE));
        let up = scaled(&sub, 120); // exact: back to normal values
        prop_assert_eq!(outputs(&sub, 10), outputs(&up, 10));
    }

    /// Values near ±f32::MAX: finite statistics and outputs everywhere.
    #[test]
    fn values_near_f32_max_stay_finite(seed: u64, k in 124i32..=127) {
        let x: Vec<f32> = scaled(&data::<f32>(seed, 120), k).iter().map(|v| v.clamp(-f32::MAX, f32::MAX)).collect();
        prop_assert!(all_finite(&x, 10));
    }

    /// f64: op(2^k·x) == op(x) bit for bit, k over the whole normal exponent range, rows
    /// shorter than a vector, of a few vectors and of several sub-blocks.
    #[test]
    fn f64_every_op_is_scale_invariant_over_the_exponent_range(
        seed: u64,
        k in -1021i32..=1022,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        let x = data::<f64>(seed, 12 * hw);
        prop_assert_eq!(outputs(&x, hw), outputs(&scaled(&x, k), hw));
    }

    /// f64 subnormal-only data normalizes exactly as its copy scaled back up.
    #[test]
    fn f64_subnormal_data_behaves_as_its_rescaled_copy(
        seed: u64,
        k in 1023i32..=1050,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        let x = data::<f64>(seed, 12 * hw);
        let sub = scaled(&x, -k);
        prop_assert!(sub.iter().all(|v| v.abs() < f64::MIN_POSITIVE));
        let up = scaled(&sub, 1000); // exact: back to normal values
        prop_assert_eq!(outputs(&sub, hw), outputs(&up, hw));
    }

    /// Values near ±f64::MAX: finite statistics and outputs everywhere.
    #[test]
    fn values_near_f64_max_stay_finite(
        seed: u64,
        k in 1020i32..=1023,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        let x: Vec<f64> = data::<f64>(seed, 12 * hw)
            .iter()
            .map(|v| (v * 2f64.powi(k - 2) * 4.0).clamp(-f64::MAX, f64::MAX))
            .collect();
        prop_assert!(all_finite(&x, hw));
    }

    /// f64 data at any magnitude the oracle holds with eps = 1e-5 (its `m2`, ~n·4^k, is an
    /// f64 up to k ≈ 504 for these rows; beyond, the scale-invariance and finiteness tests
    /// above stand in): LayerNorm, RMSNorm, BatchNorm training and GroupNorm outputs and
    /// statistics against the oracle. Where var ≪ eps (tiny data), rstd is 1/sqrt(eps) and the
    /// outputs are the data times it; the bound is 8 ε relative to each value's largest
    /// term (|x − mean|·rstd·|w|) plus 8 ε of |b|: the kernels round each step once in f64
    /// and the oracle differs from them by the rounding of those few steps.
    #[test]
    fn f64_ops_match_the_oracle_at_every_magnitude_with_eps(
        seed: u64,
        k in -1040i32..=500,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        let len = 3 * hw;
        let x = scaled(&data::<f64>(seed, 4 * len), k);
        let w: Vec<f64> = (0..len).map(|i| 0.5 + i as f64 * 0.125).collect();
        let b: Vec<f64> = (0..len).map(|i| i as f64 - 7.0).collect();
        let eps = 1e-5;
        let tol = 8.0 * f64::EPSILON;
        let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; 4], vec![0.0; 4]);
        LayerNorm::new(len)
            .eps(eps)
            .weight(&w)
            .bias(&b)
            .forward_with_stats(&x, &mut y, &mut m, &mut r)
            .unwrap();
        let (wy, wm, wr) = simdnorm::oracle::layer_norm(&x, len, &w, &b, eps);
        for i in 0..4 {
            prop_assert!((r[i] - wr[i]).abs() <= tol * wr[i], "LN rstd {} vs {}", r[i], wr[i]);
            let spread = x[i * len..][..len].iter().fold(0.0f64, |a, v| a.max(v.abs()));
            // plus a few spacings of f64's subnormals (data below 2^-1022)
            let floor = 4.0 * f64::from_bits(1);
            prop_assert!((m[i] - wm[i]).abs() <= tol * spread + floor, "LN mean {} vs {}", m[i], wm[i]);
        }
        for (i, (g, want)) in y.iter().zip(&wy).enumerate() {
            let (row, j) = (i / len, i % len);
            let term = (x[i] - wm[row]).abs() * wr[row] * w[j];
            prop_assert!(
                (g - want).abs() <= tol * (term + b[j].abs()) + f64::MIN_POSITIVE,
                "LN y[{}] = {:e}, want {:e}", i, g, want
            );
        }
        RmsNorm::new(len)
            .eps(eps)
            .weight(&w)
            .forward_with_stats(&x, &mut y, &mut r)
            .unwrap();
        let (wy, wr) = simdnorm::oracle::rms_norm(&x, len, &w, eps);
        for i in 0..4 {
            prop_assert!((r[i] - wr[i]).abs() <= tol * wr[i], "RMS rstd {} vs {}", r[i], wr[i]);
        }
        for (i, (g, want)) in y.iter().zip(&wy).enumerate() {
            prop_assert!(
                (g - want).abs() <= tol * want.abs() + f64::MIN_POSITIVE,
                "RMS y[{}] = {:e}, want {:e}", i, g, want
            );
        }
        // BatchNorm training (Nchw: channels of 4·hw values) and GroupNorm (one group a
        // sample): channel c's / group's y = (x − mean)·rstd·w[c] + b[c]
        let (c, n) = (3, 4);
        let (wc, bc) = (&w[..c], &b[..c]);
        let (mut bm, mut bs) = (vec![0.0; c], vec![0.0; c]);
        BatchNorm::new(c)
            .eps(eps)
            .weight(wc)
            .bias(bc)
            .forward_train(&x, Layout::Nchw { n, hw }, &mut y, None, &mut bm, &mut bs)
            .unwrap();
        let (wy, sets) = simdnorm::oracle::batch_norm(&x, n, c, hw, false, None, wc, bc, eps);
        for (i, (g, want)) in y.iter().zip(&wy).enumerate() {
            let ch = (i / hw) % c;
            let term = (x[i] - sets[ch].mean).abs() * sets[ch].rstd * wc[ch];
            prop_assert!(
                (g - want).abs() <= tol * (term + bc[ch].abs()) + f64::MIN_POSITIVE,
                "BN y[{}] = {:e}, want {:e}", i, g, want
            );
        }
        GroupNorm::new(1, c)
            .eps(eps)
            .weight(wc)
            .bias(bc)
            .forward_with_stats(&x, n, hw, &mut y, &mut m, &mut r)
            .unwrap();
        let (wy, sets) = simdnorm::oracle::group_norm(&x, n, c, hw, 1, wc, bc, eps);
        for i in 0..n {
            prop_assert!((r[i] - sets[i].rstd).abs() <= tol * sets[i].rstd, "GN rstd {} vs {}", r[i], sets[i].rstd);
        }
        for (i, (g, want)) in y.iter().zip(&wy).enumerate() {
            let (set, ch) = (i / len, (i / hw) % c);
            let term = (x[i] - sets[set].mean).abs() * sets[set].rstd * wc[ch];
            prop_assert!(
                (g - want).abs() <= tol * (term + bc[ch].abs()) + f64::MIN_POSITIVE,
                "GN y[{}] = {:e}, want {:e}", i, g, want
            );
        }
    }

    /// The backward passes scale exactly with the data: for x·2^k (eps = 0, the statistics
    /// of a forward pass on it), `dx` is the unscaled data's `dx`·2^-k bit for bit and
    /// `dweight`, `dbias` are unchanged; f32 and f64. k stays far enough inside the exponent
    /// range that every `dx` (down to ~1e-7 of the largest, from cancellations) stays normal,
    /// that rstd (up to 2^24/2^k for two close values) is finite in f32, and that the largest
    /// f64 `dx` (~2^-k·2^10) and its terms stay below f64::MAX.
    #[test]
    fn backward_passes_scale_exactly(
        seed: u64,
        k32 in -90i32..=90,
        k64 in -1010i32..=900,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        let x = data::<f32>(seed, 12 * hw);
        let (dx, dp) = gradients(&x, hw);
        let (sdx, sdp) = gradients(&scaled(&x, k32), hw);
        prop_assert_eq!(sdx, times::<f32>(&dx, -k32));
        prop_assert_eq!(sdp, dp);
        let x = data::<f64>(seed, 12 * hw);
        let (dx, dp) = gradients(&x, hw);
        let (sdx, sdp) = gradients(&scaled(&x, k64), hw);
        prop_assert_eq!(sdx, times::<f64>(&dx, -k64));
        prop_assert_eq!(sdp, dp);
    }

    /// `forward_add`, masked BatchNorm training, GroupNorm over several channels,
    /// InstanceNorm, BatchNorm eval and the moment functions scale exactly too, in every element type: f32
    /// and bf16 (f32's exponent range) for k in −100..=100, f16 for k in −10..=10 (its
    /// normal range is 2^-14..2^16), f64 for k in −1000..=1000; BatchNorm eval (its running
    /// variance ~4^k) and the moments (`m2` ~ n·4^k, rescaled exactly) for half those k.
    #[test]
    fn more_ops_and_the_moments_are_scale_invariant(
        seed: u64,
        k32 in -100i32..=100,
        k16 in -10i32..=10,
        k64 in -1000i32..=1000,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        more_invariant::<f32>(seed, hw, k32, false)?;
        more_invariant::<half::bf16>(seed, hw, k32, false)?;
        more_invariant::<half::f16>(seed, hw, k16, true)?;
        more_invariant::<f64>(seed, hw, k64, false)?;
        // the moments themselves (m2 ~ 4^k) only where that stays normal
        more_invariant::<f32>(seed, hw, k32 / 2, true)?;
        more_invariant::<half::bf16>(seed, hw, k32 / 2, true)?;
        more_invariant::<f64>(seed, hw, k64 / 2, true)?;
    }

    /// Half types' subnormals (f16 below 2^-14, bf16 below 2^-126): data rounded into them
    /// normalizes exactly as its copy scaled back up into the normal range (an exact scaling
    /// of the rounded values), for every op of `more_outputs` but the moments.
    #[test]
    fn half_subnormal_data_behaves_as_its_rescaled_copy(
        seed: u64,
        k16 in 16i32..=22,
        kb in 128i32..=133,
        hw in proptest::sample::select(HW.to_vec()),
    ) {
        fn check<T: Element>(seed: u64, hw: usize, k: i32, up: i32) -> Result<(), TestCaseError> {
            let x: Vec<T> = data::<f64>(seed, 12 * hw).iter().map(|v| from_f64(*v)).collect();
            let r: Vec<T> = data::<f64>(seed ^ 5, 12 * hw).iter().map(|v| from_f64(*v)).collect();
            let (sub, rsub) = (scaled_any(&x, -k), scaled_any(&r, -k));
            // the type's least normal: 2^-14 for f16, 2^-126 for bf16
            let min = T::Acc::exp2i(if up == 16 { -14 } else { -126 });
            prop_assert!(sub.iter().all(|v| v.to_acc().abs() < min));
            let (xu, ru) = (scaled_any(&sub, up), scaled_any(&rsub, up));
            prop_assert_eq!(
                more_outputs(&sub, &rsub, hw, -k, false),
                more_outputs(&xu, &ru, hw, up - k, false)
            );
            Ok(())
        }
        check::<half::f16>(seed, hw, k16, 16)?;
        check::<half::bf16>(seed, hw, kb, 120)?;
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

/// f64 rows near 2^-1013 (rstd ~2^1014): `a·Σ(dy·w·x̂)` is beyond f64 while `a·Σ(dy·w·x̂)/n`
/// and every `dx` (up to ~4e305) are not. `Coef::new` took the product first: dx was ±∞.
#[test]
fn f64_backward_near_the_top_of_the_range_stays_finite() {
    let x = data::<f64>(6980617755350037648, 2400);
    let (dx, dp) = gradients(&x, 200);
    let (sdx, sdp) = gradients(&scaled(&x, -1013), 200);
    assert!(sdx.iter().all(|&u| f64::from_bits(u).is_finite()));
    assert_eq!(sdx, times::<f64>(&dx, 1013));
    assert_eq!(sdp, dp);
}
