//! # simdnorm
//!
//! SIMD normalization kernels over plain slices with explicit shapes and PyTorch's semantics.
//! Everything rests on one primitive, the mean and variance of many numbers, computed fast
//! and accurately:
//!
//! * [`welford`]: shifted, vectorized Welford with a reciprocal table (no division in the
//!   loop), single pass;
//! * [`two_pass`]: the corrected two-pass algorithm of Chan, Golub & LeVeque;
//! * [`moments`](fn@moments): the recommended method for the size (Welford at every size
//!   measured: one read of memory);
//! * [`Welford`]: a streaming, mergeable state;
//! * [`row_moments`] (LayerNorm statistics) and [`col_moments`] (BatchNorm statistics).
//!
//! ```
//! use simdnorm::{moments, col_moments, Moments};
//! let x: Vec<f32> = (0..10_000).map(|i| 1.0e4 + (i % 10) as f32).collect();
//! let m = moments(&x);
//! assert_eq!(m.mean, 1.0e4 + 4.5);
//! assert_eq!(m.variance(0), 8.25);
//!
//! // per-feature statistics of a (rows, features) batch
//! let mut per_feature = [Moments::default(); 10];
//! col_moments(&x, 10, &mut per_feature)?;
//! assert_eq!(per_feature[3].mean, 1.0e4 + 3.0);
//! assert_eq!(per_feature[3].m2, 0.0);
//! # Ok::<(), simdnorm::NormError>(())
//! ```
//!
//! ## Architecture
//! `oracle` (scalar reference) → `moments` (the SIMD kernels: the only home of vector loops,
//! tails, lane folds and the Chan merge) → ops → `par` (rayon drivers: fixed blocks, fixed
//! merge order). Block sizes and thresholds live in `tuning`.
//!
//! ## Accuracy
//! Worst relative errors measured against [`oracle`] are in README.md; the bars are
//! `|Δvar|/var ≤ 2e-6` (f32, n ≤ 1e6), `1e-5` (n = 1e7), `1e-14` / `1e-13` for f64, for
//! |mean|/σ up to 1e6 and scales 1e-30 to 1e30, and `|Δmean| ≤ 2e-6·(|mean| + σ)`.
//!
//! ## Threads
//! Work is split by input size into fixed blocks merged in a fixed order, so results are
//! bitwise identical for any number of rayon threads; small inputs stay on the caller's thread.
//!
//! ## Cargo features
//! * `rayon` (default): parallel drivers on rayon's current pool. Without it everything is
//!   serial and gives the same bits.
//! * `half` (default): `half::f16` and `half::bf16` as [`Element`]s, accumulated in f32.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod element;
mod error;
#[doc(hidden)]
pub mod fuzz;
mod moments;
mod ops;
pub mod oracle;
mod par;
pub mod tuning;

pub use element::{Arith, Element, Float, Vector};

/// README.md's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
pub use error::NormError;
pub use moments::{Moments, Welford, col_moments, moments, row_moments, two_pass, welford};
pub use ops::{BatchNorm, GroupNorm, LayerNorm, Layout, RmsNorm, RunningStats};

/// The SIMD vector `wide` was compiled to use for f32, e.g. `"f32x16 via avx512f"`.
///
/// `wide` selects instructions from the `target_feature`s of the build (see README.md).
///
/// # Example
/// ```
/// assert!(simdnorm::simd_width().starts_with("f32x16"));
/// ```
pub fn simd_width() -> &'static str {
    if cfg!(target_feature = "avx512f") {
        "f32x16 via avx512f (one 512-bit register)"
    } else if cfg!(target_feature = "avx2") {
        "f32x16 via avx2 (two 256-bit registers)"
    } else if cfg!(target_feature = "sse2") {
        "f32x16 via sse2 (four 128-bit registers)"
    } else {
        "f32x16 via scalar fallback"
    }
}
