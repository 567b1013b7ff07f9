//! Column moments of a `(rows, row_len)` matrix: adjacent columns in lanes, rows streamed.
//!
//! ```text
//! every column at once (pilot p = per column, the median of the first, middle and last rows'
//! values, scale s = 1 unless rescuing an overflow):
//!   LEAF (R ≤ RECIP_LEN rows, R·row bytes ≈ COL_LEAF_BYTES): shifted Welford down the
//!        rows, one state (mean, m2) per column, row k of the leaf is step k of every lane:
//!          y = x·s − p,  δ = y − mean,  mean += δ·(1/k),  m2 += δ·(y − mean)
//!   TREE: leaves merged by lanes::chan (all lanes have the same count) in the fixed pairwise
//!         tree of par::reduce, so the result is the same for any thread count.
//! ```
//! Leaves span whole rows, so a BatchNorm `(N, C)` input is read once, in address order, as one
//! stream (a two-pass leaf measured 35 % of read bandwidth here: the pause for its second pass
//! starves the prefetcher). Narrow rows (C = 64 channels-last) are read `g` at a time as rows
//! of `g·C` columns, the `g` columns of a channel merged at the end ([`folded`]).

use super::lanes::{chan, sweep_column_pairs, sweep_columns};
use super::{Moments, Rescue, Run, Spread};
use crate::element::{Arith, Element, Float, RECIP_LEN, Vector};
use crate::par;
use crate::tuning::{COL_BLOCK_VECTORS, COL_LEAF_BYTES, PAR_ELEMS};

type V<T> = <<T as Element>::Acc as Float>::V;

/// Per vector of columns: (mean, m2, scale, −pilot).
type State<X> = (X, X, X, X);

/// Shifted moments of every column over some rows; every lane has the same `count`.
struct Leaf<X> {
    count: u64,
    st: Vec<State<X>>,
}

/// The matrix.
#[derive(Clone, Copy)]
struct Cols<'a, T> {
    x: &'a [T],
    row_len: usize,
}

impl<T: Element> Cols<'_, T> {
    fn row(&self, r: usize) -> &[T] {
        &self.x[r * self.row_len..][..self.row_len]
    }

    /// LEAF: Welford over rows `r0..r1` (at most `RECIP_LEN`), every column at once: row `k`
    /// is step `k` of every lane, so all lanes share the count and `1/k` comes from the
    /// table, rows taken in pairs (k, k + R/2). The states (one allocation per leaf) are
    /// updated a block of columns at a time
    /// (`COL_BLOCK_VECTORS`), so the block's states stay in L1 while the leaf's rows stay in
    /// L2; for rows of ≤ 256 f32 a block is the whole row and rows are read in address order. `SCALED` is false on the fast path (`s = 1`:
    /// a subtraction, and the scales are never loaded). Measured alternatives: 256-column
    /// panels, each a separate pass over the rows (fixed-size states on the stack): as fast
    /// for ≤ 256 columns but 32–34 % of copy at (4096, 4096), each pass reading 1 KiB of every
    /// 16 KiB row; two *adjacent* rows per visit of a state ran 2× slower from DRAM whatever
    /// the interleave (1, 4 or 8 vectors): both rows share a 4 KiB page, and lines requested
    /// out of order within a page stop the hardware prefetcher. Rows `k` and `k + R/2` (two
    /// ascending streams in different pages) keep the halved state traffic and the
    /// prefetcher: (65536, 256) f32 went from 3.1–3.2 ms to 2.4–2.5 ms on one thread. A row
    /// buffered in 16 registers spilled (1.4× slower); register-resident sub-panels of 4
    /// vectors read rows strided and ran 2.5× slower.
    fn leaf<const SCALED: bool>(&self, r0: usize, r1: usize, init: &[State<V<T>>]) -> Leaf<V<T>> {
        debug_assert!(r1 - r0 <= RECIP_LEN);
        let mut st = init.to_vec();
        let lanes = T::Acc::LANES;
        // Blocks of COL_BLOCK_VECTORS vectors of columns, each down all the leaf's rows, so the
        // states being updated stay in L1; the leaf's rows (≤ COL_LEAF_BYTES) stay in L2
        // between blocks.
        for (b, block) in st.chunks_mut(COL_BLOCK_VECTORS).enumerate() {
            let c0 = b * COL_BLOCK_VECTORS * lanes;
            let c1 = self.row_len.min(c0 + COL_BLOCK_VECTORS * lanes);
            let step = |(mean, m2, sv, np): &mut State<V<T>>, v: V<T>, k: T::Acc| {
                let y = if SCALED { v.mul_add(*sv, *np) } else { v + *np };
                let d = y - *mean;
                *mean = d.mul_add(V::<T>::splat(k), *mean);
                *m2 = d.mul_add(y - *mean, *m2);
            };
            // Rows k and k + half in turn: two ascending streams in different pages (two
            // adjacent rows interleaved defeat the prefetcher), each state visited once per
            // two rows. Step j of the lanes takes 1/j in that order; the odd row goes last.
            let half = (r1 - r0) / 2;
            let seg = |r: usize| &self.row(r)[c0..c1];
            let recip = T::Acc::RECIP;
            let pairs = (0..half).map(|k| {
                (
                    seg(r0 + k),
                    seg(r0 + half + k),
                    (recip[2 * k], recip[2 * k + 1]),
                )
            });
            sweep_column_pairs(pairs, block, |st, a, b, (ka, kb)| {
                step(st, a, ka);
                step(st, b, kb);
            });
            if (r1 - r0) % 2 == 1 {
                let last = std::iter::once((seg(r1 - 1), recip[r1 - r0 - 1]));
                sweep_columns(last, block, step);
            }
        }
        Leaf {
            count: (r1 - r0) as u64,
            st,
        }
    }

    /// TREE: every column, for the per-lane scales and pilots in `init`.
    fn moments(&self, rows: usize, init: &[State<V<T>>], scaled: bool) -> Leaf<V<T>> {
        let per_leaf = (COL_LEAF_BYTES / (self.row_len * size_of::<T>())).clamp(1, RECIP_LEN);
        let leaves = rows.div_ceil(per_leaf);
        let par_leaves = (PAR_ELEMS / (per_leaf * self.row_len)).max(2);
        par::reduce(
            leaves,
            par_leaves,
            &|i| {
                let (r0, r1) = (i * per_leaf, rows.min((i + 1) * per_leaf));
                if scaled {
                    self.leaf::<true>(r0, r1, init)
                } else {
                    self.leaf::<false>(r0, r1, init)
                }
            },
            &|mut a: Leaf<V<T>>, b: Leaf<V<T>>| {
                let n = (a.count + b.count) as f64;
                let wb = V::<T>::splat(T::Acc::from_f64(b.count as f64 / n));
                let w = V::<T>::splat(T::Acc::from_f64(a.count as f64 * b.count as f64 / n));
                for (x, y) in a.st.iter_mut().zip(&b.st) {
                    (x.0, x.1) = chan(x.0, x.1, y.0, y.1, wb, w);
                }
                a.count += b.count;
                a
            },
        )
    }

    /// The [`Spread`] of every column around its pilot (`init`'s), in row order: leaves of
    /// rows as [`Cols::moments`]'s, merged by lane maxima (exact, so in any order).
    fn spreads(&self, rows: usize, init: &[State<V<T>>]) -> Vec<Spread<T::Acc>> {
        let per_leaf = (COL_LEAF_BYTES / (self.row_len * size_of::<T>())).clamp(1, RECIP_LEN);
        let leaves = rows.div_ceil(per_leaf);
        let par_leaves = (PAR_ELEMS / (per_leaf * self.row_len)).max(2);
        let zero = V::<T>::ZERO;
        let lanes = par::reduce(
            leaves,
            par_leaves,
            &|i| {
                // (max |x|, max |x − p|, −p) per vector of columns; lanes past the last
                // column load 0 and have p = 0
                let mut acc: Vec<_> = init.iter().map(|s| (zero, zero, s.3)).collect();
                let rows = (i * per_leaf..rows.min((i + 1) * per_leaf)).map(|r| (self.row(r), ()));
                sweep_columns(rows, &mut acc, |(a, d, np), v: V<T>, ()| {
                    *a = a.max_nan(v.abs());
                    *d = d.max_nan((v + *np).abs());
                });
                acc
            },
            &|mut a: Vec<(V<T>, V<T>, V<T>)>, b| {
                for (a, b) in a.iter_mut().zip(b) {
                    (a.0, a.1) = (a.0.max_nan(b.0), a.1.max_nan(b.1));
                }
                a
            },
        );
        let mut out = Vec::with_capacity(self.row_len);
        for (a, d, _) in lanes {
            let (a, d) = (a.to_array(), d.to_array());
            for (&amax, &dmax) in a.as_ref().iter().zip(d.as_ref()) {
                if out.len() < self.row_len {
                    out.push(Spread { amax, dmax });
                }
            }
        }
        out
    }
}

/// Sets lane `j` of a per-column field (the rescue's few columns).
fn set_lane<A: Float>(
    st: &mut [State<A::V>],
    field: impl Fn(&mut State<A::V>) -> &mut A::V,
    j: usize,
    a: A,
) {
    let v = field(&mut st[j / A::LANES]);
    let mut arr = v.to_array();
    arr.as_mut()[j % A::LANES] = a;
    *v = Vector::from_array(arr);
}

/// The starting states of `row_len` columns: mean and m2 0, scale 1, pilot `pilot(j)`, built a
/// vector at a time (a lane at a time, through memory, cost ~5 ns a column: most of a
/// BatchNorm training call on 8 rows of 4096 channels, with reading them back: [`columns`]).
fn initial<T: Element>(row_len: usize, pilot: impl Fn(usize) -> T::Acc) -> Vec<State<V<T>>> {
    let (zero, one, lanes) = (V::<T>::ZERO, V::<T>::splat(T::Acc::ONE), T::Acc::LANES);
    (0..row_len.div_ceil(lanes))
        .map(|v| {
            let mut p = <V<T> as Vector<T::Acc>>::Array::default();
            for (l, p) in p.as_mut().iter_mut().enumerate() {
                if v * lanes + l < row_len {
                    *p = -pilot(v * lanes + l);
                }
            }
            (zero, zero, one, Vector::from_array(p))
        })
        .collect()
}

/// The moments of the first `row_len` columns of a leaf, unpacked from the lanes a vector at
/// a time.
fn columns<A: Float>(leaf: &Leaf<A::V>, row_len: usize) -> Vec<Moments<A>> {
    let mut out = Vec::with_capacity(row_len);
    for (m, m2) in leaf.st.iter().map(|s| (s.0.to_array(), s.1.to_array())) {
        for (&mean, &m2) in m.as_ref().iter().zip(m2.as_ref()) {
            if out.len() < row_len {
                out.push(Moments {
                    count: leaf.count,
                    mean,
                    m2,
                });
            }
        }
    }
    out
}

/// Shifted statistics of every column of a checked matrix with `rows ≥ 1`: `emit(j, p, run)`
/// for each column `j` in order, `p` its pilot and `run` the moments of `x − p` (or of the
/// rescaled column, see `Run`). `col_moments` unshifts them; BatchNorm keeps them apart.
pub(crate) fn col_shifted<T: Element>(
    x: &[T],
    row_len: usize,
    rows: usize,
    mut emit: impl FnMut(usize, T::Acc, Run<T::Acc>),
) {
    let cols = Cols { x, row_len };
    // Pilot: per column, the median of the first, middle and last rows (see `pilot_of`).
    let pilot =
        |j: usize| super::pilot_of(&[cols.row(0)[j], cols.row(rows / 2)[j], cols.row(rows - 1)[j]]);
    if let Some(folded) = folded(x, row_len, rows, &pilot) {
        for (j, m) in folded.into_iter().enumerate() {
            emit(j, pilot(j), Run::Fast(m));
        }
        return;
    }
    let pilots: Vec<T::Acc> = (0..row_len).map(pilot).collect();
    grouped_runs(cols, rows, 1, &pilots, emit);
}

/// Shifted statistics of the `chans` channels of a checked `(rows, chans·group)` matrix in
/// which channel `j` covers the `group` consecutive columns from `j·group` (BatchNorm `Nchw`
/// with short segments: `rows = N`, `group = HW`), as `(pilot, run)` per channel: the
/// column moments down the rows, every column of a channel around the channel's pilot (the
/// median of its first column's first, middle and last values), each channel's columns then
/// merged in order. A segment at a time cost ~70 ns a segment (BatchNorm training
/// (64, 256, 4) f32: 1.1 ms, 0.5 % of a copy).
pub(crate) fn grouped_shifted<T: Element>(
    x: &[T],
    chans: usize,
    group: usize,
    rows: usize,
) -> Vec<(T::Acc, Run<T::Acc>)> {
    let cols = Cols {
        x,
        row_len: chans * group,
    };
    let pilots: Vec<T::Acc> = (0..chans)
        .map(|j| {
            let k = j * group;
            super::pilot_of(&[cols.row(0)[k], cols.row(rows / 2)[k], cols.row(rows - 1)[k]])
        })
        .collect();
    let mut out = Vec::with_capacity(chans);
    grouped_runs(cols, rows, group, &pilots, |_, p, run| out.push((p, run)));
    out
}

/// [`col_shifted`]'s and [`grouped_shifted`]'s statistics: `emit(j, pilot, run)` for each
/// channel `j` in order (`pilots[j]`), over the columns `j·group..` (`group = 1`: a column
/// per channel), with the rescue. Emitted, not collected: a vector of `(pilot, Run)` built
/// and read back cost ~10 ns a column (BatchNorm training on 8 rows of 4096 channels).
fn grouped_runs<T: Element>(
    cols: Cols<'_, T>,
    rows: usize,
    group: usize,
    pilots: &[T::Acc],
    mut emit: impl FnMut(usize, T::Acc, Run<T::Acc>),
) {
    let (row_len, chans) = (cols.row_len, pilots.len());
    let mut init = initial::<T>(row_len, |k| pilots[k / group]);
    // each channel's columns merged in order (one column: itself)
    let merged = |leaf: &Leaf<V<T>>| -> Vec<Moments<T::Acc>> {
        let all = columns::<T::Acc>(leaf, row_len);
        if group == 1 {
            return all;
        }
        let fold = |ms: &[Moments<T::Acc>]| ms[1..].iter().fold(ms[0], |m, c| m.merge(c));
        all.chunks(group).map(fold).collect()
    };
    let fast = merged(&cols.moments(rows, &init, false));
    let rescue = |j: usize| fast[j].unshift(pilots[j], 0).needs_rescue();
    if !(0..chans).any(rescue) {
        for (j, (&p, &m)) in pilots.iter().zip(&fast).enumerate() {
            emit(j, p, Run::Fast(m));
        }
        return;
    }
    // RESCUE (rare but for constant channels): overflow, underflow or NaN in some channels.
    // One read of every column in row order for the spreads (a column at a time read a cache
    // line a value), then, only if some channel needs a scale, the moments redone with a
    // power-of-two scale on its lanes (s = 1 on the others leaves their results bit for bit
    // unchanged).
    let spreads = cols.spreads(rows, &init);
    let plan: Vec<Option<Rescue>> = (0..chans)
        .map(|j| {
            rescue(j).then(|| {
                let cs = j * group..(j + 1) * group;
                Rescue::plan(cs.fold(Spread::NONE, |s, c| s.merge(spreads[c])))
            })
        })
        .collect();
    let mut scaled = None;
    if plan.iter().any(|r| matches!(r, Some(Rescue::Scale(_)))) {
        for (j, pj) in plan.iter().enumerate() {
            if let Some(Rescue::Scale(k)) = pj {
                let sj = T::Acc::exp2i(*k);
                for c in j * group..(j + 1) * group {
                    set_lane(&mut init, |s| &mut s.2, c, sj);
                    set_lane(&mut init, |s| &mut s.3, c, -(pilots[j] * sj));
                }
            }
        }
        scaled = Some(merged(&cols.moments(rows, &init, true)));
    }
    for (j, pj) in plan.iter().enumerate() {
        let run = match (pj, &scaled) {
            (Some(Rescue::Nan), _) => Run::Nan(fast[j].count),
            (Some(Rescue::Scale(k)), Some(scaled)) => {
                Run::Scaled(scaled[j], pilots[j] * T::Acc::exp2i(*k), *k)
            }
            _ => Run::Fast(fast[j]),
        };
        emit(j, pilots[j], run);
    }
}

/// Narrow rows taken `g` at a time: `(rows, C)` read as `(rows/g, g·C)` with `g·C` up to one
/// block of columns (`COL_BLOCK_VECTORS` vectors), column `j'` of a wide row carrying the
/// pilot of channel `j' mod C`, and the `g` columns of each channel merged (same pilot, equal
/// counts) in a fixed order; a constant channel keeps its moments (see [`Rescue::Keep`]).
/// A 64-channel row alone is 4 vectors, so leaves of `RECIP_LEN` rows were 64 KiB and
/// every row paid the loop's set-up: measured on (100352, 64) f32 from
/// DRAM, 1 thread, 1.33–1.48 ms against 0.98–1.11 ms for the same bytes as 256 columns (a
/// read-only pass: 0.93–0.98 ms). `None` (the caller takes the plain path) when `g < 2`, when
/// `rows` is not a multiple of `g`, or when a channel needs a rescue other than `Keep`.
fn folded<T: Element>(
    x: &[T],
    row_len: usize,
    rows: usize,
    pilot: &impl Fn(usize) -> T::Acc,
) -> Option<Vec<Moments<T::Acc>>> {
    let g = COL_BLOCK_VECTORS * T::Acc::LANES / row_len;
    if g < 2 || !rows.is_multiple_of(g) {
        return None;
    }
    let wide = Cols {
        x,
        row_len: g * row_len,
    };
    let pilots: Vec<T::Acc> = (0..row_len).map(pilot).collect();
    let init = initial::<T>(wide.row_len, |j| pilots[j % row_len]);
    let wide_cols = columns::<T::Acc>(&wide.moments(rows / g, &init, false), wide.row_len);
    let merged: Vec<Moments<T::Acc>> = (0..row_len)
        .map(|j| (1..g).fold(wide_cols[j], |m, q| m.merge(&wide_cols[q * row_len + j])))
        .collect();
    let rescue = |j: usize| merged[j].unshift(pilots[j], 0).needs_rescue();
    if !(0..row_len).any(rescue) {
        return Some(merged);
    }
    // constant channels (dead units: all 0) keep these moments, exact; any other rescue
    // takes the plain path (measured (32, 3136, 64) Nhwc with 1/8 of the channels 0: the
    // plain path's second sweep and its spreads cost 2.5–4.8 ms over 6 ms)
    let spreads = wide.spreads(rows / g, &init);
    let keep = |j: usize| {
        let s = (0..g).fold(Spread::NONE, |s, q| s.merge(spreads[q * row_len + j]));
        matches!(Rescue::plan(s), Rescue::Keep)
    };
    (0..row_len)
        .all(|j| !rescue(j) || keep(j))
        .then_some(merged)
}
