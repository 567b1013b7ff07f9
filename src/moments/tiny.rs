//! Rows shorter than a vector with an `f32` accumulator (`f32`, `f16` and `bf16` values):
//! their statistics in scalar `f64`.
//!
//! The vector kernels spend ~100 ns on such a row (a zero-filled partial load through
//! memory, the pilot's head mean, two lane folds, and for every constant row a rescue);
//! a handful of scalar `f64` operations per value does it in a fraction of that. `f64` holds
//! every product and sum of fewer than 16 `f32` values without overflow or underflow, so the
//! values are never summed twice, and the results scale exactly with the input: `op(2^k·x)`
//! keeps the bits of `op(x)`. The results are handed on in the shape of the vector kernels'
//! ([`Run`]: the moments of `x − p`, or, where `f32` cannot hold them, of `x·2^k − p·2^k`:
//! the same `f64` results times `2^k` and `4^k`), so everything after the statistics is
//! shared.

use super::{Moments, Rescue, Run, lanes::non_negative, max_abs_scalar, pilot_of};
use crate::element::{Element, Float};

/// Whether `x` takes this module's way: shorter than a vector, with an accumulator narrower
/// than `f64`.
#[inline(always)]
pub(crate) fn takes<T: Element>(x: &[T]) -> bool {
    size_of::<T::Acc>() < size_of::<f64>() && x.len() < T::Acc::LANES
}

/// `x`'s values in `f64` (exact).
#[inline(always)]
fn wide<T: Element>(x: &[T]) -> impl Iterator<Item = f64> + '_ {
    x.iter().map(|v| v.to_acc().to_f64())
}

/// The largest magnitude of `x` (NaN if it holds one).
fn amax<T: Element>(x: &[T]) -> T::Acc {
    x.iter()
        .fold(T::Acc::ZERO, |a, v| max_abs_scalar(a, v.to_acc()))
}

/// `moments::row_shifted` of a non-empty row that [`takes`] this way: the pilot and the
/// moments of `x − p` by the corrected two-pass in `f64` (`Σ(x − p)` for a centre `c`, then
/// `Σd` and `Σd²` around it), each rounded once to the accumulator. Where that rounding
/// would leave `m2` subnormal or overflow it (the vector kernels' rescue condition), the
/// moments of `x·2^k − p·2^k` are returned instead, `k` from the largest magnitude as in the
/// rescue: the same `f64` values times `2^k` and `4^k`, exactly.
#[inline(always)]
pub(crate) fn row_shifted<T: Element>(x: &[T]) -> (T::Acc, Run<T::Acc>) {
    debug_assert!(!x.is_empty() && takes(x));
    let p = pilot_of(x);
    let (n, pd, count) = (x.len() as f64, p.to_f64(), x.len() as u64);
    let c = wide(x).map(|v| v - pd).sum::<f64>() / n;
    let (mut sd, mut sd2) = (0.0, 0.0);
    for v in wide(x) {
        let d = (v - pd) - c;
        sd += d;
        sd2 = d.mul_add(d, sd2);
    }
    let md = sd / n;
    let (off, m2) = (c + md, non_negative(md.mul_add(-sd, sd2)));
    if !(off.is_finite() && m2.is_finite()) {
        return (p, Run::Nan(count));
    }
    let at = |k: i32| {
        let u = f64::exp2i(k);
        Moments {
            count,
            mean: T::Acc::from_f64(off * u),
            m2: T::Acc::from_f64(m2 * u * u),
        }
    };
    let fast = at(0);
    if !fast.unshift(p, 0).needs_rescue() {
        return (p, Run::Fast(fast));
    }
    match Rescue::plan(amax(x)) {
        Rescue::Nan => (p, Run::Nan(count)),
        Rescue::Scale(k) => (p, Run::Scaled(at(k), p * T::Acc::exp2i(k), k)),
    }
}

/// `moments::mean_square` of a non-empty row that [`takes`] this way: `Σx²/n` in `f64`,
/// rounded once; scaled by `4^k` where the accumulator cannot hold it (as the rescue does).
#[inline(always)]
pub(crate) fn mean_square<T: Element>(x: &[T]) -> Option<(T::Acc, i32)> {
    debug_assert!(!x.is_empty() && takes(x));
    let q = wide(x).fold(0.0, |s, v| v.mul_add(v, s)) / x.len() as f64;
    if !q.is_finite() {
        return None;
    }
    let at = |k: i32| T::Acc::from_f64(q * f64::exp2i(2 * k));
    let fast = at(0);
    if fast.is_finite() && fast >= T::Acc::MIN_POSITIVE / T::Acc::EPSILON {
        return Some((fast, 0));
    }
    match Rescue::plan(amax(x)) {
        Rescue::Nan => None,
        Rescue::Scale(k) => Some((at(k), k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle;

    /// Rows of 1 to 15 values at scales from 1e-30 to 1e30 and |mean|/σ up to 1e6, as
    /// `f32`, `bf16` and (where its range holds them) `f16`.
    fn rows<T: Element>(big: bool) -> Vec<Vec<T>> {
        let mut s = 0x2545_f491_u32;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s as f64 / u32::MAX as f64 - 0.5
        };
        let sigmas: &[f64] = if big {
            &[1e-30, 1e-15, 1.0, 1e15, 1e30]
        } else {
            &[1e-3, 1.0, 30.0]
        };
        let mut out = Vec::new();
        for n in 1..T::Acc::LANES {
            for &sigma in sigmas {
                for ratio in [0.0, 1e3, 1e6] {
                    if !big && ratio > 1e3 {
                        continue;
                    }
                    let centre = ratio * sigma;
                    out.push(
                        (0..n)
                            .map(|_| T::from_acc(T::Acc::from_f64(centre + sigma * next())))
                            .collect(),
                    );
                }
            }
        }
        out
    }

    /// The moments of a short row (pilot and shift undone) are the exact ones rounded about
    /// once: mean within 1 ε of `|mean| + σ`, `m2` within 1 ε of itself or +∞ beyond the
    /// accumulator's range (the `f64` two-pass over fewer than 16 values errs by ~16·2⁻⁵³,
    /// then one rounding to `f32`, ½ ε, and for the mean one more in `p + offset`), plus
    /// 2⁻¹⁴⁹ per rounding below the normal range.
    fn matches_oracle<T: Element>(big: bool) {
        let eps = T::Acc::EPSILON.to_f64();
        let sub = 4.0 * 2f64.powi(-149);
        for x in rows::<T>(big) {
            let (p, run) = row_shifted(&x);
            let m = run.unshift(p);
            let r = oracle::moments(&x);
            let sigma = (r.m2 / r.count as f64).sqrt();
            if r.m2 > T::Acc::MAX.to_f64() {
                // beyond the accumulator's range: +∞ by representation
                assert_eq!(m.m2.to_f64(), f64::INFINITY, "{r:?}");
                continue;
            }
            let (dm, dv) = (
                (m.mean.to_f64() - r.mean).abs(),
                (m.m2.to_f64() - r.m2).abs(),
            );
            assert!(
                dm <= eps * (r.mean.abs() + sigma) + sub,
                "mean {m:?} vs {r:?}"
            );
            assert!(dv <= eps * r.m2 + sub, "m2 {m:?} vs {r:?}");
            // the moments handed on, at their scale (rescued where f32 loses them): the same
            // bound with no subnormal slack, but for the offset from the pilot
            let (s, k) = match run {
                Run::Fast(s) => (s, 0),
                Run::Scaled(s, _, k) => (s, k),
                Run::Nan(_) => panic!("finite row {x:?}"),
            };
            let (u, off) = (f64::exp2i(k), r.mean - p.to_f64());
            let dv = (s.m2.to_f64() - r.m2 * u * u).abs();
            assert!(dv <= eps * r.m2 * u * u, "scaled m2 {s:?} at {k} vs {r:?}");
            let dm = (s.mean.to_f64() - off * u).abs();
            assert!(
                dm <= eps * (off.abs() + sigma) * u + sub,
                "offset {s:?} at {k} vs {r:?}"
            );
        }
    }

    #[test]
    fn short_rows_match_the_oracle() {
        matches_oracle::<f32>(true);
        #[cfg(feature = "half")]
        {
            matches_oracle::<half::bf16>(true);
            matches_oracle::<half::f16>(false);
        }
    }

    /// `row_shifted(2^k·x)` is `row_shifted(x)` scaled by `2^k` bit for bit (the moments of
    /// the values and the mean square), constant rows have `m2 = 0` at every magnitude up to
    /// `f32::MAX`, and a NaN or ±∞ gives the NaN outcome.
    #[test]
    fn short_rows_scale_exactly_and_keep_constants_and_nan() {
        for x in rows::<f32>(false) {
            let (p, run) = row_shifted(&x);
            let (m, q) = (run.unshift(p), mean_square(&x).expect("finite"));
            for k in [-100, -20, 7, 90] {
                let u = f32::exp2i(k);
                let xs: Vec<f32> = x.iter().map(|v| v * u).collect();
                let (ps, runs) = row_shifted(&xs);
                let ms = runs.unshift(ps);
                assert_eq!((ms.mean, ms.m2), (m.mean * u, m.m2 * u * u), "k {k}: {x:?}");
                let (qs, j) = mean_square(&xs).expect("finite");
                let back = f64::exp2i(-2 * j) * qs.to_f64();
                let want = f64::exp2i(-2 * q.1) * q.0.to_f64() * f64::exp2i(2 * k);
                assert_eq!(back, want, "k {k}: {x:?}");
            }
        }
        for v in [0.0f32, 1.5e-42, 3.0, -7.0e20, f32::MAX, -f32::MAX] {
            for n in 1..16 {
                let m = {
                    let (p, run) = row_shifted(&vec![v; n][..]);
                    run.unshift(p)
                };
                assert_eq!((m.mean, m.m2), (v, 0.0), "{v} × {n}");
            }
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let x = [1.0f32, bad, 2.0];
            assert!(matches!(row_shifted(&x).1, Run::Nan(3)));
            assert_eq!(mean_square(&x), None);
        }
    }
}
