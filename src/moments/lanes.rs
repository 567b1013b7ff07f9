//! The only home of the vector loop, the tail and the lane folds.
//!
//! * [`sweep`]: groups of `NACC` chunks into `NACC` independent accumulators, then the leftover
//!   whole chunks, then the tail (fewer than `LANES` elements): the slice's last whole
//!   vector with the lanes already counted masked by [`Lanes::keep`] (or, for a slice shorter
//!   than a vector, a zero-filled `load_partial`). Every SIMD reduction of the crate over a
//!   contiguous slice is a closure handed to it ([`sweep_stepped`]: with a hook per group).
//! * [`sweep_columns`], [`sweep_column_pairs`]: the same over row segments (one or two rows
//!   per visit), accumulator `i` for vector `i`.
//! * [`lane_sum`]: a fixed pairwise tree over accumulators and lanes.
//! * [`chan`] and [`fold_equal`]: the Chan, Golub & LeVeque merge, written once for scalars
//!   and vectors; [`fold_equal`] folds states of equal count (accumulators, then lanes).

use crate::element::{Arith, Element, Float, Vector, keep_first, load_at, load_partial};
use crate::tuning::NACC;

/// Which lanes of a loaded vector hold data.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Lanes {
    /// Every lane.
    All,
    /// The first `n` lanes (the tail of a slice shorter than a vector); the others were
    /// zero-filled.
    First(usize),
    /// The last `n` lanes (the tail of a longer slice: its last whole vector, whose other
    /// lanes were already counted).
    Last(usize),
}

impl Lanes {
    /// `v` with the lanes that hold no data set to 0, so they add nothing to a sum.
    #[inline(always)]
    pub(crate) fn keep<A: Float>(self, v: A::V) -> A::V {
        match self {
            Lanes::All => v,
            Lanes::First(n) => keep_first::<A>(v, n),
            Lanes::Last(n) => v.lanes_or(A::LANES - n, A::LANES, <A::V as Vector<A>>::ZERO),
        }
    }
}

/// Runs `f(acc, vector, lanes)` over `x` in vectors, rotating over `NACC` accumulators so
/// that consecutive vectors have no dependency. The order of operations depends on
/// `x.len()` only.
#[inline(always)]
pub(crate) fn sweep<T: Element, S: Copy>(
    x: &[T],
    init: S,
    f: impl FnMut(&mut S, <T::Acc as Float>::V, Lanes),
) -> [S; NACC] {
    sweep_stepped(x, init, f, &mut ())
}

/// Work done between groups of a [`sweep_stepped`] (`()`: none). A trait with an
/// always-inlined method rather than a closure: a closure was left out of line, its state
/// kept in memory and reloaded on every vector (LayerNorm 4096×4096 f32, 1 thread: 73 % of
/// copy that way, 75–82 % with the trait).
pub(crate) trait Step {
    /// Called after each group of `NACC` vectors.
    fn step(&mut self);
}

impl Step for () {
    #[inline(always)]
    fn step(&mut self) {}
}

/// [`sweep`], calling `step()` after each group of `NACC` whole vectors: the hook through
/// which a row's statistics pass carries another row's normalize step along
/// (`ops::run_rows`), so that reads from memory and writes go on together. The sums are
/// [`sweep`]'s bit for bit.
#[inline(always)]
pub(crate) fn sweep_stepped<T: Element, S: Copy>(
    x: &[T],
    init: S,
    mut f: impl FnMut(&mut S, <T::Acc as Float>::V, Lanes),
    step: &mut impl Step,
) -> [S; NACC] {
    let (chunks, tail) = T::as_chunks(x);
    let (groups, rest) = chunks.as_chunks::<NACC>();
    let mut acc = [init; NACC];
    for g in groups {
        for (a, c) in acc.iter_mut().zip(g) {
            f(a, T::load(c), Lanes::All);
        }
        step.step();
    }
    for (a, c) in acc.iter_mut().zip(rest) {
        f(a, T::load(c), Lanes::All);
    }
    if !tail.is_empty() {
        let (n, t, lanes) = (x.len(), tail.len(), T::Acc::LANES);
        // the last whole vector where there is one (a partial load goes element by element
        // through memory: 4 % of a 250-value LayerNorm row)
        let (v, l) = if n >= lanes {
            (load_at(x, n - lanes, lanes), Lanes::Last(t))
        } else {
            (load_partial(tail), Lanes::First(t))
        };
        f(&mut acc[NACC - 1], v, l);
    }
    acc
}

/// Runs `f(acc[i], vector i, e)` over the vectors of each row segment, `acc[i]` being the
/// state of columns `i·LANES..` (the column-wise loop of `col_moments`); `e` is the value the
/// row iterator pairs with the segment. A tail vector is zero-filled by the same
/// `load_partial` as [`sweep`]'s; column states are per lane, so its spare lanes need no mask
/// (their results are never read).
#[inline(always)]
pub(crate) fn sweep_columns<'a, T: Element, S, E: Copy>(
    rows: impl Iterator<Item = (&'a [T], E)>,
    acc: &mut [S],
    mut f: impl FnMut(&mut S, <T::Acc as Float>::V, E),
) {
    for (r, e) in rows {
        let (chunks, tail) = T::as_chunks(r);
        for (s, c) in acc.iter_mut().zip(chunks) {
            f(s, T::load(c), e);
        }
        if let (false, Some(s)) = (tail.is_empty(), acc.get_mut(chunks.len())) {
            f(s, load_partial(tail), e);
        }
    }
}

/// [`sweep_columns`] over pairs of row segments of equal length: `f(acc[i], vector i of
/// row a, vector i of row b, e)`, visiting each state once per two rows.
#[inline(always)]
pub(crate) fn sweep_column_pairs<'a, T: Element, S, E: Copy>(
    pairs: impl Iterator<Item = (&'a [T], &'a [T], E)>,
    acc: &mut [S],
    mut f: impl FnMut(&mut S, <T::Acc as Float>::V, <T::Acc as Float>::V, E),
) {
    for (a, b, e) in pairs {
        let ((ca, ta), (cb, tb)) = (T::as_chunks(a), T::as_chunks(b));
        for (s, (va, vb)) in acc.iter_mut().zip(ca.iter().zip(cb)) {
            f(s, T::load(va), T::load(vb), e);
        }
        if let (false, Some(s)) = (ta.is_empty(), acc.get_mut(ca.len())) {
            f(s, load_partial(ta), load_partial(tb), e);
        }
    }
}

/// Sum of the lanes of `NACC` accumulators, by a fixed pairwise tree.
#[inline]
pub(crate) fn lane_sum<A: Float>(acc: [A::V; NACC]) -> A {
    lanes_of::<A>(acc_sum::<A>(acc))
}

/// The `NACC` accumulators added into one vector, by a fixed pairwise tree.
#[inline]
pub(crate) fn acc_sum<A: Float>(acc: [A::V; NACC]) -> A::V {
    let mut v = acc;
    let mut width = NACC;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            v[i] = v[i] + v[i + width];
        }
    }
    v[0]
}

/// Sum of the lanes of one vector, in a fixed order ([`Vector::reduce_add`]: the same
/// pairwise halving tree on AVX-512 as the scalar tree over the lane array it replaced, and
/// no trip through memory).
#[inline]
pub(crate) fn lanes_of<A: Float>(v: A::V) -> A {
    v.reduce_add()
}

/// Chan, Golub & LeVeque (1979) pairwise update. With `δ = mean_b − mean_a`, `n = n_a + n_b`,
/// `wb = n_b / n` and `w = n_a·n_b / n`:
///
/// ```text
/// mean = mean_a + δ·wb        m2 = m2_a + m2_b + δ²·w
/// ```
///
/// Written once for scalars and vectors (`X` is `A` or `A::V`).
#[inline(always)]
pub(crate) fn chan<X: Arith>(ma: X, m2a: X, mb: X, m2b: X, wb: X, w: X) -> (X, X) {
    let d = mb - ma;
    (d.mul_add(wb, ma), (d * w).mul_add(d, m2a + m2b))
}

/// Folds `2^k` states (`mean[i]`, `m2[i]`), each over `count` values, into `mean[0]`,
/// `m2[0]` by a pairwise tree of [`chan`] merges of equal counts (`wb = ½`, `w = c/2`).
/// Returns the folded count.
#[inline]
pub(crate) fn fold_equal<X: Arith>(
    mean: &mut [X],
    m2: &mut [X],
    mut count: u64,
    splat: impl Fn(f64) -> X,
) -> u64 {
    debug_assert!(mean.len().is_power_of_two() && mean.len() == m2.len());
    let half = splat(0.5);
    let mut width = mean.len();
    while width > 1 {
        width /= 2;
        let w = splat(count as f64 * 0.5);
        for i in 0..width {
            (mean[i], m2[i]) = chan(mean[i], m2[i], mean[i + width], m2[i + width], half, w);
        }
        count *= 2;
    }
    count
}

/// `max(v, 0)` that keeps NaN: rounding can leave `Σd² − (Σd)²/n` a hair below zero.
#[inline(always)]
pub(crate) fn non_negative<A: Float>(v: A) -> A {
    if v < A::ZERO { A::ZERO } else { v }
}
