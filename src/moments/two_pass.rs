//! Corrected two-pass variance (Chan, Golub & LeVeque 1983, eq. 1.7).
//!
//! ```text
//! y = x·s − p                      (s: power-of-two scale, 1 unless rescuing an overflow;
//!                                   p: the pilot, so y is O(σ) even when |mean| ≫ σ)
//! PASS 1   m = Σ y / n
//! PASS 2   c = p + m,  d = x·s − c  (one fma; the rounding of c shifts every d by the same
//!                                   constant, which the correction below removes)
//!          mean_y = (c − p) + Σd/n,  m2 = Σd² − (Σd)²/n
//! ```
//! Sums run in `NACC` vector accumulators (see `lanes::sweep`, which also owns the tail) and
//! are folded by a fixed pairwise tree.
//!
//! * [`block`]: both passes over one short slice (Welford's tail: fewer than `NACC·LANES`
//!   values, where Welford steps cannot fill the vectors).
//! * [`whole`]: the public `two_pass`: two passes over the whole slice, each a pairwise tree
//!   of block sums (`par::reduce_blocks`).

use super::Moments;
use super::lanes::{lane_sum, non_negative, sweep};
use crate::element::{Arith, Element, Float, Vector};
use crate::par;

/// `Σ (x·s − p)`.
#[inline]
pub(crate) fn sum<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> T::Acc {
    let (sv, npv) = (
        <T::Acc as Float>::V::splat(s),
        <T::Acc as Float>::V::splat(-p),
    );
    let acc = sweep(x, <T::Acc as Float>::V::ZERO, |a, v, lanes| {
        *a = *a + lanes.keep::<T::Acc>(v.mul_add(sv, npv));
    });
    lane_sum::<T::Acc>(acc)
}

/// `Σ (x·s)²` (RMSNorm's statistic).
#[inline]
pub(crate) fn sum_squares<T: Element>(x: &[T], s: T::Acc) -> T::Acc {
    let sv = <T::Acc as Float>::V::splat(s);
    let acc = sweep(x, <T::Acc as Float>::V::ZERO, |a, v, lanes| {
        let y = lanes.keep::<T::Acc>(v * sv);
        *a = y.mul_add(y, *a);
    });
    lane_sum::<T::Acc>(acc)
}

/// `(Σd, Σd²)` with `d = x·s − c`.
#[inline]
pub(crate) fn dev_sums<T: Element>(x: &[T], s: T::Acc, c: T::Acc) -> (T::Acc, T::Acc) {
    let (sv, ncv) = (
        <T::Acc as Float>::V::splat(s),
        <T::Acc as Float>::V::splat(-c),
    );
    let zero = <T::Acc as Float>::V::ZERO;
    // `s = 1` (every call but a rescue): `x − c` is `fma(x, 1, −c)` bit for bit, on the adder.
    let acc = if s == T::Acc::ONE {
        sweep(x, (zero, zero), |(a, b), v, lanes| {
            let d = lanes.keep::<T::Acc>(v + ncv);
            *a = *a + d;
            *b = d.mul_add(d, *b);
        })
    } else {
        sweep(x, (zero, zero), |(a, b), v, lanes| {
            let d = lanes.keep::<T::Acc>(v.mul_add(sv, ncv));
            *a = *a + d;
            *b = d.mul_add(d, *b);
        })
    };
    (
        lane_sum::<T::Acc>(acc.map(|a| a.0)),
        lane_sum::<T::Acc>(acc.map(|a| a.1)),
    )
}

/// The correction step: moments of `y` from the pass-2 sums around `c`.
#[inline]
pub(crate) fn finish<A: Float>(n: usize, p: A, c: A, sd: A, sd2: A) -> Moments<A> {
    let inv = A::ONE / A::from_u64(n as u64);
    // `(Σd/n)·Σd`, not `(Σd)²/n`: the square overflows for sums far smaller than `A::MAX`
    // (|Σd| > 2^64 in f32), which broke the scale invariance of the ops' statistics.
    let md = sd * inv;
    Moments {
        count: n as u64,
        mean: md + (c - p),
        m2: non_negative(md.mul_add(-sd, sd2)),
    }
}

/// Moments of `y = x·s − p` over one non-empty slice, both passes over it.
#[inline]
pub(crate) fn block<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    debug_assert!(!x.is_empty());
    let m = sum(x, s, p) / T::Acc::from_u64(x.len() as u64);
    let c = p + m;
    let (sd, sd2) = dev_sums(x, s, c);
    finish(x.len(), p, c, sd, sd2)
}

/// Moments of `y = x·s − p` from one pass when the pilot is close to the mean: the second
/// pass of [`whole`] run around `c = p` (`Σd`, `Σd²` with `d = y`), whose correction term
/// `(Σd)²/n` then cancels at most 4/5 of `Σd²` (the rounding error of `Σd²` is amplified at
/// most 5×). If the mean of `y` is farther than two standard deviations from 0 (or the sums
/// are not finite), the pass is repeated around `c = p + mean_y`, exactly as [`whole`]'s
/// second pass. For a pilot drawn from the values (a median of three) that is rare: 0.3 % of
/// normal rows, never for uniform ones (a threshold of one σ repeated 13 % and 23 % of them).
///
/// 3 vector operations per value against Welford's 5, for the row statistics of the ops,
/// which read a row that sits in L1/L2 (blocks summed by the pairwise tree of
/// `par::reduce_blocks`, parallel for very long rows).
pub(crate) fn piloted<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    debug_assert!(!x.is_empty());
    let pass =
        |c: T::Acc| par::reduce_blocks(x, &|b| dev_sums(b, s, c), &|a, b| (a.0 + b.0, a.1 + b.1));
    let (sd, sd2) = pass(p);
    let m = finish(x.len(), p, p, sd, sd2);
    // mean_y² ≤ 4·m2/n, written without a division; false for NaN.
    if m.mean * m.mean * T::Acc::from_u64(x.len() as u64) <= T::Acc::from_f64(4.0) * m.m2 {
        return m;
    }
    let c = p + m.mean;
    let (sd, sd2) = pass(c);
    finish(x.len(), p, c, sd, sd2)
}

/// Moments of `y = x·s − p` by two passes over the whole non-empty slice.
pub(crate) fn whole<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    debug_assert!(!x.is_empty());
    let total = par::reduce_blocks(x, &|b| sum(b, s, p), &|a, b| a + b);
    let c = p + total / T::Acc::from_u64(x.len() as u64);
    let (sd, sd2) = par::reduce_blocks(x, &|b| dev_sums(b, s, c), &|a, b| (a.0 + b.0, a.1 + b.1));
    finish(x.len(), p, c, sd, sd2)
}
