//! GroupNorm / InstanceNorm forward: per (sample, group), the group's channels are one
//! contiguous run of `channels/groups · hw` values in `(N, C, *)` order, so each is a row:
//! centred one-pass statistics (`moments::row_shifted`), then every channel of the group
//! normalized from cache with its weight and bias folded into the plan.

use super::backward::{Center, Coef, Grads, dx_pass, rows_per_block, set_sums};
use super::{Plan, RowsMut, Stats, check_channels, check_param, normalize_row};
use crate::element::{Element, Float};
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
        let leaf = |blk: usize, dx: &mut [T]| {
            let mut g = Grads::zeros(self.channels, want_w, want_b);
            let mut seg_sums = vec![(T::Acc::ZERO, T::Acc::ZERO); cpg];
            for (k, dxr) in dx.chunks_mut(len).enumerate() {
                let j = blk * per_block + k; // (sample, group) index
                let c0 = (j % self.groups) * cpg;
                let (dyr, xr) = (&dy[j * len..][..len], &x[j * len..][..len]);
                let segs = dyr.chunks(hw).zip(xr.chunks(hw));
                let (mu, a) = (mean[j], rstd[j]);
                let segs_w = || {
                    segs.clone()
                        .enumerate()
                        .map(|(q, (d, x))| (d, x, w_of(c0 + q)))
                };
                let fin = |s: &(f64, f64)| s.0.is_finite() && s.1.is_finite();
                let (cen, (s1, s2)) =
                    Center::rescued(mu, a, fin, |cen| set_sums(segs_w(), cen, &mut seg_sums));
                for (q, ((d, x), o)) in segs.zip(dxr.chunks_mut(hw)).enumerate() {
                    let coef = Coef::new(cen, a, s1, s2, len, w_of(c0 + q));
                    dx_pass(d, x, None, coef, o, None, None);
                    let (sd, sdx) = seg_sums[q];
                    let (gw, gb) = g.parts();
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

    /// Every (sample, group) row: statistics, then each channel with its weight and bias.
    fn run(&self, x: &[T], hw: usize, rows: RowsMut<'_, T, T::Acc>) {
        let len = self.group_len(hw);
        let cpg = self.channels / self.groups;
        rows.run(|j, r| {
            let x = &x[j * len..][..len];
            let (p, run) = row_shifted(x);
            let stats = Stats::new(p, run, self.eps);
            if let Some(m) = r.mean {
                *m = stats.mean;
            }
            if let Some(s) = r.rstd {
                *s = stats.rstd;
            }
            let c0 = (j % self.groups) * cpg;
            for (k, (x, y)) in x.chunks(hw).zip(r.y.chunks_mut(hw)).enumerate() {
                let c = c0 + k;
                let plan: Plan<T::Acc> = stats.plan.affine(
                    self.weight.map(|w| w[c].to_acc()),
                    self.bias.map(|b| b[c].to_acc()),
                );
                normalize_row(Some(x), y, None, None, plan);
            }
        });
    }
}
