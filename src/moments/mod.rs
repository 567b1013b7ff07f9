//! Mean and variance: `Moments`, the free functions, streaming `Welford`, rows and columns.
//!
//! Every kernel computes the moments of `y = x·s − p` where `p` (the *pilot*, see
//! [`pilot_of`]) is a value of the slice, so `y` is of the order of σ even when |mean| ≫ σ,
//! and all partial
//! results of one call share that shift: merging them loses nothing to the rounding of a
//! large mean. The returned mean is `p + mean_y`, rounded once.
//!
//! `s` is 1 on the fast path. When a result is not finite, or its `m2` is so small that the
//! squares may have underflowed (`m2 < count·MIN_POSITIVE/ε`), the call is *rescued*: a NaN or
//! ±∞ in the input gives NaN statistics; otherwise the slice is recomputed scaled by the
//! power of two that brings its largest magnitude near 1 and the result scaled back, which
//! is what a rescaled copy would give (an `m2` beyond `A::MAX` is then +∞: not representable).

mod columns;
pub(crate) use columns::{col_shifted, grouped_shifted};
mod lanes;
pub(crate) use lanes::{Step, lane_sum};
mod streaming;
mod tiny;
mod two_pass;
mod welford;

pub use streaming::Welford;

use crate::element::{Element, Float, Vector};
use crate::error::{NormError, check_len, rows_of};
use crate::{par, tuning};

/// Count, mean and sum of squared deviations (`m2 = Σ (x − mean)²`) of some values.
///
/// `Moments` merge exactly like the values they summarize ([`Moments::merge`]), so statistics
/// of parts combine into statistics of the whole. A count-0 value is the identity of `merge`.
///
/// # Example
/// ```
/// use simdnorm::{moments, Moments};
/// let x = [1.0f64, 2.0, 3.0, 4.0];
/// let m = moments(&x);
/// assert_eq!((m.count, m.mean, m.m2), (4, 2.5, 5.0));
/// assert_eq!(m.variance(0), 1.25);
/// let parts = moments(&x[..1]).merge(&moments(&x[1..]));
/// assert_eq!(parts.variance(1), m.variance(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Moments<A> {
    /// Number of values.
    pub count: u64,
    /// Their mean (NaN when `count == 0`).
    pub mean: A,
    /// `Σ (x − mean)²` (NaN when `count == 0`).
    pub m2: A,
}

impl<A: Float> Default for Moments<A> {
    /// The empty value: count 0, NaN mean and m2.
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<A: Float> Moments<A> {
    /// No values: count 0, NaN mean and m2. The identity of [`Moments::merge`].
    ///
    /// # Example
    /// ```
    /// use simdnorm::{moments, Moments};
    /// let m = moments(&[1.0f32, 5.0]);
    /// assert_eq!(m.merge(&Moments::EMPTY), m);
    /// ```
    pub const EMPTY: Self = Self {
        count: 0,
        mean: A::NAN,
        m2: A::NAN,
    };

    /// `m2 / (count − ddof)`: `ddof = 0` is the population (biased) variance, `ddof = 1` the
    /// sample (unbiased) one. NaN when `count ≤ ddof`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::moments;
    /// let m = moments(&[2.0f64, 4.0, 6.0]);
    /// assert_eq!(m.variance(0), 8.0 / 3.0);
    /// assert_eq!(m.variance(1), 4.0);
    /// assert!(m.variance(3).is_nan());
    /// ```
    pub fn variance(&self, ddof: u32) -> A {
        if self.count <= u64::from(ddof) {
            return A::NAN;
        }
        self.m2 / A::from_u64(self.count - u64::from(ddof))
    }

    /// The moments of the union of two sets of values (Chan, Golub & LeVeque 1979):
    /// `δ = mean_b − mean_a`, `mean = mean_a + δ·n_b/n`, `m2 = m2_a + m2_b + δ²·n_a·n_b/n`.
    ///
    /// Exact up to rounding, but each mean was rounded to `A`: merging two `Moments<f32>` whose
    /// |mean|/σ is large loses up to about `ε·|mean|/σ` of relative variance to that rounding
    /// (the rounded means move `δ²·n_a·n_b/n` by `2|δ|·n_a·n_b/n·ε|mean|`; 26 ε seen on three
    /// values with |mean|/σ ≈ 100).
    /// The kernels avoid it by merging values shifted by a common pilot; so does the streaming
    /// [`Welford`], which is the way to combine statistics of ill-conditioned parts.
    ///
    /// # Example
    /// ```
    /// use simdnorm::{welford, Moments};
    /// let a = welford(&[1.0f32, 2.0, 3.0]);
    /// let b = welford(&[10.0f32]);
    /// let m = a.merge(&b);
    /// assert_eq!((m.count, m.mean), (4, 4.0));
    /// assert_eq!(m.m2, 50.0); // 2 + 0 + 8² · 3·1/4
    /// ```
    pub fn merge(&self, other: &Self) -> Self {
        if other.count == 0 {
            return *self;
        }
        if self.count == 0 {
            return *other;
        }
        let n = self.count + other.count;
        let wb = other.count as f64 / n as f64;
        let (mean, m2) = lanes::chan(
            self.mean,
            self.m2,
            other.mean,
            other.m2,
            A::from_f64(wb),
            A::from_f64(self.count as f64 * wb),
        );
        // δ overflows only for means of opposite signs near ±A::MAX: weigh them instead.
        let mean = if mean.is_finite() || !(self.mean.is_finite() && other.mean.is_finite()) {
            mean
        } else {
            self.mean * A::from_f64(1.0 - wb) + other.mean * A::from_f64(wb)
        };
        Self { count: n, mean, m2 }
    }

    /// Standard deviation `sqrt(variance(ddof))`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::moments;
    /// assert_eq!(moments(&[1.0f32, 3.0]).std(0), 1.0);
    /// ```
    pub fn std(&self, ddof: u32) -> A {
        self.variance(ddof).sqrt()
    }

    /// NaN statistics over `count` values (a NaN or ±∞ was among them).
    pub(crate) fn nan(count: u64) -> Self {
        Self {
            count,
            mean: A::NAN,
            m2: A::NAN,
        }
    }

    /// Moments of `x` from those of `y = x·2^k − p`.
    #[inline]
    pub(crate) fn unshift(self, p: A, k: i32) -> Self {
        let u = A::exp2i(-k);
        Self {
            count: self.count,
            mean: (p + self.mean) * u,
            m2: lanes::non_negative(self.m2) * u * u,
        }
    }

    /// A fast-path result that must be recomputed: not finite, or so small that squares may
    /// have underflowed.
    #[inline]
    pub(crate) fn needs_rescue(&self) -> bool {
        let tiny = A::MIN_POSITIVE / A::EPSILON * A::from_u64(self.count);
        !(self.mean.is_finite() && self.m2.is_finite()) || self.m2 < tiny
    }
}

/// What the rescue does with values whose largest magnitude is `amax` and whose largest
/// distance from the pilot is `dmax` (both NaN if a value is NaN): their [`Spread`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rescue {
    /// The fast path's moments stand: every value is the pilot (`dmax = 0`: deviations all
    /// exactly 0, whatever their magnitude), or the scale would be `2^0` (the same
    /// computation again, bit for bit). A constant row, channel or column takes this way:
    /// its `m2 = 0` asks for the rescue, which recomputed it at another scale (three reads
    /// of the values instead of two; a BatchNorm `(65536, 256)` input with 1/8 of its
    /// channels constant took 28–38 ms against 7.5–8.5 ms, the scaled pass redone over all
    /// columns; 11–12 ms now, the one extra read being the spreads).
    Keep,
    /// A NaN or ±∞ is among the values: NaN statistics.
    Nan,
    /// Recompute the moments of `x·2^k`, `k ≠ 0`.
    Scale(i32),
}

impl Rescue {
    pub(crate) fn plan<A: Float>(s: Spread<A>) -> Self {
        if !s.amax.is_finite() {
            return Rescue::Nan;
        }
        if s.dmax == A::ZERO || s.amax == A::ZERO {
            return Rescue::Keep;
        }
        let lim = A::MAX.exponent() - 1;
        match (-s.amax.exponent()).clamp(-lim, lim) {
            0 => Rescue::Keep,
            k => Rescue::Scale(k),
        }
    }
}

/// What the rescue reads of some values: their largest magnitude and their largest
/// distance `|x − p|` from the pilot `p`, each NaN if a value is NaN.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spread<A> {
    pub(crate) amax: A,
    pub(crate) dmax: A,
}

impl<A: Float> Spread<A> {
    /// Of no values.
    pub(crate) const NONE: Self = Self {
        amax: A::ZERO,
        dmax: A::ZERO,
    };

    /// Of the values of both.
    #[inline]
    pub(crate) fn merge(self, o: Self) -> Self {
        Self {
            amax: max_abs_scalar(self.amax, o.amax),
            dmax: max_abs_scalar(self.dmax, o.dmax),
        }
    }

    /// With the value `v` (pilot `p`) added.
    #[inline]
    pub(crate) fn with(self, v: A, p: A) -> Self {
        self.merge(Self {
            amax: v,
            dmax: v - p,
        })
    }

    /// Of the lanes of two vectors of running maxima (lanes that held no data: 0).
    pub(crate) fn of_lanes(amax: A::V, dmax: A::V) -> Self {
        let (a, d) = (amax.to_array(), dmax.to_array());
        a.as_ref()
            .iter()
            .zip(d.as_ref())
            .fold(Self::NONE, |s, (&amax, &dmax)| s.merge(Self { amax, dmax }))
    }
}

/// The [`Spread`] of some values around `p`, a value at a time: where a vector sweep does not
/// fit (a few values, or values not in one slice).
pub(crate) fn spread_of<'a, T: Element>(
    values: impl IntoIterator<Item = &'a T>,
    p: T::Acc,
) -> Spread<T::Acc> {
    values
        .into_iter()
        .fold(Spread::NONE, |s, v| s.with(v.to_acc(), p))
}

/// `max(a, |v|)`, NaN if either is NaN.
#[inline]
pub(crate) fn max_abs_scalar<A: Float>(a: A, v: A) -> A {
    let v = v.abs();
    if v.is_nan() || a.is_nan() {
        A::NAN
    } else if v > a {
        v
    } else {
        a
    }
}

/// The [`Spread`] of `x` around `p`; `amax` is non-finite if `x` holds a NaN or ±∞.
fn spread<T: Element>(x: &[T], p: T::Acc) -> Spread<T::Acc> {
    let (zero, np) = (<T::Acc as Float>::V::ZERO, <T::Acc as Float>::V::splat(-p));
    let acc = lanes::sweep(x, (zero, zero), |(a, d), v, lanes| {
        *a = a.max_nan(lanes.keep::<T::Acc>(v.abs()));
        *d = d.max_nan(lanes.keep::<T::Acc>((v + np).abs()));
    });
    acc.iter()
        .fold(Spread::NONE, |s, &(a, d)| s.merge(Spread::of_lanes(a, d)))
}

/// The outcome of running a kernel with the rescue.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Run<A> {
    /// The fast path: moments of `x − p`.
    Fast(Moments<A>),
    /// Rescued: moments of `x·2^k − ps`, with `ps = p·2^k`.
    Scaled(Moments<A>, A, i32),
    /// A NaN or ±∞ among `count` values.
    Nan(u64),
}

/// Runs `kernel(x, s, p)` (moments of `x·s − p`) with `s = 1`, and again with a power-of-two
/// `s` if the result needs rescuing.
#[inline]
fn run<T: Element>(
    x: &[T],
    p: T::Acc,
    kernel: impl Fn(&[T], T::Acc, T::Acc) -> Moments<T::Acc>,
) -> Run<T::Acc> {
    run_with(p, |s, p| kernel(x, s, p), || spread(x, p))
}

/// [`run`] over any data: `kernel(s, p)` gives the moments of its values `x·s − p`,
/// `spread()` their [`Spread`] around `p` (only asked for when rescuing).
#[inline]
fn run_with<A: Float>(
    p: A,
    kernel: impl Fn(A, A) -> Moments<A>,
    spread: impl FnOnce() -> Spread<A>,
) -> Run<A> {
    rescued(kernel(A::ONE, p), p, kernel, spread)
}

/// [`run_with`] from the fast path's moments `m = kernel(1, p)`, already computed.
#[inline]
fn rescued<A: Float>(
    m: Moments<A>,
    p: A,
    kernel: impl Fn(A, A) -> Moments<A>,
    spread: impl FnOnce() -> Spread<A>,
) -> Run<A> {
    if !m.unshift(p, 0).needs_rescue() {
        return Run::Fast(m);
    }
    match Rescue::plan(spread()) {
        Rescue::Keep => Run::Fast(m),
        Rescue::Nan => Run::Nan(m.count),
        Rescue::Scale(k) => {
            let ps = p * A::exp2i(k);
            Run::Scaled(kernel(A::exp2i(k), ps), ps, k)
        }
    }
}

impl<A: Float> Run<A> {
    /// The moments of the values themselves, for the pilot `p` the run was made with.
    pub(crate) fn unshift(self, p: A) -> Moments<A> {
        match self {
            Run::Fast(m) => m.unshift(p, 0),
            Run::Scaled(m, ps, k) => m.unshift(ps, k),
            Run::Nan(count) => Moments::nan(count),
        }
    }
}

/// The pilot of a slice: the median of its first, middle and last values. A pilot near the
/// mean keeps the shifted values O(σ); the median of three is never a single outlier (the
/// first value alone is, when the outlier comes first, and then Welford's running means carry
/// its magnitude: measured 1.4e-5·σ of mean error on 1662 f32 values with a 1e6× outlier).
pub(crate) fn pilot_of<T: Element>(x: &[T]) -> T::Acc {
    let (a, b, c) = (
        x[0].to_acc(),
        x[x.len() / 2].to_acc(),
        x[x.len() - 1].to_acc(),
    );
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    if c < lo {
        lo
    } else if c > hi {
        hi
    } else {
        c
    }
}

/// Moments of `y = x·s − p` by the blocked Welford kernel (leaves merged by the fixed tree).
fn welford_kernel<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    par::reduce_blocks(x, &|b| welford::block(b, s, p), &|a, b| a.merge(&b))
}

/// Row statistics for the ops (non-empty `x`): the pilot and the rescued moments of
/// `x − pilot` (or of `x·2^k − pilot·2^k`) by [`two_pass::piloted`]: the ops read a row while
/// it is in L1/L2 and normalize it from there, so the fewer operations per value count more
/// than the single pass of Welford.
#[inline(always)]
pub(crate) fn row_shifted<T: Element>(x: &[T]) -> (T::Acc, Run<T::Acc>) {
    if tiny::takes(x) {
        return tiny::row_shifted(x);
    }
    let p = pilot_of(x);
    (p, run(x, p, two_pass::piloted))
}

/// The longest row [`row_ahead`] takes (16384 values).
pub(crate) const AHEAD_MAX: usize = two_pass::STEPPED_BLOCKS * tuning::BLOCK;

/// The pass of [`row_shifted`]'s statistics over a row, taken ahead of the rest: while
/// another row is normalized (`ops::run_rows`), `step()` being called after each group of
/// `NACC` vectors. [`row_shifted_ahead`] finishes the statistics, bit for bit
/// [`row_shifted`]'s.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowAhead<A> {
    p: A,
    c: A,
    sums: (A, A),
}

/// [`RowAhead`] of a non-empty row of at most [`AHEAD_MAX`] values.
#[inline(always)]
pub(crate) fn row_ahead<T: Element>(x: &[T], step: &mut impl Step) -> RowAhead<T::Acc> {
    let (p, one) = (pilot_of(x), T::Acc::ONE);
    let c = two_pass::centre(x, one, p);
    let sums = two_pass::pass_stepped(x, one, c, step);
    RowAhead { p, c, sums }
}

/// [`row_shifted`] of `x` from its [`RowAhead`].
pub(crate) fn row_shifted_ahead<T: Element>(x: &[T], a: RowAhead<T::Acc>) -> (T::Acc, Run<T::Acc>) {
    let kernel = |x: &[T], s: T::Acc, p: T::Acc| {
        // the first call (s = 1, the same pilot) is the pass taken ahead; a rescue's is not
        if s == T::Acc::ONE && p == a.p {
            two_pass::piloted_from(x, s, p, a.c, a.sums)
        } else {
            two_pass::piloted(x, s, p)
        }
    };
    (a.p, run(x, a.p, kernel))
}

/// Statistics of values spread over `n` slices (`seg(i)`, some possibly empty, at least one
/// not): a BatchNorm channel of an `(N, C, HW)` input, or its valid positions. One pilot for
/// all slices ([`segments_pilot`]), the slices' shifted Welford moments merged in the fixed
/// pairwise tree of `par::reduce` (parallel for many). The reference of [`channels_shifted`]
/// (which gives its bits for every channel at once) in the tests.
#[cfg(test)]
pub(crate) fn segments_shifted<'x, T: Element>(
    n: usize,
    seg: &(impl Fn(usize) -> &'x [T] + Sync),
) -> (T::Acc, Run<T::Acc>) {
    let Some(p) = segments_pilot(n, seg) else {
        return (T::Acc::ZERO, Run::Fast(Moments::EMPTY));
    };
    (p, segments_run(n, seg, p, None))
}

/// The [`Run`] of [`segments_shifted`] around the pilot `p`, from the fast path's moments
/// where they are known (`fast`: bit for bit the kernel's with `s = 1`).
fn segments_run<'x, T: Element>(
    n: usize,
    seg: &(impl Fn(usize) -> &'x [T] + Sync),
    p: T::Acc,
    fast: Option<Moments<T::Acc>>,
) -> Run<T::Acc> {
    let width = (0..n).map(|i| seg(i).len()).max().unwrap_or(1).max(1);
    let par_leaves = (tuning::PAR_ELEMS / width).max(2);
    let kernel = |s: T::Acc, p: T::Acc| {
        par::reduce(n, par_leaves, &|i| segment_kernel(seg(i), s, p), &|a, b| {
            a.merge(&b)
        })
    };
    let spread = || (0..n).fold(Spread::NONE, |s, i| s.merge(spread(seg(i), p)));
    match fast {
        Some(m) => rescued(m, p, kernel, spread),
        None => run_with(p, kernel, spread),
    }
}

/// The pilot of values spread over `n` slices: the median of the first value of the first
/// non-empty slice, the middle value of the middle one and the last value of the last
/// (`None` when every slice is empty).
fn segments_pilot<'x, T: Element>(n: usize, seg: &impl Fn(usize) -> &'x [T]) -> Option<T::Acc> {
    let first = (0..n).map(seg).find(|s| !s.is_empty())?;
    let last = (0..n)
        .rev()
        .map(seg)
        .find(|s| !s.is_empty())
        .unwrap_or(first);
    let mid = Some(seg(n / 2)).filter(|s| !s.is_empty()).unwrap_or(first);
    Some(pilot_of(&[
        first[0],
        mid[mid.len() / 2],
        last[last.len() - 1],
    ]))
}

/// Shifted Welford moments of one slice (empty: [`Moments::EMPTY`]).
fn segment_kernel<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    if x.is_empty() {
        Moments::EMPTY
    } else {
        welford_kernel(x, s, p)
    }
}

/// [`segments_shifted`] for all `c` channels of `(n, c, ·)` data at once, `seg(i, j)` the
/// values of sample `i` in channel `j`: the slices are read in memory order (sample by
/// sample, each sample's channels one after the other), which streams from DRAM like one
/// long read, where a channel at a time is `n` short streams `c` slices apart (measured on
/// (32, 64, 56, 56) f32, 1 thread: 2.0 ms a channel at a time against 0.7–0.9 ms for a plain
/// read of x). Each channel's moments are merged over the samples in the same fixed tree as
/// [`segments_shifted`]'s, so the results are the same bits; a channel that needs a rescue
/// (overflow, NaN, a constant channel) goes on from those moments as [`segments_shifted`]
/// would.
pub(crate) fn channels_shifted<'x, T: Element>(
    c: usize,
    n: usize,
    seg: &(impl Fn(usize, usize) -> &'x [T] + Sync),
) -> Vec<(T::Acc, Run<T::Acc>)> {
    let pilots: Vec<Option<T::Acc>> = (0..c).map(|j| segments_pilot(n, &|i| seg(i, j))).collect();
    let pilot = |j: usize| pilots[j].unwrap_or(T::Acc::ZERO);
    let width = (0..n)
        .map(|i| (0..c).map(|j| seg(i, j).len()).sum::<usize>())
        .max()
        .unwrap_or(1)
        .max(1);
    let moments = par::reduce(
        n,
        (tuning::PAR_ELEMS / width).max(2),
        &|i| -> Vec<Moments<T::Acc>> {
            (0..c)
                .map(|j| segment_kernel(seg(i, j), T::Acc::ONE, pilot(j)))
                .collect()
        },
        &|mut a, b| {
            for (a, b) in a.iter_mut().zip(&b) {
                *a = a.merge(b);
            }
            a
        },
    );
    moments
        .into_iter()
        .enumerate()
        .map(|(j, m)| match pilots[j] {
            None => (T::Acc::ZERO, Run::Fast(Moments::EMPTY)),
            Some(p) => (p, segments_run(n, &|i| seg(i, j), p, Some(m))),
        })
        .collect()
}

/// `Σ (x·2^k)² / n` and `k` (0 unless the squares overflow or underflow), or `None` when `x`
/// holds a NaN or ±∞. For RMSNorm; `x` non-empty.
pub(crate) fn mean_square<T: Element>(x: &[T]) -> Option<(T::Acc, i32)> {
    if tiny::takes(x) {
        return tiny::mean_square(x);
    }
    mean_square_from(x, two_pass::sum_squares(x, T::Acc::ONE))
}

/// `Σ x²` of a row of at most [`AHEAD_MAX`] values, taken ahead like [`row_ahead`] (`step()`
/// after each group of `NACC` vectors); [`mean_square_from`] finishes it.
#[inline(always)]
pub(crate) fn squares_ahead<T: Element>(x: &[T], step: &mut impl Step) -> T::Acc {
    two_pass::sum_squares_stepped(x, step)
}

/// [`mean_square`] of `x` from its unscaled `Σ x²` (`sq`, bit for bit [`two_pass::sum_squares`]
/// with `s = 1`).
pub(crate) fn mean_square_from<T: Element>(x: &[T], sq: T::Acc) -> Option<(T::Acc, i32)> {
    let n = T::Acc::from_u64(x.len() as u64);
    let q = sq / n;
    if q.is_finite() && q >= T::Acc::MIN_POSITIVE / T::Acc::EPSILON {
        return Some((q, 0));
    }
    // around 0: every value is the pilot only in a row of zeros, whose `q = 0` is exact
    match Rescue::plan(spread(x, T::Acc::ZERO)) {
        Rescue::Keep => Some((q, 0)),
        Rescue::Nan => None,
        Rescue::Scale(k) => Some((two_pass::sum_squares(x, T::Acc::exp2i(k)) / n, k)),
    }
}

/// Moments of `x` by `kernel`, with [`pilot_of`] as pilot and the rescue; a slice shorter
/// than a vector by the scalar `f64` two-pass of [`tiny`] instead (the same bits for every
/// `kernel`).
#[inline]
fn estimate<T: Element>(
    x: &[T],
    kernel: impl Fn(&[T], T::Acc, T::Acc) -> Moments<T::Acc>,
) -> Moments<T::Acc> {
    if x.is_empty() {
        return Moments::EMPTY;
    }
    if tiny::takes(x) {
        let (p, run) = tiny::row_shifted(x);
        return run.unshift(p);
    }
    let p = pilot_of(x);
    run(x, p, kernel).unshift(p)
}

/// Mean and variance by shifted Welford, vectorized (see `welford.rs` for the algorithm).
///
/// Single pass, no division in the hot loop; leaves of 2048 values merged by a fixed pairwise
/// Chan tree, parallel on the current rayon pool for long slices. Empty `x` gives
/// [`Moments::EMPTY`]; a NaN or ±∞ gives NaN mean and m2.
///
/// # Example
/// ```
/// let m = simdnorm::welford(&[1.0e6f32 + 1.0, 1.0e6 + 2.0, 1.0e6 + 3.0]);
/// assert_eq!(m.mean, 1.0e6 + 2.0);
/// assert_eq!(m.variance(1), 1.0);
/// ```
pub fn welford<T: Element>(x: &[T]) -> Moments<T::Acc> {
    estimate(x, welford_kernel)
}

/// Mean and variance by the corrected two-pass algorithm (Chan, Golub & LeVeque 1983) over the
/// whole slice: one pass for the mean, one for `Σd` and `Σd²`, `m2 = Σd² − (Σd)²/n`.
///
/// Reads `x` twice; see [`moments`] for the single-pass blocked form. Empty `x` gives
/// [`Moments::EMPTY`]; a NaN or ±∞ gives NaN mean and m2.
///
/// # Example
/// ```
/// let x: Vec<f64> = (0..1000).map(f64::from).collect();
/// let m = simdnorm::two_pass(&x);
/// assert_eq!(m.mean, 499.5);
/// assert_eq!(m.variance(0), (1000.0f64 * 1000.0 - 1.0) / 12.0); // (n² − 1)/12
/// ```
pub fn two_pass<T: Element>(x: &[T]) -> Moments<T::Acc> {
    estimate(x, two_pass::whole)
}

/// Mean and variance by the recommended method for the size of `x`.
///
/// Slices shorter than a vector (fewer than 16 `f32`, `f16` or `bf16` values, 8 `f64`;
/// [`welford`](fn@welford) and [`two_pass`](fn@two_pass) too) take the corrected two-pass
/// in scalar `f64` (for `f32` accumulators rounded once): the vector kernels' partial loads
/// and lane folds cost ~64 ns on so few values (182 ns on one value, always rescued as
/// constant), against 8–27 ns (10 ns) that way, measured through `row_moments` on `f32`.
///
/// On every other size measured this is [`welford`](fn@welford): single pass, and no slower
/// than [`two_pass`](fn@two_pass) even when `x` sits in L1. Measured on Zen 4 (AVX-512,
/// 1 thread, ns per call):
///
/// | n | 64 | 1024 | 4096 | 16384 | 65536 | 262144 | 1e8 |
/// |---|---|---|---|---|---|---|---|
/// | `welford` | 19 | 71 | 250 | 1022 | 4139 | 39786 | 15.9 ms |
/// | `two_pass` | 28 | 83 | 256 | 1213 | 5561 | 72462 | 35.4 ms |
///
/// A blocked two-pass (two-pass inside 8 KiB blocks, blocks merged by Chan's formula) also
/// reads memory once, but measured 88 % of read bandwidth at n = 1e8 against Welford's 96 %:
/// its second pass over each block pauses the stream of loads the prefetcher follows. Both
/// are accurate to the same bars (README.md), so `moments` is Welford at every size. If a
/// target is found where two-pass wins in cache, the crossover goes here.
///
/// # Example
/// ```
/// let x: Vec<f32> = (0..100_000).map(|i| (i % 7) as f32).collect();
/// let m = simdnorm::moments(&x);
/// assert_eq!(m.count, 100_000);
/// assert!((m.mean - 2.99995).abs() < 1e-5);
/// ```
pub fn moments<T: Element>(x: &[T]) -> Moments<T::Acc> {
    welford(x)
}

/// One `Moments` per row of a `(rows, row_len)` matrix: the LayerNorm statistic.
///
/// Each row's [`moments`]. Rows are independent; long matrices are spread over the rayon
/// pool by rows.
///
/// # Errors
/// [`NormError::ZeroLength`] if `row_len == 0`; [`NormError::NotAMultiple`] if `x.len()` is
/// not a multiple of `row_len`; [`NormError::LengthMismatch`] if `out.len() != rows`.
/// Nothing is written on `Err`.
///
/// # Example
/// ```
/// use simdnorm::{row_moments, Moments};
/// let x = [1.0f32, 3.0, 10.0, 10.0];
/// let mut out = [Moments::default(); 2];
/// row_moments(&x, 2, &mut out)?;
/// assert_eq!((out[0].mean, out[0].variance(0)), (2.0, 1.0));
/// assert_eq!((out[1].mean, out[1].m2), (10.0, 0.0));
/// # Ok::<(), simdnorm::NormError>(())
/// ```
pub fn row_moments<T: Element>(
    x: &[T],
    row_len: usize,
    out: &mut [Moments<T::Acc>],
) -> Result<(), NormError> {
    let rows = rows_of("x", x.len(), row_len)?;
    check_len("out", rows, out.len())?;
    let per_task = (tuning::PAR_ELEMS / 8 / row_len).max(1);
    par::for_each_chunk_mut(out, per_task, par::worth_parallel(x.len()), |i, o| {
        let first = i * per_task;
        for (k, m) in o.iter_mut().enumerate() {
            *m = moments(&x[(first + k) * row_len..][..row_len]);
        }
    });
    Ok(())
}

/// One `Moments` per column of a `(rows, row_len)` matrix, over its rows: the BatchNorm
/// statistic of an `(N, C)` input.
///
/// Adjacent columns share SIMD lanes and rows are streamed in address order, one read of `x`
/// (see `columns.rs`). A matrix with no rows gives [`Moments::EMPTY`] for every column.
/// Allocates the per-column Welford states: `row_len` × 16 bytes (f32) per leaf of 256 rows
/// or 256 KiB of input, whichever is less, and once per call.
///
/// # Errors
/// [`NormError::ZeroLength`] if `row_len == 0`; [`NormError::NotAMultiple`] if `x.len()` is
/// not a multiple of `row_len`; [`NormError::LengthMismatch`] if `out.len() != row_len`.
/// Nothing is written on `Err`.
///
/// # Example
/// ```
/// use simdnorm::{col_moments, Moments};
/// let x = [1.0f64, 10.0,
///          3.0, 10.0,
///          5.0, 10.0];
/// let mut out = [Moments::default(); 2];
/// col_moments(&x, 2, &mut out)?;
/// assert_eq!((out[0].mean, out[0].variance(1)), (3.0, 4.0));
/// assert_eq!((out[1].mean, out[1].m2), (10.0, 0.0));
/// # Ok::<(), simdnorm::NormError>(())
/// ```
pub fn col_moments<T: Element>(
    x: &[T],
    row_len: usize,
    out: &mut [Moments<T::Acc>],
) -> Result<(), NormError> {
    let rows = rows_of("x", x.len(), row_len)?;
    check_len("out", row_len, out.len())?;
    if rows == 0 {
        out.fill(Moments::EMPTY);
    } else if row_len == 1 {
        out[0] = moments(x);
    } else {
        columns::col_shifted(x, row_len, rows, |j, p, run| out[j] = run.unshift(p));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `channels_shifted` (all channels in one memory-order read) gives, channel by channel,
    /// the same pilot and the same bits as `segments_shifted` over that channel alone: for
    /// ordinary, constant, empty (masked), rescued (near `f32::MAX`, and 1e-30) and NaN
    /// channels, with and without per-sample valid lengths.
    #[test]
    fn channels_in_memory_order_match_one_channel_at_a_time() {
        let (n, c, hw) = (5, 7, 37);
        let mut s = 0x9e37_79b9_u32;
        let mut x: Vec<f32> = (0..n * c * hw)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                1.0e4 + (s as f32 / u32::MAX as f32 - 0.5)
            })
            .collect();
        for i in 0..n {
            let at = |j: usize, k: usize| (i * c + j) * hw + k;
            for k in 0..hw {
                x[at(1, k)] = 3.5; // constant
                x[at(2, k)] *= 3.0e34; // squares overflow: rescued
                x[at(3, k)] *= 1.0e-34; // squares underflow: rescued
            }
            x[at(4, 11)] = f32::NAN;
        }
        let bits = |(p, run): (f32, Run<f32>)| {
            let (tag, m, ps, k) = match run {
                Run::Fast(m) => (0, m, 0.0, 0),
                Run::Scaled(m, ps, k) => (1, m, ps, k),
                Run::Nan(count) => (2, Moments::nan(count), 0.0, 0),
            };
            (
                p.to_bits(),
                tag,
                m.count,
                m.mean.to_bits(),
                m.m2.to_bits(),
                ps.to_bits(),
                k,
            )
        };
        for lengths in [None, Some([37usize, 0, 12, 37, 1])] {
            let valid = |i: usize| lengths.map_or(hw, |l| l[i]);
            let seg = |i: usize, j: usize| &x[(i * c + j) * hw..][..valid(i)];
            let all = channels_shifted(c, n, &seg);
            for (j, got) in all.into_iter().enumerate() {
                let want = segments_shifted(n, &|i| seg(i, j));
                assert_eq!(bits(got), bits(want), "channel {j}, lengths {lengths:?}");
            }
        }
    }

    /// Constant values keep the fast path (`Run::Fast`, zero deviations: no rescue pass at
    /// another scale) in every kernel that has the rescue: rows (LayerNorm, GroupNorm,
    /// `moments`; long and shorter than a vector), segments (BatchNorm `Nchw`), columns
    /// (BatchNorm `Nc`, `Nhwc`, short `Nchw` segments), at any magnitude, ±0 mixed included;
    /// values that are not all the pilot but whose squares underflow are still rescued at a
    /// scale, beside them. The results are checked against the oracle in
    /// `tests/batch_group_norm.rs`; this checks that the constant ones take no second pass.
    #[test]
    fn constant_values_keep_the_fast_path() {
        let fast = |run: Run<f32>| matches!(run, Run::Fast(m) if m.mean == 0.0 && m.m2 == 0.0);
        let scaled = |run: Run<f32>| matches!(run, Run::Scaled(..));
        for v in [0.0f32, 5.0, -3.0e37, 1.0e-40, f32::MAX, -f32::MAX] {
            for len in [1, 7, 16, 100, 3000] {
                let mut x = vec![v; len];
                x[len / 3] = if v == 0.0 { -0.0 } else { v };
                let (p, run) = row_shifted(&x);
                assert!(p == v && fast(run), "row {v} × {len}: {run:?}");
                let (_, run) = segments_shifted(3, &|i| &x[i * len / 3..(i + 1) * len / 3]);
                assert!(len < 3 || fast(run), "segments {v} × {len}: {run:?}");
            }
            // columns: 0, 5, 18, 19 constant, 1 zeros but one 1e-30 (rescued), others ordinary
            let (rows, cols) = (30, 20);
            let x: Vec<f32> = (0..rows * cols)
                .map(|i| match (i / cols, i % cols) {
                    (_, 0) | (_, 5) | (_, 18) | (_, 19) => v,
                    (4, 1) => 1.0e-30,
                    (_, 1) => 0.0,
                    (r, j) => (r * j) as f32,
                })
                .collect();
            let mut runs = Vec::new();
            columns::col_shifted(&x, cols, rows, |_, _, run| runs.push(run));
            for j in [0, 5, 18, 19] {
                assert!(fast(runs[j]), "column {j} of {v}: {:?}", runs[j]);
            }
            assert!(scaled(runs[1]), "column 1: {:?}", runs[1]);
            let short = columns::grouped_shifted(&x, cols / 2, 2, rows);
            // channels of two columns: 9 = columns 18, 19; 0 = columns 0, 1 (for v = 0: zeros
            // and one 1e-30)
            assert!(
                fast(short[9].1),
                "two-column channels of {v}: {:?}",
                short[9].1
            );
            assert!(v != 0.0 || scaled(short[0].1), "{:?}", short[0].1);
            let seg = |i: usize, j: usize| &x[i * cols + j..][..1];
            let chans = channels_shifted(cols, rows, &seg);
            assert!(fast(chans[0].1) && scaled(chans[1].1), "channels of {v}");
        }
    }
}
