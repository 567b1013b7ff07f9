//! Fuzz target bodies (`fuzz/fuzz_targets/*.rs` call these; `tests/fuzz_corpus.rs` replays
//! the corpus through them on stable). Not part of the API: hidden from the docs.
//!
//! Each body decodes a call from the bytes: shape, eps, momentum and method from the leading
//! bytes, the floats from the rest (biased toward ±0, subnormals, ±huge, NaN, ±∞ and
//! constants), then checks the contract of API.md:
//! * a valid call returns `Ok` and agrees with [`crate::oracle`] within the documented
//!   tolerance (the golden rule `K·ε·s`, `s` the element's condition scale);
//! * an invalid call returns `Err` and leaves every output bitwise untouched;
//! * NaN appears exactly in the rows / channels / groups holding a NaN or ±∞, no others.
//!
//! A violation panics (that is what the fuzzer reports).

use crate::{
    BatchNorm, Element, Float, GroupNorm, LayerNorm, Layout, Moments, NormError, RmsNorm,
    RunningStats, Welford, oracle, two_pass, welford,
};

/// Bytes consumed from the front; 0 once exhausted.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn below(&mut self, n: usize) -> usize {
        self.u8() as usize % n.max(1)
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// eps: mostly valid, sometimes negative, NaN or infinite.
    fn eps(&mut self) -> f64 {
        [
            1e-5,
            0.0,
            1e-12,
            1.0,
            1e-3,
            1e30,
            -1e-5,
            f64::NAN,
            f64::INFINITY,
        ][self.below(9)]
    }

    /// One value around `base`, biased toward special values.
    fn float(&mut self, base: f32, specials: bool) -> f32 {
        let t = self.u8();
        match t {
            0 => 0.0,
            1 => -0.0,
            2 => f32::MIN_POSITIVE,
            3 => 1.0e-45,
            4 if specials => 3.0e38,
            5 if specials => -3.0e38,
            6 if specials => f32::NAN,
            7 if specials => f32::INFINITY,
            8 if specials => f32::NEG_INFINITY,
            9..=15 => base,
            16..=191 => base + base.abs().max(1.0) * 1e-3 * (t as f32 - 100.0),
            _ => {
                let v = f32::from_bits(self.u32());
                if specials || v.is_finite() { v } else { base }
            }
        }
    }

    /// `n` values: all special-biased, a constant, or a shifted and scaled noise.
    fn floats(&mut self, n: usize, specials: bool) -> Vec<f32> {
        let mode = self.below(4);
        let bases = [0.0f32, 1.0, 1.0e4, 1.0e6, 1.0e30, 1.0e-30, 3.0e38, -7.5];
        let base = bases[self.below(bases.len())];
        let scale = [1.0f32, 1.0e-3, 1.0e-20, 1.0e20][self.below(4)];
        match mode {
            0 => (0..n).map(|_| self.float(base, specials)).collect(),
            1 => vec![base; n],
            _ => (0..n)
                .map(|_| {
                    let v = base + scale.min(base.abs().max(1.0)) * (self.u8() as f32 - 127.5);
                    if specials && self.u8() == 255 {
                        f32::NAN
                    } else {
                        v
                    }
                })
                .collect(),
        }
    }

    /// Weights and biases: finite, |·| ≤ 1e6, so outputs cannot overflow.
    fn params(&mut self, n: usize) -> Vec<f32> {
        self.floats(n, false)
            .into_iter()
            .map(|v| {
                if v.is_finite() {
                    v.clamp(-1e6, 1e6)
                } else {
                    1.0
                }
            })
            .collect()
    }

    /// [`Bytes::floats`] of a length that is `right` or one off when `bad`.
    fn floats_len(&mut self, right: usize, bad: bool, specials: bool) -> Vec<f32> {
        let n = self.len(right, bad);
        self.floats(n, specials)
    }

    /// [`Bytes::params`] of a length that is `right` or one off when `bad`.
    fn params_len(&mut self, right: usize, bad: bool) -> Vec<f32> {
        let n = self.len(right, bad);
        self.params(n)
    }

    /// A length that is right, or one off when `bad`.
    fn len(&mut self, right: usize, bad: bool) -> usize {
        if bad && self.u8().is_multiple_of(2) {
            right + 1
        } else if bad && right > 0 {
            right - 1
        } else {
            right
        }
    }
}

const SENTINEL: f32 = -1234.5;

/// Bitwise equal, any NaN equal to any NaN (payloads follow the input's NaN).
fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan()))
}

fn untouched(bufs: &[&[f32]]) -> bool {
    bufs.iter()
        .all(|b| b.iter().all(|v| v.to_bits() == SENTINEL.to_bits()))
}

/// K of the golden rule: forward outputs and statistics, backward outputs.
const K: f64 = 8.0;
const KB: f64 = 16.0;
const E: f64 = f32::EPSILON as f64;
/// Absolute slack for results in f32's subnormal range (a few roundings to 2^-149).
const SUB: f64 = 8.0 * 1.401_298_464_324_817e-45;

/// The sets of one op over `x`: set and parameter channel of each element (`None`: masked
/// padding, output exactly 0), and whether a set holds a NaN or ±∞.
struct Sets<'a> {
    count: usize,
    of: &'a dyn Fn(usize) -> Option<usize>,
    ch: &'a dyn Fn(usize) -> usize,
}

impl Sets<'_> {
    fn nonfinite(&self, x: &[f32]) -> Vec<bool> {
        let mut bad = vec![false; self.count];
        for (i, v) in x.iter().enumerate() {
            if let Some(s) = (self.of)(i) {
                bad[s] |= !v.is_finite();
            }
        }
        bad
    }

    /// σ of each set around the reference means.
    fn sigma(&self, x: &[f32], mean: &[f64]) -> Vec<f64> {
        let mut acc = vec![(0.0f64, 0usize); self.count];
        for (i, v) in x.iter().enumerate() {
            if let Some(s) = (self.of)(i) {
                acc[s].0 += (*v as f64 - mean[s]).powi(2);
                acc[s].1 += 1;
            }
        }
        acc.iter()
            .map(|(q, n)| (q / (*n).max(1) as f64).sqrt())
            .collect()
    }
}

/// The type outputs are stored in: one ulp of it, at most `rel·|v|` for normal `v` and the
/// subnormal spacing `abs` below, and its largest finite value `max` (f32 outputs: [`F32`],
/// no rounding beyond the f32 kernel's, which the golden rule's `K·ε` holds).
#[derive(Clone, Copy)]
struct Out {
    rel: f64,
    abs: f64,
    max: f64,
}

/// f32 outputs.
const F32: Out = Out {
    rel: 0.0,
    abs: 0.0,
    max: f64::INFINITY,
};

/// f32 values stored as `T` (rounded to nearest).
fn to_t<T: Element<Acc = f32>>(v: &[f32]) -> Vec<T> {
    v.iter().map(|v| T::from_acc(*v)).collect()
}

/// `T` values as f32 (exact).
fn to_f<T: Element<Acc = f32>>(v: &[T]) -> Vec<f32> {
    v.iter().map(|v| v.to_acc()).collect()
}

/// `what` with the storage type named (f32 or a half type from [`half`]).
fn label<T>(what: &str) -> String {
    let ty = std::any::type_name::<T>();
    format!("{what} {}", ty.rsplit("::").next().unwrap_or(ty))
}

/// `T` slices bitwise equal, any NaN equal to any NaN.
fn same<T: Element<Acc = f32>>(a: &[T], b: &[T]) -> bool {
    same_bits(&to_f(a), &to_f(b))
}

/// Every value still the sentinel as stored in `T`.
fn unwritten<T: Element<Acc = f32>>(v: &[T]) -> bool {
    let s = T::from_acc(SENTINEL).to_acc().to_bits();
    v.iter().all(|v| v.to_acc().to_bits() == s)
}

/// `residual + x`, rounded once to `T` (what `forward_add` leaves in the residual).
fn add<T: Element<Acc = f32>>(residual: &[T], x: &[T]) -> Vec<T> {
    residual
        .iter()
        .zip(x)
        .map(|(r, v)| T::from_acc(r.to_acc() + v.to_acc()))
        .collect()
}

impl Out {
    /// The output type whose machine epsilon (one ulp of 1), smallest subnormal and largest
    /// finite value are these.
    #[cfg(feature = "half")]
    fn of<T: Element<Acc = f32>>(eps: T, sub: T, max: T) -> Self {
        let f = |v: T| f64::from(v.to_acc());
        Self {
            rel: f(eps),
            abs: f(sub),
            max: f(max),
        }
    }

    /// Weights and biases for outputs of this type: as decoded for f32, within ±1000 for
    /// a half type (so that f16 outputs stay finite: |x̂| ≤ √(n − 1)).
    fn params<T: Element<Acc = f32>>(self, p: Vec<f32>) -> Vec<T> {
        let lim = if self.max.is_finite() { 1e3 } else { f32::MAX };
        to_t(&p.iter().map(|v| v.clamp(-lim, lim)).collect::<Vec<_>>())
    }

    /// An optional parameter of `n` values (one off when `bad`) as [`Out::params`]; empty
    /// (and no bytes read) when the call has none.
    fn opt_params<T: Element<Acc = f32>>(
        self,
        b: &mut Bytes<'_>,
        has: bool,
        n: usize,
        bad: bool,
    ) -> Vec<T> {
        if has {
            self.params(b.params_len(n, bad))
        } else {
            Vec::new()
        }
    }

    /// Whether output `v` is reference `r` within `tol` plus one ulp of the type, or an
    /// infinity that a value within `tol` of `r` rounds to: `r ± tol` reaches past the type's
    /// largest finite value on the infinity's side (on either side where `tol` is large: an
    /// f32 result of an ill-conditioned reference 0 may round to an f16 infinity of either
    /// sign).
    fn close(self, v: f64, r: f64, tol: f64) -> bool {
        let tol = tol + self.rel * r.abs() + self.abs;
        (v - r).abs() <= tol || (v.is_infinite() && v.signum() * r + tol >= self.max)
    }
}

/// Checks forward outputs and statistics against the reference (`mean = None`: RMSNorm);
/// outputs stored in a narrower type `out` may also be one ulp of it off.
#[allow(clippy::too_many_arguments)]
fn check_forward(
    what: &str,
    out: Out,
    sets: &Sets<'_>,
    x: &[f32],
    y: &[f32],
    ry: &[f64],
    rmean: Option<&[f64]>,
    rrstd: &[f64],
    mean: Option<&[f32]>,
    rstd: Option<&[f32]>,
    w: &[f32],
    b: &[f32],
) {
    let bad = sets.nonfinite(x);
    let zeros = vec![0.0; sets.count];
    let mu = rmean.unwrap_or(&zeros);
    let sigma = sets.sigma(x, mu);
    for s in 0..sets.count {
        if bad[s] {
            if let Some(m) = mean {
                assert!(
                    m[s].is_nan(),
                    "{what}: set {s} has a NaN/Inf but mean {}",
                    m[s]
                );
            }
            if let Some(r) = rstd {
                assert!(
                    r[s].is_nan(),
                    "{what}: set {s} has a NaN/Inf but rstd {}",
                    r[s]
                );
            }
            continue;
        }
        if let (Some(m), Some(_)) = (mean, rmean) {
            let tol = K * E * (mu[s].abs() + sigma[s]) + SUB;
            assert!(
                (m[s] as f64 - mu[s]).abs() <= tol,
                "{what}: set {s} mean {} vs {}",
                m[s],
                mu[s]
            );
        }
        if let Some(r) = rstd {
            let (got, want) = (r[s] as f64, rrstd[s]);
            if want > f32::MAX as f64 {
                assert_eq!(got, f64::INFINITY, "{what}: set {s} rstd {want} beyond f32");
            } else {
                let kappa = mu[s].abs() * want;
                let tol = K * E * want * (1.0 + E * kappa * kappa) + SUB;
                assert!(
                    (got - want).abs() <= tol,
                    "{what}: set {s} rstd {got} vs {want}"
                );
            }
        }
    }
    for (i, v) in y.iter().enumerate() {
        let Some(s) = (sets.of)(i) else {
            assert_eq!(v.to_bits(), 0, "{what}: padding y[{i}] = {v}");
            continue;
        };
        if bad[s] {
            assert!(v.is_nan(), "{what}: y[{i}] = {v} in a set with NaN/Inf");
            continue;
        }
        assert!(
            v.is_finite() || out.max.is_finite(),
            "{what}: y[{i}] = {v} in a finite set"
        );
        let c = (sets.ch)(i);
        let (wc, bc) = (
            w.get(c).map_or(1.0, |v| *v as f64),
            b.get(c).map_or(0.0, |v| *v as f64),
        );
        let r = rrstd[s];
        let xhat = (x[i] as f64 - mu[s]) * r;
        let sc = wc.abs() * (1.0 + xhat.abs() + mu[s].abs() * r) + bc.abs();
        let tol = K * E * sc + SUB;
        assert!(
            out.close(*v as f64, ry[i], tol),
            "{what}: y[{i}] = {v}, reference {} (tol {tol:e}); x {} (μ, r) ({}, {r}) w {wc} b {bc}",
            ry[i],
            x[i],
            mu[s]
        );
    }
}

/// Checks backward outputs against the oracle's, for sets whose statistics are finite and
/// moderate (`rstd ≤ 1e15`; beyond that the f32 coefficients may legitimately overflow).
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn check_backward(
    what: &str,
    out: Out,
    sets: &Sets<'_>,
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    stats: &[(f64, f64)],
    rms: bool,
    dx: &[f32],
    rdx: &[f64],
    grads: [(Option<&[f32]>, &[f64]); 2],
) {
    let ok: Vec<bool> = stats
        .iter()
        .map(|(m, r)| m.is_finite() && r.is_finite() && *r <= 1e15)
        .collect();
    let bad = sets.nonfinite(x);
    let xhat = |i: usize, s: usize| (x[i] as f64 - stats[s].0) * stats[s].1;
    let wc = |i: usize| w.get((sets.ch)(i)).map_or(1.0, |v| *v as f64);
    // no weight: every w is 1
    let wmax = w
        .iter()
        .fold(if w.is_empty() { 1.0 } else { 0.0 }, |m: f64, v| {
            m.max((*v as f64).abs())
        });
    // per set: Σ|g|, Σ|g·x̂|, count, Σ|x̂|, max|g|
    let mut m = vec![(0.0f64, 0.0f64, 0usize, 0.0f64, 0.0f64); sets.count];
    for i in 0..x.len() {
        if let Some(s) = (sets.of)(i) {
            let g = dy[i] as f64 * wc(i);
            m[s].0 += g.abs();
            m[s].1 += (g * xhat(i, s)).abs();
            m[s].2 += 1;
            m[s].3 += xhat(i, s).abs();
            m[s].4 = m[s].4.max(g.abs());
        }
    }
    let mut channel_ok = vec![true; grads[0].1.len().max(grads[1].1.len())];
    let (mut sw, mut sb) = (
        vec![0.0f64; channel_ok.len()],
        vec![0.0f64; channel_ok.len()],
    );
    for i in 0..x.len() {
        let Some(s) = (sets.of)(i) else { continue };
        let c = (sets.ch)(i);
        if c < channel_ok.len() {
            channel_ok[c] &= ok[s] && !bad[s];
            let (mu, r) = stats[s];
            let d = (dy[i] as f64).abs();
            sw[c] += if rms {
                (d * xhat(i, s)).abs()
            } else {
                d * (xhat(i, s).abs() + mu.abs() * r)
            };
            sb[c] += d;
            // each subnormal product dy·x̂ rounds by up to 2^-150 (see dx)
            sw[c] += (1.0 + d) * SUB / (KB * E);
        }
        if !ok[s] || bad[s] {
            continue;
        }
        let (mu, r) = stats[s];
        let n = m[s].2 as f64;
        let g = (dy[i] as f64 * wc(i)).abs();
        let sc = if rms {
            r * (g + xhat(i, s).abs() * m[s].1 / n)
        } else {
            r * (g + m[s].0 / n + xhat(i, s).abs() * m[s].1 / n) * (1.0 + mu.abs() * r)
        };
        // x̂ is an f32: below f32::MIN_POSITIVE it is rounded to a multiple of 2^-149, an
        // error the factor β = −r·mean(g·x̂) carries into dx
        // and x̂, dy·w, dy·x̂ are f32 values too: where they are subnormal (tiny inputs,
        // weights or gradients) each rounds by up to 2^-150 absolute, which
        // a·(g − mean(g) − x̂·mean(g·x̂)) carries with the factors r, |w|, |g| and |x̂|: the
        // underflow term of the standard error model (ε·|v| + η, η = 2^-150)
        let under = r * (1.0 + wmax + m[s].4) * (2.0 + xhat(i, s).abs() * (1.0 + m[s].3 / n));
        let tol = KB * E * sc + SUB + r * m[s].1 / n * SUB + under * SUB;
        assert!(
            out.close(dx[i] as f64, rdx[i], tol),
            "{what}: dx[{i}] = {}, reference {} (tol {tol:e}); x = {}, dy = {}, (μ, r) = {:?}",
            dx[i],
            rdx[i],
            x[i],
            dy[i],
            stats[s]
        );
    }
    for (k, (got, want)) in grads.into_iter().enumerate() {
        let Some(got) = got else { continue };
        for c in 0..want.len() {
            if channel_ok[c] {
                let s = if k == 0 { sw[c] } else { sb[c] };
                let tol = KB * E * s + SUB;
                assert!(
                    (got[c] as f64 - want[c]).abs() <= tol,
                    "{what}: {}[{c}] = {}, reference {} (tol {tol:e}); x {:?} dy {:?} stats {:?}",
                    ["dweight", "dbias"][k],
                    got[c],
                    want[c],
                    &x[..x.len().min(24)],
                    &dy[..dy.len().min(24)],
                    &stats[..stats.len().min(8)]
                );
            }
        }
    }
}

/// Moments: `welford`, `two_pass`, `moments`, streaming `Welford` (pushes, extends and
/// merges of random splits), `row_moments`, `col_moments`, against the oracle; f32 or f64.
pub fn moments(data: &[u8]) {
    let mut b = Bytes(data);
    let n = b.below(300);
    let x = b.floats(n, true);
    let split = b.below(n + 1);
    if b.u8().is_multiple_of(2) {
        moments_of(&x, split, &mut b);
    } else {
        let x: Vec<f64> = x.iter().map(|v| *v as f64 * 1e200).collect();
        moments_of(&x, split, &mut b);
    }
}

fn moments_of<T: Element>(x: &[T], split: usize, b: &mut Bytes<'_>) {
    let r = oracle::moments(x);
    let eps = T::Acc::EPSILON.to_f64();
    let check = |m: Moments<T::Acc>, what: &str| {
        assert_eq!(m.count, r.count, "{what}: count");
        if r.count == 0 {
            assert!(m.mean.is_nan() && m.m2.is_nan(), "{what}: empty is not NaN");
            return;
        }
        if r.mean.is_nan() {
            assert!(
                m.mean.is_nan() && m.m2.is_nan(),
                "{what}: NaN/Inf input not NaN"
            );
            return;
        }
        let sigma = (r.m2 / r.count as f64).sqrt();
        let tiny = (T::Acc::MIN_POSITIVE * T::Acc::EPSILON).to_f64() * 16.0;
        let mean = m.mean.to_f64();
        assert!(
            (mean - r.mean).abs() <= 64.0 * eps * (r.mean.abs() + sigma) + tiny,
            "{what}: mean {mean} vs {} (split {split}; x = {:?})",
            r.mean,
            &x[..x.len().min(40)]
        );
        let m2 = m.m2.to_f64();
        if r.m2 > T::Acc::MAX.to_f64() {
            assert_eq!(m2, f64::INFINITY, "{what}: m2 beyond the type");
        } else {
            // relative, plus the subnormal floor (rounding of tiny squared deviations)
            let tol = 64.0 * eps * r.m2 + tiny * r.count as f64;
            assert!((m2 - r.m2).abs() <= tol, "{what}: m2 {m2} vs {}", r.m2);
        }
    };
    check(welford(x), "welford");
    check(two_pass(x), "two_pass");
    check(crate::moments(x), "moments");
    let mut s = Welford::new();
    s.extend(&x[..split]);
    let mut t = Welford::new();
    for v in &x[split..] {
        if b.u8().is_multiple_of(4) {
            t.extend(std::slice::from_ref(v));
        } else {
            t.push(v.to_acc());
        }
    }
    s.merge(&t);
    check(s.moments(), "streaming");
    let row_len = b.below(9) + 1;
    let mut out = vec![Moments::EMPTY; x.len() / row_len];
    let ragged = !x.len().is_multiple_of(row_len);
    let res = crate::row_moments(x, row_len, &mut out);
    assert_eq!(res.is_err(), ragged, "row_moments validity");
    let mut cols = vec![Moments::EMPTY; row_len];
    let res = crate::col_moments(x, row_len, &mut cols);
    assert_eq!(res.is_err(), ragged, "col_moments validity");
    if !ragged {
        for (i, m) in out.iter().enumerate() {
            assert_eq!(m.count, row_len as u64, "row_moments count of row {i}");
        }
        for (j, m) in cols.iter().enumerate() {
            let col: Vec<T> = x.iter().skip(j).step_by(row_len).copied().collect();
            let w = welford(&col);
            assert_eq!(m.count, w.count, "col_moments count of column {j}");
            assert_eq!(
                m.mean.is_nan(),
                w.mean.is_nan(),
                "col_moments NaN of column {j}"
            );
        }
    }
}

/// LayerNorm: forward, forward_in_place, forward_with_stats, forward_add, with bad shapes,
/// eps and parameter lengths mixed in; rows below 70 values or, now and then, about 4096.
pub fn layer_norm(data: &[u8]) {
    layer_norm_of::<f32>(&mut Bytes(data), F32);
}

/// The row length of a LayerNorm / RMSNorm case: `n` (below 70), or now and then a row long
/// enough to go two at a time (a whole number of vectors, their streams filling L1) or one
/// value past that.
fn row_len(b: &mut Bytes<'_>, n: usize) -> usize {
    if b.u8() >= 240 {
        4096 + 16 * b.below(3) + 5 * b.below(2)
    } else {
        n
    }
}

/// The body of [`layer_norm`] for storage type `T` stored as `out`.
fn layer_norm_of<T: Element<Acc = f32>>(b: &mut Bytes<'_>, out: Out) {
    let (n, rows, eps) = (b.below(70), b.below(5), b.eps());
    let n = row_len(b, n);
    let bad = b.u8().is_multiple_of(8);
    let (has_w, has_b) = (b.u8().is_multiple_of(2), b.u8().is_multiple_of(2));
    let x: Vec<T> = to_t(&b.floats_len(rows * n, bad, true));
    let w: Vec<T> = out.opt_params(b, has_w, n, bad);
    let bias: Vec<T> = out.opt_params(b, has_b, n, bad);
    let mut ln = LayerNorm::new(n).eps(eps);
    if has_w {
        ln = ln.weight(&w);
    }
    if has_b {
        ln = ln.bias(&bias);
    }
    let sentinel = T::from_acc(SENTINEL);
    let ylen = b.len(x.len(), bad);
    let (mut y, mut mean, mut rstd) = (
        vec![sentinel; ylen],
        vec![SENTINEL; b.len(rows, bad)],
        vec![SENTINEL; b.len(rows, bad)],
    );
    let res = ln.forward_with_stats(&x, &mut y, &mut mean, &mut rstd);
    // the API infers the rows from x (a one-short x may still be whole rows)
    let rows = x.len().checked_div(n).unwrap_or(rows);
    let valid = n > 0
        && x.len().is_multiple_of(n)
        && ylen == x.len()
        && mean.len() == rows
        && rstd.len() == rows
        && eps.is_finite()
        && eps >= 0.0
        && (!has_w || w.len() == n)
        && (!has_b || bias.len() == n);
    if !valid {
        assert!(
            res.is_err(),
            "invalid LayerNorm call accepted: n={n} rows={rows} eps={eps} x={} y={ylen} w={}/{has_w} b={}/{has_b} mean={} rstd={}",
            x.len(),
            w.len(),
            bias.len(),
            mean.len(),
            rstd.len()
        );
        assert!(
            unwritten(&y) && untouched(&[&mean, &rstd]),
            "LayerNorm wrote on Err"
        );
        return;
    }
    res.expect("valid LayerNorm call");
    let (ry, rm, rr) = oracle::layer_norm(&x, n, &w, &bias, eps);
    let sets = Sets {
        count: rows,
        of: &|i| Some(i / n),
        ch: &|i| i % n,
    };
    check_forward(
        &label::<T>("ln"),
        out,
        &sets,
        &to_f(&x),
        &to_f(&y),
        &ry,
        Some(&rm),
        &rr,
        Some(&mean),
        Some(&rstd),
        &to_f(&w),
        &to_f(&bias),
    );
    check_methods(
        "LayerNorm",
        b,
        &x,
        &y,
        |x, y| ln.forward(x, y),
        |x| ln.forward_in_place(x),
        |x, r, y| ln.forward_add(x, r, y),
    );
}

/// The other forward methods of a row op agree bit for bit with the `y` that
/// `forward_with_stats` gave for `x`: `forward`, `forward_in_place`, and `forward_add`
/// (`residual += x` rounded once to `T`, then the op of the sum; the residual drawn from `b`).
fn check_methods<T: Element<Acc = f32>>(
    what: &str,
    b: &mut Bytes<'_>,
    x: &[T],
    y: &[T],
    forward: impl Fn(&[T], &mut [T]) -> Result<(), NormError>,
    in_place: impl Fn(&mut [T]) -> Result<(), NormError>,
    forward_add: impl Fn(&[T], &mut [T], &mut [T]) -> Result<(), NormError>,
) {
    let sentinel = T::from_acc(SENTINEL);
    let mut y2 = vec![sentinel; x.len()];
    forward(x, &mut y2).expect("forward");
    let mut y3 = x.to_vec();
    in_place(&mut y3).expect("forward_in_place");
    assert!(same(&y2, y) && same(&y3, y), "{what} methods disagree");
    let mut res: Vec<T> = to_t(&b.floats(x.len(), true));
    let sum = add(&res, x);
    let mut y4 = vec![sentinel; x.len()];
    forward_add(x, &mut res, &mut y4).expect("forward_add");
    assert!(same(&res, &sum), "{what} forward_add residual");
    let mut y5 = vec![sentinel; x.len()];
    forward(&sum, &mut y5).expect("forward of the sum");
    assert!(same(&y4, &y5), "{what} forward_add output");
}

/// RMSNorm: forward methods, as [`layer_norm`].
pub fn rms_norm(data: &[u8]) {
    rms_norm_of::<f32>(&mut Bytes(data), F32);
}

/// The body of [`rms_norm`] for storage type `T`, as [`layer_norm_of`].
fn rms_norm_of<T: Element<Acc = f32>>(b: &mut Bytes<'_>, out: Out) {
    let (n, rows) = (b.below(70), b.below(5));
    let n = row_len(b, n);
    let eps = if b.u8().is_multiple_of(3) {
        None
    } else {
        Some(b.eps())
    };
    let bad = b.u8().is_multiple_of(8);
    let has_w = b.u8().is_multiple_of(2);
    let x: Vec<T> = to_t(&b.floats_len(rows * n, bad, true));
    let w: Vec<T> = out.opt_params(b, has_w, n, bad);
    let mut rms = RmsNorm::new(n);
    if let Some(e) = eps {
        rms = rms.eps(e);
    }
    if has_w {
        rms = rms.weight(&w);
    }
    let sentinel = T::from_acc(SENTINEL);
    let ylen = b.len(x.len(), bad);
    let (mut y, mut rstd) = (vec![sentinel; ylen], vec![SENTINEL; b.len(rows, bad)]);
    let res = rms.forward_with_stats(&x, &mut y, &mut rstd);
    // the default eps is the accumulator's epsilon
    let e = eps.unwrap_or(f32::EPSILON as f64);
    let rows = x.len().checked_div(n).unwrap_or(rows);
    let valid = n > 0
        && x.len().is_multiple_of(n)
        && ylen == x.len()
        && rstd.len() == rows
        && e.is_finite()
        && e >= 0.0
        && (!has_w || w.len() == n);
    if !valid {
        assert!(
            res.is_err(),
            "invalid RMSNorm call accepted: n={n} rows={rows} eps={eps:?} x={} y={ylen} w={}/{has_w} rstd={}",
            x.len(),
            w.len(),
            rstd.len()
        );
        assert!(unwritten(&y) && untouched(&[&rstd]), "RMSNorm wrote on Err");
        return;
    }
    res.expect("valid RMSNorm call");
    let (ry, rr) = oracle::rms_norm(&x, n, &w, e);
    let sets = Sets {
        count: rows,
        of: &|i| Some(i / n),
        ch: &|i| i % n,
    };
    check_forward(
        &label::<T>("rms"),
        out,
        &sets,
        &to_f(&x),
        &to_f(&y),
        &ry,
        None,
        &rr,
        None,
        Some(&rstd),
        &to_f(&w),
        &[],
    );
    check_methods(
        "RMSNorm",
        b,
        &x,
        &y,
        |x, y| rms.forward(x, y),
        |x| rms.forward_in_place(x),
        |x, r, y| rms.forward_add(x, r, y),
    );
}

/// The shape of a BatchNorm / GroupNorm case.
fn bn_shape(b: &mut Bytes<'_>) -> (usize, usize, usize, Layout) {
    let (n, c, hw) = (b.below(5), b.below(21), b.below(13));
    let layout = match b.below(3) {
        0 => Layout::Nc { n },
        1 => Layout::Nchw { n, hw },
        _ => Layout::Nhwc { n, hw },
    };
    let hw = if let Layout::Nc { .. } = layout {
        1
    } else {
        hw
    };
    (n, c, hw, layout)
}

/// BatchNorm: train (all layouts, running statistics in both momentum modes), masked train,
/// eval; bad shapes, eps, momentum, lengths mixed in.
pub fn batch_norm(data: &[u8]) {
    batch_norm_of::<f32>(&mut Bytes(data), F32);
}

/// The body of [`batch_norm`] for storage type `T` stored as `out` (statistics and running
/// statistics in f32).
fn batch_norm_of<T: Element<Acc = f32>>(b: &mut Bytes<'_>, out: Out) {
    let (n, c, hw, layout) = bn_shape(b);
    let eps = b.eps();
    let momentum = [
        Some(0.1),
        None,
        Some(1.0),
        Some(0.0),
        Some(-0.5),
        Some(f64::NAN),
        Some(2.0),
    ][b.below(7)];
    let bad = b.u8().is_multiple_of(8);
    let masked = b.u8().is_multiple_of(4);
    let layout = if masked {
        Layout::Nchw { n, hw }
    } else {
        layout
    };
    let affine = b.u8().is_multiple_of(2);
    let len = n * c * hw;
    let x: Vec<T> = to_t(&b.floats_len(len, bad, true));
    let (w, bias): (Vec<T>, Vec<T>) = (
        out.params(b.params_len(c, bad && affine)),
        out.params(b.params(c)),
    );
    let mut bn = BatchNorm::new(c).eps(eps).momentum(momentum);
    if affine {
        bn = bn.weight(&w).bias(&bias);
    }
    let lengths: Vec<usize> = (0..b.len(n, bad && masked))
        .map(|_| b.below(hw + 2))
        .collect();
    let ylen = b.len(x.len(), bad);
    let sentinel = T::from_acc(SENTINEL);
    let mut y = vec![sentinel; ylen];
    let (mut sm, mut si) = (vec![SENTINEL; c], vec![SENTINEL; c]);
    let (mut rm, mut rv, mut nbt) = (vec![0.5f32; c], vec![2.0f32; c], 3u64);
    let (rm0, rv0) = (rm.clone(), rv.clone());
    let running = RunningStats {
        mean: &mut rm,
        var: &mut rv,
        num_batches_tracked: &mut nbt,
    };
    let res = if masked {
        bn.forward_train_masked(&x, n, hw, &lengths, &mut y, Some(running), &mut sm, &mut si)
    } else {
        bn.forward_train(&x, layout, &mut y, Some(running), &mut sm, &mut si)
    };
    let values = if masked {
        lengths.iter().sum::<usize>()
    } else {
        n * hw
    };
    let valid = c > 0
        && n > 0
        && hw > 0
        && x.len() == len
        && ylen == len
        && eps.is_finite()
        && eps >= 0.0
        && momentum.is_none_or(|m| (0.0..=1.0).contains(&m))
        && (!affine || w.len() == c)
        && (!masked || (lengths.len() == n && lengths.iter().all(|l| *l <= hw)))
        && values >= 2;
    if !valid {
        assert!(res.is_err(), "invalid BatchNorm call accepted: {res:?}");
        assert!(
            unwritten(&y) && untouched(&[&sm, &si]),
            "BatchNorm wrote on Err"
        );
        assert!(
            rm == rm0 && rv == rv0 && nbt == 3,
            "running stats changed on Err"
        );
        return;
    }
    res.expect("valid BatchNorm call");
    assert_eq!(nbt, 4, "num_batches_tracked");
    let last = !matches!(layout, Layout::Nchw { .. });
    let (wv, bv): (&[T], &[T]) = if affine { (&w, &bias) } else { (&[], &[]) };
    let (xf, wf, bf) = (to_f(&x), to_f(wv), to_f(bv));
    let lens = masked.then_some(&lengths[..]);
    let (ry, st) = oracle::batch_norm(&x, n, c, hw, last, lens, wv, bv, eps);
    let ch = |i: usize| if last { i % c } else { (i / hw) % c };
    let of = |i: usize| {
        let valid = lens.is_none_or(|l| i % hw < l[i / (c * hw)]);
        valid.then_some(ch(i))
    };
    let sets = Sets {
        count: c,
        of: &of,
        ch: &ch,
    };
    let rmean: Vec<f64> = st.iter().map(|s| s.mean).collect();
    let rr: Vec<f64> = st.iter().map(|s| s.rstd).collect();
    check_forward(
        &label::<T>("bn train"),
        out,
        &sets,
        &xf,
        &to_f(&y),
        &ry,
        Some(&rmean),
        &rr,
        Some(&sm),
        Some(&si),
        &wf,
        &bf,
    );
    // running statistics: PyTorch's rule applied to the reference statistics
    let f = momentum.unwrap_or(0.25);
    let bad_set = sets.nonfinite(&xf);
    for j in 0..c {
        if bad_set[j] {
            assert!(
                rm[j].is_nan() && rv[j].is_nan(),
                "running stats of a NaN channel"
            );
            continue;
        }
        let em = (1.0 - f) * 0.5 + f * st[j].mean;
        let ev = (1.0 - f) * 2.0 + f * st[j].var_unbiased;
        let sigma = st[j].var_unbiased.sqrt();
        let tm = K * E * (em.abs() + f * (st[j].mean.abs() + sigma) + 1.0) + SUB;
        assert!(
            (rm[j] as f64 - em).abs() <= tm,
            "running mean[{j}] {} vs {em}",
            rm[j]
        );
        if ev <= f32::MAX as f64 {
            let kappa = st[j].mean.abs() * st[j].rstd;
            let tv = K * E * (ev.abs() + f * st[j].var_unbiased * (1.0 + E * kappa * kappa) + 2.0);
            assert!(
                (rv[j] as f64 - ev).abs() <= tv,
                "running var[{j}] {} vs {ev}",
                rv[j]
            );
        }
    }
    // eval with the running statistics just computed (NaN in a channel whose data had one)
    if !masked {
        let mut ye = vec![sentinel; len];
        bn.forward_eval(&x, layout, &rm, &rv, &mut ye)
            .expect("eval");
        for (i, v) in to_f(&ye).iter().enumerate() {
            let j = ch(i);
            if !xf[i].is_finite() || rm[j].is_nan() || rv[j].is_nan() {
                assert!(v.is_nan(), "eval of a non-finite value or statistic: {v}");
                continue;
            }
            // (an infinite mean, or an infinite variance — scale 0 — on a difference x − mean
            // that overflows f32: NaN as in PyTorch's f32 arithmetic; not compared)
            if rm[j].is_infinite() || (rv[j].is_infinite() && !(xf[i] - rm[j]).is_finite()) {
                continue;
            }
            let d = rv[j] as f64 + eps;
            let r = if d == 0.0 { 0.0 } else { 1.0 / d.sqrt() };
            let (wc, bc) = (
                wf.get(j).map_or(1.0, |v| *v as f64),
                bf.get(j).map_or(0.0, |v| *v as f64),
            );
            let xhat = (xf[i] as f64 - rm[j] as f64) * r;
            let want = xhat * wc + bc;
            if want.abs() < 1e37 && r < 1e30 {
                let sc = wc.abs() * (1.0 + xhat.abs() + (rm[j] as f64).abs() * r) + bc.abs();
                assert!(
                    out.close(*v as f64, want, K * E * sc + SUB),
                    "eval y[{i}] {v} vs {want}: x {} rm {} rv {} eps {eps} w {wc} b {bc}",
                    xf[i],
                    rm[j],
                    rv[j]
                );
            }
        }
    }
}

/// GroupNorm / InstanceNorm forward and forward_with_stats.
pub fn group_norm(data: &[u8]) {
    group_norm_of::<f32>(&mut Bytes(data), F32);
}

/// The body of [`group_norm`] for storage type `T` (f32, or a half type from [`half`]).
fn group_norm_of<T: Element<Acc = f32>>(b: &mut Bytes<'_>, out: Out) {
    let (n, c, hw, _) = bn_shape(b);
    let groups = match b.below(4) {
        0 => 1,
        1 => c,
        2 => b.below(c + 2),
        _ => [2, 3, 4][b.below(3)],
    };
    let eps = b.eps();
    let bad = b.u8().is_multiple_of(8);
    let affine = b.u8().is_multiple_of(2);
    let len = n * c * hw;
    let x: Vec<T> = to_t(&b.floats_len(len, bad, true));
    let (w, bias): (Vec<T>, Vec<T>) = (out.params(b.params(c)), out.params(b.params(c)));
    let mut gn = GroupNorm::new(groups, c).eps(eps);
    if affine {
        gn = gn.weight(&w).bias(&bias);
    }
    let sets_n = n * groups;
    let ylen = b.len(len, bad);
    let sentinel = T::from_acc(SENTINEL);
    let (mut y, mut m, mut r) = (
        vec![sentinel; ylen],
        vec![SENTINEL; b.len(sets_n, bad)],
        vec![SENTINEL; sets_n],
    );
    let res = gn.forward_with_stats(&x, n, hw, &mut y, &mut m, &mut r);
    let valid = c > 0
        && groups > 0
        && c % groups == 0
        && n > 0
        && hw > 0
        && x.len() == len
        && ylen == len
        && m.len() == sets_n
        && eps.is_finite()
        && eps >= 0.0;
    if !valid {
        assert!(res.is_err(), "invalid GroupNorm call accepted: {res:?}");
        assert!(
            unwritten(&y) && untouched(&[&m, &r]),
            "GroupNorm wrote on Err"
        );
        return;
    }
    res.expect("valid GroupNorm call");
    let (wv, bv): (&[T], &[T]) = if affine { (&w, &bias) } else { (&[], &[]) };
    let (ry, st) = oracle::group_norm(&x, n, c, hw, groups, wv, bv, eps);
    let glen = c / groups * hw;
    let sets = Sets {
        count: sets_n,
        of: &|i| Some(i / glen),
        ch: &|i| (i / hw) % c,
    };
    let rmean: Vec<f64> = st.iter().map(|s| s.mean).collect();
    let rr: Vec<f64> = st.iter().map(|s| s.rstd).collect();
    check_forward(
        &label::<T>("gn"),
        out,
        &sets,
        &to_f(&x),
        &to_f(&y),
        &ry,
        Some(&rmean),
        &rr,
        Some(&m),
        Some(&r),
        &to_f(wv),
        &to_f(bv),
    );
    let mut y2 = vec![sentinel; len];
    gn.forward(&x, n, hw, &mut y2).expect("forward");
    assert!(same(&y2, &y), "GroupNorm methods disagree");
}

/// Backward passes of LayerNorm, RMSNorm, BatchNorm and GroupNorm (chosen by the first
/// byte), from the statistics their forward pass returned, against the oracle.
pub fn backward(data: &[u8]) {
    backward_of::<f32>(&mut Bytes(data), F32);
}

/// The body of [`backward`] for storage type `T` stored as `out` (the parameter gradients in
/// f32).
fn backward_of<T: Element<Acc = f32>>(b: &mut Bytes<'_>, out: Out) {
    let op = b.below(4);
    let bad = b.u8().is_multiple_of(8);
    let want_w = b.u8().is_multiple_of(2);
    // one call in eight (bits 1–3 of the dbias byte) has no weight (PyTorch's
    // `elementwise_affine=False` / `weight=None`): g = dy
    let wb = b.u8();
    let (want_b, has_w) = (wb.is_multiple_of(2), wb / 2 % 8 != 5);
    let eps = [1e-5, 0.0, 1e-3, 1.0][b.below(4)];
    match op {
        0 | 1 => {
            let (n, rows) = (b.below(70), b.below(5));
            let n = row_len(b, n);
            let x: Vec<T> = to_t(&b.floats(rows * n, true));
            let dy: Vec<T> = out.params(b.params_len(rows * n, bad));
            let w: Vec<T> = out.opt_params(b, has_w, n, false);
            let sentinel = T::from_acc(SENTINEL);
            let (mut y, mut mean, mut rstd) = (
                vec![sentinel; x.len()],
                vec![0.0f32; rows],
                vec![0.0f32; rows],
            );
            let mut dx = vec![sentinel; x.len()];
            let (mut dw, mut db) = (vec![SENTINEL; b.len(n, bad)], vec![SENTINEL; n]);
            let (res, rms) = if op == 0 {
                let ln = with_weight(LayerNorm::new(n).eps(eps), LayerNorm::weight, &w);
                if ln
                    .forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
                    .is_err()
                {
                    return; // n == 0
                }
                let res = ln.backward(
                    &dy,
                    &x,
                    &mean,
                    &rstd,
                    &mut dx,
                    want_w.then_some(&mut dw[..]),
                    want_b.then_some(&mut db[..]),
                );
                (res, false)
            } else {
                let rms = with_weight(RmsNorm::new(n).eps(eps), RmsNorm::weight, &w);
                if rms.forward_with_stats(&x, &mut y, &mut rstd).is_err() {
                    return;
                }
                (
                    rms.backward(&dy, &x, &rstd, &mut dx, want_w.then_some(&mut dw[..])),
                    true,
                )
            };
            let valid = dy.len() == x.len() && (!want_w || dw.len() == n);
            if !valid {
                assert!(res.is_err(), "invalid backward accepted");
                assert!(
                    unwritten(&dx) && untouched(&[&dw, &db]),
                    "backward wrote on Err"
                );
                return;
            }
            res.expect("valid backward");
            let stats: Vec<(f64, f64)> = (0..rows)
                .map(|i| (if rms { 0.0 } else { mean[i] as f64 }, rstd[i] as f64))
                .collect();
            let mf: Vec<f64> = stats.iter().map(|s| s.0).collect();
            let rf: Vec<f64> = stats.iter().map(|s| s.1).collect();
            let (rdx, rdw, rdb) =
                oracle::layer_norm_backward(&dy, &x, n, &w, (!rms).then_some(&mf[..]), &rf);
            let sets = Sets {
                count: rows,
                of: &|i| Some(i / n),
                ch: &|i| i % n,
            };
            let grads = [
                (want_w.then_some(&dw[..]), &rdw[..]),
                (want_b.then_some(&db[..]).filter(|_| !rms), &rdb[..]),
            ];
            let xf = to_f(&x);
            let what = format!(
                "{} n={n} eps={eps} rms={rms} x={:?}",
                label::<T>("ln/rms backward"),
                &xf[..xf.len().min(80)]
            );
            check_backward(
                &what,
                out,
                &sets,
                &xf,
                &to_f(&dy),
                &to_f(&w),
                &stats,
                rms,
                &to_f(&dx),
                &rdx,
                grads,
            );
        }
        _ => {
            let (n, c, hw, layout) = bn_shape(b);
            let len = n * c * hw;
            let x: Vec<T> = to_t(&b.floats(len, true));
            let dy: Vec<T> = out.params(b.params_len(len, bad));
            let w: Vec<T> = out.opt_params(b, has_w, c, false);
            let sentinel = T::from_acc(SENTINEL);
            let mut y = vec![sentinel; len];
            let mut dx = vec![sentinel; len];
            let (mut dw, mut db) = (vec![SENTINEL; b.len(c, bad)], vec![SENTINEL; c]);
            let (res, m, s, sets_n, gl) = if op == 2 {
                let bn = with_weight(BatchNorm::new(c).eps(eps), BatchNorm::weight, &w);
                let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
                if bn
                    .forward_train(&x, layout, &mut y, None, &mut m, &mut s)
                    .is_err()
                {
                    return;
                }
                let res = bn.backward_train(
                    &dy,
                    &x,
                    layout,
                    &m,
                    &s,
                    &mut dx,
                    want_w.then_some(&mut dw[..]),
                    want_b.then_some(&mut db[..]),
                );
                (res, m, s, c, 0)
            } else {
                let groups = [1, c.max(1)][b.below(2)];
                let gn = with_weight(GroupNorm::new(groups, c).eps(eps), GroupNorm::weight, &w);
                let (mut m, mut s) = (vec![0.0f32; n * groups], vec![0.0f32; n * groups]);
                if gn
                    .forward_with_stats(&x, n, hw, &mut y, &mut m, &mut s)
                    .is_err()
                {
                    return;
                }
                let res = gn.backward(
                    &dy,
                    &x,
                    n,
                    hw,
                    &m,
                    &s,
                    &mut dx,
                    want_w.then_some(&mut dw[..]),
                    want_b.then_some(&mut db[..]),
                );
                (res, m, s, n * groups, c / groups * hw)
            };
            let stats: Vec<(f64, f64)> = m
                .iter()
                .zip(&s)
                .map(|(a, b)| (*a as f64, *b as f64))
                .collect();
            let valid = dy.len() == len && (!want_w || dw.len() == c);
            if !valid {
                assert!(res.is_err(), "invalid backward accepted");
                assert!(
                    unwritten(&dx) && untouched(&[&dw, &db]),
                    "backward wrote on Err"
                );
                return;
            }
            res.expect("valid backward");
            let last = !matches!(layout, Layout::Nchw { .. });
            let ch = move |i: usize| if op == 2 && last { i % c } else { (i / hw) % c };
            let mf: Vec<f64> = stats.iter().map(|s| s.0).collect();
            let rf: Vec<f64> = stats.iter().map(|s| s.1).collect();
            let (rdx, rdw, rdb) = if op == 2 {
                oracle::batch_norm_backward(&dy, &x, n, c, hw, last, &w, &mf, &rf)
            } else {
                oracle::group_norm_backward(&dy, &x, n, c, hw, sets_n / n, &w, &mf, &rf)
            };
            let of = move |i: usize| Some(if op == 2 { ch(i) } else { i / gl });
            let sets = Sets {
                count: sets_n,
                of: &of,
                ch: &ch,
            };
            let grads = [
                (want_w.then_some(&dw[..]), &rdw[..]),
                (want_b.then_some(&db[..]), &rdb[..]),
            ];
            check_backward(
                &label::<T>("bn/gn backward"),
                out,
                &sets,
                &to_f(&x),
                &to_f(&dy),
                &to_f(&w),
                &stats,
                false,
                &to_f(&dx),
                &rdx,
                grads,
            );
        }
    }
}

/// `op` with `weight(w)` set, or as it is when `w` is empty (no weight: the backward
/// bodies' weights are always of the right length, so empty means none).
fn with_weight<'w, O, T>(op: O, weight: fn(O, &'w [T]) -> O, w: &'w [T]) -> O {
    if w.is_empty() { op } else { weight(op, w) }
}

/// Half storage (`f16` / `bf16`, f32 accumulation): one of the bodies of [`layer_norm`],
/// [`rms_norm`], [`batch_norm`], [`group_norm`] and [`backward`] on a half type, checked
/// against the f64 oracle on the half values with one ulp of the half type on the outputs
/// (issue 6's tolerance) beside the f32 kernel's.
pub fn half(data: &[u8]) {
    #[cfg(feature = "half")]
    {
        let mut b = Bytes(data);
        let is_bf16 = b.u8().is_multiple_of(2);
        let op = b.below(5);
        // the type's epsilon, smallest subnormal and largest finite value
        fn run<T: Element<Acc = f32>>(b: &mut Bytes<'_>, op: usize, [eps, sub, max]: [T; 3]) {
            let out = Out::of(eps, sub, max);
            match op {
                0 => layer_norm_of::<T>(b, out),
                1 => rms_norm_of::<T>(b, out),
                2 => batch_norm_of::<T>(b, out),
                3 => group_norm_of::<T>(b, out),
                _ => backward_of::<T>(b, out),
            }
        }
        use half::{bf16, f16};
        if is_bf16 {
            run(
                &mut b,
                op,
                [bf16::EPSILON, bf16::MIN_POSITIVE_SUBNORMAL, bf16::MAX],
            );
        } else {
            run(
                &mut b,
                op,
                [f16::EPSILON, f16::MIN_POSITIVE_SUBNORMAL, f16::MAX],
            );
        }
    }
    #[cfg(not(feature = "half"))]
    let _ = data;
}

/// A fuzz target body.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, for the corpus replay.
pub const TARGETS: [(&str, Target); 7] = [
    ("moments", moments),
    ("layer_norm", layer_norm),
    ("rms_norm", rms_norm),
    ("batch_norm", batch_norm),
    ("group_norm", group_norm),
    ("backward", backward),
    ("half", half),
];
