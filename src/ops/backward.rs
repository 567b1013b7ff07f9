//! The two vector loops of every backward pass (LayerNorm, RMSNorm, GroupNorm, BatchNorm).
//!
//! All four ops share one gradient: over a set of `N` values (a row, a group, a channel) with
//! statistics μ (0 for RMSNorm) and `a = rstd`, `g = dy·w`, `x̂ = (x − μ)·a`:
//! ```text
//! dx = a·(g − mean(g) − x̂·mean(g·x̂))       (PyTorch's b·x + c form, with x − μ kept apart)
//!    = (dy·w)·a + x̂·β + γ,   β = −a·Σ g·x̂/N,   γ = −a·Σ g/N
//! ```
//! Everything is summed in terms of `x̂`, which is O(1): PyTorch's `Σ g·x` (and a form in
//! `Σ g·(x − μ)`) overflows f32 for rows of magnitude ~1e35 whose gradient is finite (found by
//! the fuzzer). [`sums`] is the first loop (`Σ g`, `Σ g·x̂`), [`dx_pass`] the second, which
//! also adds each element's `dy·x̂` and `dy` into per-feature dweight / dbias partials.

use crate::element::{
    Arith, Element, Float, Vector, load_at, load_partial, store_at, store_partial,
};
use crate::moments::lane_sum;
use crate::tuning::NACC;

use super::head_len;

type V<T> = <<T as Element>::Acc as Float>::V;

/// `(Σ g, Σ g·x̂)` over one set, `g = dy·w` (`w = None`: 1), `x̂ = (x − μ)·a`.
pub(crate) fn sums<T: Element>(
    dy: &[T],
    x: &[T],
    w: Option<&[T]>,
    c: Center<T::Acc>,
) -> (T::Acc, T::Acc) {
    match w {
        Some(w) => sums_w::<T, true>(dy, x, w, c),
        None => sums_w::<T, false>(dy, x, &[], c),
    }
}

/// How `x̂ = (x − μ)·a` is formed: `(x·h − μ·h)·(a/h)` with `h = 1` (plain), or `h = 1/2`
/// where `x − μ` overflows (values and mean of opposite signs near ±`A::MAX`, whose `x̂` is
/// finite: found by the fuzzer). `x·1 − μ` is `x − μ`, so the plain form is bit for bit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Center<A> {
    h: A,
    nmuh: A,
    ah: A,
}

impl<A: Float> Center<A> {
    pub(crate) fn new(mu: A, a: A, halve: bool) -> Self {
        let h = if halve { 0.5 } else { 1.0 };
        Self {
            h: A::from_f64(h),
            nmuh: A::from_f64(-mu.to_f64() * h),
            ah: A::from_f64(a.to_f64() / h),
        }
    }

    /// The factor `h` (1, or 1/2 where `x − μ` overflows).
    pub(crate) fn h(&self) -> A {
        self.h
    }

    /// Runs `f(center)` plainly, and again halved if that gave a non-finite result from a
    /// finite μ and a.
    pub(crate) fn rescued<R>(
        mu: A,
        a: A,
        ok: impl Fn(&R) -> bool,
        mut f: impl FnMut(Self) -> R,
    ) -> (Self, R) {
        let c = Self::new(mu, a, false);
        let r = f(c);
        if ok(&r) || !(mu.is_finite() && a.is_finite()) {
            return (c, r);
        }
        let c = Self::new(mu, a, true);
        (c, f(c))
    }
}

fn sums_w<T: Element, const W: bool>(
    dy: &[T],
    x: &[T],
    w: &[T],
    c: Center<T::Acc>,
) -> (T::Acc, T::Acc) {
    let (h, nmuh, ah) = (
        V::<T>::splat(c.h),
        V::<T>::splat(c.nmuh),
        V::<T>::splat(c.ah),
    );
    let (mut s1, mut s2) = ([V::<T>::ZERO; NACC], [V::<T>::ZERO; NACC]);
    let (dc, dt) = T::as_chunks(dy);
    let (xc, xt) = T::as_chunks(x);
    let (wc, wt) = T::as_chunks(w);
    let wc = if W { &wc[..dc.len()] } else { wc };
    let mut step = |k: usize, i: usize| {
        let d = T::load(&dc[i]);
        let g = if W { d * T::load(&wc[i]) } else { d };
        s1[k] = s1[k] + g;
        s2[k] = g.mul_add(T::load(&xc[i]).mul_add(h, nmuh) * ah, s2[k]);
    };
    // Groups of NACC vectors, accumulator k for the k-th of each: a constant index keeps the
    // accumulators in registers (`i % NACC` kept them on the stack: a store and reload per
    // vector).
    let groups = dc.len() / NACC;
    for j in 0..groups {
        for k in 0..NACC {
            step(k, j * NACC + k);
        }
    }
    for (k, i) in (groups * NACC..dc.len()).enumerate() {
        step(k, i);
    }
    let (n, lanes) = (dy.len(), T::Acc::LANES);
    if !dt.is_empty() {
        // The tail as the last whole vector of the slice where there is one, its lanes
        // already summed masked out (a partial load goes element by element through memory:
        // with `dx_w`'s partial ends, 24–40 % of the time of 256-wide rows' backward); else
        // zero-padded, whose lanes give dy = 0 but x̂ = −μ·a, which may overflow (μ near
        // ±f32::MAX): 0·∞ is NaN (found by the fuzzer), so products are masked either way.
        let (lo, d, x, wv) = if n >= lanes {
            let at = n - lanes;
            let w = if W {
                load_at(w, at, lanes)
            } else {
                V::<T>::ZERO
            };
            (
                lanes - dt.len(),
                load_at(dy, at, lanes),
                load_at(x, at, lanes),
                w,
            )
        } else {
            let w = if W { load_partial(wt) } else { V::<T>::ZERO };
            (0, load_partial(dt), load_partial(xt), w)
        };
        let hi = lo + dt.len();
        let g = if W { d * wv } else { d };
        let gx = g * (x.mul_add(h, nmuh) * ah);
        s1[NACC - 1] = s1[NACC - 1] + g.lanes_or(lo, hi, V::<T>::ZERO);
        s2[NACC - 1] = s2[NACC - 1] + gx.lanes_or(lo, hi, V::<T>::ZERO);
    }
    (lane_sum::<T::Acc>(s1), lane_sum::<T::Acc>(s2))
}

/// The coefficients of the second loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Coef<A> {
    /// How x̂ is formed.
    pub(crate) center: Center<A>,
    /// Multiplies `dy·w`: `a` (times a channel's weight when `w` is folded in).
    pub(crate) alpha: A,
    /// Multiplies `x̂ = (x − μ)·a`.
    pub(crate) beta: A,
    /// Added.
    pub(crate) gamma: A,
    /// Multiplies `(dy·w)·α`: 1, or `2^−K` when α was scaled up by `2^K` (below).
    pub(crate) post: A,
}

impl<A: Float> Coef<A> {
    /// From the sums of [`sums`] over `n` values, in f64: β = −a·(s2/n), γ = −a·(s1/n);
    /// `w` (a channel's weight, else 1) is folded into α. Where `α = a·w` would be subnormal
    /// in `A` (weights of 1e-40, say: found by the fuzzer, 5e-5 relative error on a normal
    /// dx), α is scaled up by `2^K` and the product `(dy·w)·α` scaled back inside the final
    /// fma: `dx = ((dy·w)·α)·2^−K + (x̂·β + γ)`.
    pub(crate) fn new(center: Center<A>, a: A, s1: f64, s2: f64, n: usize, w: A) -> Self {
        let (af, nf) = (a.to_f64(), n as f64);
        // the means first: `a·s2` overflows f64 where `a·s2/n` does not (f64 data near
        // 2^-1013, rstd ~2^1014: dx was ±∞ where ~1e305 was due)
        let (alpha, beta, gamma) = (af * w.to_f64(), -af * (s2 / nf), -af * (s1 / nf));
        let tiny = alpha != 0.0 && alpha.abs() < A::MIN_POSITIVE.to_f64();
        // α·2^k near 1, but 2^-k no smaller than A's least subnormal (2^-149 for f32: a
        // post of 0 dropped the term, found by the fuzzer) and 2^k finite in f64
        let least = -(A::MIN_POSITIVE.exponent() + A::EPSILON.exponent());
        let k = if tiny {
            (-(alpha.abs().log2().floor() as i32)).min(least).min(600)
        } else {
            0
        };
        let up = <f64 as Float>::exp2i(k);
        Self {
            center,
            alpha: A::from_f64(alpha * up),
            beta: A::from_f64(beta),
            gamma: A::from_f64(gamma),
            post: A::from_f64(1.0 / up),
        }
    }
}

/// `dx = (dy·w)·α + x̂·β + γ`; with `dw`/`db` given, adds `dy·x̂` / `dy` to them
/// (per element: LayerNorm/RMSNorm dweight and dbias partials of a block of rows).
pub(crate) fn dx_pass<T: Element>(
    dy: &[T],
    x: &[T],
    w: Option<&[T]>,
    c: Coef<T::Acc>,
    dx: &mut [T],
    dw: Option<&mut [T::Acc]>,
    db: Option<&mut [T::Acc]>,
) {
    dx_rows::<T, 1>([dy], [x], w, [c], [dx], dw, db)
}

/// [`dx_pass`] over `R` rows of one length and one alignment of `dx` at once, sharing each
/// vector of the weight and of the dweight / dbias partials between them (one load of `w`
/// and one read-modify-write of each partial per `R` rows: used once a row's six streams no
/// longer fit in L1, `super::pairs_pay`). The partials add row 0's increment, then row 1's,
/// …: bit for bit what `R` calls of [`dx_pass`] give.
pub(crate) fn dx_rows<T: Element, const R: usize>(
    dy: [&[T]; R],
    x: [&[T]; R],
    w: Option<&[T]>,
    c: [Coef<T::Acc>; R],
    dx: [&mut [T]; R],
    dw: Option<&mut [T::Acc]>,
    db: Option<&mut [T::Acc]>,
) {
    match (w, dw, db) {
        (Some(w), Some(dw), Some(db)) => dx_w::<T, R, true, true, true>(dy, x, w, c, dx, dw, db),
        (Some(w), Some(dw), None) => dx_w::<T, R, true, true, false>(dy, x, w, c, dx, dw, &mut []),
        (Some(w), None, Some(db)) => dx_w::<T, R, true, false, true>(dy, x, w, c, dx, &mut [], db),
        (Some(w), None, None) => {
            dx_w::<T, R, true, false, false>(dy, x, w, c, dx, &mut [], &mut [])
        }
        (None, Some(dw), Some(db)) => dx_w::<T, R, false, true, true>(dy, x, &[], c, dx, dw, db),
        (None, Some(dw), None) => dx_w::<T, R, false, true, false>(dy, x, &[], c, dx, dw, &mut []),
        (None, None, Some(db)) => dx_w::<T, R, false, false, true>(dy, x, &[], c, dx, &mut [], db),
        (None, None, None) => {
            dx_w::<T, R, false, false, false>(dy, x, &[], c, dx, &mut [], &mut [])
        }
    }
}

/// The coefficients of [`Coef`] as vectors.
#[derive(Clone, Copy)]
struct CoefV<V> {
    h: V,
    nmuh: V,
    ah: V,
    alpha: V,
    beta: V,
    gamma: V,
    post: V,
}

impl<V: Arith> CoefV<V> {
    /// `dx` of one vector from `dy`, `x` and `g = dy·w`, and its dweight increment `dy·x̂`.
    #[inline(always)]
    fn grad(&self, d: V, x: V, g: V) -> (V, V) {
        let xh = x.mul_add(self.h, self.nmuh) * self.ah;
        let dx = (g * self.alpha).mul_add(self.post, xh.mul_add(self.beta, self.gamma));
        (dx, d * xh)
    }
}

/// [`Coef`]'s coefficients splatted.
#[inline(always)]
fn coef_v<A: Float>(c: Coef<A>) -> CoefV<A::V> {
    let s = <A::V as Vector<A>>::splat;
    CoefV {
        h: s(c.center.h),
        nmuh: s(c.center.nmuh),
        ah: s(c.center.ah),
        alpha: s(c.alpha),
        beta: s(c.beta),
        gamma: s(c.gamma),
        post: s(c.post),
    }
}

/// One whole vector of a row at `at` (a row's first or last: see [`dx_w`]): `dx` stored,
/// the dweight / dbias increments added to lanes `lo..hi` only.
#[inline(always)]
fn end_vector<T: Element, const W: bool, const DW: bool, const DB: bool>(
    k: &CoefV<V<T>>,
    (dy, x, w): (&[T], &[T], &[T]),
    (at, lo, hi): (usize, usize, usize),
    dx: &mut [T],
    dw: &mut [T::Acc],
    db: &mut [T::Acc],
) {
    let (lanes, zero) = (T::Acc::LANES, V::<T>::ZERO);
    let d = load_at(dy, at, lanes);
    let g = if W { d * load_at(w, at, lanes) } else { d };
    let (v, pw) = k.grad(d, load_at(x, at, lanes), g);
    store_at(v, dx, at, lanes);
    if DW {
        let p = load_at(dw, at, lanes) + pw.lanes_or(lo, hi, zero);
        store_at(p, dw, at, lanes);
    }
    if DB {
        store_at(
            load_at(db, at, lanes) + d.lanes_or(lo, hi, zero),
            db,
            at,
            lanes,
        );
    }
}

/// [`dx_rows`] for the parameters present. The body is `dx`'s whole vectors from its first
/// vector boundary ([`head_len`]), so that its stores are aligned (see `ops::map_row`); the
/// head and the tail are the first and last whole vectors of the row, unaligned, computed and
/// stored before and after the body: their `dx` lanes that overlap it are stored twice with
/// equal values, and their dweight / dbias increments are masked to the lanes outside it
/// (the partials accumulate; one read-modify-write after the other, so the overlap is safe).
/// Only rows shorter than a vector take partial loads and stores. (Plain functions, no
/// closures holding the coefficients: a closure referred to from two places kept them in
/// memory, reloaded per vector.)
#[allow(clippy::too_many_arguments)]
#[inline]
fn dx_w<T: Element, const R: usize, const W: bool, const DW: bool, const DB: bool>(
    dy: [&[T]; R],
    x: [&[T]; R],
    w: &[T],
    c: [Coef<T::Acc>; R],
    mut dx: [&mut [T]; R],
    dw: &mut [T::Acc],
    db: &mut [T::Acc],
) {
    let mut k = [coef_v(c[0]); R];
    for (k, c) in k.iter_mut().zip(c) {
        *k = coef_v(c);
    }
    let (n, lanes) = (dx[0].len(), T::Acc::LANES);
    if n < lanes {
        for r in 0..R {
            let d = load_partial(dy[r]);
            let g = if W { d * load_partial(w) } else { d };
            let (v, pw) = k[r].grad(d, load_partial(x[r]), g);
            store_partial(v, dx[r]);
            if DW {
                store_partial(load_partial(dw) + pw, dw);
            }
            if DB {
                store_partial(load_partial(db) + d, db);
            }
        }
        return;
    }
    let w = if W { &w[..n] } else { w };
    let (dy, x) = (dy.map(|d| &d[..n]), x.map(|x| &x[..n]));
    let head = head_len(dx[0]);
    debug_assert!(dx.iter().all(|d| d.len() == n && head_len(d) == head));
    let stop = head + (n - head) / lanes * lanes;
    if head > 0 {
        for (r, dx) in dx.iter_mut().enumerate() {
            end_vector::<T, W, DW, DB>(&k[r], (dy[r], x[r], w), (0, 0, head), dx, dw, db);
        }
    }
    {
        let oc = dx
            .each_mut()
            .map(|d| T::as_chunks_mut(&mut d[head..stop]).0);
        let kv = oc[0].len();
        let oc = oc.map(|o| &mut o[..kv]);
        let (dc, xc) = (
            dy.map(|d| &T::as_chunks(&d[head..stop]).0[..kv]),
            x.map(|x| &T::as_chunks(&x[head..stop]).0[..kv]),
        );
        let wc = if W {
            &T::as_chunks(&w[head..stop]).0[..kv]
        } else {
            &[]
        };
        let dwc = if DW {
            &mut <T::Acc as Element>::as_chunks_mut(&mut dw[head..stop]).0[..kv]
        } else {
            &mut []
        };
        let dbc = if DB {
            &mut <T::Acc as Element>::as_chunks_mut(&mut db[head..stop]).0[..kv]
        } else {
            &mut []
        };
        for i in 0..kv {
            let wv = if W { T::load(&wc[i]) } else { V::<T>::ZERO };
            let zero = V::<T>::ZERO;
            let mut pw = if DW {
                <T::Acc as Element>::load(&dwc[i])
            } else {
                zero
            };
            let mut pb = if DB {
                <T::Acc as Element>::load(&dbc[i])
            } else {
                zero
            };
            for r in 0..R {
                let d = T::load(&dc[r][i]);
                let (v, p) = k[r].grad(d, T::load(&xc[r][i]), if W { d * wv } else { d });
                T::store(v, &mut oc[r][i]);
                pw = pw + p;
                pb = pb + d;
            }
            if DW {
                <T::Acc as Element>::store(pw, &mut dwc[i]);
            }
            if DB {
                <T::Acc as Element>::store(pb, &mut dbc[i]);
            }
        }
    }
    if stop < n {
        for (r, dx) in dx.iter_mut().enumerate() {
            let at = n - lanes;
            end_vector::<T, W, DW, DB>(&k[r], (dy[r], x[r], w), (at, stop - at, lanes), dx, dw, db);
        }
    }
}

/// Per-feature dweight / dbias partials of a block of rows (empty when not asked for).
pub(crate) struct Grads<A> {
    dw: Vec<A>,
    db: Vec<A>,
    /// Where the `n` partials start in each buffer (see [`Grads::zeros_like`]).
    off: (usize, usize),
    n: usize,
}

impl<A: Float> Grads<A> {
    /// Zeroed partials of `n` features for the ones asked for.
    pub(crate) fn zeros(n: usize, dw: bool, db: bool) -> Self {
        let z = |on: bool| if on { vec![A::ZERO; n] } else { Vec::new() };
        Self {
            dw: z(dw),
            db: z(db),
            off: (0, 0),
            n,
        }
    }

    /// [`Grads::zeros`] placed so that feature `j` lies as far past a vector boundary as
    /// `row[j]` does (when `A` and `T` have one size): the aligned stores of the kernel to a
    /// row of `dx` are then aligned for the partials too. Each buffer gets its own offset.
    pub(crate) fn zeros_like<T: Element>(n: usize, dw: bool, db: bool, row: &[T]) -> Self {
        // bytes past a vector boundary (64 bytes, or a smaller vector's size)
        let line = (A::LANES * size_of::<A>()).min(64);
        let past = |p: *const u8| p as usize % line;
        let same = size_of::<T>() == size_of::<A>();
        let z = |on: bool| {
            if !on {
                return (Vec::new(), 0);
            }
            let v = vec![A::ZERO; n + A::LANES];
            let off = if same {
                let bytes = (past(row.as_ptr().cast()) + line - past(v.as_ptr().cast())) % line;
                bytes / size_of::<A>()
            } else {
                0
            };
            (v, off)
        };
        let ((dw, ow), (db, ob)) = (z(dw), z(db));
        Self {
            dw,
            db,
            off: (ow, ob),
            n,
        }
    }

    /// The dweight and dbias partials (each empty when not asked for).
    pub(crate) fn parts(&mut self) -> (&mut [A], &mut [A]) {
        let ((ow, ob), n) = (self.off, self.n);
        (
            self.dw.get_mut(ow..ow + n).unwrap_or_default(),
            self.db.get_mut(ob..ob + n).unwrap_or_default(),
        )
    }

    /// The sum of two blocks' partials (the merge of the fixed tree).
    pub(crate) fn add(mut self, mut other: Self) -> Self {
        let ((aw, ab), (bw, bb)) = (self.parts(), other.parts());
        for (a, b) in aw
            .iter_mut()
            .zip(bw.iter())
            .chain(ab.iter_mut().zip(bb.iter()))
        {
            *a = *a + *b;
        }
        self
    }

    /// Writes the totals to the outputs asked for.
    pub(crate) fn write(mut self, dw: Option<&mut [A]>, db: Option<&mut [A]>) {
        let (pw, pb) = self.parts();
        if let Some(dw) = dw {
            dw.copy_from_slice(pw);
        }
        if let Some(db) = db {
            db.copy_from_slice(pb);
        }
    }
}

/// Rows of `n` values per leaf block of the cross-row dweight / dbias reduction: a property of
/// the shape only (the fixed tree), about `GRAD_BLOCK` values per block.
pub(crate) fn rows_per_block(n: usize) -> usize {
    (crate::tuning::GRAD_BLOCK / n).max(1)
}

/// LayerNorm (`mean = Some`) / RMSNorm (`None`) backward over checked rows of `n` values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows_backward<T: Element>(
    n: usize,
    dy: &[T],
    x: &[T],
    w: Option<&[T]>,
    mean: Option<&[T::Acc]>,
    rstd: &[T::Acc],
    dx: &mut [T],
    dweight: Option<&mut [T::Acc]>,
    dbias: Option<&mut [T::Acc]>,
) {
    let (want_w, want_b) = (dweight.is_some(), dbias.is_some());
    let per_block = rows_per_block(n);
    let par_leaves = (crate::tuning::PAR_ELEMS / (per_block * n)).max(2);
    // rows of one alignment (n a whole number of vectors) and too long for L1 go in pairs
    let pair = super::pairs_pay::<T>(n, 4 * size_of::<T>() + 2 * size_of::<T::Acc>());
    let leaf = |blk: usize, dx: &mut [T]| {
        let mut g = Grads::zeros_like(n, want_w, want_b, dx);
        let coef = |i: usize| {
            let (dyr, xr) = (&dy[i * n..][..n], &x[i * n..][..n]);
            let mu = mean.map_or(T::Acc::ZERO, |m| m[i]);
            let fin = |s: &(T::Acc, T::Acc)| s.0.is_finite() && s.1.is_finite();
            let (cen, (s1, s2)) = Center::rescued(mu, rstd[i], fin, |c| sums(dyr, xr, w, c));
            let s1 = if mean.is_some() { s1 } else { T::Acc::ZERO };
            let c = Coef::new(cen, rstd[i], s1.to_f64(), s2.to_f64(), n, T::Acc::ONE);
            (dyr, xr, c)
        };
        let first = blk * per_block;
        let (pairs, rest) = dx.split_at_mut(if pair { dx.len() / (2 * n) * 2 * n } else { 0 });
        for (k, dxp) in pairs.chunks_mut(2 * n).enumerate() {
            let ((dy0, x0, c0), (dy1, x1, c1)) = (coef(first + 2 * k), coef(first + 2 * k + 1));
            let (dx0, dx1) = dxp.split_at_mut(n);
            let (pw, pb) = g.parts();
            dx_rows(
                [dy0, dy1],
                [x0, x1],
                w,
                [c0, c1],
                [dx0, dx1],
                want_w.then_some(pw),
                want_b.then_some(pb),
            );
        }
        let done = first + pairs.len() / n;
        for (k, dxr) in rest.chunks_mut(n).enumerate() {
            let (dyr, xr, c) = coef(done + k);
            let (pw, pb) = g.parts();
            dx_pass(
                dyr,
                xr,
                w,
                c,
                dxr,
                want_w.then_some(pw),
                want_b.then_some(pb),
            );
        }
        g
    };
    let g = crate::par::reduce_chunks_mut(dx, per_block * n, par_leaves, &leaf, &|a, b| a.add(b));
    g.write(dweight, dbias);
}

/// The sums of one GroupNorm (sample, group) or BatchNorm channel made of segments, each
/// with its channel's weight `w`: writes each segment's `(Σ dy, Σ dy·x̂)` to `out` and
/// returns the set's `(Σ g, Σ g·x̂)` (`g = dy·w`), summed in f64 in segment order.
pub(crate) fn set_sums<'s, T: Element>(
    segs: impl Iterator<Item = (&'s [T], &'s [T], T::Acc)>,
    c: Center<T::Acc>,
    out: &mut [(T::Acc, T::Acc)],
) -> (f64, f64) {
    // kept in f64: with tiny weights (1e-43) the sums are subnormal in f32, and γ = −a·Σg/N
    // would amplify their rounding by a (found by the fuzzer)
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for ((dy, x, w), o) in segs.zip(out.iter_mut()) {
        *o = sums(dy, x, None, c);
        s1 += w.to_f64() * o.0.to_f64();
        s2 += w.to_f64() * o.1.to_f64();
    }
    (s1, s2)
}

/// Adds one `(rows, C)` row's `dy` and `dy·x̂` (`x̂ = (x − μ_j)·a_j`) to per-column sums
/// (BatchNorm `Nc` / `Nhwc` backward).
pub(crate) fn col_sums_row<T: Element>(
    dy: &[T],
    x: &[T],
    mu: &[T::Acc],
    a: &[T::Acc],
    h: T::Acc,
    s1: &mut [T::Acc],
    s2: &mut [T::Acc],
) {
    type E<T> = <T as Element>::Acc;
    // x̂ = (x·h − μ·h)·a·(1/h): h = 1 plainly, 1/2 where x − μ overflows (see `Center`)
    let (hv, ih, zero) = (
        V::<T>::splat(h),
        V::<T>::splat(T::Acc::ONE / h),
        V::<T>::ZERO,
    );
    let (dc, dt) = T::as_chunks(dy);
    let (xc, xt) = T::as_chunks(x);
    let (mc, mt) = E::<T>::as_chunks(mu);
    let (rc, rt) = E::<T>::as_chunks(a);
    let (ac, at) = E::<T>::as_chunks_mut(s1);
    let (bc, bt) = E::<T>::as_chunks_mut(s2);
    for (i, (d, x)) in dc.iter().zip(xc).enumerate() {
        let d = T::load(d);
        let xm =
            T::load(x).mul_add(hv, zero - E::<T>::load(&mc[i]) * hv) * (E::<T>::load(&rc[i]) * ih);
        E::<T>::store(E::<T>::load(&ac[i]) + d, &mut ac[i]);
        E::<T>::store(d.mul_add(xm, E::<T>::load(&bc[i])), &mut bc[i]);
    }
    if !dt.is_empty() {
        let d = load_partial(dt);
        let xm =
            load_partial(xt).mul_add(hv, zero - load_partial(mt) * hv) * (load_partial(rt) * ih);
        store_partial(load_partial(at) + d, at);
        store_partial(d.mul_add(xm, load_partial(bt)), bt);
    }
}

/// Per-column [`Coef`]s as arrays (BatchNorm `Nc` / `Nhwc` backward, GroupNorm's short
/// segments), each as long as the rows.
pub(crate) struct ColCoef<'c, A> {
    pub(crate) mu: &'c [A],
    pub(crate) a: &'c [A],
    pub(crate) post: &'c [A],
    /// 1, or 1/2 where `x − μ` overflows (see [`Center`]).
    pub(crate) h: A,
    pub(crate) alpha: &'c [A],
    pub(crate) beta: &'c [A],
    pub(crate) gamma: &'c [A],
}

/// `dx = dy·α_j + x̂·β_j + γ_j`, `x̂ = (x − μ_j)·a_j`, over one `(rows, C)` row.
pub(crate) fn col_dx_row<T: Element>(dy: &[T], x: &[T], c: &ColCoef<'_, T::Acc>, dx: &mut [T]) {
    type E<T> = <T as Element>::Acc;
    let (hv, ih, zero) = (
        V::<T>::splat(c.h),
        V::<T>::splat(T::Acc::ONE / c.h),
        V::<T>::ZERO,
    );
    let f = |d: V<T>, x: V<T>, m: V<T>, a: V<T>, al: V<T>, be: V<T>, ga: V<T>, po: V<T>| {
        (d * al).mul_add(
            po,
            (x.mul_add(hv, zero - m * hv) * (a * ih)).mul_add(be, ga),
        )
    };
    let (dc, dt) = T::as_chunks(dy);
    let (xc, xt) = T::as_chunks(x);
    let (oc, ot) = T::as_chunks_mut(dx);
    let (mc, mt) = E::<T>::as_chunks(c.mu);
    let (rc, rt) = E::<T>::as_chunks(c.a);
    let (lc, lt) = E::<T>::as_chunks(c.alpha);
    let (bc, bt) = E::<T>::as_chunks(c.beta);
    let (gc, gt) = E::<T>::as_chunks(c.gamma);
    let (pc, pt) = E::<T>::as_chunks(c.post);
    for (i, (o, (d, x))) in oc.iter_mut().zip(dc.iter().zip(xc)).enumerate() {
        let v = f(
            T::load(d),
            T::load(x),
            E::<T>::load(&mc[i]),
            E::<T>::load(&rc[i]),
            E::<T>::load(&lc[i]),
            E::<T>::load(&bc[i]),
            E::<T>::load(&gc[i]),
            E::<T>::load(&pc[i]),
        );
        T::store(v, o);
    }
    if !ot.is_empty() {
        let v = f(
            load_partial(dt),
            load_partial(xt),
            load_partial(mt),
            load_partial(rt),
            load_partial(lt),
            load_partial(bt),
            load_partial(gt),
            load_partial(pt),
        );
        store_partial(v, ot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both partial buffers sit at the alignment of the row they accumulate, each by its own
    /// offset: two separately allocated buffers need not share an alignment (the fuzzer
    /// found the shared offset's assertion failing), and every row offset is served.
    #[test]
    fn partials_take_the_alignment_of_the_row() {
        let buf = vec![0.0f32; 4096 + 64];
        for off in 0..16 {
            for n in [1, 15, 16, 17, 300, 4096] {
                let row = &buf[off..off + n];
                let mut g = Grads::<f32>::zeros_like(n, true, true, row);
                let (w, b) = g.parts();
                assert_eq!((w.len(), b.len()), (n, n));
                assert!(w.iter().chain(b.iter()).all(|v| *v == 0.0));
                for p in [w.as_ptr() as usize, b.as_ptr() as usize] {
                    assert_eq!(p % 64, row.as_ptr() as usize % 64, "off {off} n {n}");
                }
            }
        }
        let mut only_b = Grads::<f32>::zeros_like(8, false, true, &buf[3..11]);
        let (w, b) = only_b.parts();
        assert_eq!((w.len(), b.len()), (0, 8));
    }
}
