//! BatchNorm forward: per-channel statistics over the batch (and spatial positions), running
//! statistics with PyTorch's update rules, and the padding-aware masked variant.
//!
//! ```text
//! Nc / Nhwc  (rows, C), rows = N·HW:  STATS  moments::col_shifted (one read of x, columns in
//!                                            lanes, rows streamed)
//!                                     NORM   ColPlan: whole rows, one plan per lane (in
//!                                            registers when it repeats every ≤ 4 vectors)
//! Nchw       (N, C, HW), HW ≥ 64:     STATS  moments::channels_shifted: every channel's
//!                                            segments in memory order (one streaming read;
//!                                            parallel over samples, fixed merge tree)
//!                                     NORM   the (n, c) segments, a streaming pass (x read
//!                                            twice: a channel at a time read its strided
//!                                            segments at half the bandwidth)
//! Nchw, HW < 64, unpadded:            STATS  moments::grouped_shifted: N rows of C·HW
//!                                            columns, each channel's HW columns merged
//!                                     NORM   ColPlan over those rows, each channel's plan
//!                                            repeated over its HW columns
//! ```
//! Eval is one streaming pass: `y = (x − running_mean)·(invstd·w) + b` per channel. `Nchw`
//! segments of at least `tuning::SEGMENT_MIN_HW` values are normalized one by one; shorter
//! ones as `N` rows of `C·HW` columns, each channel's plan repeated over its `HW` columns, as
//! `Nc` / `Nhwc` rows are. The plans come from `ops::EvalParams`: on inputs that stay on the
//! caller's thread, a block of channels at a time on the stack (for rows, when fewer than
//! `tuning::EVAL_BLOCK_ROWS`: each block applied down the rows); else a `ColPlan` of all
//! channels (or a plan per channel, for segments).

use super::backward::{
    Center, Coef, ColCoef, col_dx_row, col_sums_row, dx_pass, rows_per_block, set_sums,
};
use super::{
    ColPlan, EvalParams, Plan, RowsMut, Stats, check_channels, check_param, normalize_row,
};
use crate::element::{Element, Float};
use crate::error::{NormError, check_len};
use crate::moments::{channels_shifted, col_shifted, grouped_shifted};
use crate::{par, tuning};

/// How a BatchNorm input is stored.
///
/// # Example
/// ```
/// use simdnorm::Layout;
/// // BatchNorm1d over (N, C) = (32, 20), BatchNorm2d over (N, C, H, W) = (8, 3, 4, 4)
/// let (nc, nchw) = (Layout::Nc { n: 32 }, Layout::Nchw { n: 8, hw: 16 });
/// # let _ = (nc, nchw);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `(N, C)`: BatchNorm1d on 2-D input.
    Nc {
        /// Batch size.
        n: usize,
    },
    /// `(N, C, HW)`: BatchNorm1d on `(N, C, L)` (`hw = L`), BatchNorm2d/3d (`hw = H·W[·D]`).
    Nchw {
        /// Batch size.
        n: usize,
        /// Spatial positions per channel and sample.
        hw: usize,
    },
    /// `(N, HW, C)`: channels-last.
    Nhwc {
        /// Batch size.
        n: usize,
        /// Spatial positions per sample.
        hw: usize,
    },
}

impl Layout {
    /// `(n, hw)`.
    fn dims(self) -> (usize, usize) {
        match self {
            Layout::Nc { n } => (n, 1),
            Layout::Nchw { n, hw } | Layout::Nhwc { n, hw } => (n, hw),
        }
    }
}

/// The running statistics of a BatchNorm layer (PyTorch's `running_mean`, `running_var`,
/// `num_batches_tracked` buffers), updated in place by training calls.
///
/// # Example
/// ```
/// use simdnorm::RunningStats;
/// let (mut mean, mut var, mut nbt) = ([0.0f32; 4], [1.0f32; 4], 0u64);
/// let running = RunningStats { mean: &mut mean, var: &mut var, num_batches_tracked: &mut nbt };
/// # let _ = running;
/// ```
#[derive(Debug)]
pub struct RunningStats<'a, A> {
    /// Running mean per channel.
    pub mean: &'a mut [A],
    /// Running (unbiased) variance per channel.
    pub var: &'a mut [A],
    /// Training batches seen; incremented by every training call.
    pub num_batches_tracked: &'a mut u64,
}

/// Batch normalization (PyTorch `nn.BatchNorm1d/2d/3d`): each channel normalized over the
/// batch and the spatial positions, `y = (x − mean)/sqrt(var + eps)·weight + bias`.
///
/// eps defaults to 1e-5, momentum to `Some(0.1)`; `momentum(None)` is PyTorch's cumulative
/// moving average. Weight and bias are optional (`affine=False`).
///
/// Edge semantics: a zero-variance channel normalizes to exactly 0 (so outputs exactly
/// `bias`), also with eps = 0 (PyTorch's `InvStd`); channels of values near ±`f32::MAX` are
/// rescaled exactly; a NaN or ±∞ makes its channel's outputs and statistics NaN, no others.
///
/// # Example
/// ```
/// use simdnorm::{BatchNorm, Layout, RunningStats};
/// let x = [1.0f32, 10.0,
///          3.0, 10.0];                       // (N, C) = (2, 2)
/// let (mut y, mut mean, mut invstd) = ([0.0f32; 4], [0.0f32; 2], [0.0f32; 2]);
/// let (mut rm, mut rv, mut nbt) = ([0.0f32; 2], [1.0f32; 2], 0);
/// let bn = BatchNorm::new(2).eps(0.0);
/// let running = RunningStats { mean: &mut rm, var: &mut rv, num_batches_tracked: &mut nbt };
/// bn.forward_train(&x, Layout::Nc { n: 2 }, &mut y, Some(running), &mut mean, &mut invstd)?;
/// assert_eq!(y, [-1.0, 0.0, 1.0, 0.0]);
/// assert_eq!((mean, invstd), ([2.0, 10.0], [1.0, 0.0]));
/// assert_eq!((rm, nbt), ([0.2, 1.0], 1));
/// assert!((rv[0] - (0.9 + 0.1 * 2.0)).abs() < 1e-6); // unbiased variance 2
/// # Ok::<(), simdnorm::NormError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct BatchNorm<'a, T> {
    channels: usize,
    eps: f64,
    momentum: Option<f64>,
    weight: Option<&'a [T]>,
    bias: Option<&'a [T]>,
}

/// One channel's output segments (`Nchw`) and its result once computed.
struct Channel<'y, T, R> {
    y: Vec<&'y mut [T]>,
    out: Option<R>,
}

/// The `(n, c, hw)` output `y` split into each channel's `n` segments.
fn by_channel<T, R>(y: &mut [T], c: usize, n: usize, hw: usize) -> Vec<Channel<'_, T, R>> {
    let mut channels: Vec<Channel<'_, T, R>> = (0..c)
        .map(|_| Channel {
            y: Vec::with_capacity(n),
            out: None,
        })
        .collect();
    for (j, seg) in y.chunks_mut(hw).enumerate() {
        channels[j % c].y.push(seg);
    }
    channels
}

/// Runs `f(channel index, channel)` for every channel, in tasks of `per_task` channels on the
/// pool when `parallel`, and collects the results in channel order.
fn each_channel<T: Send, R: Send>(
    mut channels: Vec<Channel<'_, T, R>>,
    per_task: usize,
    parallel: bool,
    f: impl Fn(usize, &mut Channel<'_, T, R>) -> R + Sync + Send,
) -> Vec<R> {
    par::for_each_chunk_mut(&mut channels, per_task, parallel, |t, chunk| {
        for (k, ch) in chunk.iter_mut().enumerate() {
            let out = f(t * per_task + k, ch);
            ch.out = Some(out);
        }
    });
    channels
        .into_iter()
        .map(|ch| ch.out.expect("every channel is visited"))
        .collect()
}

impl<'a, T: Element> BatchNorm<'a, T> {
    /// BatchNorm over `channels` channels: eps 1e-5, momentum `Some(0.1)`, no weight or bias.
    ///
    /// # Example
    /// ```
    /// let bn = simdnorm::BatchNorm::<f32>::new(64);
    /// # let _ = bn;
    /// ```
    pub fn new(channels: usize) -> Self {
        Self {
            channels,
            eps: 1e-5,
            momentum: Some(0.1),
            weight: None,
            bias: None,
        }
    }

    /// Sets eps (checked by the first call: finite and ≥ 0).
    ///
    /// # Example
    /// ```
    /// let bn = simdnorm::BatchNorm::<f32>::new(8).eps(1e-3);
    /// # let _ = bn;
    /// ```
    pub fn eps(self, eps: f64) -> Self {
        Self { eps, ..self }
    }

    /// Sets the momentum of the running statistics: `Some(m)` gives
    /// `running = (1 − m)·running + m·batch`, `None` the cumulative average over
    /// `num_batches_tracked` (checked by the first training call: `m` in `[0, 1]`).
    ///
    /// # Example
    /// ```
    /// let bn = simdnorm::BatchNorm::<f32>::new(8).momentum(None);
    /// # let _ = bn;
    /// ```
    pub fn momentum(self, momentum: Option<f64>) -> Self {
        Self { momentum, ..self }
    }

    /// Sets the per-channel weight (γ), `channels` values.
    ///
    /// # Example
    /// ```
    /// let w = [1.0f32; 8];
    /// let bn = simdnorm::BatchNorm::new(8).weight(&w);
    /// # let _ = bn;
    /// ```
    pub fn weight(self, weight: &'a [T]) -> Self {
        Self {
            weight: Some(weight),
            ..self
        }
    }

    /// Sets the per-channel bias (β), `channels` values.
    ///
    /// # Example
    /// ```
    /// let b = [0.0f32; 8];
    /// let bn = simdnorm::BatchNorm::new(8).bias(&b);
    /// # let _ = bn;
    /// ```
    pub fn bias(self, bias: &'a [T]) -> Self {
        Self {
            bias: Some(bias),
            ..self
        }
    }

    /// Checks the configuration and the `x`, `y` lengths against `(n, channels, hw)`.
    fn check(&self, x: usize, y: usize, n: usize, hw: usize) -> Result<(), NormError> {
        check_channels(self.channels, n, hw, x, y, self.eps, self.weight, self.bias)
    }

    /// Checks the training outputs; `values` per channel.
    fn check_train(
        &self,
        values: usize,
        running: &Option<RunningStats<'_, T::Acc>>,
        saved_mean: &[T::Acc],
        saved_invstd: &[T::Acc],
    ) -> Result<(), NormError> {
        if let Some(m) = self.momentum
            && !(0.0..=1.0).contains(&m)
        {
            return Err(NormError::InvalidMomentum(m));
        }
        if let Some(r) = running {
            check_len("running.mean", self.channels, r.mean.len())?;
            check_len("running.var", self.channels, r.var.len())?;
        }
        check_len("saved_mean", self.channels, saved_mean.len())?;
        check_len("saved_invstd", self.channels, saved_invstd.len())?;
        if values < 2 {
            return Err(NormError::TooFewValues {
                per_channel: values,
            });
        }
        Ok(())
    }

    /// Channel `c`'s weight and bias, in the accumulator type.
    fn affine(&self, c: usize) -> (Option<T::Acc>, Option<T::Acc>) {
        (
            self.weight.map(|w| w[c].to_acc()),
            self.bias.map(|b| b[c].to_acc()),
        )
    }

    /// Normalizes `x` with the statistics of this batch, writes them to `saved_mean` and
    /// `saved_invstd` (`1/sqrt(biased var + eps)`) and, when `running` is given, updates the
    /// running mean and (unbiased) variance and increments `num_batches_tracked`.
    ///
    /// x is read once for `Nchw` (each channel's statistics and normalization from cache) and
    /// twice for `Nc`/`Nhwc` (statistics over all rows first). Allocates O(channels).
    ///
    /// # Errors
    /// [`NormError::ZeroLength`] for zero channels, `n` or `hw`; [`NormError::LengthMismatch`]
    /// for `x`, `y`, weight, bias, running or saved buffers of the wrong length;
    /// [`NormError::InvalidEps`], [`NormError::InvalidMomentum`];
    /// [`NormError::TooFewValues`] when a channel has fewer than 2 values (`n·hw < 2`).
    /// Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::{BatchNorm, Layout};
    /// // (N, C, L) = (2, 1, 2)
    /// let x = [1.0f64, 2.0, 3.0, 4.0];
    /// let (mut y, mut mean, mut invstd) = ([0.0; 4], [0.0; 1], [0.0; 1]);
    /// BatchNorm::new(1).eps(0.0)
    ///     .forward_train(&x, Layout::Nchw { n: 2, hw: 2 }, &mut y, None, &mut mean, &mut invstd)?;
    /// assert_eq!(mean[0], 2.5);
    /// assert!((y[3] - 1.5 / 1.25f64.sqrt()).abs() < 1e-15);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward_train(
        &self,
        x: &[T],
        layout: Layout,
        y: &mut [T],
        running: Option<RunningStats<'_, T::Acc>>,
        saved_mean: &mut [T::Acc],
        saved_invstd: &mut [T::Acc],
    ) -> Result<(), NormError> {
        let (n, hw) = layout.dims();
        self.check(x.len(), y.len(), n, hw)?;
        self.check_train(n * hw, &running, saved_mean, saved_invstd)?;
        let stats = match layout {
            Layout::Nchw { .. } if hw > 1 => self.train_nchw(x, n, hw, None, y),
            _ => self.train_rows(x, y),
        };
        self.finish(&stats, running, saved_mean, saved_invstd);
        Ok(())
    }

    /// [`BatchNorm::forward_train`] on padded sequences `(N, C, L)` (`hw = L`): sample `i` has
    /// `lengths[i]` valid positions, the rest is padding. Statistics (and running statistics)
    /// come from the valid positions only; padding outputs are set to 0. Unlike plain
    /// BatchNorm, a batch of sequences of different lengths is then normalized as if the
    /// padding were not there.
    ///
    /// # Errors
    /// As [`BatchNorm::forward_train`], and [`NormError::LengthMismatch`] if
    /// `lengths.len() != n`, [`NormError::LengthOutOfRange`] if some `lengths[i] > hw`;
    /// [`NormError::TooFewValues`] counts valid positions (`Σ lengths < 2`).
    ///
    /// # Example
    /// ```
    /// use simdnorm::BatchNorm;
    /// // (N, C, L) = (2, 1, 3); sample 1 has one valid position
    /// let x = [1.0f32, 3.0, 5.0, /* sample 1 */ 3.0, 99.0, 99.0];
    /// let (mut y, mut mean, mut invstd) = ([9.0f32; 6], [0.0f32; 1], [0.0f32; 1]);
    /// BatchNorm::new(1).eps(0.0).forward_train_masked(
    ///     &x, 2, 3, &[3, 1], &mut y, None, &mut mean, &mut invstd)?;
    /// assert_eq!(mean[0], 3.0);
    /// assert_eq!(&y[3..], &[0.0, 0.0, 0.0]); // the valid value equals the mean; padding is 0
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn forward_train_masked(
        &self,
        x: &[T],
        n: usize,
        hw: usize,
        lengths: &[usize],
        y: &mut [T],
        running: Option<RunningStats<'_, T::Acc>>,
        saved_mean: &mut [T::Acc],
        saved_invstd: &mut [T::Acc],
    ) -> Result<(), NormError> {
        self.check(x.len(), y.len(), n, hw)?;
        check_len("lengths", n, lengths.len())?;
        if let Some((index, &length)) = lengths.iter().enumerate().find(|(_, l)| **l > hw) {
            return Err(NormError::LengthOutOfRange {
                index,
                length,
                max: hw,
            });
        }
        let valid = lengths.iter().sum();
        self.check_train(valid, &running, saved_mean, saved_invstd)?;
        let stats = self.train_nchw(x, n, hw, Some(lengths), y);
        self.finish(&stats, running, saved_mean, saved_invstd);
        Ok(())
    }

    /// Normalizes `x` with given (running) statistics: `y = (x − mean)/sqrt(var + eps)·w + b`,
    /// one streaming pass. Inputs small enough to stay on the caller's thread allocate nothing
    /// when they have fewer than 64 rows (`N` for `Nc` and for `Nchw` with segments under 64
    /// values, `N·HW` for `Nhwc`) or `Nchw` segments of at least 64 values: their
    /// per-channel plans are then computed a block of channels at a time on the stack; other
    /// calls allocate O(channels).
    /// A channel with `var + eps == 0` or an infinite variance normalizes
    /// to 0 (outputs `b`, where `x − mean` is finite); one with a NaN mean or a NaN or
    /// negative `var + eps` outputs NaN, as PyTorch's `1/sqrt(var + eps)` does.
    ///
    /// # Errors
    /// As [`BatchNorm::forward_train`] for the shapes, weight, bias and eps, and
    /// [`NormError::LengthMismatch`] if `running_mean` or `running_var` does not have
    /// `channels` values. Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::{BatchNorm, Layout};
    /// let x = [3.0f32, 5.0, 7.0, 9.0];          // (N, HW, C) = (1, 2, 2)
    /// let mut y = [0.0f32; 4];
    /// BatchNorm::new(2).eps(0.0).forward_eval(
    ///     &x, Layout::Nhwc { n: 1, hw: 2 }, &[1.0, 1.0], &[4.0, 16.0], &mut y)?;
    /// assert_eq!(y, [1.0, 1.0, 3.0, 2.0]);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward_eval(
        &self,
        x: &[T],
        layout: Layout,
        running_mean: &[T::Acc],
        running_var: &[T::Acc],
        y: &mut [T],
    ) -> Result<(), NormError> {
        let (n, hw) = layout.dims();
        self.check(x.len(), y.len(), n, hw)?;
        check_len("running_mean", self.channels, running_mean.len())?;
        check_len("running_var", self.channels, running_var.len())?;
        let c = self.channels;
        let params = EvalParams {
            mean: running_mean,
            var: running_var,
            weight: self.weight,
            bias: self.bias,
            eps: self.eps,
        };
        // small inputs (on this thread): the plans a block of channels at a time, on the stack
        let serial = !par::worth_parallel(x.len());
        match layout {
            Layout::Nchw { .. } if hw >= tuning::SEGMENT_MIN_HW && serial => {
                params.blocks(1, |block, c0| {
                    let seg = c0 * hw..(c0 + block.len()) * hw;
                    for (x, y) in x.chunks(c * hw).zip(y.chunks_mut(c * hw)) {
                        let (x, y) = (x[seg.clone()].chunks(hw), y[seg.clone()].chunks_mut(hw));
                        for (j, (x, y)) in x.zip(y).enumerate() {
                            normalize_row(Some(x), y, None, None, block.plan(j));
                        }
                    }
                })
            }
            Layout::Nchw { .. } if hw >= tuning::SEGMENT_MIN_HW => {
                let plans: Vec<Plan<T::Acc>> = (0..c).map(|j| params.plan(j)).collect();
                RowsMut::<T, T::Acc>::new(hw, y, None, None, None).run(|j, r| {
                    normalize_row(Some(&x[j * hw..][..hw]), r.y, None, None, plans[j % c]);
                });
            }
            _ => {
                // (rows, C) rows; (N, C, HW) with short segments as N rows of C·HW columns,
                // each channel's plan repeated over its HW columns
                let repeat = if matches!(layout, Layout::Nchw { .. }) {
                    hw
                } else {
                    1
                };
                let cols = c * repeat;
                if serial && x.len() / cols < tuning::EVAL_BLOCK_ROWS {
                    params.blocks(repeat, |block, k0| block.normalize(x, y, cols, k0));
                } else {
                    self.rows_normalize(x, y, &params.col_plan(repeat));
                }
            }
        }
        Ok(())
    }

    /// `Nc` / `Nhwc` training: column statistics, then the rows normalized.
    fn train_rows(&self, x: &[T], y: &mut [T]) -> Vec<Stats<T::Acc>> {
        let c = self.channels;
        let mut stats = Vec::with_capacity(c);
        col_shifted(x, c, x.len() / c, |_, p, run| {
            stats.push(Stats::new(p, run, self.eps));
        });
        let plans: Vec<_> = (0..c)
            .map(|j| {
                let (w, b) = self.affine(j);
                stats[j].plan.affine(w, b)
            })
            .collect();
        // the rows the statistics read last first, while they are in the last-level cache
        let plan = ColPlan::new::<T>(&plans);
        let at = tail_first(x.len() / c, c * size_of::<T>()) * c;
        let ((xh, xt), (yh, yt)) = (x.split_at(at), y.split_at_mut(at));
        self.rows_normalize(xt, yt, &plan);
        self.rows_normalize(xh, yh, &plan);
        stats
    }

    /// `(rows, C)` data normalized by per-column plans, in tasks of whole rows.
    fn rows_normalize(&self, x: &[T], y: &mut [T], plan: &ColPlan<T::Acc>) {
        let per_task = (tuning::PAR_ELEMS / 4).div_ceil(plan.cols) * plan.cols;
        par::for_each_chunk_mut(y, per_task, par::worth_parallel(x.len()), |i, y| {
            plan.normalize(&x[i * per_task..][..y.len()], y);
        });
    }

    /// `Nchw` training (and masked: `lengths`): every channel's statistics over its segments
    /// in one read of x in memory order (`moments::channels_shifted`), then the segments
    /// normalized in a second streaming pass; padding set to 0. Two reads of x and one write,
    /// each a plain stream: measured faster than a channel at a time with its segments
    /// normalized from cache (1 read), whose `n` short strided streams per channel read at
    /// about half the bandwidth.
    fn train_nchw(
        &self,
        x: &[T],
        n: usize,
        hw: usize,
        lengths: Option<&[usize]>,
        y: &mut [T],
    ) -> Vec<Stats<T::Acc>> {
        let c = self.channels;
        let valid = |i: usize| lengths.map_or(hw, |l| l[i]);
        let seg = |i: usize, j: usize| &x[(i * c + j) * hw..][..valid(i)];
        // short segments (unpadded): as N rows of C·HW columns
        let shifted = match lengths {
            None if hw < tuning::SEGMENT_MIN_HW => grouped_shifted(x, c, hw, n),
            _ => channels_shifted(c, n, &seg),
        };
        let stats: Vec<Stats<T::Acc>> = shifted
            .into_iter()
            .map(|(p, run)| Stats::new(p, run, self.eps))
            .collect();
        let plans: Vec<Plan<T::Acc>> = (0..c)
            .map(|j| {
                let (w, b) = self.affine(j);
                stats[j].plan.affine(w, b)
            })
            .collect();
        if lengths.is_none() && hw < tuning::SEGMENT_MIN_HW {
            // short segments: N rows of C·HW columns, each channel's plan over its HW (as eval)
            let repeated = plans.iter().flat_map(|&p| std::iter::repeat_n(p, hw));
            let plans: Vec<Plan<T::Acc>> = repeated.collect();
            let plan = ColPlan::new::<T>(&plans);
            let at = tail_first(n, c * hw * size_of::<T>()) * c * hw;
            let ((xh, xt), (yh, yt)) = (x.split_at(at), y.split_at_mut(at));
            self.rows_normalize(xt, yt, &plan);
            self.rows_normalize(xh, yh, &plan);
            return stats;
        }
        // the (sample, channel) rows the statistics read last first (see `tail_first`)
        let at = tail_first(n * c, hw * size_of::<T>());
        let (yh, yt) = y.split_at_mut(at * hw);
        for (first, y) in [(at, yt), (0, yh)] {
            RowsMut::<T, T::Acc>::new(hw, y, None, None, None).run(|k, r| {
                let (i, j) = ((first + k) / c, (first + k) % c);
                let (v, pad) = r.y.split_at_mut(valid(i));
                normalize_row(Some(seg(i, j)), v, None, None, plans[j]);
                pad.fill(T::from_acc(T::Acc::ZERO));
            });
        }
        stats
    }

    /// Gradients of [`BatchNorm::forward_train`] from `dy`, `x` and the batch statistics
    /// `saved_mean`, `saved_invstd` it returned: `dx`, and with `dweight` / `dbias` given, per
    /// channel `Σ dy·(x − mean)·invstd` and `Σ dy` (overwritten). Per channel over its `N`
    /// values: `dx = invstd·w·(dy − mean(dy) − (x − mean)·invstd²·mean((x − mean)·dy))`.
    /// Reads `x` and `dy` once for `Nchw` (each channel's sums and `dx` from cache), twice for
    /// `Nc` / `Nhwc` (column sums over fixed row blocks merged in a fixed order first) and for
    /// `Nchw` segments shorter than `tuning::SEGMENT_MIN_HW`, taken as `N` rows of `C·HW`
    /// columns (each channel's sums those of its columns, added in f64).
    ///
    /// # Errors
    /// As [`BatchNorm::forward_train`] for the shapes and parameters, and
    /// [`NormError::LengthMismatch`] if `dy` or `dx` does not match `x`, or a saved statistic,
    /// `dweight` or `dbias` does not have `channels` values. Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::{BatchNorm, Layout};
    /// let bn = BatchNorm::new(1).eps(0.0);
    /// let (x, layout) = ([1.0f64, 3.0], Layout::Nc { n: 2 });
    /// let (mut y, mut mean, mut invstd) = ([0.0; 2], [0.0; 1], [0.0; 1]);
    /// bn.forward_train(&x, layout, &mut y, None, &mut mean, &mut invstd)?;
    /// let (mut dx, mut dw, mut db) = ([9.0; 2], [0.0; 1], [0.0; 1]);
    /// bn.backward_train(&[1.0, 2.0], &x, layout, &mean, &invstd, &mut dx, Some(&mut dw), Some(&mut db))?;
    /// assert_eq!((dx, dw, db), ([0.0, 0.0], [1.0], [3.0]));
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward_train(
        &self,
        dy: &[T],
        x: &[T],
        layout: Layout,
        saved_mean: &[T::Acc],
        saved_invstd: &[T::Acc],
        dx: &mut [T],
        dweight: Option<&mut [T::Acc]>,
        dbias: Option<&mut [T::Acc]>,
    ) -> Result<(), NormError> {
        let (n, hw) = layout.dims();
        self.check(x.len(), x.len(), n, hw)?;
        check_len("dy", x.len(), dy.len())?;
        check_len("dx", x.len(), dx.len())?;
        check_len("saved_mean", self.channels, saved_mean.len())?;
        check_len("saved_invstd", self.channels, saved_invstd.len())?;
        check_param("dweight", dweight.as_deref(), self.channels)?;
        check_param("dbias", dbias.as_deref(), self.channels)?;
        let c = self.channels;
        let count = n * hw;
        let w_of = |j: usize| self.weight.map_or(T::Acc::ONE, |w| w[j].to_acc());
        let parallel = par::worth_parallel(x.len());
        // per channel: (Σ dy·(x − μ)·invstd, Σ dy)
        let grads: Vec<(T::Acc, T::Acc)> = match layout {
            Layout::Nchw { .. } if hw >= tuning::SEGMENT_MIN_HW => {
                let per_task = (tuning::PAR_ELEMS / 4 / count).max(1);
                each_channel(by_channel(dx, c, n, hw), per_task, parallel, |j, ch| {
                    let seg = |i: usize| {
                        let at = (i * c + j) * hw;
                        (&dy[at..][..hw], &x[at..][..hw], w_of(j))
                    };
                    let (mu, a) = (saved_mean[j], saved_invstd[j]);
                    let mut sums = vec![(T::Acc::ZERO, T::Acc::ZERO); n];
                    let fin = |s: &(f64, f64)| s.0.is_finite() && s.1.is_finite();
                    let (cen, (s1, s2)) = Center::rescued(mu, a, fin, |cen| {
                        set_sums((0..n).map(seg), cen, &mut sums)
                    });
                    let coef = Coef::new(cen, a, s1, s2, count, w_of(j));
                    for (i, o) in ch.y.iter_mut().enumerate() {
                        let (d, x, _) = seg(i);
                        dx_pass(d, x, None, coef, o, None, None);
                    }
                    let (sd, sdx) = sums.iter().fold((0.0, 0.0), |(p, q), (d, e)| {
                        (p + d.to_f64(), q + e.to_f64())
                    });
                    (T::Acc::from_f64(sdx), T::Acc::from_f64(sd))
                })
            }
            _ => {
                // column sums over fixed row blocks, then dx row by row; (N, C, HW) with
                // short segments as N rows of C·HW columns, each channel's statistics and
                // coefficients repeated over its HW columns, its sums those of its columns
                let repeat = if matches!(layout, Layout::Nchw { .. }) {
                    hw
                } else {
                    1
                };
                let (cols, rows) = (c * repeat, count / repeat);
                let spread = |v: &mut dyn Iterator<Item = T::Acc>| -> Vec<T::Acc> {
                    v.flat_map(|v| std::iter::repeat_n(v, repeat)).collect()
                };
                let mu = spread(&mut saved_mean.iter().copied());
                let a = spread(&mut saved_invstd.iter().copied());
                let per_block = rows_per_block(cols);
                let blocks = rows.div_ceil(per_block);
                let par_leaves = (tuning::PAR_ELEMS / (per_block * cols)).max(2);
                let col_sums = |h: T::Acc| {
                    par::reduce(
                        blocks,
                        par_leaves,
                        &|b| {
                            let zeros = || vec![T::Acc::ZERO; cols];
                            let (mut s1, mut s2) = (zeros(), zeros());
                            for r in b * per_block..rows.min((b + 1) * per_block) {
                                let (d, xr) = (&dy[r * cols..][..cols], &x[r * cols..][..cols]);
                                col_sums_row(d, xr, &mu, &a, h, &mut s1, &mut s2);
                            }
                            (s1, s2)
                        },
                        &|(mut a1, mut a2), (b1, b2)| {
                            for (p, q) in a1.iter_mut().zip(&b1) {
                                *p = *p + *q;
                            }
                            for (p, q) in a2.iter_mut().zip(&b2) {
                                *p = *p + *q;
                            }
                            (a1, a2)
                        },
                    )
                };
                // x − μ overflowing in some column (see `Center`): every column halved
                let bad = |s: &(Vec<T::Acc>, Vec<T::Acc>)| {
                    (0..cols).any(|j| {
                        !(s.0[j].is_finite() && s.1[j].is_finite())
                            && mu[j].is_finite()
                            && a[j].is_finite()
                    })
                };
                let mut h = T::Acc::ONE;
                let mut sums = col_sums(h);
                if bad(&sums) {
                    h = T::Acc::from_f64(0.5);
                    sums = col_sums(h);
                }
                // each channel's sums: its columns', added in f64 in order (one column: its
                // sum as it is, −0 kept)
                let chan = |s: &[T::Acc]| -> Vec<f64> {
                    let sum = |k: &[T::Acc]| k.iter().map(|v| v.to_f64()).reduce(|a, b| a + b);
                    s.chunks(repeat).map(|k| sum(k).unwrap_or(0.0)).collect()
                };
                let (s1, s2) = (chan(&sums.0), chan(&sums.1));
                let coefs: Vec<Coef<T::Acc>> = (0..c)
                    .map(|j| {
                        let w = w_of(j);
                        let (m, r) = (saved_mean[j], saved_invstd[j]);
                        let (s1, s2) = (s1[j] * w.to_f64(), s2[j] * w.to_f64());
                        Coef::new(Center::new(m, r, false), r, s1, s2, count, w)
                    })
                    .collect();
                let field = |f: fn(&Coef<T::Acc>) -> T::Acc| spread(&mut coefs.iter().map(f));
                let [post, alpha, beta, gamma] = [
                    field(|k| k.post),
                    field(|k| k.alpha),
                    field(|k| k.beta),
                    field(|k| k.gamma),
                ];
                let cc = ColCoef {
                    mu: &mu,
                    a: &a,
                    h,
                    post: &post,
                    alpha: &alpha,
                    beta: &beta,
                    gamma: &gamma,
                };
                let per_task = (tuning::PAR_ELEMS / 4 / cols).max(1) * cols;
                par::for_each_chunk_mut(dx, per_task, parallel, |t, dx| {
                    for (k, o) in dx.chunks_mut(cols).enumerate() {
                        let at = t * per_task + k * cols;
                        col_dx_row(&dy[at..][..cols], &x[at..][..cols], &cc, o);
                    }
                });
                let acc = T::Acc::from_f64;
                (0..c).map(|j| (acc(s2[j]), acc(s1[j]))).collect()
            }
        };
        if let Some(dw) = dweight {
            for (o, g) in dw.iter_mut().zip(&grads) {
                *o = g.0;
            }
        }
        if let Some(db) = dbias {
            for (o, g) in db.iter_mut().zip(&grads) {
                *o = g.1;
            }
        }
        Ok(())
    }

    /// Writes the saved statistics and updates the running ones.
    fn finish(
        &self,
        stats: &[Stats<T::Acc>],
        running: Option<RunningStats<'_, T::Acc>>,
        saved_mean: &mut [T::Acc],
        saved_invstd: &mut [T::Acc],
    ) {
        for ((s, m), r) in stats.iter().zip(saved_mean).zip(saved_invstd) {
            (*m, *r) = (s.mean, s.rstd);
        }
        let Some(run) = running else { return };
        *run.num_batches_tracked = run.num_batches_tracked.saturating_add(1);
        let f = self
            .momentum
            .unwrap_or(1.0 / *run.num_batches_tracked as f64);
        let update = |old: T::Acc, new: f64| T::Acc::from_f64((1.0 - f) * old.to_f64() + f * new);
        for ((s, m), v) in stats.iter().zip(run.mean).zip(run.var) {
            *m = update(*m, s.mean64);
            *v = update(*v, s.var64());
        }
    }
}

/// The first of `rows` rows of `row_bytes` each to normalize first after a statistics pass
/// over all of them in address order: the last [`tuning::LLC_REUSE_BYTES`] of the input
/// (whole rows), still in the last-level cache then. 0 (all rows, in order) below four times
/// that: an input about the cache's size is mostly still there from its start, and writing
/// the tail's outputs first would evict the start before it is read. Measured, 1 thread, A/B
/// probe alternating binaries: (65536, 256) `Nc` training 8.8 → 8.3 ms (medians of four);
/// (32, 64, 56, 56) `Nchw` (25.7 MB, tail first too in that test) within the noise.
fn tail_first(rows: usize, row_bytes: usize) -> usize {
    let tail = tuning::LLC_REUSE_BYTES / row_bytes.max(1);
    if rows * row_bytes >= 4 * tuning::LLC_REUSE_BYTES {
        rows - tail
    } else {
        0
    }
}
