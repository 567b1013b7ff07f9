//! Shifted, vectorized Welford without division in the hot loop.
//!
//! ```text
//! for each step k = 1..=K (K ≤ RECIP_LEN; one step = NACC vectors of LANES values):
//!     y = x·s − p                  (pilot shift: y = O(σ) even when |mean| ≫ σ)
//!     δ = y − mean
//!     mean += δ · (1/k)            (1/k from the table Float::RECIP, as PyTorch's
//!                                   RowwiseMoments does, instead of a division)
//!     m2   += δ · (y − mean)
//! fold the NACC·LANES lane states (all of count K) by equal-count Chan merges (lanes::fold_equal)
//! the values after the last whole step (< NACC·LANES) go through two_pass::block and are
//! merged in with Moments::merge.
//! ```
//! A leaf is `tuning::BLOCK` values, so K ≤ 2048 / (4·8) = 64 = RECIP_LEN; leaves are merged by
//! the pairwise Chan tree of `par::reduce_blocks`.

use super::Moments;
use super::lanes::fold_equal;
use super::two_pass;
use crate::element::{Arith, Element, Float, RECIP_LEN, Vector};
use crate::tuning::{BLOCK, NACC};

const _: () = assert!(
    BLOCK / (NACC * 8) <= RECIP_LEN,
    "a block needs more 1/k than the table"
);

/// Moments of `y = x·s − p` over one non-empty block of at most `BLOCK` values.
#[inline]
pub(crate) fn block<T: Element>(x: &[T], s: T::Acc, p: T::Acc) -> Moments<T::Acc> {
    debug_assert!(!x.is_empty() && x.len() <= BLOCK, "block of {}", x.len());
    let (chunks, _) = T::as_chunks(x);
    let (steps, _) = chunks.as_chunks::<NACC>();
    if steps.is_empty() {
        return two_pass::block(x, s, p);
    }
    let zero = <T::Acc as Float>::V::ZERO;
    let (sv, npv) = (
        <T::Acc as Float>::V::splat(s),
        <T::Acc as Float>::V::splat(-p),
    );
    let mut mean = [zero; NACC];
    let mut m2 = [zero; NACC];
    // LOOP: one Welford step per group of NACC vectors, 1/k from the table.
    for (g, r) in steps.iter().zip(T::Acc::RECIP) {
        let r = <T::Acc as Float>::V::splat(*r);
        for k in 0..NACC {
            let y = T::load(&g[k]).mul_add(sv, npv);
            let d = y - mean[k];
            mean[k] = d.mul_add(r, mean[k]);
            m2[k] = d.mul_add(y - mean[k], m2[k]);
        }
    }
    // FOLD: accumulators, then lanes; every state has the same count.
    let splat = <T::Acc as Float>::V::splat;
    let count = fold_equal(&mut mean, &mut m2, steps.len() as u64, |v| {
        splat(T::Acc::from_f64(v))
    });
    let (mut lm, mut lq) = (mean[0].to_array(), m2[0].to_array());
    let count = fold_equal(lm.as_mut(), lq.as_mut(), count, T::Acc::from_f64);
    let head = Moments {
        count,
        mean: lm.as_ref()[0],
        m2: lq.as_ref()[0],
    };
    // TAIL: fewer than NACC·LANES values.
    let done = count as usize;
    if done < x.len() {
        head.merge(&two_pass::block(&x[done..], s, p))
    } else {
        head
    }
}
