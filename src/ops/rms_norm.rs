//! RMSNorm forward: per row, the mean square (`moments::mean_square`, one read of the row),
//! then the scaling step from L1/L2 (`ops::normalize`).

use super::backward::rows_backward;
use super::{
    NextSquares, Plan, RowMut, RowNorm, RowsMut, check_eps, check_param, rows, run_rows, scale_row,
    scale_row_along, scale_rows,
};
use crate::element::{Element, Float};
use crate::error::{NormError, check_len};
use crate::moments::{mean_square, mean_square_from};
use crate::tuning;

/// Root-mean-square normalization over rows of `normalized_len` values (PyTorch
/// `nn.RMSNorm`): `y = x / sqrt(mean(x²) + eps) · weight`.
///
/// eps defaults to the machine epsilon of `T::Acc` (`f32::EPSILON` for f32, f16 and
/// bf16; `f64::EPSILON` for f64), as PyTorch's code does. Rows whose squares overflow or
/// underflow are rescaled exactly; a NaN or ±∞ makes its row NaN.
///
/// # Example
/// ```
/// use simdnorm::RmsNorm;
/// let x = [3.0f32, 4.0];
/// let mut y = [0.0f32; 2];
/// RmsNorm::new(2).eps(0.0).forward(&x, &mut y)?;
/// let r = 12.5f32.sqrt();
/// assert!((y[0] - 3.0 / r).abs() < 1e-6 && (y[1] - 4.0 / r).abs() < 1e-6);
/// # Ok::<(), simdnorm::NormError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RmsNorm<'a, T> {
    normalized_len: usize,
    eps: Option<f64>,
    weight: Option<&'a [T]>,
}

impl<'a, T: Element> RmsNorm<'a, T> {
    /// RMSNorm over rows of `normalized_len` values, default eps, no weight.
    ///
    /// # Example
    /// ```
    /// let rms = simdnorm::RmsNorm::<f32>::new(4096);
    /// # let _ = rms;
    /// ```
    pub fn new(normalized_len: usize) -> Self {
        Self {
            normalized_len,
            eps: None,
            weight: None,
        }
    }

    /// Sets eps (checked by the first call: finite and ≥ 0). Without it, eps is the machine
    /// epsilon of `T::Acc`.
    ///
    /// # Example
    /// ```
    /// let rms = simdnorm::RmsNorm::<f32>::new(8).eps(1e-6);
    /// # let _ = rms;
    /// ```
    pub fn eps(self, eps: f64) -> Self {
        Self {
            eps: Some(eps),
            ..self
        }
    }

    /// Sets the per-feature weight, `normalized_len` values.
    ///
    /// # Example
    /// ```
    /// let w = [1.5f32; 8];
    /// let rms = simdnorm::RmsNorm::new(8).weight(&w);
    /// # let _ = rms;
    /// ```
    pub fn weight(self, weight: &'a [T]) -> Self {
        Self {
            weight: Some(weight),
            ..self
        }
    }

    fn eps_value(&self) -> f64 {
        self.eps.unwrap_or(T::Acc::EPSILON.to_f64())
    }

    fn check(&self, len: usize) -> Result<usize, NormError> {
        let rows = rows(len, self.normalized_len)?;
        check_eps(self.eps_value())?;
        check_param("weight", self.weight, self.normalized_len)?;
        Ok(rows)
    }

    /// Normalizes every row of `x` into `y`.
    ///
    /// # Errors
    /// [`NormError::ZeroLength`] for `normalized_len == 0`, [`NormError::NotAMultiple`],
    /// [`NormError::InvalidEps`], [`NormError::LengthMismatch`] for a weight or `y` of the
    /// wrong length. Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// let mut y = [0.0f64; 2];
    /// simdnorm::RmsNorm::new(2).eps(0.0).forward(&[1.0f64, -1.0], &mut y)?;
    /// assert_eq!(y, [1.0, -1.0]);
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
    /// As [`RmsNorm::forward`].
    ///
    /// # Example
    /// ```
    /// let mut x = [2.0f32, -2.0];
    /// simdnorm::RmsNorm::new(2).eps(0.0).forward_in_place(&mut x)?;
    /// assert_eq!(x, [1.0, -1.0]);
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

    /// [`RmsNorm::forward`], also writing each row's `rstd = 1/sqrt(mean(x²) + eps)`.
    ///
    /// # Errors
    /// As [`RmsNorm::forward`], and [`NormError::LengthMismatch`] if `rstd` does not have one
    /// value per row.
    ///
    /// # Example
    /// ```
    /// let (mut y, mut rstd) = ([0.0f32; 2], [0.0f32; 1]);
    /// simdnorm::RmsNorm::new(2).eps(0.0).forward_with_stats(&[3.0f32, 4.0], &mut y, &mut rstd)?;
    /// assert_eq!(rstd[0], 1.0 / 12.5f32.sqrt());
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn forward_with_stats(
        &self,
        x: &[T],
        y: &mut [T],
        rstd: &mut [T::Acc],
    ) -> Result<(), NormError> {
        let rows = self.check(x.len())?;
        check_len("y", x.len(), y.len())?;
        check_len("rstd", rows, rstd.len())?;
        run_rows(
            self,
            Some(x),
            RowsMut::new(self.normalized_len, y, None, None, Some(rstd)),
        );
        Ok(())
    }

    /// `residual += x` (rounded once to `T`), then `y = RMSNorm(residual)`, one pass over
    /// memory per row.
    ///
    /// A sum beyond `T`'s range is stored as ±∞ (as `T`'s own addition gives it) and makes
    /// its row's outputs NaN.
    ///
    /// # Errors
    /// As [`RmsNorm::forward`], and [`NormError::LengthMismatch`] if `residual` does not
    /// match `x`.
    ///
    /// # Example
    /// ```
    /// let mut residual = [1.0f32, -3.0];
    /// let mut y = [0.0f32; 2];
    /// simdnorm::RmsNorm::new(2).eps(0.0).forward_add(&[1.0f32, 1.0], &mut residual, &mut y)?;
    /// assert_eq!((residual, y), ([2.0, -2.0], [1.0, -1.0]));
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

    /// Gradients of [`RmsNorm::forward`]: `dx` from `dy`, `x` and the `rstd` of
    /// [`RmsNorm::forward_with_stats`]; with `dweight` given, `Σ_rows dy·x·rstd` per feature
    /// (overwritten). Per row, with `g = dy·w`, `x̂ = x·rstd`:
    /// `dx = rstd·(g − x̂·mean(g·x̂))`. Cross-row sums as in [`crate::LayerNorm::backward`]
    /// (fixed blocks, fixed merge order).
    ///
    /// # Errors
    /// As [`RmsNorm::forward`] for `x`'s shape and the parameters, and
    /// [`NormError::LengthMismatch`] if `dy` or `dx` does not match `x`, `rstd` does not have
    /// one value per row or `dweight` not `normalized_len` values. Nothing is written on `Err`.
    ///
    /// # Example
    /// ```
    /// use simdnorm::RmsNorm;
    /// let rms = RmsNorm::new(2).eps(0.0);
    /// let x = [3.0f64, 4.0];
    /// let (mut y, mut rstd) = ([0.0; 2], [0.0; 1]);
    /// rms.forward_with_stats(&x, &mut y, &mut rstd)?;
    /// let (mut dx, mut dw) = ([0.0; 2], [0.0; 2]);
    /// rms.backward(&[1.0, 1.0], &x, &rstd, &mut dx, Some(&mut dw))?;
    /// assert_eq!(rstd[0], 1.0 / 12.5f64.sqrt());
    /// assert!((dw[0] - 3.0 * rstd[0]).abs() < 1e-15);
    /// # Ok::<(), simdnorm::NormError>(())
    /// ```
    pub fn backward(
        &self,
        dy: &[T],
        x: &[T],
        rstd: &[T::Acc],
        dx: &mut [T],
        dweight: Option<&mut [T::Acc]>,
    ) -> Result<(), NormError> {
        let rows = self.check(x.len())?;
        check_len("dy", x.len(), dy.len())?;
        check_len("dx", x.len(), dx.len())?;
        check_len("rstd", rows, rstd.len())?;
        check_param("dweight", dweight.as_deref(), self.normalized_len)?;
        rows_backward(
            self.normalized_len,
            dy,
            x,
            self.weight,
            None,
            rstd,
            dx,
            dweight,
            None,
        );
        Ok(())
    }
}

impl<T: Element> RmsNorm<'_, T> {
    /// A row's scale plan and rstd (NaN for a row holding NaN or ±∞).
    fn plan(&self, x: &[T]) -> (Plan<T::Acc>, T::Acc) {
        self.plan_of(mean_square(x))
    }

    /// [`RmsNorm::plan`] from the row's mean square.
    fn plan_of(&self, ms: Option<(T::Acc, i32)>) -> (Plan<T::Acc>, T::Acc) {
        match ms {
            Some((q, k)) => Plan::new(T::Acc::ZERO, T::Acc::ZERO, q, k, self.eps_value()),
            None => (Plan::nan(), T::Acc::NAN),
        }
    }
}

impl<T: Element> RowNorm<T> for RmsNorm<'_, T> {
    /// The row's `Σ x²` ([`crate::moments::squares_ahead`]).
    type Ahead = T::Acc;

    fn row_len(&self) -> usize {
        self.normalized_len
    }

    fn row(&self, src: Option<&[T]>, r: RowMut<'_, T, T::Acc>) {
        let (plan, rstd) = self.plan(src.unwrap_or(r.y));
        let y = r.put(None, rstd);
        scale_row(src, y, self.weight, plan);
    }

    fn together(&self, four: bool) -> bool {
        // four at a time only (two at a time measured neutral to 18 % slower)
        four
    }

    fn rows<const R: usize>(&self, src: [&[T]; R], r: [RowMut<'_, T, T::Acc>; R]) {
        let st = src.map(|x| self.plan(x));
        let mut k = 0;
        let y = r.map(|r| {
            let rstd = st[k].1;
            k += 1;
            r.put(None, rstd)
        });
        scale_rows(src, y, self.weight, st.map(|s| s.0));
    }

    fn along_from(&self) -> usize {
        tuning::ALONG_MIN_RMS
    }

    fn row_along(
        &self,
        src: &[T],
        r: RowMut<'_, T, T::Acc>,
        ahead: Option<T::Acc>,
        next: Option<&[T]>,
    ) -> Option<T::Acc> {
        let (plan, rstd) = match ahead {
            Some(sq) => self.plan_of(mean_square_from(src, sq)),
            None => self.plan(src),
        };
        let y = r.put(None, rstd);
        match next {
            Some(next) => Some(scale_row_along(
                Some(src),
                y,
                self.weight,
                plan,
                NextSquares(next),
            )),
            None => {
                scale_row(Some(src), y, self.weight, plan);
                None
            }
        }
    }
}
