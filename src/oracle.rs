//! Scalar reference implementations: dumb, slow, obviously correct.
//!
//! Every statistic the kernels compute has a reference here. Values are widened to `f64`
//! (exact for every `Element`), summed in double-double arithmetic (a 106-bit significand,
//! via error-free `two_sum` / fma products), and rounded to `f64` once at the end, so the
//! reference is far more accurate than any kernel under test, for f64 input as well. Data whose
//! squares would overflow f64 is scaled by a power of two first (exact).
//!
//! This module shares no code with the kernels (BLAKE3's `reference_impl` idea): a bug in the
//! kernels' tail handling or merge cannot hide by being in the reference too.

use crate::{Element, Float};

/// A double-double number `hi + lo`, `|lo| ≤ ulp(hi)/2`.
#[derive(Clone, Copy, Debug)]
struct Dd {
    hi: f64,
    lo: f64,
}

impl Dd {
    const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };

    /// Knuth's error-free sum.
    fn two_sum(a: f64, b: f64) -> Dd {
        let s = a + b;
        let bb = s - a;
        let e = (a - (s - bb)) + (b - bb);
        Dd { hi: s, lo: e }
    }

    fn add(self, o: Dd) -> Dd {
        let s = Dd::two_sum(self.hi, o.hi);
        let t = Dd::two_sum(self.lo, o.lo);
        let s = Dd::two_sum(s.hi, s.lo + t.hi);
        Dd::two_sum(s.hi, s.lo + t.lo)
    }

    fn from(a: f64) -> Dd {
        Dd { hi: a, lo: 0.0 }
    }

    fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }

    fn mul(self, o: Dd) -> Dd {
        let p = self.hi * o.hi;
        let e = self.hi.mul_add(o.hi, -p);
        let e = e + (self.hi * o.lo + self.lo * o.hi);
        Dd::two_sum(p, e)
    }

    /// `self / n` for an integer-valued `n` (exact in f64).
    fn div(self, n: f64) -> Dd {
        let q1 = self.hi / n;
        // remainder r = self − q1·n, exactly
        let r = self.add(Dd::from(q1).mul(Dd::from(n)).neg());
        let q2 = r.hi / n;
        Dd::two_sum(q1, q2)
    }

    fn to_f64(self) -> f64 {
        self.hi + self.lo
    }
}

/// Reference moments, in f64 whatever the element type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefMoments {
    /// Number of values.
    pub count: u64,
    /// Mean, correctly rounded to f64 up to ~2⁻¹⁰⁰ relative.
    pub mean: f64,
    /// `Σ (x − mean)²` with the exact mean.
    pub m2: f64,
}

impl RefMoments {
    /// `m2 / (count − ddof)`, NaN when `count ≤ ddof`.
    ///
    /// # Example
    /// ```
    /// let r = simdnorm::oracle::moments(&[1.0f32, 2.0, 3.0]);
    /// assert_eq!(r.variance(1), 1.0);
    /// ```
    pub fn variance(&self, ddof: u32) -> f64 {
        if self.count <= u64::from(ddof) {
            f64::NAN
        } else {
            self.m2 / (self.count - u64::from(ddof)) as f64
        }
    }
}

/// Reference mean and `m2` of `x`: count 0 and NaN for empty `x`; NaN mean and m2 if `x`
/// holds a NaN or ±∞.
///
/// # Example
/// ```
/// let r = simdnorm::oracle::moments(&[1.0e8f64 + 1.0, 1.0e8 + 2.0, 1.0e8 + 3.0]);
/// assert_eq!((r.mean, r.m2), (1.0e8 + 2.0, 2.0));
/// ```
pub fn moments<T: Element>(x: &[T]) -> RefMoments {
    let vals: Vec<f64> = x.iter().map(|v| v.to_acc().to_f64()).collect();
    moments_f64(&vals)
}

/// [`moments`] of an iterator of f64 values (used for strided columns).
fn moments_f64(vals: &[f64]) -> RefMoments {
    let count = vals.len() as u64;
    if vals.is_empty() {
        return RefMoments {
            count,
            mean: f64::NAN,
            m2: f64::NAN,
        };
    }
    if vals.iter().any(|v| !v.is_finite()) {
        return RefMoments {
            count,
            mean: f64::NAN,
            m2: f64::NAN,
        };
    }
    // Scale by a power of two so that the squares (times the count) cannot overflow.
    let amax = vals.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let k: i32 = if amax > 2f64.powi(400) { -600 } else { 0 };
    let s = 2f64.powi(k);
    let n = vals.len() as f64;
    let mut sum = Dd::ZERO;
    for v in vals {
        sum = sum.add(Dd::from(v * s));
    }
    let mean = sum.div(n);
    let mut m2 = Dd::ZERO;
    for v in vals {
        let d = Dd::from(v * s).add(mean.neg());
        m2 = m2.add(d.mul(d));
    }
    let u = 2f64.powi(-k);
    RefMoments {
        count,
        mean: mean.to_f64() * u,
        m2: m2.to_f64() * u * u,
    }
}

/// Reference moments of each row of a `(rows, row_len)` matrix (`row_len > 0`).
///
/// # Example
/// ```
/// let r = simdnorm::oracle::row_moments(&[1.0f32, 3.0, 5.0, 5.0], 2);
/// assert_eq!((r[0].mean, r[1].m2), (2.0, 0.0));
/// ```
pub fn row_moments<T: Element>(x: &[T], row_len: usize) -> Vec<RefMoments> {
    x.chunks(row_len).map(moments).collect()
}

/// Reference moments of each column of a `(rows, row_len)` matrix (`row_len > 0`).
///
/// # Example
/// ```
/// let r = simdnorm::oracle::col_moments(&[1.0f32, 3.0, 5.0, 3.0], 2);
/// assert_eq!((r[0].mean, r[1].m2), (3.0, 0.0));
/// ```
pub fn col_moments<T: Element>(x: &[T], row_len: usize) -> Vec<RefMoments> {
    (0..row_len)
        .map(|c| {
            let col: Vec<f64> = x
                .iter()
                .skip(c)
                .step_by(row_len)
                .map(|v| v.to_acc().to_f64())
                .collect();
            moments_f64(&col)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_cases() {
        // 0..n has mean (n−1)/2 and population variance (n²−1)/12, exact in f64.
        for n in [1usize, 2, 3, 17, 1000] {
            let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
            let r = moments(&x);
            assert_eq!(r.mean, (n as f64 - 1.0) / 2.0);
            assert_eq!(r.variance(0), (n as f64 * n as f64 - 1.0) / 12.0);
        }
        // ill-conditioned: 1e15 + {0, 1, 2}
        let r = moments(&[1e15f64, 1e15 + 1.0, 1e15 + 2.0]);
        assert_eq!((r.mean, r.m2), (1e15 + 1.0, 2.0));
        // overflowing squares
        let r = moments(&[f64::MAX, -f64::MAX]);
        assert_eq!(r.mean, 0.0);
        assert_eq!(r.m2, f64::INFINITY);
        let r = moments(&[f64::MAX, f64::MAX]);
        assert_eq!((r.mean, r.m2), (f64::MAX, 0.0));
    }

    #[test]
    fn non_finite_gives_nan() {
        assert!(moments(&[1.0f32, f32::INFINITY]).mean.is_nan());
        assert!(moments(&[f64::NAN]).m2.is_nan());
        assert_eq!(moments::<f32>(&[]).count, 0);
    }

    #[test]
    fn dd_division_is_accurate() {
        // 1/3 in double-double has a residual below 2^-104.
        let q = Dd::from(1.0).div(3.0);
        let r = q.mul(Dd::from(3.0)).add(Dd::from(-1.0));
        assert!(r.to_f64().abs() < 2f64.powi(-104));
    }
}
