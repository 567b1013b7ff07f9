//! Every block size and threshold of the crate, in one place (as matrixmultiply's
//! `archparam_defaults.rs`). Each is a property of the *input size*, never of the thread count,
//! which is what makes results bitwise identical for any rayon pool.
//!
//! Figures quoted were measured on the development machine (AMD Zen 4, 32 KiB L1d and 1 MiB
//! L2 per core, AVX-512 build); see BENCHMARKS.md.

/// Elements per leaf block of the 1-D moment kernels (`welford`, and the summation blocks of
/// `two_pass`): the granularity of the pairwise merge tree and of the parallel split. 2048
/// f32 = 32 Welford steps of 4 × 16 lanes (at most `RECIP_LEN` = 256 fit), and the
/// per-block fold and merge cost ~5 % of the block's work.
pub const BLOCK: usize = 2048;

/// Independent vector accumulators per kernel loop. Four f32x16 accumulators (64 values in
/// flight) cover the 4-cycle FMA latency at two FMA ports per cycle for the sums; Welford's
/// dependency chain (sub, fma, sub, fma) has four times as much work per accumulator.
pub const NACC: usize = 4;

/// A subtree of at least this many blocks is split across the rayon pool with `join`; smaller
/// ones run serially, so nothing below 32 blocks (65536 values) leaves the caller's thread.
/// Measured (`welford`, f32, median of 301 calls, pools of 1 and 2 threads): with a join at
/// every level, 2 threads lose below 32 K values (0.84× at 32768) and win from 64 K (1.21×);
/// with this threshold, 2 threads give 1.49× at 65536, 1.68× at 131072, 1.88× at 262144.
pub const PAR_BLOCKS: usize = 32;

/// `row_moments`, `col_moments` and the ops hand rows or row blocks to rayon once the input
/// has at least this many elements (same cost argument as [`PAR_BLOCKS`]).
pub const PAR_ELEMS: usize = PAR_BLOCKS * BLOCK;

/// Bytes of one `col_moments` leaf (rows × row bytes; at most `RECIP_LEN` = 256 rows):
/// 256 rows of 256 f32, or 16 rows of 4096 (kept in L2 while its column blocks are swept).
/// Measured on (65536, 256) f32, 1 thread, against a read-only pass, with the earlier
/// one-row-per-visit kernel: 32 KiB leaves 69 %, 64 KiB 80 %, 256 KiB 97 % (fewer Chan
/// merges); on (4096, 4096), 512 KiB and 1 MiB leaves were no faster than 256 KiB.
pub const COL_LEAF_BYTES: usize = 256 * 1024;

/// Factor on [`PAR_BLOCKS`] / [`PAR_ELEMS`] for calls made from outside the rayon pool. The
/// first `join` from such a thread injects the job and sleeps until a worker takes it: measured
/// 10–25 µs here (n = 1e5 `welford`: 6.4 µs serial, 16.2 µs through a 2-thread pool's
/// `install`, 32 µs through a 1-thread pool's), so such a call goes parallel only from about
/// 1 Mi values (~100 µs of work), where 2 threads measured 115 → 68 µs at n = 1e6.
pub const COLD_FACTOR: usize = 16;

/// Vectors of columns whose Welford states a `col_moments` leaf updates down all its rows
/// before moving on: 16 × f32x16 = 256 columns, 16 × 256 B of states in L1. A (65536, 256)
/// BatchNorm input is then one block, its rows streamed in address order (two rows at a
/// time, half a leaf apart); wider rows are taken a block at a time within a leaf that stays
/// in L2 (`COL_LEAF_BYTES`).
pub const COL_BLOCK_VECTORS: usize = 16;

/// Values per leaf block of the cross-row reductions of the backward passes (LayerNorm /
/// RMSNorm dweight and dbias, GroupNorm per-channel sums): each block sums its rows into one
/// partial per feature, and blocks merge in the fixed tree of `par`. 32 rows of 4096 f32 per
/// block: the partials (2 × 16 KiB) stay in L1/L2 and the merges are 1/32 of the work.
pub const GRAD_BLOCK: usize = 131072;

/// The L1 data cache a row's streams are weighed against (`ops::pairs_pay`): rows whose
/// streams (LayerNorm forward: x, y, weight, bias; backward: x, dy, dx, weight and the
/// dweight / dbias partials) fill it go two at a time, sharing the parameter streams.
/// Measured, 1 thread: backward f32 (six streams, pairs from 1366 values) — throwaway probe
/// kernels 18–20 % faster for rows of 2048–16384 values, 8–13 % slower for 1024 (fits); in
/// the kernel (A/B against single rows) 4096×4096 16.8 → 14.9 ms, 128×4096 218 → 190 µs,
/// 8×4096 12.0 → 10.2 µs. LayerNorm forward with weight and bias (four streams, pairs from
/// 2048 f32 values): 4096×4096 9.7 → 8.6 ms, 128×4096 127 → 112 µs, 256×2048 117 → 113 µs;
/// f16 / bf16 128×4096 (exactly 32 KiB) 128–137 → 117–127 µs / 150 → 142–152 µs.
pub const L1_BYTES: usize = 32 * 1024;
/// Bytes at the end of a BatchNorm training input normalized first: the statistics pass
/// read the input in address order, so its last bytes are still in the last-level cache
/// when the normalize pass starts, and reading them first takes them from there instead of
/// memory (the writes then evict the older, first part of the input, which is read later
/// from memory either way). Half of a 16 MiB L3 (this machine has 32 MiB); inputs of at
/// least four times this take their tail first (`ops::batch_norm::tail_first`).
pub const LLC_REUSE_BYTES: usize = 8 * 1024 * 1024;

/// LayerNorm rows of at least this many values carry the next row's statistics pass along
/// their normalize step (`ops::run_rows`); only with the `row-along` feature, which is off by
/// default because the order is a loss on the development machine. Zen 4 (32 KiB L1d), 1
/// thread, % of copy, the order on / off (roofline, binaries alternating, 4 runs each):
/// LayerNorm 4096×4096 58–63 / 66–68, 128×4096 40 / 45–46, 65536×256 54–74 / 68–72, f16
/// 4096×4096 35–44 / 47–52; a scratch probe (not kept) 16384×1024 58–59 / 74–89, 32768×512 62–65 /
/// 86–94 (and the same direction in an AVX2 build). On the tenth session's Intel Xeon it
/// was a gain: 65536×256 59 → 64 %, 4096-wide rows 66 → 78 % (BENCHMARKS.md).
pub const ALONG_MIN_LN: usize = if cfg!(feature = "row-along") {
    256
} else {
    usize::MAX
};

/// [`ALONG_MIN_LN`] for RMSNorm, whose statistics pass is a single sum. Zen 4, on / off:
/// 4096×4096 67–77 / 69–71 %, 16384×1024 (the probe) 60–61 / 88–97 %, bf16 / f16
/// 4096×4096 52–65 / 65–74 % and 52–75 / 78–83 %. Intel Xeon (tenth session): 4096×4096
/// 72 → 80 % with it, 65536×256 77 → 70 % (so never below 1024 values).
pub const ALONG_MIN_RMS: usize = if cfg!(feature = "row-along") {
    1024
} else {
    usize::MAX
};

/// BatchNorm eval over `Nc` / `Nhwc` inputs of fewer rows than this (and small enough to
/// stay on the caller's thread) computes its per-column plans a block of columns at a time
/// on the stack and applies each block down the rows (`ops::eval_by_blocks`): no
/// allocation, and no O(C) plan arrays to build, which cost more than the rows themselves
/// for a few rows of many channels.
pub const EVAL_BLOCK_ROWS: usize = 64;

/// BatchNorm over `Nchw` inputs (eval, unpadded training, backward) takes each `(n, c)`
/// segment of at least this many values on its own; shorter segments (BatchNorm1d on
/// `(N, C, L)` with short `L`, small feature maps) are taken as `N` rows of `C·HW` columns:
/// training's statistics as column moments, each channel's `HW` columns merged
/// (`moments::grouped_shifted`), the normalize step with each channel's plan repeated over
/// its columns (`ops::ColPlan`, `ops::EvalParams::blocks`), backward's sums as column sums,
/// since per-segment set-up outweighs segments of a few vectors. Measured, 1 thread, % of
/// copy, segments / rows: eval HW = 4: 1.7 / 41, 16: 11–16 / 51–53, 64: 36–47 / 47–52, 100:
/// 51–67 / 50–52, 196: 60–82 / 54–56, 3136: 87–98 / 62–77; training (32, 64, 64) 82 /
/// 94–120 µs, (32, 64, 3136) 3.4 / 36 ms; backward, µs for (64, 256, HW) f32: HW = 4: 1180
/// / 52–61, 16: 474–687 / 217–269, 32: 558–564 / 420–424, 49: 652–694 / 690–748, 64:
/// 1088–1100 / 1513–1812, 100: 1961–2046 / 3333–3424.
pub const SEGMENT_MIN_HW: usize = 64;
