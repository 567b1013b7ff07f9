//! Shared test support: tolerances (one place), comparison against the oracle, data.
#![allow(dead_code)]

use simdnorm::oracle::RefMoments;
use simdnorm::{Element, Float, Moments};

/// Relative tolerance of variance (and of the mean, relative to |mean| + σ) against the
/// oracle, per accumulator type, in units of its ε.
///
/// Justification: a kernel sums each of its `NACC·LANES` lane accumulators over at most
/// 2048 / 64 = 32 (f32) or 64 (f64) terms, folds lanes by a tree of depth ≤ 6, and merges
/// blocks by a pairwise tree of depth ≤ log2(n / 2048) (≤ 9 for n ≤ 1e6). The corrected
/// two-pass makes the deviations exact up to one rounding each (`d = x − c` by one fma), so
/// the forward error of `m2` is that of summing non-negative terms: ≤ (32 + 6 + 9 + 2)·ε worst
/// case, with random-walk growth (≈ √49·ε ≈ 7ε) in practice. 17ε (2.0e-6 for f32, the issue's
/// bar) holds the observed worst case with margin for f32; f64's bar is 1e-14 ≈ 45ε.
pub fn tol<A: Float>() -> f64 {
    if A::LANES == 16 {
        17.0 * f32::EPSILON as f64
    } else {
        45.0 * f64::EPSILON
    }
}

/// Absolute slack for results in the subnormal range: 16 of `A`'s smallest subnormals. A
/// value below the normal range is rounded to a multiple of the smallest subnormal, and a few
/// merges of subnormal means each add up to one such rounding (a rescued variance of data at
/// 1e-30 scale lies below f32's normal range).
pub fn tiny<A: Float>() -> f64 {
    16.0 * if A::LANES == 16 {
        2f64.powi(-149)
    } else {
        2f64.powi(-1074)
    }
}

/// Relative variance error and relative mean error (to |mean| + σ) of `m` against `r`, or
/// `Err(reason)` when a non-finite outcome is wrong.
pub fn errors<A: Float>(m: &Moments<A>, r: &RefMoments) -> Result<(f64, f64), String> {
    if m.count != r.count {
        return Err(format!("count {} vs {}", m.count, r.count));
    }
    if r.count == 0 {
        return if m.mean.to_f64().is_nan() && m.m2.to_f64().is_nan() {
            Ok((0.0, 0.0))
        } else {
            Err(format!("empty input gave {m:?}"))
        };
    }
    if r.mean.is_nan() {
        return if m.mean.to_f64().is_nan() && m.m2.to_f64().is_nan() {
            Ok((0.0, 0.0))
        } else {
            Err(format!("non-finite input gave {m:?}"))
        };
    }
    let (mean, m2) = (m.mean.to_f64(), m.m2.to_f64());
    let max = A::MAX.to_f64();
    let verr = if r.m2 > max * (1.0 + 1e-7) {
        if m2 != f64::INFINITY {
            return Err(format!("m2 {m2} should be +inf (reference {})", r.m2));
        }
        0.0
    } else if r.m2 == 0.0 {
        if m2 != 0.0 {
            return Err(format!("m2 {m2} should be 0"));
        }
        0.0
    } else {
        ((m2 - r.m2).abs() - tiny::<A>()).max(0.0) / r.m2
    };
    let sigma = (r.m2 / r.count as f64).sqrt();
    let scale = r.mean.abs() + sigma;
    let excess = ((mean - r.mean).abs() - tiny::<A>()).max(0.0);
    let merr = if excess == 0.0 { 0.0 } else { excess / scale };
    if !mean.is_finite() {
        return Err(format!("mean {mean} not finite (reference {})", r.mean));
    }
    Ok((verr, merr))
}

/// Asserts `m` matches `r` within `k` times the type's tolerance.
#[track_caller]
pub fn assert_close<A: Float>(m: &Moments<A>, r: &RefMoments, k: f64, what: &str) {
    match errors(m, r) {
        Err(e) => panic!("{what}: {e}; got {m:?}, reference {r:?}"),
        Ok((v, mm)) => {
            let t = k * tol::<A>();
            assert!(
                v <= t,
                "{what}: variance rel. error {v:e} > {t:e}; got {m:?}, reference {r:?}"
            );
            assert!(
                mm <= t,
                "{what}: mean rel. error {mm:e} > {t:e}; got {m:?}, reference {r:?}"
            );
        }
    }
}

/// A small deterministic generator (SplitMix64) for data in non-proptest tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn sym(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    /// Approximately standard normal (sum of 4 uniforms, scaled).
    pub fn normal(&mut self) -> f64 {
        (self.sym() + self.sym() + self.sym() + self.sym()) * 0.866
    }
}

/// `n` values `mean + sigma·z` rounded to `T`.
pub fn gaussian<T: Element>(rng: &mut Rng, n: usize, mean: f64, sigma: f64) -> Vec<T> {
    (0..n)
        .map(|_| from_f64::<T>(mean + sigma * rng.normal()))
        .collect()
}

/// The bits of each value (widened to f64, which keeps them apart): for bit-for-bit
/// comparisons of outputs.
pub fn bits<T: Element>(v: &[T]) -> Vec<u64> {
    v.iter().map(|t| t.to_acc().to_f64().to_bits()).collect()
}

/// Rounds an f64 to `T` (through the accumulator type; exact enough for test data).
pub fn from_f64<T: Element>(v: f64) -> T {
    T::from_acc(T::Acc::from_f64(v))
}

/// The golden rule's `ulp_T(r)` for values stored in f16 / bf16 (0 for f32 / f64, whose
/// outputs are held to `K·ε·s` alone): the spacing of `T` at `|r|`, subnormals included.
pub fn storage_ulp<T: Element>(r: f64) -> f64 {
    if size_of::<T>() > 2 {
        return 0.0;
    }
    // f16 keeps 10 fraction bits (1 + 2^-8 is exact), bf16 7.
    let probe = T::from_acc(T::Acc::from_f64(1.0 + 2f64.powi(-8)))
        .to_acc()
        .to_f64();
    let (bits, min_exp) = if probe != 1.0 { (10, -14) } else { (7, -126) };
    let e = if r == 0.0 {
        min_exp
    } else {
        (r.abs().log2().floor() as i32).max(min_exp)
    };
    2f64.powi(e - bits)
}
