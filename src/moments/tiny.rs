//! Rows shorter than a vector: their statistics in scalar `f64`.
//!
//! The vector kernels spend ~100 ns on such a row (a zero-filled partial load through
//! memory, the pilot's head mean, two lane folds, and for every constant row a rescue);
//! a handful of scalar `f64` operations per value does it in a fraction of that.
//!
//! * `f32` accumulators (`f32`, `f16`, `bf16` values): `f64` holds every product and sum of
//!   fewer than 16 such values without overflow or underflow, so their sums are never
//!   recomputed at another scale, and the results scale exactly with the input: `op(2^k·x)`
//!   keeps the bits of `op(x)`. They are handed on in the shape of the vector kernels'
//!   ([`Run`]: the moments of `x − p`, or, where `f32` cannot hold them, of `x·2^k − p·2^k`:
//!   the same `f64` results times `2^k` and `4^k`), so everything after the statistics is
//!   shared.
//! * `f64` values (fewer than 8): the same two-pass over `x·s − p`, under the vector kernels'
//!   rescue (`run_with`), since `f64` squares can overflow.

use super::{Moments, Rescue, Run, lanes::non_negative, pilot_of, run_with, spread_of};
use crate::element::{Element, Float};

/// Whether `x` takes this module's way: shorter than a vector.
#[inline(always)]
pub(crate) fn takes<T: Element>(x: &[T]) -> bool {
    x.len() < T::Acc::LANES
}

/// Whether `T`'s accumulator is `f64` (its values are `f64`).
#[inline(always)]
fn is_f64<T: Element>() -> bool {
    size_of::<T::Acc>() == size_of::<f64>()
}

/// `x`'s values in `f64` (exact).
#[inline(always)]
fn wide<T: Element>(x: &[T]) -> impl Iterator<Item = f64> + Clone + '_ {
    x.iter().map(|v| v.to_acc().to_f64())
}

/// The corrected two-pass over `n` values `y` in `f64`: their mean and `m2`
/// (`Σ y` for a centre `c`, then `Σd`, `Σd²` around it, `m2 = Σd² − (Σd/n)·Σd`).
#[inline(always)]
fn two_pass(y: impl Iterator<Item = f64> + Clone, n: usize) -> (f64, f64) {
    let n = n as f64;
    let c = y.clone().sum::<f64>() / n;
    let (mut sd, mut sd2) = (0.0, 0.0);
    for v in y {
        let d = v - c;
        sd += d;
        sd2 = d.mul_add(d, sd2);
    }
    let md = sd / n;
    (c + md, non_negative(md.mul_add(-sd, sd2)))
}

/// `moments::row_shifted` of a non-empty row that [`takes`] this way: the pilot and the
/// moments of `x − p` by [`two_pass`] in `f64`. `f64` values: under the vector kernels'
/// rescue (`run_with`). With an `f32` accumulator each moment is rounded once; where that
/// rounding would leave `m2` subnormal or overflow it (the rescue's condition), the moments
/// of `x·2^k − p·2^k` are returned instead, `k` from the largest magnitude as in the rescue:
/// the same `f64` values times `2^k` and `4^k`, exactly.
#[inline(always)]
pub(crate) fn row_shifted<T: Element>(x: &[T]) -> (T::Acc, Run<T::Acc>) {
    debug_assert!(!x.is_empty() && takes(x));
    let p = pilot_of(x);
    let count = x.len() as u64;
    if is_f64::<T>() {
        let kernel = |s: T::Acc, p: T::Acc| {
            let (s, p) = (s.to_f64(), p.to_f64());
            let (mean, m2) = two_pass(wide(x).map(|v| v.mul_add(s, -p)), x.len());
            let a = T::Acc::from_f64;
            Moments {
                count,
                mean: a(mean),
                m2: a(m2),
            }
        };
        return (p, run_with(p, kernel, || spread_of(x, p)));
    }
    let pd = p.to_f64();
    let (off, m2) = two_pass(wide(x).map(|v| v - pd), x.len());
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
    match Rescue::plan(spread_of(x, p)) {
        Rescue::Keep => (p, Run::Fast(fast)),
        Rescue::Nan => (p, Run::Nan(count)),
        Rescue::Scale(k) => (p, Run::Scaled(at(k), p * T::Acc::exp2i(k), k)),
    }
}

/// `moments::mean_square` of a non-empty row that [`takes`] this way: `Σ(x·2^k)²/n` in `f64`
/// with `k = 0` unless the accumulator cannot hold it (then `k` as the rescue's), rounded
/// once. `f32` accumulators take `k ≠ 0` by scaling the same `f64` result by `4^k`, exactly.
#[inline(always)]
pub(crate) fn mean_square<T: Element>(x: &[T]) -> Option<(T::Acc, i32)> {
    debug_assert!(!x.is_empty() && takes(x));
    let n = x.len() as f64;
    let squares = |u: f64| wide(x).fold(0.0, |s, v| (v * u).mul_add(v * u, s)) / n;
    let q = squares(1.0);
    let at = |k: i32| {
        let u = f64::exp2i(k);
        // f32 values: the one sum, scaled exactly; f64 values: summed again at their scale
        T::Acc::from_f64(match k {
            0 => q,
            _ if is_f64::<T>() => squares(u),
            _ => q * u * u,
        })
    };
    let fast = at(0);
    if fast.is_finite() && fast >= T::Acc::MIN_POSITIVE / T::Acc::EPSILON {
        return Some((fast, 0));
    }
    match Rescue::plan(spread_of(x, T::Acc::ZERO)) {
        Rescue::Keep => Some((fast, 0)),
        Rescue::Nan => None,
        Rescue::Scale(k) => Some((at(k), k)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle;

    /// Rows of 1 to `LANES − 1` values at σ from 1e-30 to 1e30 (`big`; else 1e-3 to 30) and
    /// |mean|/σ up to 1e6 (1e3).
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
        let ratios: &[f64] = if big { &[0.0, 1e3, 1e6] } else { &[0.0, 1e3] };
        let mut out = Vec::new();
        for n in 1..T::Acc::LANES {
            for &sigma in sigmas {
                for &ratio in ratios {
                    let v = |_| T::from_acc(T::Acc::from_f64(ratio * sigma + sigma * next()));
                    out.push((0..n).map(v).collect());
                }
            }
        }
        out
    }

    /// The moments of a short row (pilot and shift undone) against the exact ones: with an
    /// `f32` accumulator rounded about once (mean within 1 ε of `|mean| + σ`, `m2` within 1 ε
    /// of itself, or +∞ beyond the accumulator's range: the `f64` two-pass over fewer than 16
    /// values errs by ~16·2⁻⁵³, then one rounding to `f32`, ½ ε, and for the mean one more
    /// in `p + offset`), plus 2⁻¹⁴⁹ per rounding below the normal range. `f64` values: 8 ε
    /// (fewer than 8 deviations rounded once each, their squares summed: ≤ 3 ε each way, and
    /// the shifts by the pilot and the centre).
    fn matches_oracle<T: Element>(big: bool) {
        let eps = T::Acc::EPSILON.to_f64() * if is_f64::<T>() { 8.0 } else { 1.0 };
        let sub = 4.0 * T::Acc::MIN_POSITIVE.to_f64() * T::Acc::EPSILON.to_f64();
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
            // the moments handed on, at their scale (rescued where the accumulator loses
            // them): the same bound with no subnormal slack, but for the offset from the pilot
            // (and, for it, the reference mean's own rounding to f64)
            let (s, k) = match run {
                Run::Fast(s) => (s, 0),
                Run::Scaled(s, _, k) => (s, k),
                Run::Nan(_) => panic!("finite row {x:?}"),
            };
            let (u, off) = (f64::exp2i(k), r.mean - p.to_f64());
            let dv = (s.m2.to_f64() - r.m2 * u * u).abs();
            assert!(dv <= eps * r.m2 * u * u, "scaled m2 {s:?} at {k} vs {r:?}");
            let dm = (s.mean.to_f64() - off * u).abs();
            let slack = (eps * (off.abs() + sigma) + f64::EPSILON * r.mean.abs()) * u + sub;
            assert!(dm <= slack, "offset {s:?} at {k} vs {r:?}");
        }
    }

    #[test]
    fn short_rows_match_the_oracle() {
        matches_oracle::<f32>(true);
        matches_oracle::<f64>(true);
        #[cfg(feature = "half")]
        {
            matches_oracle::<half::bf16>(true);
            matches_oracle::<half::f16>(false);
        }
    }

    /// `row_shifted(2^k·x)` is `row_shifted(x)` scaled by `2^k` bit for bit (the moments it
    /// hands on, at their own scales, where squares overflow or underflow too: f32 at k = 90
    /// and −100, f64 at 540 and −560; the moments of the values; the mean square), constant
    /// rows have `m2 = 0` at every magnitude up to the type's largest, and a NaN or ±∞ gives
    /// the NaN outcome.
    fn scales_exactly_keeps_constants_and_nan<T: Element>() {
        let a = |v: f64| T::from_acc(T::Acc::from_f64(v));
        let parts = |run: Run<T::Acc>| match run {
            Run::Fast(m) => (m, 0),
            Run::Scaled(m, _, k) => (m, k),
            Run::Nan(_) => panic!("finite row"),
        };
        let ks: &[i32] = if is_f64::<T>() {
            &[-560, -100, -20, 7, 90, 540]
        } else {
            &[-100, -20, 7, 90]
        };
        for x in rows::<T>(false) {
            let (p, run) = row_shifted(&x);
            let (m, q) = (run.unshift(p), mean_square(&x).expect("finite"));
            let (m0, k0) = parts(run);
            for &k in ks {
                let u = T::Acc::exp2i(k);
                let xs: Vec<T> = x.iter().map(|v| T::from_acc(v.to_acc() * u)).collect();
                let (ps, runs) = row_shifted(&xs);
                let (m1, k1) = parts(runs);
                if x.iter().all(|v| v.to_acc() == x[0].to_acc()) {
                    // a constant row (one value) keeps the fast path at any scale: all its
                    // deviations are exactly 0
                    assert_eq!(
                        (m1.mean, m1.m2, k1),
                        (T::Acc::ZERO, T::Acc::ZERO, 0),
                        "k {k}"
                    );
                } else {
                    let e = k + k1 - k0;
                    let (mean, m2) = (m0.mean.to_f64() * f64::exp2i(e), m0.m2.to_f64());
                    assert_eq!(m1.mean.to_f64(), mean, "k {k}");
                    assert_eq!(m1.m2.to_f64(), m2 * f64::exp2i(2 * e), "k {k}");
                }
                let ms = runs.unshift(ps);
                assert_eq!(ms.mean, m.mean * u, "k {k}");
                let (qs, j) = mean_square(&xs).expect("finite");
                // at the scale handed on (4^j), where it is representable
                let e = k + j - q.1;
                assert_eq!(qs.to_f64(), q.0.to_f64() * f64::exp2i(2 * e), "k {k}");
            }
        }
        let big = T::Acc::MAX.to_f64();
        for v in [0.0, 1.5e-42, 3.0, -7.0e20, big, -big] {
            for n in 1..T::Acc::LANES {
                let (p, run) = row_shifted(&vec![a(v); n][..]);
                let m = run.unshift(p);
                assert_eq!((m.mean, m.m2), (a(v).to_acc(), T::Acc::ZERO), "{v} × {n}");
            }
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let x = [a(1.0), a(bad), a(2.0)];
            assert!(matches!(row_shifted(&x).1, Run::Nan(3)));
            assert_eq!(mean_square(&x), None);
        }
    }

    #[test]
    fn short_rows_scale_exactly_and_keep_constants_and_nan() {
        scales_exactly_keeps_constants_and_nan::<f32>();
        scales_exactly_keeps_constants_and_nan::<f64>();
    }
}
