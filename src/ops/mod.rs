//! Normalization ops: shapes and parameter checks, the per-row plan and the scale-and-shift
//! step. Statistics come from `moments`; rows are spread over the pool by `par`.
//!
//! Every row is normalized as
//! ```text
//! z = ((x·s − ps) − m) · a          y = z·w + b
//! ```
//! with `s = 2^k` a power of two (1 unless the row's squares overflow or underflow), `ps` the
//! scaled pilot, `m` the row's mean relative to it (LayerNorm; 0 for RMSNorm) and
//! `a = rstd / s`. Where one weight and bias apply to a whole row or segment (BatchNorm and
//! GroupNorm channels) they are folded in: `y = ((x·s − ps) − m)·(a·w) + b`
//! ([`Plan::affine`]); BatchNorm over `(N, C)` rows takes one such plan per column
//! ([`ColPlan`]). Keeping the pilot and the small offset `m` apart keeps `x − mean` exact
//! where PyTorch's `x·scale + shift` form loses digits (pytorch#108072).

mod backward;
mod batch_norm;
mod group_norm;
mod layer_norm;
mod rms_norm;

pub use batch_norm::{BatchNorm, Layout, RunningStats};
pub use group_norm::GroupNorm;
pub use layer_norm::LayerNorm;
pub use rms_norm::RmsNorm;

use crate::element::{Arith, Element, Float, Vector, load_at, store_at};
use crate::error::{NormError, check_len, rows_of};
use crate::moments::{AHEAD_MAX, RowAhead, Run, Step, row_ahead, squares_ahead};
use crate::tuning::NACC;
use crate::{par, tuning};

/// How one row is normalized (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan<A> {
    s: A,
    ps: A,
    m: A,
    a: A,
    /// Added after scaling: the bias folded in by [`Plan::affine`], else 0.
    c: A,
    /// A weight that could not be folded into `a` (see [`Plan::affine`]), else 1.
    w: A,
}

impl<A: Float> Plan<A> {
    /// A row with a NaN or ±∞: every output NaN.
    pub(crate) fn nan() -> Self {
        Self {
            s: A::ONE,
            ps: A::ZERO,
            m: A::ZERO,
            a: A::NAN,
            c: A::ZERO,
            w: A::ONE,
        }
    }

    /// Normalization by given statistics (BatchNorm eval): `y = (x − mean)·a`,
    /// `a = 1/sqrt(var + eps)` from f64 (0 when `var + eps == 0` or the variance is +∞, NaN
    /// when negative or NaN, as in PyTorch).
    pub(crate) fn eval(mean: A, var: A, eps: f64) -> Self {
        Self {
            s: A::ONE,
            ps: mean,
            m: A::ZERO,
            a: eval_rstd(var, eps),
            c: A::ZERO,
            w: A::ONE,
        }
    }

    /// Folds one weight and bias into the plan: `y = ((x·s − ps) − m)·(a·w) + b`, `a·w`
    /// rounded once (and kept finite where `a` was clamped, as in [`Plan::new`]). A
    /// zero-variance row still gives exactly `b`. Where `a·w` would be subnormal (a weight of
    /// 1e-40, say) it would keep too few bits, so `w` is applied after `a` instead:
    /// `y = (((x·s − ps) − m)·a)·w + b` (found by the fuzzer: 5e-6 relative error on a
    /// normal output).
    pub(crate) fn affine(self, w: Option<A>, b: Option<A>) -> Self {
        let c = b.unwrap_or(A::ZERO);
        let Some(w) = w else {
            return Self { c, ..self };
        };
        let (a, w) = fold_weight(self.a, w);
        Self { a, c, w, ..self }
    }

    /// Whether the plan applies a separate weight (see [`Plan::affine`]).
    fn unfolded(&self) -> bool {
        self.w != A::ONE
    }

    /// The plan for a row whose scaled squared deviations average `msd` (`m2/n` for LayerNorm,
    /// the mean square for RMSNorm) at scale `2^k`, and the row's `rstd = 1/sqrt(var + eps)`,
    /// both from f64: `a = 1/sqrt(msd + eps·4^k)`, exact up to one rounding. Zero variance
    /// with eps = 0 gives `a = rstd = 0` (PyTorch's `InvStd` rule: the row normalizes to 0).
    pub(crate) fn new(ps: A, m: A, msd: A, k: i32, eps: f64) -> (Self, A) {
        let u = <f64 as Float>::exp2i(k);
        let e = eps * u * u;
        let (a, rstd) = if e.is_finite() {
            let d = msd.to_f64() + e;
            let a = if d == 0.0 { 0.0 } else { 1.0 / d.sqrt() };
            (a, a * u)
        } else {
            // eps·4^k beyond f64 (f64 values below 2^-511 scaled up by 2^k, eps > 0): the
            // variance msd/4^k (msd < 16: the scaled values lie below 2) is below
            // eps·2^-1020, so var + eps rounds to eps. It gave a = 1/∞ = 0: rstd 0, outputs
            // the bias alone.
            let r = 1.0 / eps.sqrt();
            (r * <f64 as Float>::exp2i(-k), r)
        };
        let plan = Self {
            s: A::exp2i(k),
            ps,
            m,
            // `a` exceeds A::MAX only when every scaled deviation is exactly 0 (deviations
            // are multiples of the row's ulp otherwise): keep 0·a = 0 finite.
            a: A::from_f64(at_most_max::<A>(a)),
            c: A::ZERO,
            w: A::ONE,
        };
        (plan, A::from_f64(rstd))
    }
}

/// BatchNorm eval's `1/sqrt(var + eps)` ([`Plan::eval`]): from f64, rounded once; 0 when
/// `var + eps == 0` or the variance is +∞, NaN when negative or NaN.
#[inline(always)]
fn eval_rstd<A: Float>(var: A, eps: f64) -> A {
    let d = var.to_f64() + eps;
    let a = if d == 0.0 { 0.0 } else { 1.0 / d.sqrt() };
    A::from_f64(at_most_max::<A>(a))
}

/// A weight folded into the plan's `a` ([`Plan::affine`]): `(a·w, 1)`, the product from f64
/// rounded once and clamped to ±`A::MAX`, or `(a, w)` where `a·w` would be subnormal.
#[inline(always)]
fn fold_weight<A: Float>(a: A, w: A) -> (A, A) {
    let max = A::MAX.to_f64();
    let aw = (a.to_f64() * w.to_f64()).clamp(-max, max);
    if aw != 0.0 && aw.abs() < A::MIN_POSITIVE.to_f64() {
        (a, w)
    } else {
        (A::from_f64(aw), A::ONE)
    }
}

/// `a` clamped to `A::MAX`, NaN kept (`f64::min` would return `A::MAX` for a NaN: a NaN or
/// negative running variance then scaled BatchNorm eval's channel by `A::MAX` instead of
/// making it NaN).
fn at_most_max<A: Float>(a: f64) -> f64 {
    let max = A::MAX.to_f64();
    if a > max { max } else { a }
}

/// The statistics of one row, channel or group, from its pilot and shifted moments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stats<A> {
    /// How its values are normalized.
    pub(crate) plan: Plan<A>,
    /// The mean, `pilot + offset` rounded once.
    pub(crate) mean: A,
    /// `1/sqrt(biased var + eps)` (0 for zero variance with eps = 0).
    pub(crate) rstd: A,
    /// The mean in f64, for running statistics.
    pub(crate) mean64: f64,
    /// `m2` in f64 and the count, for [`Stats::var64`] (computed only where asked for: the
    /// row ops never do, and a division per row shows on 256-value rows).
    m2_64: f64,
    count: u64,
}

impl<A: Float> Stats<A> {
    /// From the pilot `p` and the run of the moment kernel over the values.
    #[inline(always)]
    pub(crate) fn new(p: A, run: Run<A>, eps: f64) -> Self {
        let (m, ps, k) = match run {
            Run::Fast(m) => (m, p, 0),
            Run::Scaled(m, ps, k) => (m, ps, k),
            Run::Nan(_) => {
                return Self {
                    plan: Plan::nan(),
                    mean: A::NAN,
                    rstd: A::NAN,
                    mean64: f64::NAN,
                    m2_64: f64::NAN,
                    count: 0,
                };
            }
        };
        let n = A::from_u64(m.count);
        let (plan, rstd) = Plan::new(ps, m.mean, m.m2 / n, k, eps);
        let u = <f64 as Float>::exp2i(-k);
        let mean64 = (ps.to_f64() + m.mean.to_f64()) * u;
        Self {
            plan,
            mean: A::from_f64(mean64),
            rstd,
            mean64,
            m2_64: m.m2.to_f64() * u * u,
            count: m.count,
        }
    }

    /// The unbiased variance in f64, for running statistics (NaN for fewer than two values).
    pub(crate) fn var64(&self) -> f64 {
        if self.count >= 2 {
            self.m2_64 / (self.count - 1) as f64
        } else {
            f64::NAN
        }
    }
}

/// Checks `eps`: finite and non-negative.
pub(crate) fn check_eps(eps: f64) -> Result<(), NormError> {
    if eps.is_finite() && eps >= 0.0 {
        Ok(())
    } else {
        Err(NormError::InvalidEps(eps))
    }
}

/// Checks an optional per-feature parameter's length.
pub(crate) fn check_param<T>(
    arg: &'static str,
    p: Option<&[T]>,
    len: usize,
) -> Result<(), NormError> {
    p.map_or(Ok(()), |p| check_len(arg, len, p.len()))
}

/// Checks an `(n, channels, hw)` input of `x` values and an output of `y` values for the
/// per-channel ops (BatchNorm, GroupNorm): non-zero sizes, both lengths `n·channels·hw` (a
/// count overflowing `usize` is a length mismatch), eps, and the per-channel weight and bias.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_channels<T>(
    channels: usize,
    n: usize,
    hw: usize,
    x: usize,
    y: usize,
    eps: f64,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) -> Result<(), NormError> {
    for (arg, size) in [("channels", channels), ("n", n), ("hw", hw)] {
        if size == 0 {
            return Err(NormError::ZeroLength { arg });
        }
    }
    let len = n
        .checked_mul(hw)
        .and_then(|v| v.checked_mul(channels))
        .unwrap_or(usize::MAX);
    check_len("x", len, x)?;
    check_len("y", len, y)?;
    check_eps(eps)?;
    check_param("weight", weight, channels)?;
    check_param("bias", bias, channels)
}

/// Rows of `len` values split by `row_len` (the normalized length, which must be non-zero).
pub(crate) fn rows(len: usize, row_len: usize) -> Result<usize, NormError> {
    if row_len == 0 {
        return Err(NormError::ZeroLength {
            arg: "normalized_len",
        });
    }
    rows_of("x", len, row_len)
}

/// The per-row output buffers of one call, split between tasks by rows.
pub(crate) struct RowsMut<'a, T, A> {
    pub(crate) row_len: usize,
    pub(crate) y: &'a mut [T],
    pub(crate) resid: Option<&'a mut [T]>,
    pub(crate) mean: Option<&'a mut [A]>,
    pub(crate) rstd: Option<&'a mut [A]>,
}

/// One row's buffers.
pub(crate) struct RowMut<'r, T, A> {
    pub(crate) y: &'r mut [T],
    pub(crate) resid: Option<&'r mut [T]>,
    pub(crate) mean: Option<&'r mut A>,
    pub(crate) rstd: Option<&'r mut A>,
}

impl<'r, T, A> RowMut<'r, T, A> {
    /// Writes the row's statistics where asked for (`mean` only where the op has one) and
    /// gives back its output.
    pub(crate) fn put(self, mean: Option<A>, rstd: A) -> &'r mut [T] {
        if let (Some(m), Some(v)) = (self.mean, mean) {
            *m = v;
        }
        if let Some(s) = self.rstd {
            *s = rstd;
        }
        self.y
    }
}

fn split_opt<U>(s: Option<&mut [U]>, at: usize) -> (Option<&mut [U]>, Option<&mut [U]>) {
    match s {
        Some(s) => {
            let (a, b) = s.split_at_mut(at);
            (Some(a), Some(b))
        }
        None => (None, None),
    }
}

impl<'a, T: Element, A: Send> RowsMut<'a, T, A> {
    /// The buffers of one call (each optional one absent when the method does not write it).
    pub(crate) fn new(
        row_len: usize,
        y: &'a mut [T],
        resid: Option<&'a mut [T]>,
        mean: Option<&'a mut [A]>,
        rstd: Option<&'a mut [A]>,
    ) -> Self {
        Self {
            row_len,
            y,
            resid,
            mean,
            rstd,
        }
    }

    fn split(self, rows: usize) -> (Self, Self) {
        let n = self.row_len;
        let (y0, y1) = self.y.split_at_mut(rows * n);
        let (r0, r1) = split_opt(self.resid, rows * n);
        let (m0, m1) = split_opt(self.mean, rows);
        let (s0, s1) = split_opt(self.rstd, rows);
        (
            Self {
                row_len: n,
                y: y0,
                resid: r0,
                mean: m0,
                rstd: s0,
            },
            Self {
                row_len: n,
                y: y1,
                resid: r1,
                mean: m1,
                rstd: s1,
            },
        )
    }

    /// Calls `t(i, task)` for consecutive tasks of `per_task` rows (the first row of `task`
    /// is row `i`, counted from `first`), on the pool when `parallel`. Rows are independent,
    /// so results do not depend on the split.
    fn tasks(
        self,
        first: usize,
        per_task: usize,
        parallel: bool,
        t: &(impl Fn(usize, Self) + Sync),
    ) {
        let rows = self.y.len() / self.row_len;
        if parallel && rows > per_task {
            let half = rows.div_ceil(2 * per_task) * per_task;
            let (a, b) = self.split(half);
            par::join(
                || a.tasks(first, per_task, parallel, t),
                || b.tasks(first + half, per_task, parallel, t),
            );
            return;
        }
        t(first, self)
    }

    /// The rows, in order, each with its parts of the buffers.
    fn into_rows(self) -> impl Iterator<Item = RowMut<'a, T, A>> {
        // each row's parts split off the front of the buffers
        fn front<'s, U>(s: &mut Option<&'s mut [U]>, k: usize) -> Option<&'s mut [U]> {
            s.take().map(|r| {
                let (this, rest) = r.split_at_mut(k);
                *s = Some(rest);
                this
            })
        }
        let n = self.row_len;
        let (mut resid, mut mean, mut rstd) = (self.resid, self.mean, self.rstd);
        self.y.chunks_mut(n).map(move |y| RowMut {
            y,
            resid: front(&mut resid, n),
            mean: front(&mut mean, 1).map(|m| &mut m[0]),
            rstd: front(&mut rstd, 1).map(|s| &mut s[0]),
        })
    }

    /// Rows per task of a call: about `tuning::PAR_ELEMS / 4` values, whole rows.
    fn per_task(&self) -> usize {
        (tuning::PAR_ELEMS / 4 / self.row_len).max(1)
    }

    /// Runs `f(i, row i)` over all rows, serially below the parallel threshold
    /// (`par::worth_parallel`).
    pub(crate) fn run(self, f: impl Fn(usize, RowMut<'_, T, A>) + Sync) {
        self.run_with(|| (), |_, i, r| f(i, r));
    }

    /// [`RowsMut::run`] with `f(state, i, row i)`, each task's `state` made by `init` once
    /// (scratch space on the stack of the task's thread).
    pub(crate) fn run_with<S>(
        self,
        init: impl Fn() -> S + Sync,
        f: impl Fn(&mut S, usize, RowMut<'_, T, A>) + Sync,
    ) {
        let (parallel, per_task) = (par::worth_parallel(self.y.len()), self.per_task());
        self.tasks(0, per_task, parallel, &|first, rows| {
            let mut state = init();
            for (k, r) in rows.into_rows().enumerate() {
                f(&mut state, first + k, r);
            }
        });
    }

    /// [`RowsMut::run`] taking the rows four at a time (`four`), `g4(i, [row i, .., row
    /// i + 3])`, else and for a task's last two or three two at a time, `g2(i, [row i,
    /// row i + 1])`, a last odd one by `f`.
    pub(crate) fn run_together(
        self,
        four: bool,
        f: impl Fn(usize, RowMut<'_, T, A>) + Sync,
        g2: impl Fn(usize, [RowMut<'_, T, A>; 2]) + Sync,
        g4: impl Fn(usize, [RowMut<'_, T, A>; 4]) + Sync,
    ) {
        let parallel = par::worth_parallel(self.y.len());
        let per_task = self.per_task().next_multiple_of(4);
        self.tasks(0, per_task, parallel, &|first, rows| {
            let mut rows = rows.into_rows();
            let mut i = first;
            while let Some(a) = rows.next() {
                let Some(b) = rows.next() else {
                    return f(i, a);
                };
                if !four {
                    g2(i, [a, b]);
                    i += 2;
                    continue;
                }
                match (rows.next(), rows.next()) {
                    (Some(c), Some(d)) => g4(i, [a, b, c, d]),
                    (c, _) => {
                        g2(i, [a, b]);
                        if let Some(c) = c {
                            f(i + 2, c);
                        }
                    }
                }
                i += 4;
            }
        });
    }

    /// Runs `f(i, row i, taken, more)` over all rows in order within tasks of at least
    /// `min_task` values (whole rows), `taken` being what `f` returned for the row before
    /// in the same task (`None` for a task's first row) and `more` whether the task has a
    /// row after this one.
    pub(crate) fn run_chained<C: Copy>(
        self,
        min_task: usize,
        f: impl Fn(usize, RowMut<'_, T, A>, Option<C>, bool) -> Option<C> + Sync,
    ) {
        let parallel = par::worth_parallel(self.y.len());
        let per_task = self.per_task().max(min_task.div_ceil(self.row_len));
        self.tasks(0, per_task, parallel, &|first, rows| {
            let count = rows.y.len() / rows.row_len;
            let mut taken = None;
            for (k, r) in rows.into_rows().enumerate() {
                taken = f(first + k, r, taken, k + 1 < count);
            }
        });
    }
}

/// A row-wise normalization: its row length and how one row is normalized.
pub(crate) trait RowNorm<T: Element>: Sync {
    /// A row's statistics pass taken ahead ([`RowNorm::row_along`]).
    type Ahead: Copy;
    /// Values per row.
    fn row_len(&self) -> usize;
    /// Normalizes one row (`src = None`: in place in `r.y`), writing its statistics where
    /// `r` asks for them.
    fn row(&self, src: Option<&[T]>, r: RowMut<'_, T, T::Acc>);
    /// Whether rows too long for L1 beside their parameters go several at a time
    /// ([`RowNorm::rows`]), `four` saying whether that would be four at a time (f32 and f64
    /// inputs beyond the last-level cache, see `run_rows`) rather than two. Two share the
    /// parameter streams: LayerNorm with weight and bias 4096×4096 9.7 → 8.6 ms, 128×4096
    /// 127 → 112 µs (A/B), RMSNorm's one weight neutral to 18 % slower, none 38 % slower.
    fn together(&self, _four: bool) -> bool {
        false
    }
    /// Normalizes `R` rows of `src` at once, bit for bit as [`RowNorm::row`] on each.
    fn rows<const R: usize>(&self, src: [&[T]; R], r: [RowMut<'_, T, T::Acc>; R]) {
        for (src, r) in src.into_iter().zip(r) {
            self.row(Some(src), r);
        }
    }
    /// The shortest row that carries the next row's statistics pass along its normalize
    /// step ([`RowNorm::row_along`]; `usize::MAX`: none does). Rows longer than
    /// `moments::AHEAD_MAX` never do.
    fn along_from(&self) -> usize {
        usize::MAX
    }
    /// Normalizes one row from `src`, bit for bit as [`RowNorm::row`], its statistics
    /// finished from `ahead` where they were taken ahead; carries the statistics pass of
    /// `next` along and returns it.
    fn row_along(
        &self,
        src: &[T],
        r: RowMut<'_, T, T::Acc>,
        ahead: Option<Self::Ahead>,
        next: Option<&[T]>,
    ) -> Option<Self::Ahead> {
        let _ = (ahead, next);
        self.row(Some(src), r);
        None
    }
}

/// Values per task at least where rows carry the next row's statistics along (each
/// task's first row is read alone): 256 Ki, 64 rows of 4096 f32.
const ALONG_TASK: usize = 1 << 18;

/// Whether `op`'s rows of `n` values carry the next row's statistics pass along: long
/// enough that a read-only pass per row and then a write pass leave the core's memory queue
/// idle by turns (`op.along_from()`), and no longer than the stepped pass takes
/// (`moments::AHEAD_MAX`).
fn along_pays<T: Element>(op: &impl RowNorm<T>, n: usize) -> bool {
    (op.along_from()..=AHEAD_MAX).contains(&n)
}

/// Whether rows of `n` values go two (or more) at a time (sharing their parameter streams): their
/// streams, `bytes` per value in all, fill L1 (`tuning::L1_BYTES`), and they are a whole
/// number of vectors (so that every row of a call has one alignment).
pub(crate) fn pairs_pay<T: Element>(n: usize, bytes: usize) -> bool {
    n.is_multiple_of(T::Acc::LANES) && n * bytes >= tuning::L1_BYTES
}

/// Drives `op` over every row: from `x` into `rows.y` (`x = None`: in place), or with
/// `rows.resid` present, `resid += x` first and the summed row normalized (`forward_add`).
/// Rows whose streams fill L1 go two or four at a time where the op takes them so (not in
/// place): `forward_add` in pairs 4096×4096 14.1–14.4 → 13.4–13.5 ms (A/B, 1 thread; 8 and
/// 128 rows within the noise).
pub(crate) fn run_rows<T: Element>(
    op: &impl RowNorm<T>,
    x: Option<&[T]>,
    rows: RowsMut<'_, T, T::Acc>,
) {
    let n = op.row_len();
    if let (true, Some(x), None) = (along_pays(op, n), x, rows.resid.as_ref()) {
        let row = |i: usize| &x[i * n..][..n];
        rows.run_chained(ALONG_TASK, |i, r, ahead, more| {
            op.row_along(row(i), r, ahead, more.then(|| row(i + 1)))
        });
        return;
    }
    let one = |i: usize, mut r: RowMut<'_, T, T::Acc>| {
        let x = x.map(|x| &x[i * n..][..n]);
        match (r.resid.take(), x) {
            (Some(res), Some(x)) => {
                add_into(res, x);
                op.row(Some(res), r);
            }
            _ => op.row(x, r),
        }
    };
    // rows too long for L1 with their streams (x, y, weight, bias; with a residual, read and
    // written, six), of one alignment: several at a time, from x or from the summed
    // residuals. Two at a time; f32 and f64 rows four at a time where the input streams from
    // memory (the size at which `tail_first` deems it beyond the last-level cache). Four
    // against two, LayerNorm with weight and bias, 1 thread, A/B alternating (old and new
    // binaries, 3–5 runs each, best of 15 calls a run): f32 4096×4096 10.2–12.2 → 8.9–9.5 ms,
    // 2048×4096 4.7–5.5 → 4.0–4.5 ms, f64 2048×4096 9.6–10.0 → 8.7–9.0 ms, f64 1024×4096
    // 4.7–5.0 → 4.0–4.3 ms, f32 forward_add 4096×4096 14.4–14.9 → 13.3–14.3 ms (one run
    // 16.1); but in cache slower (f32 8×4096 ~6.0 → ~6.6 µs, 128×4096 109–121 → 112–131 µs,
    // f64 64×4096 109–125 → 143–159 µs, f32 512×4096 605–942 → 643–1114 µs), even at
    // f32 1024×4096 (16 MiB), and bf16 / f16 4096×4096 slower too (6.6–6.7 → 6.8–8.3 ms:
    // their conversions make the loop of four rows longer). Four also pay for LayerNorm with
    // a weight only (4096×4096 10.4–10.8 → 9.5–10.2 ms) and RMSNorm with and without one
    // (paired criterion, weight: 67 → 84–85 % of copy; none: 10.7–11.3 → 9.3–9.6 ms), not for
    // LayerNorm without parameters (8.0–8.2 → 9.0–12.4 ms), which goes one at a time.
    let streams = if rows.resid.is_some() { 6 } else { 4 };
    let long = pairs_pay::<T>(n, streams * size_of::<T>());
    let native = size_of::<T>() == size_of::<T::Acc>();
    let four = native && x.is_some_and(|x| size_of_val(x) >= 4 * tuning::LLC_REUSE_BYTES);
    if let (true, Some(x)) = (long && op.together(four), x) {
        rows.run_together(
            four,
            one,
            |i, r| rows_together(op, x, i, r),
            |i, r| rows_together(op, x, i, r),
        );
        return;
    }
    rows.run(one);
}

/// Rows `i..i + R` of `x` through [`RowNorm::rows`], or, with residuals, each residual
/// `+= x` first and the sums normalized (`forward_add`).
fn rows_together<T: Element, const R: usize>(
    op: &impl RowNorm<T>,
    x: &[T],
    i: usize,
    mut r: [RowMut<'_, T, T::Acc>; R],
) {
    let n = op.row_len();
    let row = |k: usize| &x[(i + k) * n..][..n];
    let res = r.each_mut().map(|r| r.resid.take());
    if res.iter().all(Option::is_some) {
        let mut k = 0;
        let sums = res.map(|s| {
            let s = s.expect("every row has its residual");
            add_into(s, row(k));
            k += 1;
            s as &[T]
        });
        op.rows(sums, r);
    } else {
        op.rows(std::array::from_fn(row), r);
    }
}

/// `residual += x`, rounded once to `T` (`forward_add`'s first step; the row stays in cache),
/// over the row loop of [`map_row`].
pub(crate) fn add_into<T: Element>(residual: &mut [T], x: &[T]) {
    map_row(None, residual, [x], |r, [x], _, _| r + x);
}

/// The row loop of the element-wise steps: `dst[i..i+len] = f(src[i..i+len], ex, i, len)`
/// for vectors of `len = LANES` values (`src = None`: in place, reading `dst`), where `ex`
/// holds the vectors at the same offset of the `E` extra slices (weights, biases, a residual:
/// each as long as `dst`), loaded in the same chunked loop as the source, so without bounds
/// checks (loaded by the closure at offset `i` instead, each slice cost a three-instruction
/// bounds check per vector).
///
/// Stores are whole vectors on vector-size boundaries ([`head_len`]: 64 bytes for f32 and
/// f64, 32 for the halves), so none straddles a cache line: such stores run at
/// half speed or worse (measured: a 4096-value LayerNorm row 877 ns with `y` 16 bytes off a
/// line, 1485 ns at 64 bytes past another buffer's alignment, 816 ns aligned). A row of at
/// least `LANES` values that does not start or end on a boundary gets its first and last
/// `LANES` values as two unaligned full vectors, computed from the source before anything is
/// stored (in place works) and stored after the aligned body, which they overlap with equal
/// values. Only rows shorter than `LANES` take the partial load and store: per-element head
/// and tail loops on every 256-value row cost more than the row's vectors did.
#[inline(always)]
pub(crate) fn map_row<T: Element, const E: usize>(
    src: Option<&[T]>,
    dst: &mut [T],
    ex: [&[T]; E],
    f: impl Fn(V<T>, [V<T>; E], usize, usize) -> V<T>,
) {
    map_row_grouped::<T, T, 1, E>(src, dst, ex, &f, |v, e, i, _| f(v, e, i, T::Acc::LANES));
}

/// `f` of each of `E` values, in a plain loop (`array::map` left its closure out of line in
/// the row loops: 130 → 180 µs on 128 bf16 rows).
#[inline(always)]
fn each<X: Copy, Y: Copy + Default, const E: usize>(x: [X; E], f: impl Fn(X) -> Y) -> [Y; E] {
    let mut y = [Y::default(); E];
    for (y, x) in y.iter_mut().zip(x) {
        *y = f(x);
    }
    y
}

/// [`load_at`] on each of `E` slices.
#[inline(always)]
fn loads<T: Element, const E: usize>(ex: [&[T]; E], i: usize, len: usize) -> [V<T>; E] {
    let mut v = [V::<T>::ZERO; E];
    for (v, e) in v.iter_mut().zip(ex) {
        *v = load_at(e, i, len);
    }
    v
}

/// A vector of `T`'s accumulator type.
type V<T> = <<T as Element>::Acc as Float>::V;

/// [`map_row`] with the aligned body taken in groups of `K` vectors: the `j`-th vector of a
/// group is `g(v, ex, i, j)` (`j` a constant once the group's loop is unrolled, so `g` can
/// pick values it keeps in registers: a per-column plan repeating every `K` vectors,
/// [`ColPlan`]); the ends and the vectors after the last group are `f(v, ex, i, len)`. Two
/// closures, not one with both paths, so that each stays small enough to be inlined.
#[inline(always)]
pub(crate) fn map_row_grouped<
    T: Element,
    U: Element<Acc = T::Acc>,
    const K: usize,
    const E: usize,
>(
    src: Option<&[T]>,
    dst: &mut [T],
    ex: [&[U]; E],
    f: impl Fn(V<T>, [V<T>; E], usize, usize) -> V<T>,
    g: impl Fn(V<T>, [V<T>; E], usize, usize) -> V<T>,
) {
    let (n, lanes) = (dst.len(), T::Acc::LANES);
    let ex = each(ex, |e| &e[..n]);
    if n < lanes {
        by_values(src, dst, ex, f);
        return;
    }
    let (h, end) = body_of(dst);
    // the ends' closure `#[inline(always)]` for the rows (K = 1): called twice, it was left
    // out of line in some instantiations (half types with weight or bias; f16 without), its
    // captured state then read from memory. Short rows, ns a row, 1 thread, A/B: bf16 RMSNorm
    // with weight 16 / 64 values 24 → 21, 34 → 27; f16 LayerNorm 58 → 41, 59 → 46; bf16
    // LayerNorm w+b 64 values 63 → 53; f32 unchanged (BENCHMARKS.md, twenty-fifth session).
    // Not for the groups of `ColPlan`: there it grew BatchNorm's code by 13 %, no gain seen.
    let s = src.unwrap_or(dst);
    let ends = if K == 1 {
        ends(
            n,
            lanes,
            h,
            end,
            #[inline(always)]
            |i| f(load_at(s, i, lanes), loads(ex, i, lanes), i, lanes),
        )
    } else {
        ends(n, lanes, h, end, |i| {
            f(load_at(s, i, lanes), loads(ex, i, lanes), i, lanes)
        })
    };
    let (dc, _) = T::as_chunks_mut(&mut dst[h..end]);
    let vectors = dc.len();
    let (dg, dr) = dc.as_chunks_mut::<K>();
    // the extra slices in the shape of the destination: groups of K vectors, then the rest,
    // re-sliced to the destination's lengths (so that the loops index them unchecked)
    let exc = each(ex, |e| &U::as_chunks(&e[h..end]).0[..vectors]);
    let exg = each(exc, |c| &c.as_chunks::<K>().0[..dg.len()]);
    let exr = each(exc, |c| &c.as_chunks::<K>().1[..dr.len()]);
    let rest = h + dg.len() * K * lanes;
    let group = |k: usize, q: usize| {
        let mut v = [V::<T>::ZERO; E];
        for (v, c) in v.iter_mut().zip(&exg) {
            *v = U::load(&c[k][q]);
        }
        v
    };
    let single = |k: usize| {
        let mut v = [V::<T>::ZERO; E];
        for (v, c) in v.iter_mut().zip(&exr) {
            *v = U::load(&c[k]);
        }
        v
    };
    match src {
        Some(src) => {
            let (sc, _) = T::as_chunks(&src[h..end]);
            let (sg, sr) = sc[..vectors].as_chunks::<K>();
            for (k, (d, x)) in dg.iter_mut().zip(sg).enumerate() {
                for q in 0..K {
                    let i = h + (k * K + q) * lanes;
                    T::store(g(T::load(&x[q]), group(k, q), i, q), &mut d[q]);
                }
            }
            for (k, (d, x)) in dr.iter_mut().zip(sr).enumerate() {
                T::store(f(T::load(x), single(k), rest + k * lanes, lanes), d);
            }
        }
        None => {
            for (k, d) in dg.iter_mut().enumerate() {
                for (q, d) in d.iter_mut().enumerate() {
                    let i = h + (k * K + q) * lanes;
                    T::store(g(T::load(d), group(k, q), i, q), d);
                }
            }
            for (k, d) in dr.iter_mut().enumerate() {
                T::store(f(T::load(d), single(k), rest + k * lanes, lanes), d);
            }
        }
    }
    store_ends(dst, ends);
}

/// [`map_row_grouped`] over a row shorter than a vector, a value at a time: value `i` in
/// every lane of its vectors (`f(v, ex, i, 1)`, whose lane 0 is stored). The lanes of a
/// vector are computed alike, so these are the bits a partial vector would give; a partial
/// load assembles its vector through memory and waits for those stores to reach it (memcpy
/// then a load too wide to be forwarded: ~a third of a LayerNorm row of 4 values).
#[inline(always)]
fn by_values<T: Element, U: Element<Acc = T::Acc>, const E: usize>(
    src: Option<&[T]>,
    dst: &mut [T],
    ex: [&[U]; E],
    f: impl Fn(V<T>, [V<T>; E], usize, usize) -> V<T>,
) {
    for i in 0..dst.len() {
        let x = src.map_or(dst[i], |s| s[i]);
        let mut e = [V::<T>::ZERO; E];
        for (e, x) in e.iter_mut().zip(ex) {
            *e = V::<T>::splat(x[i].to_acc());
        }
        let v = f(V::<T>::splat(x.to_acc()), e, i, 1);
        dst[i] = T::from_acc(v.to_array().as_ref()[0]);
    }
}

/// Work carried along a row's normalize step by [`map_row_along`]: `run` calls `step()`
/// as it goes, and each call stores the next `NACC` vectors of the row (none once the row
/// is done). The next row's statistics pass, in `run_rows`: reading a row from memory
/// while another is written keeps misses of both kinds in flight, where a read-only pass
/// and then a write-only one per row left one core at 63 % of a copy's bandwidth
/// (`examples/fused_rows.rs`).
pub(crate) trait Along {
    /// What `run` returns.
    type Out;
    /// Nothing to carry (`()`): [`rows_map`] takes the plain loop.
    const NONE: bool = false;
    /// Does the work, calling `step()` along the way.
    fn run(self, step: &mut impl Step) -> Self::Out;
}

impl Along for () {
    type Out = ();
    const NONE: bool = true;
    fn run(self, _: &mut impl Step) {}
}

/// The statistics pass of the next row ([`crate::moments::row_ahead`]) as [`Along`] work.
pub(crate) struct NextRow<'x, T>(pub(crate) &'x [T]);

impl<T: Element> Along for NextRow<'_, T> {
    type Out = RowAhead<T::Acc>;
    #[inline(always)]
    fn run(self, step: &mut impl Step) -> Self::Out {
        row_ahead(self.0, step)
    }
}

/// The sum of squares of the next row ([`crate::moments::squares_ahead`]) as [`Along`]
/// work: RMSNorm's statistics pass.
pub(crate) struct NextSquares<'x, T>(pub(crate) &'x [T]);

impl<T: Element> Along for NextSquares<'_, T> {
    type Out = T::Acc;
    #[inline(always)]
    fn run(self, step: &mut impl Step) -> Self::Out {
        squares_ahead(self.0, step)
    }
}

/// The aligned body of [`map_row_along`], in groups of `NACC` vectors: `g` groups done.
struct Body<'r, 'f, T: Element, F, const E: usize> {
    g: usize,
    src: &'r [[T::Chunk; NACC]],
    dst: &'r mut [[T::Chunk; NACC]],
    ex: [&'r [[T::Chunk; NACC]]; E],
    f: &'f F,
}

impl<T: Element, F: Fn(V<T>, [V<T>; E]) -> V<T>, const E: usize> Step for Body<'_, '_, T, F, E> {
    /// Stores the next group (none once the body is done).
    #[inline(always)]
    fn step(&mut self) {
        let g = self.g;
        if g < self.dst.len() {
            for q in 0..NACC {
                let ex = self.ex.map(|c| &c[g][q]);
                put::<T, E>(&self.src[g][q], &mut self.dst[g][q], ex, self.f);
            }
            self.g = g + 1;
        }
    }
}

/// `dst = f(src, ex)` for one vector of [`map_row_along`].
#[inline(always)]
fn put<T: Element, const E: usize>(
    src: &T::Chunk,
    dst: &mut T::Chunk,
    ex: [&T::Chunk; E],
    f: &impl Fn(V<T>, [V<T>; E]) -> V<T>,
) {
    // a loop, not `ex.map(T::load)`: that was left out of line for bf16 (RMSNorm 4096×4096
    // at 29 % of copy)
    let mut v = [V::<T>::ZERO; E];
    for (v, c) in v.iter_mut().zip(ex) {
        *v = T::load(c);
    }
    T::store(f(T::load(src), v), dst);
}

/// [`map_row`] from a source, `f(v, ex)` on each vector, carrying `along`: the aligned
/// body is stored `NACC` vectors per `step()` of `along.run` and the rest after it; the
/// ends as in [`map_row`]. Returns what `along` returns.
#[inline(always)]
pub(crate) fn map_row_along<T: Element, const E: usize, A: Along>(
    src: &[T],
    dst: &mut [T],
    ex: [&[T]; E],
    f: impl Fn(V<T>, [V<T>; E]) -> V<T>,
    along: A,
) -> A::Out {
    let (n, lanes) = (dst.len(), T::Acc::LANES);
    let (src, ex) = (&src[..n], each(ex, |e| &e[..n]));
    if n < lanes {
        store_at(f(load_at(src, 0, n), loads(ex, 0, n)), dst, 0, n);
        return along.run(&mut ());
    }
    let (h, end) = body_of(dst);
    // `#[inline(always)]`: see `map_row_grouped`
    let ends = ends(
        n,
        lanes,
        h,
        end,
        #[inline(always)]
        |i| f(load_at(src, i, lanes), loads(ex, i, lanes)),
    );
    let (dc, _) = T::as_chunks_mut(&mut dst[h..end]);
    let k = dc.len();
    let sc = &T::as_chunks(&src[h..end]).0[..k];
    let exc = each(ex, |e| &T::as_chunks(&e[h..end]).0[..k]);
    let (dg, dr) = dc.as_chunks_mut::<NACC>();
    let groups = dg.len();
    let (sg, sr) = sc.as_chunks::<NACC>();
    let sg = &sg[..groups];
    let exg = each(exc, |c| &c.as_chunks::<NACC>().0[..groups]);
    let mut body = Body::<T, _, E> {
        g: 0,
        src: sg,
        dst: dg,
        ex: exg,
        f: &f,
    };
    let out = along.run(&mut body);
    while body.g < groups {
        body.step();
    }
    let rest = groups * NACC;
    for (i, (d, x)) in dr.iter_mut().zip(sr).enumerate() {
        put::<T, E>(x, d, exc.map(|c| &c[rest + i]), &f);
    }
    store_ends(dst, ends);
    out
}

/// The aligned body `h..end` of a row of at least `LANES` values ([`map_row`]).
#[inline(always)]
fn body_of<T: Element>(dst: &[T]) -> (usize, usize) {
    let h = head_len(dst);
    (h, h + (dst.len() - h) / T::Acc::LANES * T::Acc::LANES)
}

/// The first and last whole vectors of a row of `n` values whose aligned body is `h..end`,
/// where they reach outside it (`at(i)`: the output vector at offset `i`), computed before
/// anything is stored (in place works).
#[inline(always)]
fn ends<X>(
    n: usize,
    lanes: usize,
    h: usize,
    end: usize,
    at: impl Fn(usize) -> X,
) -> [Option<X>; 2] {
    [(h > 0).then(|| at(0)), (end < n).then(|| at(n - lanes))]
}

/// Stores [`ends`]' vectors, after the body (they overlap it with equal values).
#[inline(always)]
fn store_ends<T: Element>(dst: &mut [T], [head, tail]: [Option<V<T>>; 2]) {
    let (n, lanes) = (dst.len(), T::Acc::LANES);
    if let Some(v) = head {
        store_at(v, dst, 0, lanes);
    }
    if let Some(v) = tail {
        store_at(v, dst, n - lanes, lanes);
    }
}

/// [`map_row`] over `R` rows of one length whose destinations share an alignment, each from
/// its own source (not in place): the extra slices' vectors are loaded once for all `R` rows
/// (`f(r, v, ex)` for row `r`), which matters once a row's streams no longer fit L1 (see
/// [`pairs_pay`]). Each row's first and last whole vectors are stored first, then
/// the aligned body over them with equal values. Rows shorter than a vector or of different
/// alignments go one by one through [`map_row`].
#[inline(always)]
pub(crate) fn map_rows<T: Element, U: Element<Acc = T::Acc>, const R: usize, const E: usize>(
    src: [&[T]; R],
    mut dst: [&mut [T]; R],
    ex: [&[U]; E],
    f: impl Fn(usize, V<T>, [V<T>; E]) -> V<T>,
) {
    let (n, lanes) = (dst[0].len(), T::Acc::LANES);
    let h = head_len(dst[0]);
    if n < lanes || dst.iter().any(|d| d.len() != n || head_len(d) != h) {
        for (r, d) in dst.into_iter().enumerate() {
            let g = |v, e, _, _| f(r, v, e);
            map_row_grouped::<T, U, 1, E>(Some(src[r]), d, ex, g, g);
        }
        return;
    }
    let (src, ex) = (each(src, |s| &s[..n]), each(ex, |e| &e[..n]));
    let end = h + (n - h) / lanes * lanes;
    for (r, d) in dst.iter_mut().enumerate() {
        if h > 0 {
            store_at(
                f(r, load_at(src[r], 0, lanes), loads(ex, 0, lanes)),
                d,
                0,
                lanes,
            );
        }
        if end < n {
            let at = n - lanes;
            store_at(
                f(r, load_at(src[r], at, lanes), loads(ex, at, lanes)),
                d,
                at,
                lanes,
            );
        }
    }
    let k = (end - h) / lanes;
    let dc = dst
        .each_mut()
        .map(|d| &mut T::as_chunks_mut(&mut d[h..end]).0[..k]);
    let sc = each(src, |s| &T::as_chunks(&s[h..end]).0[..k]);
    let exc = each(ex, |e| &U::as_chunks(&e[h..end]).0[..k]);
    for i in 0..k {
        let mut e = [V::<T>::ZERO; E];
        for (v, c) in e.iter_mut().zip(&exc) {
            *v = U::load(&c[i]);
        }
        for r in 0..R {
            T::store(f(r, T::load(&sc[r][i]), e), &mut dc[r][i]);
        }
    }
}

/// `R` rows through [`map_row`] (one row, in place when `src` is `None`) or [`map_rows`]
/// (several, each from its source).
/// One row from a source with work carried along goes through [`map_row_along`]; `along`
/// runs after the rows otherwise.
#[inline(always)]
fn rows_map<T: Element, const R: usize, const E: usize, A: Along>(
    src: [Option<&[T]>; R],
    dst: [&mut [T]; R],
    ex: [&[T]; E],
    f: impl Fn(usize, V<T>, [V<T>; E]) -> V<T>,
    along: A,
) -> A::Out {
    if R == 1 {
        let d = dst.into_iter().next().expect("one row");
        match src[0] {
            Some(s) if !A::NONE => return map_row_along(s, d, ex, |v, e| f(0, v, e), along),
            _ => map_row(src[0], d, ex, |v, e, _, _| f(0, v, e)),
        }
    } else {
        let src = src.map(|s| s.expect("rows taken together are read from a source"));
        map_rows::<T, T, R, E>(src, dst, ex, f);
    }
    along.run(&mut ())
}

/// The scale-and-shift step over one row: `dst = plan(src)·w + b` (`src = None`: in place),
/// over the row loop of [`map_row`]; `w`, `b` empty when absent, else as long as `dst`.
/// `W`/`B`: whether a weight / bias is applied (monomorphized: no loads when absent).
/// `S`: whether the plan scales (`s ≠ 1`, a rescued row); otherwise `x − ps` is computed by
/// a subtraction, bit for bit `fma(x, 1, −ps)`, off the FMA pipes the other steps need.
/// `P`: a plan with no shift, offset or bias (`ps = m = c = 0`: RMSNorm), `z = (x·s)·a`
/// without the three operations on zeros (PyTorch's `x·rstd`, −0 kept).
#[inline]
pub(crate) fn normalize<
    T: Element,
    const W: bool,
    const B: bool,
    const U: bool,
    const S: bool,
    const P: bool,
    const R: usize,
    A: Along,
>(
    src: [Option<&[T]>; R],
    dst: [&mut [T]; R],
    w: &[T],
    b: &[T],
    plan: [Plan<T::Acc>; R],
    along: A,
) -> A::Out {
    let sp = |f: fn(&Plan<T::Acc>) -> T::Acc| {
        let mut v = [V::<T>::ZERO; R];
        for (v, p) in v.iter_mut().zip(&plan) {
            *v = V::<T>::splat(f(p));
        }
        v
    };
    let (s, nps, m, a) = (sp(|p| p.s), sp(|p| -p.ps), sp(|p| p.m), sp(|p| p.a));
    let (c, pw) = (sp(|p| p.c), sp(|p| p.w));
    // the plan vectors captured by value (`move`), not through references to the arrays: with
    // a half-precision store in the loop they were reloaded through a chain of pointers on
    // every row; short rows with weight and bias, ns a row, 1 thread, A/B (3 runs each): bf16
    // 16 / 64 values 81 → 73, 90 → 79, f16 86 → 78–86, 94 → 84–89; f32 and 4096-value rows
    // unchanged (BENCHMARKS.md, twenty-fourth session)
    let z = move |r: usize, v: V<T>| {
        let (s, nps, m, a, c, pw) = (s[r], nps[r], m[r], a[r], c[r], pw[r]);
        if P {
            return if S { (v * s) * a } else { v * a };
        }
        let t = if S { v.mul_add(s, nps) } else { v + nps };
        if U {
            ((t - m) * a).mul_add(pw, c)
        } else {
            (t - m).mul_add(a, c)
        }
    };
    match (W, B) {
        (true, true) => rows_map(
            src,
            dst,
            [w, b],
            move |r, v, [w, b]| z(r, v).mul_add(w, b),
            along,
        ),
        (true, false) => rows_map(src, dst, [w], move |r, v, [w]| z(r, v) * w, along),
        (false, true) => rows_map(src, dst, [b], move |r, v, [b]| z(r, v) + b, along),
        (false, false) => rows_map(src, dst, [], move |r, v, []| z(r, v), along),
    }
}

/// Elements before `dst`'s first boundary of one vector's bytes (64 for f32 and f64, 32 for
/// the 16 halves of an f16/bf16 vector): whole vectors stored from there never straddle a
/// cache line (see [`map_row`]). Fewer than `LANES`.
pub(crate) fn head_len<T: Element>(dst: &[T]) -> usize {
    let size = size_of::<T>().max(1);
    let line = (T::Acc::LANES * size).min(64);
    let mis = dst.as_ptr() as usize % line;
    (((line - mis) % line) / size).min(dst.len())
}

/// [`normalize`] with the weight and bias that are present.
pub(crate) fn normalize_row<T: Element>(
    src: Option<&[T]>,
    dst: &mut [T],
    w: Option<&[T]>,
    b: Option<&[T]>,
    plan: Plan<T::Acc>,
) {
    normalize_rows_along([src], [dst], w, b, [plan], ())
}

/// [`normalize_row`] from a source, carrying `along` ([`map_row_along`]).
pub(crate) fn normalize_row_along<T: Element, A: Along>(
    src: &[T],
    dst: &mut [T],
    w: Option<&[T]>,
    b: Option<&[T]>,
    plan: Plan<T::Acc>,
    along: A,
) -> A::Out {
    normalize_rows_along([Some(src)], [dst], w, b, [plan], along)
}

/// [`normalize_row`] over `R` rows at once ([`map_rows`]: each from its source, one length,
/// the weight and bias loaded once per vector for all of them). Bit for bit the rows one by
/// one.
pub(crate) fn normalize_rows<T: Element, const R: usize>(
    src: [Option<&[T]>; R],
    dst: [&mut [T]; R],
    w: Option<&[T]>,
    b: Option<&[T]>,
    plan: [Plan<T::Acc>; R],
) {
    normalize_rows_along(src, dst, w, b, plan, ())
}

/// [`normalize_rows`] carrying `along` (see [`rows_map`]).
fn normalize_rows_along<T: Element, const R: usize, A: Along>(
    src: [Option<&[T]>; R],
    dst: [&mut [T]; R],
    w: Option<&[T]>,
    b: Option<&[T]>,
    plan: [Plan<T::Acc>; R],
    along: A,
) -> A::Out {
    let unfolded = plan.iter().filter(|p| p.unfolded()).count();
    let a = along;
    match (w, b) {
        (Some(w), Some(b)) => {
            scaled_or_not::<T, true, true, false, false, R, A>(src, dst, w, b, plan, a)
        }
        (Some(w), None) => {
            scaled_or_not::<T, true, false, false, false, R, A>(src, dst, w, &[], plan, a)
        }
        (None, Some(b)) => {
            scaled_or_not::<T, false, true, false, false, R, A>(src, dst, &[], b, plan, a)
        }
        (None, None) if unfolded == R => {
            scaled_or_not::<T, false, false, true, false, R, A>(src, dst, &[], &[], plan, a)
        }
        (None, None) if unfolded == 0 => {
            scaled_or_not::<T, false, false, false, false, R, A>(src, dst, &[], &[], plan, a)
        }
        // folded and unfolded plans together (R > 1): one by one
        (None, None) => {
            for (r, d) in dst.into_iter().enumerate() {
                normalize_row(src[r], d, None, None, plan[r]);
            }
            a.run(&mut ())
        }
    }
}

/// RMSNorm's step, `dst = (src·s)·a·w` (`src = None`: in place): [`normalize_row`] for a
/// plan with no shift, offset or bias, without operations on those zeros. 128 rows of 4096:
/// bf16 113 → 100 µs, f32 85 → 78 µs.
pub(crate) fn scale_row<T: Element>(
    src: Option<&[T]>,
    dst: &mut [T],
    w: Option<&[T]>,
    plan: Plan<T::Acc>,
) {
    debug_assert!(plan.ps == T::Acc::ZERO && plan.m == T::Acc::ZERO && plan.c == T::Acc::ZERO);
    debug_assert!(!plan.unfolded());
    scale_row_along(src, dst, w, plan, ())
}

/// [`scale_row`] carrying `along` (see [`rows_map`]).
pub(crate) fn scale_row_along<T: Element, A: Along>(
    src: Option<&[T]>,
    dst: &mut [T],
    w: Option<&[T]>,
    plan: Plan<T::Acc>,
    along: A,
) -> A::Out {
    scale_rows_along([src], [dst], w, [plan], along)
}

/// [`scale_row`] over `R` rows at once, each from its source (the weight loaded once per
/// vector for all of them). Bit for bit the rows one by one.
pub(crate) fn scale_rows<T: Element, const R: usize>(
    src: [&[T]; R],
    dst: [&mut [T]; R],
    w: Option<&[T]>,
    plan: [Plan<T::Acc>; R],
) {
    scale_rows_along(src.map(Some), dst, w, plan, ())
}

/// [`scale_rows`] (or one row in place) carrying `along`.
fn scale_rows_along<T: Element, const R: usize, A: Along>(
    src: [Option<&[T]>; R],
    dst: [&mut [T]; R],
    w: Option<&[T]>,
    plan: [Plan<T::Acc>; R],
    along: A,
) -> A::Out {
    match w {
        Some(w) => {
            scaled_or_not::<T, true, false, false, true, R, A>(src, dst, w, &[], plan, along)
        }
        None => {
            scaled_or_not::<T, false, false, false, true, R, A>(src, dst, &[], &[], plan, along)
        }
    }
}

/// [`normalize`] for plans that scale or not (any scaling plan: all take the scaling path,
/// which for `s = 1` is `fma(x, 1, −ps) = x − ps`, bit for bit the other).
#[inline]
fn scaled_or_not<
    T: Element,
    const W: bool,
    const B: bool,
    const U: bool,
    const P: bool,
    const R: usize,
    A: Along,
>(
    src: [Option<&[T]>; R],
    dst: [&mut [T]; R],
    w: &[T],
    b: &[T],
    plan: [Plan<T::Acc>; R],
    along: A,
) -> A::Out {
    if plan.iter().all(|p| p.s == T::Acc::ONE) {
        normalize::<T, W, B, U, false, P, R, A>(src, dst, w, b, plan, along)
    } else {
        normalize::<T, W, B, U, true, P, R, A>(src, dst, w, b, plan, along)
    }
}

/// One [`Plan`] per column of `(rows, C)` data (BatchNorm `Nc` / `Nhwc`), normalizing a run
/// of whole rows as one flat run of vectors (a 64-channel row alone is four vectors: per-row
/// set-up would dominate; so did the set-up of 512-value blocks: the (65536, 256) eval took
/// 5.9 ms that way against 5.4 ms as one run, A/B probe, best of 4 alternations).
///
/// The plans repeat every `period` vectors (`lcm(C, LANES)` values), and the vector at
/// offset `i` of a run takes the plans stored at `i mod lcm` (the arrays hold each column's
/// plan at every index `≡ j mod C`, one period and a vector long, to cover the aligned
/// body's phase). Four ways to fetch them:
/// * periods of at most 4 vectors (in f32: C = 16, 32, 48, 64 and their divisors; 6 plan
///   fields × 4 vectors is 24 of AVX-512's 32 registers): loaded once per call and kept in
///   registers ([`map_row_grouped`]), one load per output vector instead of up to six.
///   (32·3136, 64) eval, 1 thread: 68 → 103 % of copy (A/B probe);
/// * periods of 8 and 16 vectors (C = 128, 256 in f32): unrolled groups of 16 vectors, each
///   loading its plans from 16 fixed offsets (no index arithmetic);
/// * any other period but the last case's: an offset that steps one vector per vector and
///   wraps at the period.
///   (N, 512) and (N, 1024) eval: 83 → 105 %, 66 → 88 % of copy against the blocks.
///   From C ≈ 2048 f32 the plan arrays no longer fit L1 beside the rows (as LayerNorm's
///   weight and bias): (4096, 4096) eval 65 % of copy, either way;
/// * rows whose fields fill L1 beside the rows, and half-precision rows of at least 48
///   vectors that are not a whole number of vectors (period 2 to 16 rows): row by row, the
///   fields one row long, two rows at a time where they are whole vectors
///   ([`ColPlan::by_rows`]).
pub(crate) struct ColPlan<A> {
    /// Scales (empty when every column's is 1).
    s: Vec<A>,
    nps: Vec<A>,
    /// Offsets (empty when the variant never reads them: no column scaled, offset or with
    /// an unfolded weight).
    m: Vec<A>,
    a: Vec<A>,
    c: Vec<A>,
    /// Weights not folded into `a` (see [`Plan::affine`]); empty when every column folds.
    w: Vec<A>,
    scaled: bool,
    /// Whether some column has an offset `m ≠ 0` (training statistics; 0 for eval plans,
    /// whose `(x − ps) − 0` is skipped bit for bit).
    offset: bool,
    /// Vectors after which the plans repeat.
    period: usize,
    /// Rows per step where runs go row by row, the fields holding one value per column;
    /// 0 where they do not (see [`ColPlan::by_rows`]).
    by_rows: usize,
    /// Columns (C): runs start on a multiple of it.
    pub(crate) cols: usize,
}

/// Vectors per unrolled group of [`ColPlan`]'s fixed-offset mode (periods of 8 and 16).
const FIXED_GROUP: usize = 16;

impl<A: Float> ColPlan<A> {
    /// From one plan per column (`plans.len()` = C), for data stored as `T`.
    pub(crate) fn new<T: Element<Acc = A>>(plans: &[Plan<A>]) -> Self {
        Self::with(plans, Self::by_rows::<T>(plans.len()))
    }

    /// Rows per step where rows of `cols` values of `T` go row by row, each row (pair of
    /// rows) a [`map_row_grouped`] ([`map_rows`]) with the plan fields as extra slices; 0
    /// where they take the wrapping offset. A/B, 1 thread, % of copy:
    /// * two at a time, sharing the fields' loads, where a row is a whole number of vectors
    ///   and a field takes a quarter of [`tuning::L1_BYTES`] (f32 from C = 2048): the three
    ///   eval fields and the rows' streams no longer fit L1 together. (4096, 4096) eval f32
    ///   58–59 → 68–75 %, bf16 43–44 → 52–58 %, f16 43–45 → 55–64 %; (8192, 2048) f32 62–63
    ///   → 64–68 %, bf16 45–51 → 49–57 %, f16 49–54 → 55–61 % (probe, two runs each). Rows of
    ///   1024 and 768 were much slower that way (f32 84 → 57–62 %, bf16 78 → 39–41 %);
    /// * one at a time, the half types' rows of at least [`ROWS_MIN_VECTORS`] vectors that
    ///   are not a whole number of vectors, whose period (2 to 16 rows) would make the fields
    ///   2 to 16 times longer than a row. Paired criterion (`paired/bn_eval_odd`, (16384,
    ///   1000) eval, two runs each, 1 / 2 threads): bf16 55–56 → 73–77 / 98–101 → 104–132 %,
    ///   f16 56–58 → 84–92 / 102–103 → 139–142 %; f32 73–76 → 70–73 / 129–136 → 109–124 %, so
    ///   f32 and f64 keep the wrapping offset there. Rows of 520 (32.5 vectors) were slower
    ///   row by row (f32 81 → 65 %, probe): the per-row set-up.
    fn by_rows<T: Element<Acc = A>>(cols: usize) -> usize {
        let lanes = A::LANES;
        let half = size_of::<T>() < size_of::<A>();
        if cols.is_multiple_of(lanes) {
            usize::from(cols * size_of::<A>() >= tuning::L1_BYTES / 4) * 2
        } else {
            usize::from(half && cols >= ROWS_MIN_VECTORS * lanes)
        }
    }

    /// [`ColPlan::new`], `by_rows` rows at a time (0: not row by row).
    fn with(plans: &[Plan<A>], by_rows: usize) -> Self {
        let len = Self::field_len(plans.len(), by_rows);
        let field = |f: &dyn Fn(&Plan<A>) -> A| {
            let mut v: Vec<A> = Vec::with_capacity(len);
            v.extend(plans.iter().map(f));
            v
        };
        let scaled = plans.iter().any(|p| p.s != A::ONE);
        let offset = plans.iter().any(|p| p.m != A::ZERO);
        let (mut a, mut w) = (field(&|p| p.a), field(&|p| p.w));
        let unfolded = encode_unfolded(&mut a, &mut w);
        // only the fields `segment`'s variant reads: eval plans need three of the six (all
        // six took 75 µs per 4096-channel call against 45 µs for three; normalizing two
        // rows takes 2 µs)
        let field_if = |on: bool, f: &dyn Fn(&Plan<A>) -> A| if on { field(f) } else { Vec::new() };
        // with a weight unfolded somewhere, every column takes `((x − ps) − m)·a)·w + b`:
        // the folded ones as `(… · 1)·(a·w) + b`, bit for bit their `fma(…, a·w, b)`
        if !unfolded {
            w = Vec::new();
        }
        let fields = [
            field_if(scaled, &|p| p.s),
            field(&|p| -p.ps),
            field_if(offset || scaled || unfolded, &|p| p.m),
            a,
            field(&|p| p.c),
            w,
        ];
        Self::from_fields(fields, scaled, offset, by_rows)
    }

    /// BatchNorm eval's plans (`Plan::eval` and `Plan::affine` per channel, over `repeat`
    /// consecutive columns each), computed by [`eval_fields`] straight into the field arrays.
    pub(crate) fn eval<T: Element<Acc = A>>(p: &EvalParams<'_, T>, repeat: usize) -> Self {
        Self::eval_with(p, repeat, Self::by_rows::<T>(p.mean.len() * repeat))
    }

    /// [`ColPlan::eval`], `by_rows` rows at a time (0: not row by row).
    fn eval_with<T: Element<Acc = A>>(
        p: &EvalParams<'_, T>,
        repeat: usize,
        by_rows: usize,
    ) -> Self {
        let (mean, var, weight, bias, eps) = (p.mean, p.var, p.weight, p.bias, p.eps);
        let (chans, cols) = (mean.len(), mean.len() * repeat);
        let len = Self::field_len(cols, by_rows);
        let zeros = || {
            let mut v = Vec::with_capacity(len);
            v.resize(cols, A::ZERO);
            v
        };
        let [mut nps, mut a, mut c, mut w] = [zeros(), zeros(), zeros(), zeros()];
        let fields = [
            &mut nps[..chans],
            &mut a[..chans],
            &mut c[..chans],
            &mut w[..chans],
        ];
        let unfolded = eval_fields(fields, mean, var, weight, bias, eps);
        for f in [&mut nps, &mut a, &mut c, &mut w] {
            expand(f, chans, repeat);
        }
        let (m, w) = if unfolded {
            (zeros(), w)
        } else {
            (Vec::new(), Vec::new())
        };
        Self::from_fields([Vec::new(), nps, m, a, c, w], false, false, by_rows)
    }

    /// Values a field holds for `cols` columns: one row of them row by row (`by_rows > 0`);
    /// else a period and a vector, as the aligned body starts up to a vector into the
    /// period, and the fixed-offset groups of a period of 8 span two periods.
    fn field_len(cols: usize, by_rows: usize) -> usize {
        let lanes = A::LANES;
        if by_rows > 0 {
            cols
        } else {
            (cols / gcd(cols, lanes)).max(FIXED_GROUP) * lanes + lanes
        }
    }

    /// From the fields' first row (scale, negated pilot, offset, rstd, bias, weight; empty
    /// where the variant does not read it), each extended to [`ColPlan::field_len`].
    fn from_fields(fields: [Vec<A>; 6], scaled: bool, offset: bool, by_rows: usize) -> Self {
        let cols = fields[1].len();
        let len = Self::field_len(cols, by_rows);
        // copies of the row (memcpy, not an element-wise iterator: a 64-channel plan's
        // 5 × 512 values cost microseconds that way, at every call)
        let [s, nps, m, a, c, w] = fields.map(|mut v| {
            while !v.is_empty() && v.len() < len {
                v.extend_from_within(..(len - v.len()).min(v.len()));
            }
            v
        });
        Self {
            s,
            nps,
            m,
            a,
            c,
            w,
            scaled,
            offset,
            period: cols / gcd(cols, A::LANES),
            by_rows,
            cols,
        }
    }

    /// Normalizes a run of whole rows `src` (starting at a row boundary) into `dst`.
    pub(crate) fn normalize<T: Element<Acc = A>>(&self, src: &[T], dst: &mut [T]) {
        match self.period {
            // first: the fields are one row long, not a period
            _ if self.by_rows > 0 => self.variant::<T, 1, ROWS>(src, dst),
            1 => self.variant::<T, 1, REGS>(src, dst),
            2 => self.variant::<T, 2, REGS>(src, dst),
            3 => self.variant::<T, 3, REGS>(src, dst),
            4 => self.variant::<T, 4, REGS>(src, dst),
            8 | 16 => self.variant::<T, FIXED_GROUP, FIXED>(src, dst),
            _ => self.variant::<T, 1, CYCLIC>(src, dst),
        }
    }

    /// [`ColPlan::segment`] monomorphized on the fields present.
    #[inline]
    fn variant<T: Element<Acc = A>, const K: usize, const MODE: u8>(
        &self,
        src: &[T],
        dst: &mut [T],
    ) {
        struct Segment<'p, 's, A, T, const K: usize, const MODE: u8> {
            plan: &'p ColPlan<A>,
            src: &'s [T],
            dst: &'s mut [T],
        }
        impl<A: Float, T: Element<Acc = A>, const K: usize, const MODE: u8> FieldVariant
            for Segment<'_, '_, A, T, K, MODE>
        {
            #[inline(always)]
            fn run<const SCALED: bool, const OFFSET: bool, const U: bool>(self) {
                (self.plan).segment::<T, K, MODE, SCALED, OFFSET, U>(self.src, self.dst)
            }
        }
        let flags = (self.scaled, self.offset, !self.w.is_empty());
        let segment = Segment::<A, T, K, MODE> {
            plan: self,
            src,
            dst,
        };
        by_variant(segment, flags);
    }

    /// `dst = plan_j(src)` for a run of whole rows, the body in groups of `K` vectors (`K` a
    /// multiple of the period for `REGS` and `FIXED`) with the plans fetched as `MODE` says
    /// (see [`ColPlan`]); the ends and leftover vectors load them at their offset within
    /// the period.
    #[inline]
    fn segment<
        T: Element<Acc = A>,
        const K: usize,
        const MODE: u8,
        const SCALED: bool,
        const OFFSET: bool,
        const U: bool,
    >(
        &self,
        src: &[T],
        dst: &mut [T],
    ) {
        let lanes = A::LANES;
        let (h, end) = (head_len(dst), self.period * lanes);
        let fields = [&self.s, &self.nps, &self.m, &self.a, &self.c, &self.w];
        let plan = |x: A::V, at: usize| {
            col_plan::<A::V, SCALED, OFFSET, U>(x, |f| load_at(fields[f], at, lanes))
        };
        let at_offset = |x: A::V, _: [A::V; 0], i: usize, len: usize| {
            col_plan::<A::V, SCALED, OFFSET, U>(x, |f| load_at(fields[f], i % end, len))
        };
        match MODE {
            REGS => {
                // the plan vectors of the body's phase (`h` values past a row boundary)
                let regs: [[A::V; K]; 6] = std::array::from_fn(|f| {
                    std::array::from_fn(|q| {
                        if fields[f].is_empty() {
                            A::V::ZERO
                        } else {
                            load_at(fields[f], h + q * lanes, lanes)
                        }
                    })
                });
                map_row_grouped::<T, T, K, 0>(Some(src), dst, [], at_offset, |x, _, _, q| {
                    col_plan::<A::V, SCALED, OFFSET, U>(x, |f| regs[f][q])
                })
            }
            FIXED => {
                // the group's K plan vectors of each field as arrays (no index checks in
                // the unrolled loop); an absent field is never read
                let zeros = [A::ZERO; FIXED_GROUP * 16];
                let fixed: [&[A::Chunk; K]; 6] = std::array::from_fn(|f| {
                    let v = if fields[f].is_empty() {
                        &zeros[..K * lanes]
                    } else {
                        &fields[f][h..][..K * lanes]
                    };
                    A::as_chunks(v).0.try_into().expect("K vectors")
                });
                map_row_grouped::<T, T, K, 0>(Some(src), dst, [], at_offset, |x, _, _, q| {
                    col_plan::<A::V, SCALED, OFFSET, U>(x, |f| A::load(&fixed[f][q]))
                })
            }
            ROWS => {
                let cols = self.cols;
                let rows = src.chunks(cols).zip(dst.chunks_mut(cols));
                let fields = fields.map(Vec::as_slice);
                rows_by_fields::<T, A, SCALED, OFFSET, U>(rows, fields, self.by_rows == 2);
            }
            _ => {
                // the body's vectors in order: the offset steps a vector and wraps
                let o = std::cell::Cell::new(0);
                map_row_grouped::<T, T, 1, 0>(Some(src), dst, [], at_offset, |x, _, _, _| {
                    let at = o.get();
                    o.set(if at + lanes == end { 0 } else { at + lanes });
                    plan(x, h + at)
                })
            }
        }
    }

    /// [`ColPlan::normalize`] with the wrapping offset whatever the period: the reference
    /// the other two ways are tested against.
    #[cfg(test)]
    fn normalize_cyclic<T: Element<Acc = A>>(&self, src: &[T], dst: &mut [T]) {
        self.variant::<T, 1, CYCLIC>(src, dst)
    }
}

/// `dst = plan_j(src)` for rows (or row segments) of one length, the plan fields one value
/// per column (`fields`: scale, negated pilot, offset, rstd, bias, weight, each at least a
/// row long, or empty where [`col_plan`] does not read it), one row at a time or two
/// (`pairs`), the two rows then sharing the fields' loads ([`map_rows`]).
#[inline(always)]
fn rows_by_fields<
    's,
    T: Element<Acc = A>,
    A: Float,
    const SCALED: bool,
    const OFFSET: bool,
    const U: bool,
>(
    mut rows: impl Iterator<Item = (&'s [T], &'s mut [T])>,
    fields: [&[A]; 6],
    pairs: bool,
) {
    // an absent field stands in as `nps`: never read, so its loads are dropped
    let ex: [&[A]; 6] = std::array::from_fn(|f| fields[if fields[f].is_empty() { 1 } else { f }]);
    let f = |x: A::V, e: [A::V; 6], _: usize, _: usize| {
        col_plan::<A::V, SCALED, OFFSET, U>(x, |f| e[f])
    };
    while let Some((x0, y0)) = rows.next() {
        match pairs.then(|| rows.next()).flatten() {
            Some((x1, y1)) => {
                let g = |_, v, e| f(v, e, 0, 0);
                map_rows::<T, A, 2, 6>([x0, x1], [y0, y1], ex, g);
            }
            None => map_row_grouped::<T, A, 1, 6>(Some(x0), y0, ex, f, f),
        }
    }
}

/// BatchNorm eval's plan fields of the columns of `mean` and `var` (negated pilot, rstd,
/// bias, weight): per column the values of [`Plan::eval`] + [`Plan::affine`], in plain
/// loops over the arrays, which the compiler vectorizes (the f64 square roots and
/// divisions 8 at a time). Returns whether some weight stays unfolded; then every column's
/// `(a, w)` is `(1, a·w)` or `(a, w)`, as [`ColPlan`]'s unfolded variant reads them.
fn eval_fields<T: Element<Acc = A>, A: Float>(
    [nps, a, c, w]: [&mut [A]; 4],
    mean: &[A],
    var: &[A],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
) -> bool {
    let n = mean.len();
    debug_assert!([nps.len(), a.len(), c.len(), w.len(), var.len()] == [n; 5]);
    for (p, &m) in nps.iter_mut().zip(mean) {
        *p = -m;
    }
    for (a, &v) in a.iter_mut().zip(var) {
        *a = eval_rstd(v, eps);
    }
    match bias {
        Some(b) => {
            for (c, b) in c.iter_mut().zip(b) {
                *c = b.to_acc();
            }
        }
        None => c.fill(A::ZERO),
    }
    let Some(weight) = weight else {
        return false;
    };
    for ((a, w), wt) in a.iter_mut().zip(w.iter_mut()).zip(weight) {
        (*a, *w) = fold_weight(*a, wt.to_acc());
    }
    encode_unfolded(a, w)
}

/// Whether some column's weight stays unfolded (`w ≠ 1`); then every folded column's
/// `(a, 1)` becomes `(1, a)`, so that all columns take the unfolded form
/// `((x − ps)·a)·w + b` ([`ColPlan`]'s unfolded variant), the folded ones bit for bit.
fn encode_unfolded<A: Float>(a: &mut [A], w: &mut [A]) -> bool {
    let unfolded = w.iter().any(|&w| w != A::ONE);
    if unfolded {
        for (a, w) in a.iter_mut().zip(w.iter_mut()) {
            if *w == A::ONE {
                (*a, *w) = (A::ONE, *a);
            }
        }
    }
    unfolded
}

/// Columns per block of [`EvalBlock`] (and of GroupNorm's short segments).
const EVAL_BLOCK: usize = 512;

/// What BatchNorm eval normalizes by: per channel, the running mean and variance, the
/// weight and bias where given, and eps.
#[derive(Clone, Copy)]
pub(crate) struct EvalParams<'p, T: Element> {
    pub(crate) mean: &'p [T::Acc],
    pub(crate) var: &'p [T::Acc],
    pub(crate) weight: Option<&'p [T]>,
    pub(crate) bias: Option<&'p [T]>,
    pub(crate) eps: f64,
}

impl<T: Element> EvalParams<'_, T> {
    /// Every channel's plan fields in one [`ColPlan`] (O(C) allocations), each channel's
    /// repeated over `repeat` consecutive columns.
    pub(crate) fn col_plan(&self, repeat: usize) -> ColPlan<T::Acc> {
        ColPlan::eval(self, repeat)
    }

    /// Channel `j`'s plan ([`Plan::eval`] + [`Plan::affine`]).
    pub(crate) fn plan(&self, j: usize) -> Plan<T::Acc> {
        let (w, b) = (
            self.weight.map(|w| w[j].to_acc()),
            self.bias.map(|b| b[j].to_acc()),
        );
        Plan::eval(self.mean[j], self.var[j], self.eps).affine(w, b)
    }

    /// `f(block, k0)` for the plans of the columns `k0..` of rows in which each channel
    /// covers `repeat` (at most [`EVAL_BLOCK`]) consecutive columns, in blocks of whole
    /// channels, at most [`EVAL_BLOCK`] columns each, each computed on the stack
    /// ([`EvalBlock`]) when its turn comes: no allocation.
    pub(crate) fn blocks(&self, repeat: usize, mut f: impl FnMut(&EvalBlock<T::Acc>, usize)) {
        debug_assert!((1..=EVAL_BLOCK).contains(&repeat));
        let mut block = EvalBlock::<T::Acc>::new();
        let (chans, per) = (self.mean.len(), EVAL_BLOCK / repeat);
        for ch0 in (0..chans).step_by(per) {
            let r = ch0..chans.min(ch0 + per);
            let (mean, var) = (&self.mean[r.clone()], &self.var[r.clone()]);
            let (w, b) = (self.weight.map(|w| &w[r.clone()]), self.bias.map(|b| &b[r]));
            let n = mean.len();
            let fields = [
                &mut block.nps[..n],
                &mut block.a[..n],
                &mut block.c[..n],
                &mut block.w[..n],
            ];
            block.unfolded = eval_fields(fields, mean, var, w, b, self.eps);
            for f in [&mut block.nps, &mut block.a, &mut block.c, &mut block.w] {
                expand(f, n, repeat);
            }
            block.len = n * repeat;
            f(&block, ch0 * repeat);
        }
    }
}

/// The first `n` values of `v` each repeated `repeat` times in place (`v` holds `n·repeat`).
fn expand<A: Copy>(v: &mut [A], n: usize, repeat: usize) {
    if repeat > 1 {
        for i in (0..n).rev() {
            let x = v[i];
            v[i * repeat..][..repeat].fill(x);
        }
    }
}

/// BatchNorm eval plans of up to [`EVAL_BLOCK`] consecutive columns (a channel each, or each
/// channel repeated over its columns), as the fields of [`rows_by_fields`]
/// ([`eval_fields`]), on the stack ([`EvalParams::blocks`]).
pub(crate) struct EvalBlock<A> {
    nps: [A; EVAL_BLOCK],
    a: [A; EVAL_BLOCK],
    c: [A; EVAL_BLOCK],
    w: [A; EVAL_BLOCK],
    len: usize,
    unfolded: bool,
}

impl<A: Float> EvalBlock<A> {
    /// An empty block.
    fn new() -> Self {
        Self {
            nps: [A::ZERO; EVAL_BLOCK],
            a: [A::ZERO; EVAL_BLOCK],
            c: [A::ZERO; EVAL_BLOCK],
            w: [A::ONE; EVAL_BLOCK],
            len: 0,
            unfolded: false,
        }
    }

    /// Columns in the block (channels, where each covers one column).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The plan of the block's column `j` (its channel's, where each channel covers one
    /// column): the outputs of [`EvalParams::plan`]'s, bit for bit (a folded weight may come as `(a, w) = (1, a·w)`, whose unfolded form
    /// `((x − ps)·1)·(a·w) + b` is the folded `fma(x − ps, a·w, b)`).
    pub(crate) fn plan(&self, j: usize) -> Plan<A> {
        Plan {
            s: A::ONE,
            ps: -self.nps[j],
            m: A::ZERO,
            a: self.a[j],
            c: self.c[j],
            w: if self.unfolded { self.w[j] } else { A::ONE },
        }
    }

    /// `dst = plan_j(src)` for rows of `cols` values, the block's columns `c0..` of each, two
    /// rows at a time.
    pub(crate) fn normalize<T: Element<Acc = A>>(
        &self,
        src: &[T],
        dst: &mut [T],
        cols: usize,
        c0: usize,
    ) {
        let (n, none): (usize, &[A]) = (self.len, &[]);
        let w: &[A] = if self.unfolded { &self.w[..n] } else { none };
        let fields = [none, &self.nps[..n], none, &self.a[..n], &self.c[..n], w];
        let rows = src.chunks(cols).zip(dst.chunks_mut(cols));
        let rows = rows.map(|(x, y)| (&x[c0..c0 + n], &mut y[c0..c0 + n]));
        if self.unfolded {
            rows_by_fields::<T, A, false, false, true>(rows, fields, true);
        } else {
            rows_by_fields::<T, A, false, false, false>(rows, fields, true);
        }
    }
}

/// [`ColPlan::segment`]'s ways to fetch the plans: registers, fixed offsets, wrapping offset.
const REGS: u8 = 0;
const FIXED: u8 = 1;
const CYCLIC: u8 = 2;
const ROWS: u8 = 3;

/// The fewest vectors per row for which [`ColPlan`] goes row by row ([`ColPlan::by_rows`]).
const ROWS_MIN_VECTORS: usize = 48;

/// `y = plan(x)` for [`ColPlan::segment`], field `f` of the plan (scale, negated pilot,
/// offset, rstd, bias, weight) from `at(f)`.
#[inline(always)]
fn col_plan<V: Arith, const SCALED: bool, const OFFSET: bool, const U: bool>(
    x: V,
    at: impl Fn(usize) -> V,
) -> V {
    let y = if SCALED {
        x.mul_add(at(0), at(1))
    } else {
        x + at(1)
    };
    let y = if OFFSET { y - at(2) } else { y };
    if U {
        (y * at(3)).mul_add(at(5), at(4))
    } else {
        y.mul_add(at(3), at(4))
    }
}

/// A normalization step monomorphized on the plan fields it reads ([`col_plan`]'s flags).
trait FieldVariant {
    /// The step, reading the fields the flags name.
    fn run<const SCALED: bool, const OFFSET: bool, const U: bool>(self);
}

/// `v.run()` in the variant that plans with `(scaled, offset, unfolded)` need: five of the
/// eight (an unfolded weight or a scale read the offset field too, which holds zeros where
/// a plan has none: `y − 0` is `y` bit for bit).
#[inline(always)]
fn by_variant(v: impl FieldVariant, (scaled, offset, unfolded): (bool, bool, bool)) {
    match (scaled, offset, unfolded) {
        (false, false, false) => v.run::<false, false, false>(),
        (false, true, false) => v.run::<false, true, false>(),
        (true, _, false) => v.run::<true, true, false>(),
        (false, _, true) => v.run::<false, true, true>(),
        (true, _, true) => v.run::<true, true, true>(),
    }
}

/// Greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `map_row` gives every value `f` of its own source value and the matching values of a
    /// second array loaded at the offset `f` is handed, for every length around the vector
    /// width and every start within a cache line, from a source and in place, and touches
    /// nothing outside the row: the overlapped head and tail vectors cover the row exactly.
    fn map_row_covers<T: Element>() {
        let lanes = T::Acc::LANES;
        let val = |k: usize| T::from_acc(T::Acc::from_u64((k % 97) as u64));
        let src: Vec<T> = (0..200).map(val).collect();
        let other: Vec<T> = (0..200).map(|k| val(k * 31 + 5)).collect();
        let two = <T::Acc as Float>::V::splat(T::Acc::from_u64(2));
        for len in 0..3 * lanes + 3 {
            for off in 0..64 / size_of::<T>() {
                let o = &other[off..off + len];
                let f = |v: V<T>, [o]: [V<T>; 1], _, _| v * two + o;
                let want: Vec<T> = (0..len)
                    .map(|k| {
                        let (a, b) = (src[off + k].to_acc(), o[k].to_acc());
                        T::from_acc(a * T::Acc::from_u64(2) + b)
                    })
                    .collect();
                let mut dst = vec![T::from_acc(T::Acc::NAN); len + 2 * off];
                map_row(Some(&src[off..off + len]), &mut dst[off..off + len], [o], f);
                assert_eq!(&dst[off..off + len], &want[..], "len {len} off {off}");
                assert!(
                    dst[..off]
                        .iter()
                        .chain(&dst[off + len..])
                        .all(|v| v.to_acc().is_nan())
                );
                let mut buf = src.clone();
                map_row(None, &mut buf[off..off + len], [o], f);
                assert_eq!(
                    &buf[off..off + len],
                    &want[..],
                    "in place, len {len} off {off}"
                );
                assert_eq!(&buf[..off], &src[..off]);
                assert_eq!(&buf[off + len..], &src[off + len..]);
            }
        }
    }

    /// A row shorter than a vector, normalized a value at a time ([`by_values`]), gets the
    /// bits its values get as the first lanes of a whole vector: every length, plans that
    /// scale (a rescued row) or not, with an offset, with a weight folded or not (one of
    /// 2⁻¹³⁰ in f32 stays apart, [`Plan::affine`]), with and without weight and bias slices,
    /// from a source and in place.
    fn short_rows_match_whole_vectors<T: Element>() {
        let lanes = T::Acc::LANES;
        let val = |k: usize, c: f64| {
            T::from_acc(T::Acc::from_f64(
                ((k * 37 % 101) as f64 - 50.0) * 0.0173 + c,
            ))
        };
        let x: Vec<T> = (0..lanes).map(|k| val(k, 3.0)).collect();
        let w: Vec<T> = (0..lanes).map(|k| val(k * 7 + 1, 0.9)).collect();
        let b: Vec<T> = (0..lanes).map(|k| val(k * 3 + 2, -0.2)).collect();
        let a = |v: f64| T::Acc::from_f64(v);
        let (base, _) = Plan::new(a(2.9), a(0.0271), a(0.83), 0, 1e-5);
        let (scaled, _) = Plan::new(a(2.9 * 8.0), a(0.0271 * 8.0), a(0.83 * 64.0), 3, 1e-5);
        let apart = base.affine(Some(T::Acc::MIN_POSITIVE * T::Acc::exp2i(-4)), Some(a(0.5)));
        let folded = scaled.affine(Some(a(-1.7)), Some(a(0.25)));
        assert!(apart.unfolded() && !folded.unfolded() && scaled.s != T::Acc::ONE);
        for plan in [base, scaled, apart, folded] {
            type Params<'s, T> = (Option<&'s [T]>, Option<&'s [T]>);
            let slices: &[Params<'_, T>] = if plan.unfolded() || plan.c != T::Acc::ZERO {
                &[(None, None)]
            } else {
                &[
                    (None, None),
                    (Some(&w), None),
                    (None, Some(&b)),
                    (Some(&w), Some(&b)),
                ]
            };
            for &(wv, bv) in slices {
                let mut whole = vec![T::from_acc(T::Acc::ZERO); lanes];
                normalize_row(Some(&x), &mut whole, wv, bv, plan);
                for n in 1..lanes {
                    let (wn, bn) = (wv.map(|s| &s[..n]), bv.map(|s| &s[..n]));
                    let mut y = vec![T::from_acc(T::Acc::ZERO); n];
                    normalize_row(Some(&x[..n]), &mut y, wn, bn, plan);
                    assert_eq!(bits(&y), bits(&whole[..n]), "n {n} {plan:?}");
                    let mut y = x[..n].to_vec();
                    normalize_row(None, &mut y, wn, bn, plan);
                    assert_eq!(bits(&y), bits(&whole[..n]), "in place, n {n} {plan:?}");
                }
            }
        }
    }

    /// Plans for `cols` columns, with scales (`scaled`), offsets and unfolded weights where
    /// asked, values varying by column.
    fn plans<A: Float>(cols: usize, scaled: bool, offset: bool, unfolded: bool) -> Vec<Plan<A>> {
        let v = |j: usize, k: u64| A::from_f64(((j as u64 * k) % 23) as f64 * 0.37 - 3.1);
        (0..cols)
            .map(|j| Plan {
                s: if scaled && j % 3 == 1 {
                    A::exp2i(-3)
                } else {
                    A::ONE
                },
                ps: v(j, 7),
                m: if offset {
                    v(j, 11) * A::from_f64(0.01)
                } else {
                    A::ZERO
                },
                a: v(j, 5) + A::from_f64(4.0),
                c: v(j, 13),
                w: if unfolded && j % 2 == 0 {
                    v(j, 17)
                } else {
                    A::ONE
                },
            })
            .collect()
    }

    /// The column plans held in registers (periods of 1 to 4 vectors), loaded from fixed
    /// offsets (8 and 16) and row by row (one or two rows at a time, forced at every column
    /// count) give bit for bit the values of the wrapping-offset loop, for every
    /// column count to 70 (periods 1 to 70) and wider ones, every start within a cache line,
    /// runs of several periods, every monomorphized variant; and the wrapping-offset loop
    /// gives the plan's formula.
    fn col_plans_agree<T: Element>() {
        for (scaled, offset, unfolded) in [
            (false, false, false),
            (false, true, false),
            (true, true, false),
            (false, true, true),
            (true, false, true),
        ] {
            // to 70 every period to 70; 128 and 256 (f32, halves) and 64, 128 (f64): periods
            // of 8 and 16 vectors, the plans at fixed offsets; 512: beyond them
            // 777, 1000 (f32, halves), 1001: the halves row by row; 2048 (f64: and 1024):
            // two rows at a time
            for cols in (1..=70).chain([128, 192, 256, 512, 777, 1000, 1001, 1024, 2048]) {
                let plans = plans::<T::Acc>(cols, scaled, offset, unfolded);
                let plan = ColPlan::new::<T>(&plans);
                let cyclic = ColPlan::with(&plans, 0);
                // which way `new` takes; every type is also checked row by row (`by_row`: two
                // rows at a time where they are whole vectors)
                let odd = !cols.is_multiple_of(T::Acc::LANES);
                let half = size_of::<T>() == 2;
                let pairs = cols * size_of::<T::Acc>() >= 8192;
                let want = if odd {
                    usize::from(half && cols > 512)
                } else {
                    2 * usize::from(pairs)
                };
                assert_eq!(plan.by_rows, want, "cols {cols}");
                let by_row = ColPlan::with(&plans, if odd { 1 } else { 2 });
                // runs of several periods, and at least 3 rows
                let rows = (1536 / cols).max(3) + 1;
                let len = rows * cols;
                let src: Vec<T> = (0..len)
                    .map(|k| T::from_acc(T::Acc::from_f64(((k * 37) % 101) as f64 * 0.25 - 9.0)))
                    .collect();
                for off in (0..64 / size_of::<T>()).step_by(3) {
                    let mut a = vec![T::from_acc(T::Acc::ZERO); len + off];
                    let mut b = a.clone();
                    plan.normalize(&src, &mut a[off..]);
                    cyclic.normalize_cyclic(&src, &mut b[off..]);
                    let mut r = vec![T::from_acc(T::Acc::ZERO); len + off];
                    by_row.normalize(&src, &mut r[off..]);
                    assert_eq!(
                        bits(&a),
                        bits(&b),
                        "cols {cols} off {off} period {}",
                        plan.period
                    );
                    assert_eq!(bits(&r), bits(&b), "cols {cols} off {off} by row");
                    for (k, y) in b[off..].iter().enumerate() {
                        let p = &plans[k % cols];
                        let x = src[k].to_acc().to_f64();
                        let want = ((x * p.s.to_f64() - p.ps.to_f64()) - p.m.to_f64())
                            * p.a.to_f64()
                            * p.w.to_f64()
                            + p.c.to_f64();
                        // the f32 steps are good to ~1e-6 here; a half output to 1 ulp
                        let ulp = if size_of::<T>() == 2 {
                            2f64.powi(-7)
                        } else {
                            1e-5
                        };
                        let tol = ulp * (1.0 + want.abs());
                        assert!(
                            (y.to_acc().to_f64() - want).abs() <= tol,
                            "cols {cols} k {k} got {} want {want}",
                            y.to_acc().to_f64()
                        );
                    }
                }
            }
        }
    }

    /// BatchNorm eval's plans computed a block at a time on the stack ([`EvalParams::blocks`],
    /// applied down the rows by [`EvalBlock::normalize`] and per segment by
    /// [`EvalBlock::plan`]) and all at once ([`ColPlan::eval`], every way of fetching them)
    /// give bit for bit what each channel's own [`Plan::eval`] + [`Plan::affine`] gives:
    /// across block boundaries, at every start within a cache line, with zero, negative,
    /// NaN and infinite variances, eps 0, weights whose fold would be subnormal (their
    /// block, or the whole `ColPlan`, then takes the unfolded form), huge weights, and
    /// without weight or bias.
    fn eval_plans_agree<T: Element>() {
        type A<T> = <T as Element>::Acc;
        let val = |k: usize| A::<T>::from_f64(((k * 37) % 101) as f64 * 0.25 - 9.0);
        let tiny = A::<T>::MIN_POSITIVE.to_f64() * 0.5;
        for (case, cols) in (1..=40)
            .chain([511, 512, 513, 1000, 1025, 2048])
            .enumerate()
        {
            let mean: Vec<A<T>> = (0..cols).map(|j| val(j * 7 + case)).collect();
            let var: Vec<A<T>> = (0..cols)
                .map(|j| match (j + case) % 23 {
                    0 => A::<T>::ZERO,
                    1 => A::<T>::from_f64(-1.0),
                    2 => A::<T>::NAN,
                    3 => A::<T>::from_f64(f64::INFINITY),
                    k => A::<T>::from_f64(k as f64 * 0.37),
                })
                .collect();
            let weight: Vec<T> = (0..cols)
                .map(|j| {
                    let w = match (j + 3 * case) % 29 {
                        // 1/sqrt(var + eps) is 0.2 to 10 here: a·w subnormal, or huge
                        0 if case % 3 > 0 => tiny,
                        1 => 1e30,
                        k => k as f64 * 0.11 - 1.5,
                    };
                    T::from_acc(A::<T>::from_f64(w))
                })
                .collect();
            let bias: Vec<T> = (0..cols).map(|j| T::from_acc(val(j * 5 + 1))).collect();
            let (w, b) = (Some(&weight[..]), Some(&bias[..]));
            for (weight, bias, eps) in [
                (w, b, 1e-5),
                (w, None, 0.0),
                (None, b, 0.0),
                (None, None, 1e-3),
            ] {
                let params = EvalParams::<T> {
                    mean: &mean,
                    var: &var,
                    weight,
                    bias,
                    eps,
                };
                // each channel over `repeat` consecutive columns (BatchNorm eval's short
                // `Nchw` segments, as rows of C·HW columns)
                for repeat in [1, 3] {
                    eval_ways_agree(&params, cols, repeat);
                }
            }
        }
    }

    /// [`eval_plans_agree`] for one set of parameters, channels `repeat` columns wide.
    fn eval_ways_agree<T: Element>(params: &EvalParams<'_, T>, chans: usize, repeat: usize) {
        type A<T> = <T as Element>::Acc;
        let val = |k: usize| A::<T>::from_f64(((k * 37) % 101) as f64 * 0.25 - 9.0);
        let (rows, cols) = (5, chans * repeat);
        let src: Vec<T> = (0..rows * cols).map(|k| T::from_acc(val(k))).collect();
        // each value through its channel's own plan, in the vector arithmetic
        let want: Vec<T> = src
            .iter()
            .enumerate()
            .map(|(k, x)| {
                let p = params.plan(k % cols / repeat);
                let at = |f: usize| <A<T> as Float>::V::splat([p.s, -p.ps, p.m, p.a, p.c, p.w][f]);
                let v = <A<T> as Float>::V::splat(x.to_acc());
                let y = if p.unfolded() {
                    col_plan::<_, false, false, true>(v, at)
                } else {
                    col_plan::<_, false, false, false>(v, at)
                };
                T::from_acc(y.to_array().as_ref()[0])
            })
            .collect();
        let eps = params.eps;
        let what =
            |how: &str, off: usize| format!("{how}: cols {cols} ×{repeat} off {off} eps {eps}");
        for off in (0..64 / size_of::<T>()).step_by(5) {
            let fresh = || vec![T::from_acc(A::<T>::ZERO); rows * cols + off];
            let mut y = fresh();
            params.blocks(repeat, |block, k0| {
                block.normalize(&src, &mut y[off..], cols, k0)
            });
            assert_eq!(bits(&y[off..]), bits(&want), "{}", what("blocks", off));
            if repeat == 1 {
                let mut y = fresh();
                params.blocks(1, |block, c0| {
                    for (x, y) in src.chunks(cols).zip(y[off..].chunks_mut(cols)) {
                        let segs = x[c0..].iter().zip(&mut y[c0..]).take(block.len());
                        for (j, (x, y)) in segs.enumerate() {
                            let one = std::slice::from_mut(y);
                            normalize_row(Some(&[*x]), one, None, None, block.plan(j));
                        }
                    }
                });
                assert_eq!(bits(&y[off..]), bits(&want), "{}", what("block plans", off));
            }
            let mut y = fresh();
            params.col_plan(repeat).normalize(&src, &mut y[off..]);
            assert_eq!(bits(&y[off..]), bits(&want), "{}", what("ColPlan", off));
            // every way: periodic fields, one or two rows at a time
            let pairs = cols.is_multiple_of(A::<T>::LANES);
            for by_rows in [0, 1, if pairs { 2 } else { 1 }] {
                let plan = ColPlan::eval_with(params, repeat, by_rows);
                let mut y = fresh();
                plan.normalize(&src, &mut y[off..]);
                let how = format!("by_rows {by_rows}");
                assert_eq!(bits(&y[off..]), bits(&want), "{}", what(&how, off));
                if by_rows == 0 {
                    let mut y = fresh();
                    plan.normalize_cyclic(&src, &mut y[off..]);
                    assert_eq!(bits(&y[off..]), bits(&want), "{}", what("cyclic", off));
                }
            }
        }
    }

    /// The values' bits (NaN payloads included), for bit-for-bit comparisons.
    fn bits<T: Element>(v: &[T]) -> Vec<u64> {
        v.iter().map(|x| x.to_acc().to_f64().to_bits()).collect()
    }

    /// Runs a generic check for every element type.
    macro_rules! for_every_element {
        ($check:ident) => {
            $check::<f32>();
            $check::<f64>();
            #[cfg(feature = "half")]
            $check::<half::f16>();
            #[cfg(feature = "half")]
            $check::<half::bf16>();
        };
    }

    #[test]
    fn col_plans_in_registers_and_fixed_offsets_match_the_wrapping_loop() {
        for_every_element!(col_plans_agree);
    }

    #[test]
    fn map_row_covers_every_value_at_every_offset() {
        for_every_element!(map_row_covers);
    }

    #[test]
    fn rows_shorter_than_a_vector_get_the_bits_of_whole_vectors() {
        for_every_element!(short_rows_match_whole_vectors);
    }

    #[test]
    fn batch_norm_eval_plans_by_blocks_and_all_at_once_match_each_channels_plan() {
        for_every_element!(eval_plans_agree);
    }
}
