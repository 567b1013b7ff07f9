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

/// Reference LayerNorm of a `(rows, row_len)` matrix in f64: `(y, mean, rstd)` with
/// `rstd = 1/sqrt(var + eps)` (biased variance; 0 when `var + eps == 0`, the row then
/// normalizing to 0), `y = (x − mean)·rstd·w + b`. `w`, `b`: `row_len` values or empty.
///
/// # Example
/// ```
/// let (y, mean, rstd) = simdnorm::oracle::layer_norm(&[1.0f32, 3.0], 2, &[], &[], 0.0);
/// assert_eq!((y, mean, rstd), (vec![-1.0, 1.0], vec![2.0], vec![1.0]));
/// ```
pub fn layer_norm<T: Element>(
    x: &[T],
    row_len: usize,
    w: &[T],
    b: &[T],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut means, mut rstds) = (Vec::new(), Vec::new(), Vec::new());
    for row in x.chunks(row_len) {
        let m = moments(row);
        let var = m.m2 / row.len() as f64;
        let rstd = if var + eps == 0.0 {
            0.0
        } else {
            1.0 / (var + eps).sqrt()
        };
        for (j, v) in row.iter().enumerate() {
            let (wj, bj) = param(w, b, j);
            y.push((v.to_acc().to_f64() - m.mean) * rstd * wj + bj);
        }
        means.push(m.mean);
        rstds.push(rstd);
    }
    (y, means, rstds)
}

/// Reference RMSNorm in f64: `(y, rstd)`, `rstd = 1/sqrt(mean(x²) + eps)` (0 when that is
/// 1/0), `y = x·rstd·w`. `w`: `row_len` values or empty.
///
/// # Example
/// ```
/// let (y, rstd) = simdnorm::oracle::rms_norm(&[3.0f64, 4.0], 2, &[], 0.0);
/// assert_eq!(rstd, vec![1.0 / 12.5f64.sqrt()]);
/// assert_eq!(y[0], 3.0 / 12.5f64.sqrt());
/// ```
pub fn rms_norm<T: Element>(x: &[T], row_len: usize, w: &[T], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let (mut y, mut rstds) = (Vec::new(), Vec::new());
    for row in x.chunks(row_len) {
        let vals: Vec<f64> = row.iter().map(|v| v.to_acc().to_f64()).collect();
        let amax = vals.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let k: i32 = if amax > 2f64.powi(400) {
            -600
        } else if amax < 2f64.powi(-400) && amax > 0.0 {
            600
        } else {
            0
        };
        let s = 2f64.powi(k);
        let mut sq = Dd::ZERO;
        for v in &vals {
            let d = Dd::from(v * s);
            sq = sq.add(d.mul(d));
        }
        // mean(x²) + eps = (Σ(x·s)²/n + eps·s²) / s²
        let ms = sq.div(vals.len() as f64).to_f64();
        let rstd = if (eps * s * s).is_finite() {
            let d = ms + eps * s * s;
            if d == 0.0 { 0.0 } else { s / d.sqrt() }
        } else {
            // eps·s² beyond f64 (s = 2^600, eps > 2^-176): mean(x²) unscaled, rounded to
            // within 2^-1074 of itself, far below eps
            1.0 / (ms / s / s + eps).sqrt()
        };
        let rstd = if vals.iter().any(|v| !v.is_finite()) {
            f64::NAN
        } else {
            rstd
        };
        for (j, v) in vals.iter().enumerate() {
            y.push(v * rstd * param(w, &[] as &[T], j).0);
        }
        rstds.push(rstd);
    }
    (y, rstds)
}

/// `(w[j], b[j])`, 1 and 0 where absent (empty).
/// Reference statistics of one normalized set of values (a channel or a group).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RefSet {
    /// The mean.
    pub mean: f64,
    /// `1/sqrt(biased var + eps)`, 0 when `var + eps == 0` (PyTorch's `InvStd`).
    pub rstd: f64,
    /// The unbiased variance (NaN for fewer than 2 values), for running statistics.
    pub var_unbiased: f64,
}

/// Normalizes every element `i` with `set(i) = Some((s, c))` by the statistics of set `s`
/// and the weight/bias of channel `c`; elements with `None` output 0 (masked padding).
fn normalize_sets<T: Element>(
    x: &[T],
    sets: usize,
    set: impl Fn(usize) -> Option<(usize, usize)>,
    w: &[T],
    b: &[T],
    eps: f64,
) -> (Vec<f64>, Vec<RefSet>) {
    let mut vals = vec![Vec::new(); sets];
    for (i, v) in x.iter().enumerate() {
        if let Some((s, _)) = set(i) {
            vals[s].push(v.to_acc().to_f64());
        }
    }
    let stats: Vec<RefSet> = vals
        .iter()
        .map(|v| {
            let m = moments_f64(v);
            let var = m.m2 / v.len() as f64;
            let rstd = if var + eps == 0.0 {
                0.0
            } else {
                1.0 / (var + eps).sqrt()
            };
            RefSet {
                mean: m.mean,
                rstd,
                var_unbiased: m.variance(1),
            }
        })
        .collect();
    let y = x
        .iter()
        .enumerate()
        .map(|(i, v)| match set(i) {
            Some((s, c)) => {
                let (wc, bc) = param(w, b, c);
                (v.to_acc().to_f64() - stats[s].mean) * stats[s].rstd * wc + bc
            }
            None => 0.0,
        })
        .collect();
    (y, stats)
}

/// Reference BatchNorm training forward over `(n, c, hw)` data, channels-last when
/// `channels_last` (`(n, hw, c)`), optionally masked by sequence `lengths` (channels-first):
/// the normalized output and per-channel statistics of the batch. Empty `w`/`b`: none.
///
/// # Example
/// ```
/// let (y, st) = simdnorm::oracle::batch_norm(&[1.0f32, 3.0], 2, 1, 1, false, None, &[], &[], 0.0);
/// assert_eq!((y, st[0].mean, st[0].var_unbiased), (vec![-1.0, 1.0], 2.0, 2.0));
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    hw: usize,
    channels_last: bool,
    lengths: Option<&[usize]>,
    w: &[T],
    b: &[T],
    eps: f64,
) -> (Vec<f64>, Vec<RefSet>) {
    assert_eq!(x.len(), n * c * hw);
    normalize_sets(
        x,
        c,
        |i| {
            if channels_last {
                return Some((i % c, i % c));
            }
            let (sample, ch, p) = (i / (c * hw), (i / hw) % c, i % hw);
            lengths.is_none_or(|l| p < l[sample]).then_some((ch, ch))
        },
        w,
        b,
        eps,
    )
}

/// Reference GroupNorm forward over `(n, c, hw)` data: the output and the statistics of each
/// (sample, group) at index `i·groups + g`.
///
/// # Example
/// ```
/// let (y, st) = simdnorm::oracle::group_norm(&[1.0f64, 3.0, 5.0, 5.0], 1, 2, 2, 2, &[], &[], 0.0);
/// assert_eq!((y, st[1].rstd), (vec![-1.0, 1.0, 0.0, 0.0], 0.0));
/// ```
#[allow(clippy::too_many_arguments)]
pub fn group_norm<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    w: &[T],
    b: &[T],
    eps: f64,
) -> (Vec<f64>, Vec<RefSet>) {
    assert_eq!(x.len(), n * c * hw);
    let cpg = c / groups;
    normalize_sets(
        x,
        n * groups,
        |i| {
            let (sample, ch) = (i / (c * hw), (i / hw) % c);
            Some((sample * groups + ch / cpg, ch))
        },
        w,
        b,
        eps,
    )
}

/// Reference gradients over sets (rows, channels, groups): element `i` belongs to set
/// `set(i).0` with parameter channel `set(i).1`; `stats[s] = (μ, r)` (μ = 0 and `center`
/// false for RMSNorm). Returns `(dx, dweight, dbias)` in f64, per channel `0..channels`,
/// sums in double-double.
#[allow(clippy::too_many_arguments)]
fn backward_sets<T: Element>(
    dy: &[T],
    x: &[T],
    channels: usize,
    set: impl Fn(usize) -> (usize, usize),
    stats: &[(f64, f64)],
    w: &[T],
    center: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let f = |v: &T| v.to_acc().to_f64();
    let wc = |c: usize| w.get(c).map_or(1.0, f);
    let (mut s1, mut s2, mut cnt) = (
        vec![Dd::ZERO; stats.len()],
        vec![Dd::ZERO; stats.len()],
        vec![0usize; stats.len()],
    );
    let (mut dw, mut db) = (vec![Dd::ZERO; channels], vec![Dd::ZERO; channels]);
    for i in 0..x.len() {
        let (s, c) = set(i);
        let (mu, r) = stats[s];
        let g = f(&dy[i]) * wc(c);
        let xhat = (f(&x[i]) - mu) * r;
        s1[s] = s1[s].add(Dd::from(g));
        s2[s] = s2[s].add(Dd::from(g).mul(Dd::from(xhat)));
        cnt[s] += 1;
        dw[c] = dw[c].add(Dd::from(f(&dy[i])).mul(Dd::from(xhat)));
        db[c] = db[c].add(Dd::from(f(&dy[i])));
    }
    let dx = (0..x.len())
        .map(|i| {
            let (s, c) = set(i);
            let (mu, r) = stats[s];
            let n = cnt[s] as f64;
            let g = f(&dy[i]) * wc(c);
            let xhat = (f(&x[i]) - mu) * r;
            let m1 = if center { s1[s].to_f64() / n } else { 0.0 };
            r * (g - m1 - xhat * s2[s].to_f64() / n)
        })
        .collect();
    (
        dx,
        dw.iter().map(|v| v.to_f64()).collect(),
        db.iter().map(|v| v.to_f64()).collect(),
    )
}

/// Reference LayerNorm backward (`RmsNorm` with `mean = None`) for rows of `row_len`, given
/// the statistics the forward pass returned: `(dx, dweight, dbias)`.
///
/// # Example
/// ```
/// let (dx, dw, db) = simdnorm::oracle::layer_norm_backward(
///     &[1.0f64, 0.0], &[1.0, 3.0], 2, &[], Some(&[2.0]), &[1.0]);
/// assert_eq!((dx, dw, db), (vec![0.0, 0.0], vec![-1.0, 0.0], vec![1.0, 0.0]));
/// ```
pub fn layer_norm_backward<T: Element>(
    dy: &[T],
    x: &[T],
    row_len: usize,
    w: &[T],
    mean: Option<&[f64]>,
    rstd: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let stats: Vec<(f64, f64)> = rstd
        .iter()
        .enumerate()
        .map(|(i, r)| (mean.map_or(0.0, |m| m[i]), *r))
        .collect();
    backward_sets(
        dy,
        x,
        row_len,
        |i| (i / row_len, i % row_len),
        &stats,
        w,
        mean.is_some(),
    )
}

/// Reference BatchNorm training backward over `(n, c, hw)` data (channels-last when
/// `channels_last`), given the saved per-channel mean and invstd: `(dx, dweight, dbias)`.
///
/// # Example
/// ```
/// let (dx, dw, db) = simdnorm::oracle::batch_norm_backward(
///     &[1.0f32, 2.0], &[1.0, 3.0], 2, 1, 1, false, &[], &[2.0], &[1.0]);
/// assert_eq!((dx, dw, db), (vec![0.0, 0.0], vec![1.0], vec![3.0]));
/// ```
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward<T: Element>(
    dy: &[T],
    x: &[T],
    n: usize,
    c: usize,
    hw: usize,
    channels_last: bool,
    w: &[T],
    mean: &[f64],
    invstd: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(x.len(), n * c * hw);
    let stats: Vec<(f64, f64)> = mean.iter().zip(invstd).map(|(m, r)| (*m, *r)).collect();
    let ch = |i: usize| if channels_last { i % c } else { (i / hw) % c };
    backward_sets(dy, x, c, |i| (ch(i), ch(i)), &stats, w, true)
}

/// Reference GroupNorm backward over `(n, c, hw)` data, given the per-(sample, group) mean
/// and rstd: `(dx, dweight, dbias)`.
///
/// # Example
/// ```
/// let (dx, _, db) = simdnorm::oracle::group_norm_backward(
///     &[1.0f64, 1.0], &[1.0, 3.0], 1, 1, 2, 1, &[], &[2.0], &[1.0]);
/// assert_eq!((dx, db), (vec![0.0, 0.0], vec![2.0]));
/// ```
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<T: Element>(
    dy: &[T],
    x: &[T],
    n: usize,
    c: usize,
    hw: usize,
    groups: usize,
    w: &[T],
    mean: &[f64],
    rstd: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    assert_eq!(x.len(), n * c * hw);
    let stats: Vec<(f64, f64)> = mean.iter().zip(rstd).map(|(m, r)| (*m, *r)).collect();
    let cpg = c / groups;
    backward_sets(
        dy,
        x,
        c,
        |i| {
            let (sample, ch) = (i / (c * hw), (i / hw) % c);
            (sample * groups + ch / cpg, ch)
        },
        &stats,
        w,
        true,
    )
}

fn param<T: Element>(w: &[T], b: &[T], j: usize) -> (f64, f64) {
    (
        w.get(j).map_or(1.0, |v| v.to_acc().to_f64()),
        b.get(j).map_or(0.0, |v| v.to_acc().to_f64()),
    )
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
