//! LayerNorm forward: per row, statistics by one pass centred near the mean
//! (`moments::row_shifted`, the row's one read from memory), then the scale-and-shift step
//! from L1/L2 (`ops::normalize`).

use super::backward::rows_backward;
use super::{
    NextRow, RowMut, RowNorm, RowsMut, Stats, check_eps, check_param, normalize_row,
    normalize_row_along, normalize_rows, rows, run_rows,
};
use crate::element::Element;
use crate::error::{NormError, check_len};
use crate::moments::{RowAhead, row_shifted, row_shifted_ahead};
use crate::tuning;

/// Layer normalization over the last `normalized_len` values of each row (PyTorch
/// `nn.LayerNorm(normalized_shape)` with `normalized_len` = the product of `normalized_shape`):
/// `y = (x − mean) / sqrt(var + eps) · weight + bias`, biased variance, per row.
///
/// A small configuration value that borrows its parameters; `weight` and `bias` are optional
/// (PyTorch's `elementwise_affine=False` / `bias=False`). eps defaults to 1e-5.
///
/// Edge semantics: a constant row outputs exactly `bias` (or 0), at any magnitude and with
/// eps = 0; rows of values near ±`f32::MAX` normalize as their rescaled copy would; a NaN or
/// ±∞ makes its own row (and its statistics) NaN and no other.
///
/// # Example
/// ```
/// use simdnorm::LayerNorm;
/// let (gamma, beta) = ([1.0f32, 1.0, 2.0, 2.0], [0.0f32, 0.0, 0.0, 1.0]);
/// let ln = LayerNorm::new(4).eps(0.0).weight(&gamma).bias(&beta);
/// let x = [1.0f32, 2.0, 3.0, 4.0, /* row 2 */ 5.0, 5.0, 5.0, 5.0];
/// let mut y = [0.0f32; 8];
/// ln.forward(&x, &mut y)?;
/// let r = 1.0 / 1.25f32.sqrt();
/// assert!((y[0] + 1.5 * r).abs() < 1e-6 && (y[3] - (3.0 * r + 1.0)).abs() < 1e-6);
/// assert_eq!(&y[4..], &beta); // a constant row gives exactly the bias
/// # Ok::<(), simdnorm::NormError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm<'a, T> {
    normalized_len: usize,
    eps: f64,
    weight: Option<&'a [T]>,
    bias: Option<&'a [T]>,
}

impl<'a, T: Element> LayerNorm<'a, T> {
    /// LayerNorm over rows of `normalized_len` values, eps 1e-5, no weight or bias.
    ///
    /// # Example
    /// ```
    /// let ln = simdnorm::LayerNorm::<f32>::new(4096);
    /// # let _ = ln;
    /// ```
    pub fn new(normalized_len: usize) -> Self {
        Self {
            normalized_len,
            eps: 1e-5,
            weight: None,
            bias: None,
        }
    }

    /// Sets eps (checked by the first call: finite and ≥ 0).
    ///
    /// # Example
    /// ```
    /// let ln = simdnorm::LayerNorm::<f64>::new(8).eps(1e-6);
    /// # let _ = ln;
    /// ```
    pub fn eps(self, eps: f64) -> Self {
        Self { eps, ..self }
    }

    /// Sets the per-feature weight (γ), `normalized_len` values.
    ///
    /// # Example
    /// ```
    /// let w = [2.0f32; 8];
    /// let ln = simdnorm::LayerNorm::new(8).weight(&w);
    /// # let _ = ln;
    /// ```
    pub fn weight(self, weight: &'a [T]) -> Self {
        Self {
            weight: Some(weight),
            ..self
        }
    }

    /// Sets the per-feature bias (β), `normalized_len` values.
    ///
    /// # Example
    /// ```
    /// let b = [0.5f32; 8];
    /// let ln = simdnorm::LayerNorm::new(8).bias(&b);
    /// # let _ = ln;
    /// ```
    pub fn bias(self, bias: &'a [T]) -> Self {
        Self {
            bias: Some(bias),
            ..self
        }
    }

    /// Checks the configuration against an input of `len` values; returns the row count.
    fn check(&self, len: usize) -> Result<usize, NormError> {
        let rows = rows(len, self.normalized_len)?;
        check_eps(self.eps)?;
        check_param("weight", self.weight, self.normalized_len)?;
        check_param("bias", self.bias, self.normalized_len)?;
        Ok(rows)
    }

    /// Normalizes every row of `x` into `y`.
    ///
    /// # Errors
    /// [`NormError::ZeroLength`] for `normalized_len == 0`, [`NormError::NotAMultiple`] if
    /// `x.len()` is not a multiple of it, [`NormError::InvalidEps`],
    /// [`NormError::LengthMismatch`] for a weight, bias or `y` of the wrong length. Nothing is
    /// written on `Err`.
    ///
    /// # Example
    /// ```
    /// let x = [1.0f32, 3.0];
    /// let mut y = [0.0f32; 2];
    /// simdnorm::LayerNorm::new(2).eps(0.0).forward(&x, &mut y)?;
    /// assert_eq!(y, [-1.0, 1.0]);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward(&self, x: &[T], y: &mut [T]) -> Result<(), NormError> {
        self.check(x.len())?;
        check_len("y", x.len(), y.len())?;
        run_rows(
            self,
            Some(x),
            RowsMut::new(self.normalized_len, y, None, None, None),
        );
        Ok(())
    }

    /// Normalizes every row of `x` in place.
    ///
    /// # Errors
    /// As [`LayerNorm::forward`].
    ///
    /// # Example
    /// ```
    /// let mut x = [2.0f64, 4.0, 6.0];
    /// simdnorm::LayerNorm::new(3).eps(0.0).forward_in_place(&mut x)?;
    /// assert!((x[2] - 1.5f64.sqrt()).abs() < 1e-15 && x[1] == 0.0);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward_in_place(&self, x: &mut [T]) -> Result<(), NormError> {
        self.check(x.len())?;
        run_rows(
            self,
            None,
            RowsMut::new(self.normalized_len, x, None, None, None),
        );
        Ok(())
    }

    /// [`LayerNorm::forward`], also writing each row's mean and `rstd = 1/sqrt(var + eps)`
    /// (biased variance; 0 for a zero-variance row with eps = 0).
    ///
    /// # Errors
    /// As [`LayerNorm::forward`], and [`NormError::LengthMismatch`] if `mean` or `rstd` does
    /// not have one value per row.
    ///
    /// # Example
    /// ```
    /// let x = [1.0f32, 3.0, 10.0, 14.0];
    /// let (mut y, mut mean, mut rstd) = ([0.0f32; 4], [0.0f32; 2], [0.0f32; 2]);
    /// simdnorm::LayerNorm::new(2).eps(0.0).forward_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
    /// assert_eq!((mean, rstd), ([2.0, 12.0], [1.0, 0.5]));
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward_with_stats(
        &self,
        x: &[T],
        y: &mut [T],
        mean: &mut [T::Acc],
        rstd: &mut [T::Acc],
    ) -> Result<(), NormError> {
        let rows = self.check(x.len())?;
        check_len("y", x.len(), y.len())?;
        check_len("mean", rows, mean.len())?;
        check_len("rstd", rows, rstd.len())?;
        run_rows(
            self,
            Some(x),
            RowsMut::new(self.normalized_len, y, None, Some(mean), Some(rstd)),
        );
        Ok(())
    }

    /// The fused residual add of a transformer block: `residual += x` (rounded once to `T`),
    /// then `y = LayerNorm(residual)`, one pass over memory per row.
    ///
    /// A sum beyond `T`'s range is stored as ±∞ (as `T`'s own addition gives it) and makes
    /// its row's outputs NaN.
    ///
    /// # Errors
    /// As [`LayerNorm::forward`], and [`NormError::LengthMismatch`] if `residual` does not
    /// match `x`.
    ///
    /// # Example
    /// ```
    /// let x = [1.0f32, -1.0];
    /// let mut residual = [1.0f32, 3.0];
    /// let mut y = [0.0f32; 2];
    /// simdnorm::LayerNorm::new(2).eps(0.0).forward_add(&x, &mut residual, &mut y)?;
    /// assert_eq!((residual, y), ([2.0, 2.0], [0.0, 0.0]));
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward_add(&self, x: &[T], residual: &mut [T], y: &mut [T]) -> Result<(), NormError> {
        self.check(x.len())?;
        check_len("residual", x.len(), residual.len())?;
        check_len("y", x.len(), y.len())?;
        run_rows(
            self,
            Some(x),
            RowsMut::new(self.normalized_len, y, Some(residual), None, None),
        );
        Ok(())
    }

    /// Gradients of [`LayerNorm::forward`]: `dx` from the upstream gradient `dy`, the input
    /// `x` and the statistics `mean`, `rstd` of [`LayerNorm::forward_with_stats`]; with
    /// `dweight` / `dbias` given, `Σ_rows dy·(x − mean)·rstd` and `Σ_rows dy` per feature
    /// (overwritten, not accumulated).
    ///
    /// Per row, with `g = dy·w`, `x̂ = (x − mean)·rstd`:
    /// `dx = rstd·(g − mean(g) − x̂·mean(g·x̂))` (PyTorch's formula, `x − mean` kept apart).
    /// The cross-row sums run over fixed blocks of rows merged in a fixed order: bitwise the
    /// same for any number of threads. Allocates the per-block partials (2 × `normalized_len`
    /// values per block of ~128 Ki values) when dweight or dbias is asked for.
    ///
    /// # Errors
    /// As [`LayerNorm::forward`] for `x`'s shape and the parameters, and
    /// [`NormError::LengthMismatch`] if `dy` or `dx` does not match `x`, `mean` or `rstd`
    /// does not have one value per row, or `dweight` / `dbias` not `normalized_len` values.
    /// Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::LayerNorm;
    /// let ln = LayerNorm::new(2).eps(0.0);
    /// let x = [1.0f64, 3.0];
    /// let (mut y, mut mean, mut rstd) = ([0.0; 2], [0.0; 1], [0.0; 1]);
    /// ln.forward_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
    /// let (mut dx, mut dw, mut db) = ([0.0; 2], [0.0; 2], [0.0; 2]);
    /// ln.backward(&[1.0, 0.0], &x, &mean, &rstd, &mut dx, Some(&mut dw), Some(&mut db))?;
    /// assert_eq!(dx, [0.0, 0.0]);          // y = ±1 whatever x: no gradient
    /// assert_eq!((dw, db), ([-1.0, 0.0], [1.0, 0.0]));
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        dy: &[T],
        x: &[T],
        mean: &[T::Acc],
        rstd: &[T::Acc],
        dx: &mut [T],
        dweight: Option<&mut [T::Acc]>,
        dbias: Option<&mut [T::Acc]>,
    ) -> Result<(), NormError> {
        let rows = self.check(x.len())?;
        check_len("dy", x.len(), dy.len())?;
        check_len("dx", x.len(), dx.len())?;
        check_len("mean", rows, mean.len())?;
        check_len("rstd", rows, rstd.len())?;
        check_param("dweight", dweight.as_deref(), self.normalized_len)?;
        check_param("dbias", dbias.as_deref(), self.normalized_len)?;
        rows_backward(
            self.normalized_len,
            dy,
            x,
            self.weight,
            Some(mean),
            rstd,
            dx,
            dweight,
            dbias,
        );
        Ok(())
    }
}

impl<T: Element> LayerNorm<'_, T> {
    /// A row's statistics and scale plan.
    fn stats(&self, x: &[T]) -> Stats<T::Acc> {
        let (p, run) = row_shifted(x);
        Stats::new(p, run, self.eps)
    }
}

impl<T: Element> RowNorm<T> for LayerNorm<'_, T> {
    type Ahead = RowAhead<T::Acc>;

    fn row_len(&self) -> usize {
        self.normalized_len
    }

    /// One row: statistics, then the scale-and-shift step (`src = None`: in place).
    fn row(&self, src: Option<&[T]>, r: RowMut<'_, T, T::Acc>) {
        let stats = self.stats(src.unwrap_or(r.y));
        let y = r.put(Some(stats.mean), stats.rstd);
        normalize_row(src, y, self.weight, self.bias, stats.plan);
    }

    fn together(&self, four: bool) -> bool {
        // with weight and bias two or four at a time, with a weight only four; without
        // either, one at a time (four measured slower: 8.0 → 9.0 ms at 4096×4096)
        self.weight.is_some() && (four || self.bias.is_some())
    }

    fn along_from(&self) -> usize {
        // bf16 rows (whose loads widen by integer shifts) measured faster two at a time,
        // sharing the parameter streams: 4096×4096 w+b 61 → 57 % of copy along, 128×4096
        // 34 → 30 % (median of 6 roofline runs, A/B); f16 gains (62 → 68 %), f32 more
        if is_bf16::<T>() {
            usize::MAX
        } else {
            tuning::ALONG_MIN_LN
        }
    }

    fn row_along(
        &self,
        src: &[T],
        r: RowMut<'_, T, T::Acc>,
        ahead: Option<RowAhead<T::Acc>>,
        next: Option<&[T]>,
    ) -> Option<RowAhead<T::Acc>> {
        let stats = match ahead {
            Some(a) => {
                let (p, run) = row_shifted_ahead(src, a);
                Stats::new(p, run, self.eps)
            }
            None => self.stats(src),
        };
        let y = r.put(Some(stats.mean), stats.rstd);
        let (w, b, plan) = (self.weight, self.bias, stats.plan);
        match next {
            Some(next) => Some(normalize_row_along(src, y, w, b, plan, NextRow(next))),
            None => {
                normalize_row(Some(src), y, w, b, plan);
                None
            }
        }
    }

    fn rows<const R: usize>(&self, src: [&[T]; R], r: [RowMut<'_, T, T::Acc>; R]) {
        let st = src.map(|x| self.stats(x));
        let mut k = 0;
        let y = r.map(|r| {
            let s = &st[k];
            k += 1;
            r.put(Some(s.mean), s.rstd)
        });
        let plans = st.map(|s| s.plan);
        normalize_rows(src.map(Some), y, self.weight, self.bias, plans);
    }
}

/// Whether `T` is `half::bf16`.
#[cfg_attr(not(feature = "half"), allow(clippy::extra_unused_type_parameters))]
fn is_bf16<T: Element>() -> bool {
    #[cfg(feature = "half")]
    {
        std::any::TypeId::of::<T>() == std::any::TypeId::of::<half::bf16>()
    }
    #[cfg(not(feature = "half"))]
    {
        false
    }
}
