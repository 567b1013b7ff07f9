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
use super::lanes::{Lanes, Step, acc_sum, lane_sum, lanes_of, non_negative, sweep, sweep_stepped};
use crate::element::{Arith, Element, Float, Vector};
use crate::{par, tuning};

type V<T> = <<T as Element>::Acc as Float>::V;

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
    // `s = 1` (every call but a rescue): no product by it
    if s == T::Acc::ONE {
        sum_squares_loop::<T, false>(x, s, &mut ())
    } else {
        sum_squares_loop::<T, true>(x, s, &mut ())
    }
}

/// [`sum_squares`] with `s = 1`, `step()` after each group of vectors ([`sweep_stepped`]):
/// the pass taken ahead while another row is normalized. The same sum bit for bit.
#[inline(always)]
pub(crate) fn sum_squares_stepped<T: Element>(x: &[T], step: &mut impl Step) -> T::Acc {
    sum_squares_loop::<T, false>(x, T::Acc::ONE, step)
}

/// The loop of [`sum_squares`]: `y = x·s` (`S`), or `x`.
#[inline(always)]
fn sum_squares_loop<T: Element, const S: bool>(x: &[T], s: T::Acc, step: &mut impl Step) -> T::Acc {
    let sv = V::<T>::splat(s);
    let f = |a: &mut V<T>, v: V<T>, lanes: Lanes| {
        let y = lanes.keep::<T::Acc>(if S { v * sv } else { v });
        *a = y.mul_add(y, *a);
    };
    lane_sum::<T::Acc>(sweep_stepped(x, V::<T>::ZERO, f, step))
}

/// `(Σd, Σd²)` with `d = x·s − c`.
#[inline]
pub(crate) fn dev_sums<T: Element>(x: &[T], s: T::Acc, c: T::Acc) -> (T::Acc, T::Acc) {
    let (a, b) = dev_sum_vectors(x, s, c, &mut ());
    (lanes_of::<T::Acc>(a), lanes_of::<T::Acc>(b))
}

/// [`dev_sums`] with the lanes not yet added; `step()` after each group of vectors
/// ([`sweep_stepped`]). Always inlined: a `step` closure left behind a call kept its
/// state in memory, reloaded on every vector (LayerNorm 4096×4096 at 73 % of copy).
#[inline(always)]
fn dev_sum_vectors<T: Element>(
    x: &[T],
    s: T::Acc,
    c: T::Acc,
    step: &mut impl Step,
) -> (<T::Acc as Float>::V, <T::Acc as Float>::V) {
    let (sv, ncv) = (
        <T::Acc as Float>::V::splat(s),
        <T::Acc as Float>::V::splat(-c),
    );
    // `s = 1` (every call but a rescue): `x − c` is `fma(x, 1, −c)` bit for bit, on the adder.
    if s == T::Acc::ONE {
        dev_sum_loop::<T, false>(x, sv, ncv, step)
    } else {
        dev_sum_loop::<T, true>(x, sv, ncv, step)
    }
}

/// The loop of [`dev_sum_vectors`]: `d = x·s − c` (`S`), or `x − c`.
#[inline(always)]
fn dev_sum_loop<T: Element, const S: bool>(
    x: &[T],
    sv: V<T>,
    ncv: V<T>,
    step: &mut impl Step,
) -> (V<T>, V<T>) {
    let zero = V::<T>::ZERO;
    let f = |(a, b): &mut (V<T>, V<T>), v: V<T>, lanes: Lanes| {
        let d = lanes.keep::<T::Acc>(if S { v.mul_add(sv, ncv) } else { v + ncv });
        *a = *a + d;
        *b = d.mul_add(d, *b);
    };
    let acc = sweep_stepped(x, (zero, zero), f, step);
    (
        acc_sum::<T::Acc>(acc.map(|a| a.0)),
        acc_sum::<T::Acc>(acc.map(|a| a.1)),
    )
}

/// Pairs of sums added member by member (scalars or vectors).
#[inline(always)]
fn add2<X: std::ops::Add<Output = X>>(a: (X, X), b: (X, X)) -> (X, X) {
    (a.0 + b.0, a.1 + b.1)
}

/// `1/n` rounded once.
#[inline]
fn inv_len<A: Float>(n: usize) -> A {
    A::ONE / A::from_u64(n as u64)
}

/// The correction step: moments of `y` from the pass-2 sums around `c` (`inv = 1/n`).
#[inline]
pub(crate) fn finish<A: Float>(n: usize, inv: A, p: A, c: A, sd: A, sd2: A) -> Moments<A> {
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
    finish(x.len(), inv_len(x.len()), p, c, sd, sd2)
}

/// At most this many values (and at least 1/8 of the slice) refine the pilot of [`piloted`].
const SAMPLE: usize = 128;
/// Values per sub-block of [`piloted`]'s pass: each lane adds 8 squares (f32) in a row, and
/// sub-blocks meet as vectors, lane by lane (the whole 2048-value block in a row: rstd 1.8 ulp
/// instead of 0.9 on the rows below).
const SUB: usize = 512;

/// Moments of `y = x·s − p` from one pass when a centre close to the mean is known: the
/// second pass of [`whole`] (`Σd`, `Σd²` with `d = x·s − c`) around `c = p + the mean of y
/// over the first ~n/8 values` ([`head_mean`]: 16 to 128 of them: `c` typically within σ/11
/// of the mean for 4096-value rows, σ/6 for 256; a constant row still gets `c = p` exactly).
/// Its correction
/// `(Σd/n)·Σd` then cancels a small part of `Σd²`: at most 1/5 of it when `|mean_d| ≤ σ/2`,
/// which is checked; otherwise (0.5 % of normal 256-value rows, fewer for longer ones; sorted
/// or drifting rows; non-finite sums) the pass is repeated around `c + mean_d`, exactly as
/// [`whole`]'s second pass.
///
/// Measured on 1024 LayerNorm rows of 4096 values with mean 1e4, σ 1, against f64: rstd
/// within 0.9 ulp, y within 6.2e-7 (Welford: 1.1 ulp, 6.6e-7), where `c = p` with the pilot
/// alone (a median of three values, about σ from the mean, and a check at 2σ) gave 2.2 ulp
/// and 1.0e-6.
///
/// 3 vector operations per value against Welford's 5, for the row statistics of the ops,
/// which read a row that sits in L1/L2 (blocks summed by the pairwise tree of
/// `par::reduce_blocks`, parallel for very long rows).
pub(crate) fn piloted<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    debug_assert!(!x.is_empty());
    let c = centre(x, s, p);
    let sums = pass(x, s, c);
    piloted_from(x, s, p, c, sums)
}

/// The centre of [`piloted`]'s pass: `p` + the mean of `x·s − p` over the head of `x`.
#[inline]
pub(crate) fn centre<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> T::Acc {
    p + head_mean(x, s, p)
}

/// [`piloted`] from the sums of its pass around `c = centre(x, s, p)`: the correction,
/// the check, and the pass repeated where the check fails.
pub(crate) fn piloted_from<T: Element>(
    x: &[T],
    s: T::Acc,
    p: T::Acc,
    c: T::Acc,
    (sd, sd2): (T::Acc, T::Acc),
) -> Moments<T::Acc> {
    let (n, inv) = (T::Acc::from_u64(x.len() as u64), inv_len(x.len()));
    let md = sd * inv;
    let m = finish(x.len(), inv, p, c, sd, sd2);
    // mean_d² ≤ (m2/n)/4, written without a division; false for NaN.
    if md * md * n * T::Acc::from_f64(4.0) <= m.m2 {
        return m;
    }
    let c = c + md;
    let (sd, sd2) = pass(x, s, c);
    finish(x.len(), inv, p, c, sd, sd2)
}

/// `(Σd, Σd²)` with `d = x·s − c`, the pass of [`piloted`]: vector sums of sub-blocks of
/// [`SUB`] values added lane-wise within each block of `tuning::BLOCK` (each lane adds
/// SUB/64 values in a row in f32 before the sums of the sub-blocks meet), the blocks'
/// sums by the pairwise tree of `par::reduce_blocks` (parallel for very long rows).
fn pass<T: Element>(x: &[T], s: T::Acc, c: T::Acc) -> (T::Acc, T::Acc) {
    if x.len() <= SUB {
        // one sub-block (most rows of the ops): what the blocks below reduce to, without
        // their set-up (~70 instructions a row)
        return block_sums(x, s, c, &mut ());
    }
    par::reduce_blocks(x, &|b| block_sums(b, s, c, &mut ()), &add2)
}

/// Blocks a row of [`pass_stepped`] may have (rows of up to 16384 values).
pub(crate) const STEPPED_BLOCKS: usize = 8;

/// [`pass`] over a row of at most `STEPPED_BLOCKS` blocks, on this thread, calling
/// `step()` after each group of `NACC` vectors: the same sums bit for bit (the blocks'
/// sums kept, then merged by the same tree).
#[inline(always)]
pub(crate) fn pass_stepped<T: Element>(
    x: &[T],
    s: T::Acc,
    c: T::Acc,
    step: &mut impl Step,
) -> (T::Acc, T::Acc) {
    debug_assert!(x.len() <= STEPPED_BLOCKS * tuning::BLOCK);
    if x.len() <= SUB {
        return block_sums(x, s, c, step);
    }
    let mut blocks = [(T::Acc::ZERO, T::Acc::ZERO); STEPPED_BLOCKS];
    let n = x.len().div_ceil(tuning::BLOCK);
    for (b, x) in blocks.iter_mut().zip(x.chunks(tuning::BLOCK)) {
        *b = block_sums(x, s, c, step);
    }
    par::reduce(n, tuning::PAR_BLOCKS, &|i| blocks[i], &add2)
}

/// The sums of one block of [`pass`].
#[inline(always)]
fn block_sums<T: Element>(x: &[T], s: T::Acc, c: T::Acc, step: &mut impl Step) -> (T::Acc, T::Acc) {
    // a plain loop, not `map(..).fold(..)`: the iterator's fold was not inlined, which left
    // a stepping closure's state in memory (see `dev_sum_vectors`)
    let mut subs = x.chunks(SUB);
    let mut sums = match subs.next() {
        Some(b) => dev_sum_vectors(b, s, c, step),
        None => (V::<T>::ZERO, V::<T>::ZERO),
    };
    for b in subs {
        sums = add2(sums, dev_sum_vectors(b, s, c, step));
    }
    let (a, b) = sums;
    (lanes_of::<T::Acc>(a), lanes_of::<T::Acc>(b))
}

/// The mean of `x·s − p` over the first values of `x`: n/8 of them rounded down to a power
/// of two, 16 to [`SAMPLE`] (all of a shorter `x`), so that the mean is a product by an
/// exact power of two and not a division (on the latency path of every row's statistics).
#[inline]
fn head_mean<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> T::Acc {
    let want = (x.len() / 8).clamp(16, SAMPLE);
    if x.len() < want {
        return sum(x, s, p) / T::Acc::from_u64(x.len() as u64);
    }
    let k = want.ilog2();
    sum(&x[..1 << k], s, p) * T::Acc::exp2i(-(k as i32))
}

/// Moments of `y = x·s − p` by two passes over the whole non-empty slice.
pub(crate) fn whole<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    debug_assert!(!x.is_empty());
    let total = par::reduce_blocks(x, &|b| sum(b, s, p), &|a, b| a + b);
    let c = p + total / T::Acc::from_u64(x.len() as u64);
    let (sd, sd2) = par::reduce_blocks(x, &|b| dev_sums(b, s, c), &add2);
    finish(x.len(), inv_len(x.len()), p, c, sd, sd2)
}
