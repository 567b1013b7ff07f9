//! Results are bitwise identical for any rayon thread count: work is split by input size
//! into fixed blocks merged in a fixed order.

mod common;

use common::*;
use simdnorm::{Moments, Welford, col_moments, moments, row_moments, two_pass, welford};

fn bits(m: &Moments<f32>) -> (u64, u32, u32) {
    (m.count, m.mean.to_bits(), m.m2.to_bits())
}

/// Everything the crate computes in parallel, as bits.
fn all(x: &[f32]) -> Vec<(u64, u32, u32)> {
    let mut v = vec![bits(&welford(x)), bits(&two_pass(x)), bits(&moments(x))];
    let mut w = Welford::new();
    w.extend(x);
    v.push(bits(&w.moments()));
    for row_len in [1001usize, 300, 7] {
        let rows = x.len() / row_len;
        let mut out = vec![Moments::default(); rows];
        row_moments(&x[..rows * row_len], row_len, &mut out).unwrap();
        v.extend(out.iter().map(bits));
        let mut out = vec![Moments::default(); row_len];
        col_moments(&x[..rows * row_len], row_len, &mut out).unwrap();
        v.extend(out.iter().map(bits));
    }
    v
}

#[test]
fn identical_bits_for_1_2_3_8_threads() {
    let mut rng = Rng(42);
    // Large enough for every parallel path: 1-D trees of ~1500 leaves, row tasks, column
    // trees of many 256-row leaves and several column panels.
    let x = gaussian::<f32>(&mut rng, 3_000_017, 1.0e3, 1.0);
    let serial = all(&x);
    for threads in [1usize, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let got = pool.install(|| all(&x));
        assert_eq!(got.len(), serial.len());
        let diff = got.iter().zip(&serial).position(|(a, b)| a != b);
        assert_eq!(
            diff, None,
            "{threads} threads differ from the caller's thread at item {diff:?}"
        );
    }
}
