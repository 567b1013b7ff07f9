//! Every block size and threshold of the crate, in one place (as matrixmultiply's
//! `archparam_defaults.rs`). Each is a property of the *input size*, never of the thread count,
//! which is what makes results bitwise identical for any rayon pool.
//!
//! Figures quoted were measured on the development machine (AMD Zen 4, 32 KiB L1d and 1 MiB
//! L2 per core, AVX-512 build); see BENCHMARKS.md.

/// Elements per leaf block of the moment kernels (`welford`, `moments`, and the summation
/// blocks of `two_pass`). 2048 f32 = 8 KiB, 2048 f64 = 16 KiB: a block read from memory by
/// the first pass of the blocked two-pass is still in L1 for its second pass. Also the
/// granularity of the pairwise Chan merge tree; at most `RECIP_LEN` Welford steps fit in one.
pub const BLOCK: usize = 2048;

/// Independent vector accumulators per kernel loop. Four f32x16 accumulators (64 values in
/// flight) cover the 4-cycle FMA latency at two FMA ports per cycle for the sums; Welford's
/// dependency chain (sub, fma, sub, fma) has four times as much work per accumulator.
pub const NACC: usize = 4;

/// A subtree of at least this many blocks is split across the rayon pool with `join`; smaller
/// ones run serially. 64 blocks = 128 Ki elements (512 KiB of f32): a rayon `join` costs a
/// few µs, a 512 KiB pass ~20 µs from L2/DRAM.
pub const PAR_BLOCKS: usize = 64;

/// `moments` uses the whole-slice two-pass (`two_pass`) up to this many elements and the
/// blocked single-pass two-pass beyond. See `moments` for the measured crossover.
pub const TWO_PASS_MAX: usize = BLOCK;

/// `row_moments`/`col_moments` hand rows or row blocks to rayon once the matrix has at least
/// this many elements (same cost argument as [`PAR_BLOCKS`]).
pub const PAR_ELEMS: usize = PAR_BLOCKS * BLOCK;

/// Bytes of one `col_moments` leaf: rows × panel columns. Its second pass reads them from L1.
pub const COL_LEAF_BYTES: usize = 16 * 1024;

/// Vectors (of `LANES` columns each) in one `col_moments` column panel: 16 × f32x16 = 256
/// columns, so a (65536, 256) BatchNorm input is streamed row after row, in address order.
pub const COL_PANEL_VECTORS: usize = 16;
