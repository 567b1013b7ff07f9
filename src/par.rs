//! Parallel drivers: fixed-size leaves, a fixed merge tree, a serial threshold.
//!
//! The reduction tree over `n` leaves depends on `n` alone (BLAKE3's `left_subtree_len`: the
//! left subtree takes the largest power of two below `n`), so the same merges happen in the
//! same order whether a subtree runs on one thread or is split across the pool with
//! `rayon::join`. That makes every result bitwise identical for any number of threads, and a
//! pairwise tree keeps the rounding error of the merges at O(log n) instead of O(n).

use crate::tuning;

/// Largest power of two strictly below `n` (`n >= 2`): the size of the left subtree.
#[inline]
fn left_len(n: usize) -> usize {
    debug_assert!(n >= 2, "left_len({n})");
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// `f(a)` and `f(b)` on the pool when the `rayon` feature is on, else one after the other.
#[inline]
pub(crate) fn join<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    #[cfg(feature = "rayon")]
    {
        rayon::join(a, b)
    }
    #[cfg(not(feature = "rayon"))]
    {
        (a(), b())
    }
}

/// How much more work a call needs before it goes parallel: 1 on a rayon worker thread,
/// `tuning::COLD_FACTOR` from outside the pool, where the first `join` has to wake the pool
/// (see `tuning::COLD_FACTOR`). Only *whether* work is split depends on it, never the merge
/// tree, so the bits of every result are the same either way.
pub(crate) fn par_scale() -> usize {
    #[cfg(feature = "rayon")]
    if rayon::current_thread_index().is_some() {
        return 1;
    }
    tuning::COLD_FACTOR
}

/// Whether `elems` values of work are worth spreading over the pool from this thread.
pub(crate) fn worth_parallel(elems: usize) -> bool {
    cfg!(feature = "rayon") && elems >= tuning::PAR_ELEMS * par_scale()
}

/// Reduces leaves `0..n` (n ≥ 1) with the fixed pairwise tree. Subtrees of at least
/// `par_leaves · par_scale()` leaves are split across the pool.
pub(crate) fn reduce<R: Send>(
    n: usize,
    par_leaves: usize,
    leaf: &(impl Fn(usize) -> R + Sync),
    combine: &(impl Fn(R, R) -> R + Sync),
) -> R {
    debug_assert!(n >= 1, "reduce over no leaves");
    if n == 1 {
        // One leaf (a row of the ops, most often): no tree and no look-up of the pool.
        return leaf(0);
    }
    reduce_range(0, n, (par_leaves * par_scale()).max(2), leaf, combine)
}

fn reduce_range<R: Send>(
    lo: usize,
    n: usize,
    par_leaves: usize,
    leaf: &(impl Fn(usize) -> R + Sync),
    combine: &(impl Fn(R, R) -> R + Sync),
) -> R {
    if n == 1 {
        return leaf(lo);
    }
    let l = left_len(n);
    let (a, b) = if n >= par_leaves {
        join(
            || reduce_range(lo, l, par_leaves, leaf, combine),
            || reduce_range(lo + l, n - l, par_leaves, leaf, combine),
        )
    } else {
        (
            reduce_range(lo, l, par_leaves, leaf, combine),
            reduce_range(lo + l, n - l, par_leaves, leaf, combine),
        )
    };
    combine(a, b)
}

/// [`reduce`] over the consecutive chunks of `out` (`chunk` elements, the last may be
/// shorter; at least one chunk): `leaf(i, chunk_i)` may write its chunk. The tree is that of
/// [`reduce`], so results are the same for any thread count.
pub(crate) fn reduce_chunks_mut<O: Send, R: Send>(
    out: &mut [O],
    chunk: usize,
    par_leaves: usize,
    leaf: &(impl Fn(usize, &mut [O]) -> R + Sync),
    combine: &(impl Fn(R, R) -> R + Sync),
) -> R {
    let n = out.len().div_ceil(chunk).max(1);
    chunks_range(
        out,
        0,
        n,
        chunk,
        (par_leaves * par_scale()).max(2),
        leaf,
        combine,
    )
}

fn chunks_range<O: Send, R: Send>(
    out: &mut [O],
    lo: usize,
    n: usize,
    chunk: usize,
    par_leaves: usize,
    leaf: &(impl Fn(usize, &mut [O]) -> R + Sync),
    combine: &(impl Fn(R, R) -> R + Sync),
) -> R {
    if n == 1 {
        return leaf(lo, out);
    }
    let l = left_len(n);
    let (a, b) = out.split_at_mut((l * chunk).min(out.len()));
    let (ra, rb) = if n >= par_leaves {
        join(
            || chunks_range(a, lo, l, chunk, par_leaves, leaf, combine),
            || chunks_range(b, lo + l, n - l, chunk, par_leaves, leaf, combine),
        )
    } else {
        (
            chunks_range(a, lo, l, chunk, par_leaves, leaf, combine),
            chunks_range(b, lo + l, n - l, chunk, par_leaves, leaf, combine),
        )
    };
    combine(ra, rb)
}

/// Reduces `x` in leaf blocks of `tuning::BLOCK` elements.
pub(crate) fn reduce_blocks<T: Sync, R: Send>(
    x: &[T],
    leaf: &(impl Fn(&[T]) -> R + Sync),
    combine: &(impl Fn(R, R) -> R + Sync),
) -> R {
    let n = x.len().div_ceil(tuning::BLOCK).max(1);
    reduce(
        n,
        tuning::PAR_BLOCKS,
        &|i| {
            let lo = i * tuning::BLOCK;
            leaf(&x[lo..x.len().min(lo + tuning::BLOCK)])
        },
        combine,
    )
}

/// Calls `f(i, chunk)` for the consecutive chunks of `out` of length `chunk` (the last may be
/// shorter), spread over the pool when `parallel`. Chunks are independent, so the results do
/// not depend on how they are spread over threads.
pub(crate) fn for_each_chunk_mut<O: Send>(
    out: &mut [O],
    chunk: usize,
    parallel: bool,
    f: impl Fn(usize, &mut [O]) + Sync + Send,
) {
    let chunk = chunk.max(1);
    #[cfg(feature = "rayon")]
    if parallel {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, o)| f(i, o));
        return;
    }
    let _ = parallel;
    for (i, o) in out.chunks_mut(chunk).enumerate() {
        f(i, o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn left_len_is_largest_power_of_two_below() {
        assert_eq!(left_len(2), 1);
        assert_eq!(left_len(3), 2);
        assert_eq!(left_len(4), 2);
        assert_eq!(left_len(5), 4);
        assert_eq!(left_len(1024), 512);
        assert_eq!(left_len(1025), 1024);
    }

    #[test]
    fn reduce_visits_every_leaf_once_in_order() {
        for n in 1..200 {
            let v = reduce(n, 4, &|i| vec![i], &|mut a, b| {
                a.extend(b);
                a
            });
            assert_eq!(v, (0..n).collect::<Vec<_>>());
        }
    }
}
