//! GroupNorm / InstanceNorm forward: per (sample, group), the group's channels are one
//! contiguous run of `channels/groups · hw` values in `(N, C, *)` order, so each is a row:
//! shifted Welford statistics (`moments::row_shifted`), then every channel of the group
//! normalized from cache with its weight and bias folded into the plan.

use super::{Plan, RowsMut, Stats, check_eps, check_param, normalize_row};
use crate::element::Element;
use crate::error::{NormError, check_len};
use crate::moments::row_shifted;

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
        if self.channels == 0 {
            return Err(NormError::ZeroLength { arg: "channels" });
        }
        if self.groups == 0 || !self.channels.is_multiple_of(self.groups) {
            return Err(NormError::InvalidGroups {
                groups: self.groups,
                channels: self.channels,
            });
        }
        if n == 0 {
            return Err(NormError::ZeroLength { arg: "n" });
        }
        if hw == 0 {
            return Err(NormError::ZeroLength { arg: "hw" });
        }
        let len = n
            .checked_mul(hw)
            .and_then(|v| v.checked_mul(self.channels))
            .unwrap_or(usize::MAX);
        check_len("x", len, x)?;
        check_len("y", len, y)?;
        check_eps(self.eps)?;
        check_param("weight", self.weight, self.channels)?;
        check_param("bias", self.bias, self.channels)
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
