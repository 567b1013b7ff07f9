//! GroupNorm / InstanceNorm forward: per (sample, group), the group's channels are one
//! contiguous run of `channels/groups · hw` values in `(N, C, *)` order, so each is a row:
//! centred one-pass statistics (`moments::row_shifted`), then every channel of the group
//! normalized from cache with its weight and bias folded into the plan: one channel at a
//! time, or, where a channel's segment is shorter than a vector, the group's channels a
//! block at a time, each channel's plan repeated over its values (`ChannelBlock`).

use super::backward::{
    Center, Coef, ColCoef, Grads, col_dx_row, col_sums_row, dx_pass, rows_per_block, set_sums,
};
use super::{
    EVAL_BLOCK, FieldVariant, Plan, RowMut, RowsMut, Stats, by_variant, check_channels,
    check_param, col_plan, encode_unfolded, expand, map_row_grouped, normalize_row,
};
use crate::element::{Element, Float, Vector};
use crate::error::{NormError, check_len};
use crate::moments::row_shifted;
use crate::{par, tuning};

/// Group normalization (PyTorch `nn.GroupNorm(groups, channels)`) on `(N, C, *)` input:
/// the channels are split into `groups` groups and each (sample, group) normalized over its
/// channels and positions; weight and bias (optional) are per channel.
/// [`GroupNorm::instance`] is InstanceNorm (`groups == channels`). eps defaults to 1e-5.
///
/// Edge semantics as [`crate::LayerNorm`]: a constant group outputs exactly its channels'
/// biases; NaN stays in its (sample, group).
///
/// # Example
/// ```
/// use simdnorm::GroupNorm;
/// // (N, C, HW) = (1, 4, 1), two groups of two channels
/// let x = [1.0f32, 3.0, 7.0, 7.0];
/// let b = [0.0f32, 0.0, 5.0, 6.0];
/// let mut y = [0.0f32; 4];
/// GroupNorm::new(2, 4).eps(0.0).bias(&b).forward(&x, 1, 1, &mut y)?;
/// assert_eq!(y, [-1.0, 1.0, 5.0, 6.0]);
/// # Ok::<(), simdnorm::NormError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct GroupNorm<'a, T> {
    groups: usize,
    channels: usize,
    eps: f64,
    weight: Option<&'a [T]>,
    bias: Option<&'a [T]>,
}

impl<'a, T: Element> GroupNorm<'a, T> {
    /// GroupNorm with `groups` groups over `channels` channels (checked by the first call:
    /// `groups` must divide `channels`), eps 1e-5, no weight or bias.
    ///
    /// # Example
    /// ```
    /// let gn = simdnorm::GroupNorm::<f32>::new(32, 64);
    /// # let _ = gn;
    /// ```
    pub fn new(groups: usize, channels: usize) -> Self {
        Self {
            groups,
            channels,
            eps: 1e-5,
            weight: None,
            bias: None,
        }
    }

    /// InstanceNorm: one group per channel (`nn.InstanceNorm` with `affine` given by
    /// weight/bias; no running statistics).
    ///
    /// # Example
    /// ```
    /// let x = [1.0f64, 3.0, 5.0, 5.0];   // (N, C, HW) = (1, 2, 2)
    /// let mut y = [0.0; 4];
    /// simdnorm::GroupNorm::instance(2).eps(0.0).forward(&x, 1, 2, &mut y)?;
    /// assert_eq!(y, [-1.0, 1.0, 0.0, 0.0]);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn instance(channels: usize) -> Self {
        Self::new(channels, channels)
    }

    /// Sets eps (checked by the first call: finite and ≥ 0).
    ///
    /// # Example
    /// ```
    /// let gn = simdnorm::GroupNorm::<f32>::new(2, 4).eps(1e-6);
    /// # let _ = gn;
    /// ```
    pub fn eps(self, eps: f64) -> Self {
        Self { eps, ..self }
    }

    /// Sets the per-channel weight (γ), `channels` values.
    ///
    /// # Example
    /// ```
    /// let w = [1.0f32; 4];
    /// let gn = simdnorm::GroupNorm::new(2, 4).weight(&w);
    /// # let _ = gn;
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
    /// let b = [0.0f32; 4];
    /// let gn = simdnorm::GroupNorm::new(2, 4).bias(&b);
    /// # let _ = gn;
    /// ```
    pub fn bias(self, bias: &'a [T]) -> Self {
        Self {
            bias: Some(bias),
            ..self
        }
    }

    /// Checks the configuration against `(n, C, hw)` input and output lengths.
    fn check(&self, x: usize, y: usize, n: usize, hw: usize) -> Result<(), NormError> {
        check_channels(self.channels, n, hw, x, y, self.eps, self.weight, self.bias)?;
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return Err(NormError::InvalidGroups {
                groups: self.groups,
                channels: self.channels,
            });
        }
        Ok(())
    }

    /// Normalizes `x`, `(n, channels, hw)`, into `y`.
    ///
    /// # Errors
    /// [`NormError::ZeroLength`] for zero channels, `n` or `hw`; [`NormError::InvalidGroups`];
    /// [`NormError::LengthMismatch`] for `x`, `y`, weight or bias; [`NormError::InvalidEps`].
    /// Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// let x = [2.0f32, 4.0, 6.0, 8.0];   // (N, C, HW) = (1, 2, 2), one group
    /// let mut y = [0.0f32; 4];
    /// simdnorm::GroupNorm::new(1, 2).eps(0.0).forward(&x, 1, 2, &mut y)?;
    /// assert!((y[0] + 3.0 / 5.0f32.sqrt()).abs() < 1e-6);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward(&self, x: &[T], n: usize, hw: usize, y: &mut [T]) -> Result<(), NormError> {
        self.check(x.len(), y.len(), n, hw)?;
        self.run(x, hw, RowsMut::new(self.group_len(hw), y, None, None, None));
        Ok(())
    }

    /// [`GroupNorm::forward`], also writing the mean and `rstd = 1/sqrt(var + eps)` of each
    /// (sample, group) at index `i·groups + g`.
    ///
    /// # Errors
    /// As [`GroupNorm::forward`], and [`NormError::LengthMismatch`] if `mean` or `rstd` does
    /// not have `n·groups` values.
    ///
    /// # Example
    /// ```
    /// let x = [1.0f32, 3.0, 10.0, 10.0];   // (N, C, HW) = (2, 1, 2)
    /// let (mut y, mut mean, mut rstd) = ([0.0f32; 4], [0.0f32; 2], [0.0f32; 2]);
    /// simdnorm::GroupNorm::instance(1).eps(0.0)
    ///     .forward_with_stats(&x, 2, 2, &mut y, &mut mean, &mut rstd)?;
    /// assert_eq!((mean, rstd), ([2.0, 10.0], [1.0, 0.0]));
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn forward_with_stats(
        &self,
        x: &[T],
        n: usize,
        hw: usize,
        y: &mut [T],
        mean: &mut [T::Acc],
        rstd: &mut [T::Acc],
    ) -> Result<(), NormError> {
        self.check(x.len(), y.len(), n, hw)?;
        check_len("mean", n * self.groups, mean.len())?;
        check_len("rstd", n * self.groups, rstd.len())?;
        let rows = RowsMut::new(self.group_len(hw), y, None, Some(mean), Some(rstd));
        self.run(x, hw, rows);
        Ok(())
    }

    /// Gradients of [`GroupNorm::forward`] from `dy`, `x` and the per-(sample, group) `mean`
    /// and `rstd` of [`GroupNorm::forward_with_stats`]: `dx`, and with `dweight` / `dbias`
    /// given, per channel `Σ dy·(x − mean)·rstd` and `Σ dy` (overwritten). Per group, with
    /// `g = dy·w_c`, `x̂ = (x − mean)·rstd`: `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))`. The
    /// per-channel sums run over fixed blocks of (sample, group) rows merged in a fixed order.
    ///
    /// # Errors
    /// As [`GroupNorm::forward`] for the shapes and parameters, and
    /// [`NormError::LengthMismatch`] if `dy` or `dx` does not match `x`, `mean` or `rstd` does
    /// not have `n·groups` values, or `dweight` / `dbias` not `channels`. Nothing is written on
    /// `Err`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::GroupNorm;
    /// let gn = GroupNorm::instance(1).eps(0.0);
    /// let x = [1.0f64, 3.0];                       // (N, C, HW) = (1, 1, 2)
    /// let (mut y, mut mean, mut rstd) = ([0.0; 2], [0.0; 1], [0.0; 1]);
    /// gn.forward_with_stats(&x, 1, 2, &mut y, &mut mean, &mut rstd)?;
    /// let (mut dx, mut db) = ([9.0; 2], [0.0; 1]);
    /// gn.backward(&[1.0, 1.0], &x, 1, 2, &mean, &rstd, &mut dx, None, Some(&mut db))?;
    /// assert_eq!((dx, db), ([0.0, 0.0], [2.0]));   // a shift of the input changes nothing
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dy: &[T],
        x: &[T],
        n: usize,
        hw: usize,
        mean: &[T::Acc],
        rstd: &[T::Acc],
        dx: &mut [T],
        dweight: Option<&mut [T::Acc]>,
        dbias: Option<&mut [T::Acc]>,
    ) -> Result<(), NormError> {
        self.check(x.len(), x.len(), n, hw)?;
        check_len("dy", x.len(), dy.len())?;
        check_len("dx", x.len(), dx.len())?;
        check_len("mean", n * self.groups, mean.len())?;
        check_len("rstd", n * self.groups, rstd.len())?;
        check_param("dweight", dweight.as_deref(), self.channels)?;
        check_param("dbias", dbias.as_deref(), self.channels)?;
        let (want_w, want_b) = (dweight.is_some(), dbias.is_some());
        let len = self.group_len(hw);
        let cpg = self.channels / self.groups;
        let per_block = rows_per_block(len);
        let par_leaves = (tuning::PAR_ELEMS / (per_block * len)).max(2);
        let w_of = |c: usize| self.weight.map_or(T::Acc::ONE, |w| w[c].to_acc());
        // segments shorter than a vector: the row in blocks of channels (`ShortGrad`)
        let short = hw < T::Acc::LANES && len >= T::Acc::LANES;
        let leaf = |blk: usize, dx: &mut [T]| {
            let mut g = Grads::zeros(self.channels, want_w, want_b);
            let mut seg_sums = vec![(T::Acc::ZERO, T::Acc::ZERO); cpg];
            let mut scratch = short.then(ShortGrad::<T::Acc>::new);
            for (k, dxr) in dx.chunks_mut(len).enumerate() {
                let j = blk * per_block + k; // (sample, group) index
                let c0 = (j % self.groups) * cpg;
                let (dyr, xr) = (&dy[j * len..][..len], &x[j * len..][..len]);
                let (mu, a) = (mean[j], rstd[j]);
                let w = |q: usize| w_of(c0 + q);
                match &mut scratch {
                    Some(s) => s.row(dyr, xr, dxr, hw, (mu, a), w, &mut seg_sums),
                    None => segment_grad(dyr, xr, dxr, hw, (mu, a), w, &mut seg_sums),
                }
                let (gw, gb) = g.parts();
                for (q, &(sd, sdx)) in seg_sums.iter().enumerate() {
                    if want_w {
                        gw[c0 + q] = gw[c0 + q] + sdx;
                    }
                    if want_b {
                        gb[c0 + q] = gb[c0 + q] + sd;
                    }
                }
            }
            g
        };
        let g = par::reduce_chunks_mut(dx, per_block * len, par_leaves, &leaf, &|a, b| a.add(b));
        g.write(dweight, dbias);
        Ok(())
    }

    /// Values per (sample, group).
    fn group_len(&self, hw: usize) -> usize {
        self.channels / self.groups * hw
    }

    /// Every (sample, group) row: statistics, then each channel with its weight and bias:
    /// one at a time, or, for short segments (`hw < tuning::SEGMENT_MIN_HW`), the row in
    /// blocks of channels, each channel's plan repeated over its `hw` values
    /// ([`PlanBlock`]), which keeps the vectors full.
    fn run(&self, x: &[T], hw: usize, rows: RowsMut<'_, T, T::Acc>) {
        let len = self.group_len(hw);
        let cpg = self.channels / self.groups;
        let first = |j: usize| (j % self.groups) * cpg;
        if hw < T::Acc::LANES && len >= T::Acc::LANES {
            rows.run_with(ChannelBlock::<T::Acc>::new, |block, j, r| {
                let x = &x[j * len..][..len];
                let (y, plan) = self.row_stats(x, r);
                let per = EVAL_BLOCK / hw;
                for k0 in (0..cpg).step_by(per) {
                    let seg = k0 * hw..len.min((k0 + per) * hw);
                    let channels = (k0..cpg.min(k0 + per)).map(|k| self.affine(first(j) + k));
                    block.normalize(&x[seg.clone()], &mut y[seg], plan, channels, hw);
                }
            });
        } else {
            rows.run(|j, r| {
                let x = &x[j * len..][..len];
                let (y, plan) = self.row_stats(x, r);
                for (k, (x, y)) in x.chunks(hw).zip(y.chunks_mut(hw)).enumerate() {
                    let (w, b) = self.affine(first(j) + k);
                    normalize_row(Some(x), y, None, None, plan.affine(w, b));
                }
            });
        }
    }

    /// A (sample, group) row's statistics, written where asked for: its output and plan.
    #[inline(always)]
    fn row_stats<'r>(&self, x: &[T], r: RowMut<'r, T, T::Acc>) -> (&'r mut [T], Plan<T::Acc>) {
        let (p, run) = row_shifted(x);
        let stats = Stats::new(p, run, self.eps);
        (r.put(Some(stats.mean), stats.rstd), stats.plan)
    }

    /// Channel `c`'s weight and bias, where given.
    #[inline(always)]
    fn affine(&self, c: usize) -> (Option<T::Acc>, Option<T::Acc>) {
        let (w, b) = (self.weight.map(|w| w[c]), self.bias.map(|b| b[c]));
        (w.map(T::to_acc), b.map(T::to_acc))
    }
}

/// The channels of a group with short segments: per channel the group plan's `a` with the
/// channel's weight folded in ([`Plan::affine`]; where some weight stays unfolded, every
/// channel as `encode_unfolded` writes it) and its bias, each repeated over the channel's
/// `hw` values, on the stack; the group plan's scale, pilot and offset stay in registers.
/// Full vectors across channel boundaries, where one `normalize_row` per channel took a
/// partial vector for each segment shorter than a vector.
struct ChannelBlock<A> {
    a: [A; EVAL_BLOCK],
    c: [A; EVAL_BLOCK],
    w: [A; EVAL_BLOCK],
}

impl<A: Float> ChannelBlock<A> {
    /// An empty block.
    fn new() -> Self {
        Self {
            a: [A::ZERO; EVAL_BLOCK],
            c: [A::ZERO; EVAL_BLOCK],
            w: [A::ONE; EVAL_BLOCK],
        }
    }

    /// `y = plan_k(x)` for consecutive channels of a group (at most `EVAL_BLOCK / hw`), `hw`
    /// values each, `plan_k` the group's `plan` with channel `k`'s weight and bias
    /// (`channels`): bit for bit `normalize_row` of each channel with its `plan.affine`.
    fn normalize<T: Element<Acc = A>>(
        &mut self,
        x: &[T],
        y: &mut [T],
        plan: Plan<A>,
        channels: impl Iterator<Item = (Option<A>, Option<A>)>,
        hw: usize,
    ) {
        struct Group<'b, 's, A: Float, T> {
            fields: [&'b [A]; 3],
            row: [A::V; 3],
            x: &'s [T],
            y: &'s mut [T],
        }
        impl<A: Float, T: Element<Acc = A>> FieldVariant for Group<'_, '_, A, T> {
            #[inline(always)]
            fn run<const SCALED: bool, const OFFSET: bool, const U: bool>(self) {
                let [s, nps, m] = self.row;
                let f = |v: A::V, e: [A::V; 3], _: usize, _: usize| {
                    let at = |f: usize| [s, nps, m, e[0], e[1], e[2]][f];
                    col_plan::<A::V, SCALED, OFFSET, U>(v, at)
                };
                map_row_grouped::<T, A, 1, 3>(Some(self.x), self.y, self.fields, f, f);
            }
        }
        let mut n = 0;
        for (k, (w, b)) in channels.enumerate() {
            let p = plan.affine(w, b);
            (self.a[k], self.c[k], self.w[k]) = (p.a, p.c, p.w);
            n = k + 1;
        }
        let unfolded = encode_unfolded(&mut self.a[..n], &mut self.w[..n]);
        expand(&mut self.a, n, hw);
        expand(&mut self.c, n, hw);
        if unfolded {
            expand(&mut self.w, n, hw);
        }
        let len = y.len();
        debug_assert!(len == n * hw && x.len() == len);
        // without an unfolded weight the third field is never read
        let w = if unfolded { &self.w } else { &self.a };
        let group = Group {
            fields: [&self.a[..len], &self.c[..len], &w[..len]],
            row: [plan.s, -plan.ps, plan.m].map(A::V::splat),
            x,
            y,
        };
        by_variant(group, (plan.s != A::ONE, plan.m != A::ZERO, unfolded));
    }
}

/// `dx` of one (sample, group) row of `hw`-value segments, a segment at a time, with the
/// group's `(mean, rstd)` and channel `q`'s weight `w(q)`, and each segment's
/// `(Σ dy, Σ dy·x̂)` in `seg`: the weighted sums in f64 (`set_sums`, `Center`'s rescue),
/// then each segment's `Coef` and `dx_pass`.
#[allow(clippy::too_many_arguments)]
fn segment_grad<T: Element>(
    dy: &[T],
    x: &[T],
    dx: &mut [T],
    hw: usize,
    (mu, a): (T::Acc, T::Acc),
    w: impl Fn(usize) -> T::Acc,
    seg: &mut [(T::Acc, T::Acc)],
) {
    let segs = dy.chunks(hw).zip(x.chunks(hw));
    let segs_w = || segs.clone().enumerate().map(|(q, (d, x))| (d, x, w(q)));
    let fin = |s: &(f64, f64)| s.0.is_finite() && s.1.is_finite();
    let (cen, (s1, s2)) = Center::rescued(mu, a, fin, |cen| set_sums(segs_w(), cen, seg));
    for (q, ((d, x), o)) in segs.zip(dx.chunks_mut(hw)).enumerate() {
        let coef = Coef::new(cen, a, s1, s2, dy.len(), w(q));
        dx_pass(d, x, None, coef, o, None, None);
    }
}

/// Scratch of GroupNorm's backward over a row of segments shorter than a vector: per value
/// of a block of channels, the fields of [`col_sums_row`] and [`col_dx_row`] (the group's
/// mean and rstd, the channel's α and post, the group's β and γ) and the per-value sums,
/// on the stack. Full vectors across channel boundaries, where each segment's own sums and
/// `dx_pass` took partial vectors (~70 ns a 4-value segment).
struct ShortGrad<A> {
    mu: [A; EVAL_BLOCK],
    a: [A; EVAL_BLOCK],
    alpha: [A; EVAL_BLOCK],
    post: [A; EVAL_BLOCK],
    beta: [A; EVAL_BLOCK],
    gamma: [A; EVAL_BLOCK],
    p1: [A; EVAL_BLOCK],
    p2: [A; EVAL_BLOCK],
}

impl<A: Float> ShortGrad<A> {
    /// Empty scratch.
    fn new() -> Self {
        Self {
            mu: [A::ZERO; EVAL_BLOCK],
            a: [A::ZERO; EVAL_BLOCK],
            alpha: [A::ZERO; EVAL_BLOCK],
            post: [A::ZERO; EVAL_BLOCK],
            beta: [A::ZERO; EVAL_BLOCK],
            gamma: [A::ZERO; EVAL_BLOCK],
            p1: [A::ZERO; EVAL_BLOCK],
            p2: [A::ZERO; EVAL_BLOCK],
        }
    }

    /// `dx` of one (sample, group) row of `hw`-value segments with the group's `(mean,
    /// rstd)` and channel `q`'s weight `w(q)`, and each segment's `(Σ dy, Σ dy·x̂)` in
    /// `seg`: the segment path's formulas (`set_sums`, `Coef`, `dx_pass`: the weighted sums
    /// in f64, `Center`'s rescue), each segment's sums added in order rather than by lanes.
    #[allow(clippy::too_many_arguments)]
    fn row<T: Element<Acc = A>>(
        &mut self,
        dy: &[T],
        x: &[T],
        dx: &mut [T],
        hw: usize,
        (mu, a): (A, A),
        w: impl Fn(usize) -> A,
        seg: &mut [(A, A)],
    ) {
        let len = x.len();
        let per = EVAL_BLOCK / hw;
        let span = per * hw;
        let m0 = len.min(span);
        self.mu[..m0].fill(mu);
        self.a[..m0].fill(a);
        let sum = |s: &[A]| s.iter().fold(A::ZERO, |t, &v| t + v);
        let fin = |s: &(f64, f64)| s.0.is_finite() && s.1.is_finite();
        let (cen, (s1, s2)) = Center::rescued(mu, a, fin, |cen| {
            let (mut t1, mut t2) = (0.0f64, 0.0f64);
            for (b, (d, x)) in dy.chunks(span).zip(x.chunks(span)).enumerate() {
                let m = d.len();
                let (p1, p2) = (&mut self.p1[..m], &mut self.p2[..m]);
                p1.fill(A::ZERO);
                p2.fill(A::ZERO);
                col_sums_row(d, x, &self.mu[..m], &self.a[..m], cen.h(), p1, p2);
                for (q, (u, v)) in p1.chunks(hw).zip(p2.chunks(hw)).enumerate() {
                    let k = b * per + q;
                    seg[k] = (sum(u), sum(v));
                    let wk = w(k).to_f64();
                    t1 += wk * seg[k].0.to_f64();
                    t2 += wk * seg[k].1.to_f64();
                }
            }
            (t1, t2)
        });
        // β and γ do not depend on the weight
        let row = Coef::new(cen, a, s1, s2, len, A::ONE);
        self.beta[..m0].fill(row.beta);
        self.gamma[..m0].fill(row.gamma);
        let blocks = dy.chunks(span).zip(x.chunks(span)).zip(dx.chunks_mut(span));
        for (b, ((d, x), o)) in blocks.enumerate() {
            let m = d.len();
            for q in 0..m / hw {
                let c = Coef::new(cen, a, s1, s2, len, w(b * per + q));
                self.alpha[q * hw..][..hw].fill(c.alpha);
                self.post[q * hw..][..hw].fill(c.post);
            }
            let cc = ColCoef {
                mu: &self.mu[..m],
                a: &self.a[..m],
                h: cen.h(),
                alpha: &self.alpha[..m],
                post: &self.post[..m],
                beta: &self.beta[..m],
                gamma: &self.gamma[..m],
            };
            col_dx_row(d, x, &cc, o);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ChannelBlock` gives bit for bit what `normalize_row` of each channel with the group
    /// plan's `affine` gives: group plans plain, with an offset, rescued (scaled) and NaN;
    /// weights that fold, that stay unfolded (`a·w` subnormal) in some channels only, huge
    /// ones; without weight or bias; every segment shorter than a vector, 1 channel to a full
    /// block, at every start within a cache line.
    fn channels_match_rows<T: Element>() {
        type A<T> = <T as Element>::Acc;
        let f = A::<T>::from_f64;
        let plan = |s: f64, ps: f64, m: f64, a: f64| Plan {
            s: f(s),
            ps: f(ps),
            m: f(m),
            a: f(a),
            c: f(0.0),
            w: f(1.0),
        };
        let plans = [
            plan(1.0, 3.25, 0.0, 0.75),
            plan(1.0, 3.25, 0.0146, 1.3),
            plan(0.125, 0.40625, -0.003, 1.9),
            Plan::nan(),
        ];
        let val = |k: usize| T::from_acc(f(((k * 37) % 101) as f64 * 0.0625));
        let tiny = A::<T>::MIN_POSITIVE.to_f64() * 0.5;
        let mut block = ChannelBlock::<A<T>>::new();
        for (case, plan) in plans.into_iter().enumerate() {
            for hw in 1..A::<T>::LANES {
                for chans in [1, 2, 3, 5, 16, 40, EVAL_BLOCK / hw] {
                    let len = chans * hw;
                    if len > EVAL_BLOCK {
                        continue;
                    }
                    let x: Vec<T> = (0..len).map(|k| val(k + case)).collect();
                    let weight: Vec<A<T>> = (0..chans)
                        .map(|j| match (j + case) % 7 {
                            0 if hw % 2 == 1 => tiny,
                            1 => 1e30,
                            k => k as f64 * 0.3 - 1.0,
                        })
                        .map(|w| T::from_acc(f(w)).to_acc())
                        .collect();
                    let bias: Vec<A<T>> = (0..chans).map(|j| f(j as f64 * 0.5 - 2.0)).collect();
                    for (w, b) in [(true, true), (true, false), (false, true), (false, false)] {
                        let affine = |j: usize| (w.then(|| weight[j]), b.then(|| bias[j]));
                        let mut want = vec![T::from_acc(f(0.0)); len];
                        for (j, (x, y)) in x.chunks(hw).zip(want.chunks_mut(hw)).enumerate() {
                            let (w, b) = affine(j);
                            normalize_row(Some(x), y, None, None, plan.affine(w, b));
                        }
                        for off in (0..64 / size_of::<T>()).step_by(3) {
                            let mut y = vec![T::from_acc(f(0.0)); len + off];
                            let y = &mut y[off..];
                            block.normalize(&x, y, plan, (0..chans).map(affine), hw);
                            let bits = |v: &[T]| -> Vec<u64> {
                                v.iter().map(|v| v.to_acc().to_f64().to_bits()).collect()
                            };
                            assert_eq!(
                                bits(y),
                                bits(&want),
                                "plan {case} hw {hw} chans {chans} w {w} b {b} off {off}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// `ShortGrad::row` against the segment path (`set_sums`, `Coef`, `dx_pass` per
    /// segment): each segment's sums and `dx` bit for bit for one-value segments (the same
    /// additions), else within 32 ε of the row's largest |dx| and of each segment's Σ|terms|
    /// (the segments' sums are added in another order: lanes against in order, each sum a
    /// few ε of its terms); every segment length below a vector, one block of channels and
    /// several, tiny weights (α scaled up, `Coef::post`), huge ones, and `x − μ`
    /// overflowing (`Center`'s halving).
    fn short_grad_matches_segments<T: Element>() {
        type A<T> = <T as Element>::Acc;
        let f = A::<T>::from_f64;
        let eps = A::<T>::EPSILON.to_f64();
        let mut scratch = ShortGrad::<A<T>>::new();
        let big = A::<T>::MAX.to_f64() * 0.75;
        for case in 0..3 {
            for hw in 1..A::<T>::LANES {
                for cpg in [A::<T>::LANES.div_ceil(hw), 7, 2 * EVAL_BLOCK / hw + 3] {
                    let len = cpg * hw;
                    let val = |k: usize, s: f64| ((k * 37 + case) % 101) as f64 * s - 3.0;
                    let (x, mu, a): (Vec<T>, _, _) = if case == 2 {
                        // x − μ overflows (values near +MAX, μ near −MAX)
                        let x =
                            (0..len).map(|k| T::from_acc(f(big * (1.0 + val(k, 0.0625) / 7e3))));
                        (x.collect(), f(-big), f(1.0 / big))
                    } else {
                        let x = (0..len).map(|k| T::from_acc(f(val(k, 0.0625))));
                        (x.collect(), f(0.125), f(1.5))
                    };
                    // (case 2: dx = dy·a·w + … with a = 1/big: dy large to keep dx normal)
                    let dys = if case == 2 { 1e30 } else { 1.0 };
                    let dy = (0..len).map(|k| T::from_acc(f(dys * val(k * 3, 0.03))));
                    let dy: Vec<T> = dy.collect();
                    let w = |q: usize| match (q + case) % 5 {
                        0 if case == 1 => f(1e-40),
                        1 => f(1e20),
                        k => f(k as f64 * 0.5 - 0.75),
                    };
                    // the segment path
                    let mut want_sums = vec![(f(0.0), f(0.0)); cpg];
                    let mut want = vec![T::from_acc(f(0.0)); len];
                    segment_grad(&dy, &x, &mut want, hw, (mu, a), w, &mut want_sums);
                    let mut got = vec![T::from_acc(f(0.0)); len];
                    let mut got_sums = vec![(f(0.0), f(0.0)); cpg];
                    scratch.row(&dy, &x, &mut got, hw, (mu, a), w, &mut got_sums);
                    let what = format!(
                        "{} case {case} hw {hw} cpg {cpg}",
                        std::any::type_name::<T>()
                    );
                    let v = |t: T| t.to_acc().to_f64();
                    let scale = want.iter().map(|&t| v(t).abs()).fold(0.0, f64::max);
                    assert!(scale.is_finite() && scale > 0.0, "{what}: scale {scale}");
                    for (k, (&g, &r)) in got.iter().zip(&want).enumerate() {
                        let (g, r) = (v(g), v(r));
                        let tol = if hw == 1 { 0.0 } else { 32.0 * eps * scale };
                        assert!((g - r).abs() <= tol, "{what}: dx[{k}] {g} vs {r}");
                    }
                    for (q, (g, r)) in got_sums.iter().zip(&want_sums).enumerate() {
                        let terms = |p: usize| -> f64 {
                            let seg = q * hw..(q + 1) * hw;
                            // halved: no overflow in case 2's f64
                            let (m, a) = (mu.to_f64() / 2.0, a.to_f64() * 2.0);
                            let xh = |k: usize| (v(x[k]) / 2.0 - m) * a;
                            let t = |k: usize| v(dy[k]).abs() * [1.0, xh(k).abs()][p];
                            seg.map(t).sum()
                        };
                        for (p, (g, r)) in [(g.0, r.0), (g.1, r.1)].into_iter().enumerate() {
                            let (g, r) = (g.to_f64(), r.to_f64());
                            let tol = if hw == 1 { 0.0 } else { 32.0 * eps * terms(p) };
                            assert!((g - r).abs() <= tol, "{what}: seg {q}.{p} {g} vs {r}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn short_segment_gradients_match_the_segment_path() {
        short_grad_matches_segments::<f32>();
        short_grad_matches_segments::<f64>();
        #[cfg(feature = "half")]
        short_grad_matches_segments::<half::bf16>();
    }

    #[test]
    fn short_segments_in_blocks_match_each_channels_row() {
        channels_match_rows::<f32>();
        channels_match_rows::<f64>();
        #[cfg(feature = "half")]
        channels_match_rows::<half::f16>();
        #[cfg(feature = "half")]
        channels_match_rows::<half::bf16>();
    }
}
