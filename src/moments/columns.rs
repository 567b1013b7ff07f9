//! Column moments of a `(rows, row_len)` matrix: adjacent columns in lanes, rows streamed.
//!
//! ```text
//! for each panel of ≤ COL_PANEL_VECTORS·LANES adjacent columns (pilot p = per column, the
//! median of the first, middle and last rows' values, scale s = 1 unless rescuing an overflow):
//!   LEAF (R ≤ RECIP_LEN rows, R·panel bytes ≈ COL_LEAF_BYTES): shifted Welford down the
//!        rows, one state (mean, m2) per column, row k of the leaf is step k of every lane:
//!          y = x·s − p,  δ = y − mean,  mean += δ·(1/k),  m2 += δ·(y − mean)
//!   TREE: leaves merged by lanes::chan (all lanes have the same count) in the fixed pairwise
//!         tree of par::reduce, so the result is the same for any thread count.
//! ```
//! The panel covers a whole row when `row_len ≤ COL_PANEL_VECTORS·LANES` (256 f32), so a
//! BatchNorm `(N, C)` input is read once, in address order, as one stream (a two-pass leaf
//! measured 35 % of read bandwidth here: the pause for its second pass starves the prefetcher).

use super::lanes::{chan, sweep_columns};
use super::{Moments, Rescue};
use crate::element::{Arith, Element, Float, RECIP_LEN, Vector};
use crate::par;
use crate::tuning::{COL_LEAF_BYTES, COL_PANEL_VECTORS as PV, PAR_ELEMS};

type V<T> = <<T as Element>::Acc as Float>::V;

/// Shifted moments of the columns of one panel; every lane has the same `count`.
#[derive(Clone, Copy)]
struct Panel<X> {
    count: u64,
    mean: [X; PV],
    m2: [X; PV],
}

/// The matrix and the panel's columns `c0..c0 + w`.
#[derive(Clone, Copy)]
struct Cols<'a, T> {
    x: &'a [T],
    row_len: usize,
    c0: usize,
    w: usize,
}

impl<T: Element> Cols<'_, T> {
    fn row(&self, r: usize) -> &[T] {
        &self.x[r * self.row_len + self.c0..][..self.w]
    }

    /// LEAF: Welford over rows `r0..r1` (at most `RECIP_LEN`), every column at once: row `k`
    /// is step `k` of every lane, so all lanes share the count and `1/k` comes from the
    /// table. The states live in L1 (a whole row of them) and the rows are read once, in
    /// address order. `SCALED` is false on the fast path (`s = 1`: a subtraction, and the
    /// scales are never loaded). Measured alternatives: two rows per visit of a state (half
    /// the state traffic) ran 2× slower from DRAM, the two interleaved row streams defeating
    /// the prefetcher (interleaving the two rows every 8 or 4 vectors instead of every vector:
    /// the same 5.9–6.5 ms); loading row `a` into 16 registers first and then visiting each state
    /// once for rows `a` and `b` (one stream) spilled and ran 1.4× slower; register-resident
    /// sub-panels of 4 vectors read rows strided and ran 2.5× slower.
    fn leaf<const SCALED: bool>(
        &self,
        r0: usize,
        r1: usize,
        s: &[V<T>; PV],
        p: &[V<T>; PV],
    ) -> Panel<V<T>> {
        debug_assert!(r1 - r0 <= RECIP_LEN);
        let zero = V::<T>::ZERO;
        let mut state = [(zero, zero, zero, zero); PV];
        for (st, (sv, pv)) in state.iter_mut().zip(s.iter().zip(p)) {
            *st = (zero, zero, *sv, V::<T>::neg_of(*pv));
        }
        let rows = (r0..r1).zip(T::Acc::RECIP).map(|(r, k)| (self.row(r), *k));
        sweep_columns(rows, &mut state, |(mean, m2, sv, np), v, k| {
            let y = if SCALED { v.mul_add(*sv, *np) } else { v + *np };
            let d = y - *mean;
            *mean = d.mul_add(V::<T>::splat(k), *mean);
            *m2 = d.mul_add(y - *mean, *m2);
        });
        Panel {
            count: (r1 - r0) as u64,
            mean: state.map(|st| st.0),
            m2: state.map(|st| st.1),
        }
    }

    /// TREE: the whole panel for per-lane scale `s` and pilot `p`.
    fn moments(&self, rows: usize, s: &[V<T>; PV], p: &[V<T>; PV]) -> Panel<V<T>> {
        let per_leaf = (COL_LEAF_BYTES / (self.w * size_of::<T>())).clamp(1, RECIP_LEN);
        let leaves = rows.div_ceil(per_leaf);
        let par_leaves = (PAR_ELEMS / (per_leaf * self.w)).max(2);
        let one = V::<T>::splat(T::Acc::ONE).to_array();
        let scaled = s.iter().any(|v| v.to_array().as_ref() != one.as_ref());
        par::reduce(
            leaves,
            par_leaves,
            &|i| {
                let (r0, r1) = (i * per_leaf, rows.min((i + 1) * per_leaf));
                if scaled {
                    self.leaf::<true>(r0, r1, s, p)
                } else {
                    self.leaf::<false>(r0, r1, s, p)
                }
            },
            &|a: Panel<V<T>>, b: Panel<V<T>>| {
                let n = (a.count + b.count) as f64;
                let wb = V::<T>::splat(T::Acc::from_f64(b.count as f64 / n));
                let w = V::<T>::splat(T::Acc::from_f64(a.count as f64 * b.count as f64 / n));
                let mut out = a;
                out.count += b.count;
                for i in 0..self.w.div_ceil(T::Acc::LANES) {
                    (out.mean[i], out.m2[i]) = chan(a.mean[i], a.m2[i], b.mean[i], b.m2[i], wb, w);
                }
                out
            },
        )
    }
}

/// Lane `j` of the panel vectors.
fn lane<A: Float>(v: &[A::V; PV], j: usize) -> A {
    v[j / A::LANES].to_array().as_ref()[j % A::LANES]
}

/// Sets lane `j` of the panel vectors.
fn set_lane<A: Float>(v: &mut [A::V; PV], j: usize, a: A) {
    let mut arr = v[j / A::LANES].to_array();
    arr.as_mut()[j % A::LANES] = a;
    v[j / A::LANES] = Vector::from_array(arr);
}

/// `col_moments` for a checked matrix with `rows ≥ 1`.
pub(crate) fn col_moments<T: Element>(
    x: &[T],
    row_len: usize,
    rows: usize,
    out: &mut [Moments<T::Acc>],
) {
    let panel = PV * T::Acc::LANES;
    par::for_each_chunk_mut(out, panel, par::worth_parallel(x.len()), |i, o| {
        let cols = Cols {
            x,
            row_len,
            c0: i * panel,
            w: o.len(),
        };
        panel_moments(&cols, rows, o);
    });
}

fn panel_moments<T: Element>(cols: &Cols<'_, T>, rows: usize, out: &mut [Moments<T::Acc>]) {
    let one = V::<T>::splat(T::Acc::ONE);
    let mut s = [one; PV];
    let mut p = [V::<T>::ZERO; PV];
    // Pilot: per column, the median of the first, middle and last rows (see `pilot_of`).
    for j in 0..out.len() {
        let column = [cols.row(0)[j], cols.row(rows / 2)[j], cols.row(rows - 1)[j]];
        set_lane(&mut p, j, super::pilot_of(&column));
    }
    let fast = cols.moments(rows, &s, &p);
    let mut rescue = false;
    for (j, o) in out.iter_mut().enumerate() {
        let m = Moments {
            count: fast.count,
            mean: lane(&fast.mean, j),
            m2: lane(&fast.m2, j),
        };
        *o = m.unshift(lane(&p, j), 0);
        rescue |= o.needs_rescue();
    }
    if !rescue {
        return;
    }
    // RESCUE (rare): overflow or underflow in some columns; redo the panel with a power-of-two
    // scale on those lanes (s = 1 on the others leaves their results bit for bit unchanged).
    let mut plan = [Rescue::Scale(0); PV * 16];
    for (j, o) in out.iter().enumerate() {
        if o.needs_rescue() {
            let column = cols.x[cols.c0 + j..].iter().step_by(cols.row_len);
            plan[j] = Rescue::plan(
                column.fold(T::Acc::ZERO, |a, v| super::max_abs_scalar(a, v.to_acc())),
            );
            if let Rescue::Scale(k) = plan[j] {
                let sj = T::Acc::exp2i(k);
                set_lane(&mut s, j, sj);
                let pj = lane::<T::Acc>(&p, j);
                set_lane(&mut p, j, pj * sj);
            }
        }
    }
    let scaled = cols.moments(rows, &s, &p);
    for (j, o) in out.iter_mut().enumerate() {
        if !o.needs_rescue() {
            continue;
        }
        *o = match plan[j] {
            Rescue::Nan => Moments::nan(o.count),
            Rescue::Scale(k) => Moments {
                count: scaled.count,
                mean: lane(&scaled.mean, j),
                m2: lane(&scaled.m2, j),
            }
            .unshift(lane(&p, j), k),
        };
    }
}
