//! A probe, not the library: how fast can a plain LayerNorm-like loop over 4096×4096 f32
//! rows go on one thread with ordinary stores, against `copy_from_slice` of the same bytes?
//!
//! ```text
//! cargo run --release --example fused_rows [-- ROWS COLS REPS]
//! ```
//!
//! Each kernel is timed right after a copy of the same bytes (the ratio of the two, median
//! over the repetitions, as `benches/paired.rs` does). Statistics are a plain sum and sum of
//! squares (not the library's accurate ones); the point is the memory traffic:
//!
//! * `affine`: `y = x·w + b` per row, no statistics (one read of x);
//! * `two_pass`: per row, the statistics pass, then `y = (x − m)·r·w + b` from cache — the
//!   order the library's rows use (the second read comes from L1/L2);
//! * `fused_vec`: the statistics of row `i + 1` summed in the same loop, vector by vector, as
//!   row `i` is normalized (row `i` was read from memory while row `i − 1` was normalized),
//!   so reads from memory and writes go on together as in a copy;
//! * `fused_64`, `fused_256`: the same, alternating 64- or 256-value chunks of the two rows.
//!
//! Measured on this machine (BENCHMARKS.md, "A fused loop with ordinary stores", copy 8.4–8.9
//! ms that day): affine 86–88 %, two_pass 63 %, fused 86–91 % of copy; the library's
//! LayerNorm 68–71 % in the same hour. With ordinary stores a row loop can come near issue
//! 3's 90 % bar once the next row's reads overlap this row's writes; the library's row loop
//! does not do that yet.

use std::hint::black_box;
use std::time::Instant;
use wide::f32x16;

const LANES: usize = 16;

fn load(s: &[f32]) -> f32x16 {
    f32x16::from(<[f32; LANES]>::try_from(s).expect("16 values"))
}

fn store(v: f32x16, d: &mut [f32]) {
    d.copy_from_slice(&v.to_array());
}

/// Sums and sums of squares of `x` (a multiple of 64 values) into 4 accumulators.
fn sums(x: &[f32], s: &mut [f32x16; 4], q: &mut [f32x16; 4]) {
    for c in x.chunks_exact(4 * LANES) {
        for k in 0..4 {
            let v = load(&c[k * LANES..][..LANES]);
            s[k] += v;
            q[k] = v.mul_add(v, q[k]);
        }
    }
}

/// Mean and `1/sqrt(var + 1e-5)` from the accumulators, over `n` values.
fn stats(s: [f32x16; 4], q: [f32x16; 4], n: usize) -> (f32, f32) {
    let sum = (s[0] + s[1] + s[2] + s[3]).reduce_add();
    let sq = (q[0] + q[1] + q[2] + q[3]).reduce_add();
    let m = sum / n as f32;
    (m, 1.0 / (sq / n as f32 - m * m + 1e-5).sqrt())
}

/// Mean and `1/sqrt(var + 1e-5)` of one row.
fn row_stats(x: &[f32]) -> (f32, f32) {
    let (mut s, mut q) = ([f32x16::ZERO; 4], [f32x16::ZERO; 4]);
    sums(x, &mut s, &mut q);
    stats(s, q, x.len())
}

/// `y = (x − m)·r·w + b` over one chunk.
fn normalize(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32], m: f32, r: f32) {
    let (mv, rv) = (f32x16::splat(m), f32x16::splat(r));
    let vectors = x.chunks_exact(LANES).zip(y.chunks_exact_mut(LANES));
    for ((x, y), (w, b)) in vectors.zip(w.chunks_exact(LANES).zip(b.chunks_exact(LANES))) {
        store(((load(x) - mv) * rv).mul_add(load(w), load(b)), y);
    }
}

fn affine(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32]) {
    let n = w.len();
    for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        normalize(x, y, w, b, 0.0, 1.0);
    }
}

fn two_pass(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32]) {
    let n = w.len();
    for (x, y) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)) {
        let (m, r) = row_stats(x);
        normalize(x, y, w, b, m, r);
    }
}

/// Row `i` normalized in chunks of `CH` values (a multiple of 64), each after the same chunk
/// of row `i + 1`'s statistics ([`fused_vectors`] interleaves single vectors).
fn fused<const CH: usize>(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32]) {
    let n = w.len();
    let rows = x.len() / n;
    let mut st = row_stats(&x[..n]);
    for i in 0..rows {
        let (xr, yr) = (&x[i * n..][..n], &mut y[i * n..][..n]);
        let next = (i + 1 < rows).then(|| &x[(i + 1) * n..][..n]);
        let (mut s, mut q) = ([f32x16::ZERO; 4], [f32x16::ZERO; 4]);
        for (k, (xc, yc)) in xr.chunks_exact(CH).zip(yr.chunks_exact_mut(CH)).enumerate() {
            if let Some(xn) = next {
                sums(&xn[k * CH..][..CH], &mut s, &mut q);
            }
            let (wc, bc) = (&w[k * CH..][..CH], &b[k * CH..][..CH]);
            normalize(xc, yc, wc, bc, st.0, st.1);
        }
        st = stats(s, q, n);
    }
}

/// [`fused`] with the two rows interleaved vector by vector: the statistics of one vector
/// of row `i + 1`, then one vector of row `i` normalized.
fn fused_vectors(x: &[f32], y: &mut [f32], w: &[f32], b: &[f32]) {
    let n = w.len();
    let rows = x.len() / n;
    let mut st = row_stats(&x[..n]);
    for i in 0..rows {
        let (mv, rv) = (f32x16::splat(st.0), f32x16::splat(st.1));
        let (xr, yr) = (&x[i * n..][..n], &mut y[i * n..][..n]);
        let next = &x[(i + 1).min(rows - 1) * n..][..n];
        let (mut s, mut q) = ([f32x16::ZERO; 4], [f32x16::ZERO; 4]);
        let rows4 = xr.chunks_exact(64).zip(yr.chunks_exact_mut(64));
        let params = w.chunks_exact(64).zip(b.chunks_exact(64));
        for (((xc, yc), (wc, bc)), nc) in rows4.zip(params).zip(next.chunks_exact(64)) {
            for k in 0..4 {
                let at = k * LANES;
                let v = load(&nc[at..][..LANES]);
                s[k] += v;
                q[k] = v.mul_add(v, q[k]);
                let z = (load(&xc[at..][..LANES]) - mv) * rv;
                let out = z.mul_add(load(&wc[at..][..LANES]), load(&bc[at..][..LANES]));
                store(out, &mut yc[at..][..LANES]);
            }
        }
        st = stats(s, q, n);
    }
}

type Kernel = fn(&[f32], &mut [f32], &[f32], &[f32]);

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(d)
    };
    // at least one row, one repetition and one 256-value chunk (fused_256's unit)
    let (rows, reps) = (arg(1, 4096).max(1), arg(3, 15).max(1));
    let n = arg(2, 4096).max(1).next_multiple_of(256);
    let x: Vec<f32> = (0..rows * n).map(|i| (i % 97) as f32 * 0.1).collect();
    let (mut y, mut c) = (vec![0.0f32; rows * n], vec![0.0f32; rows * n]);
    let w: Vec<f32> = (0..n).map(|i| 1.0 + (i % 5) as f32).collect();
    let b: Vec<f32> = (0..n).map(|i| (i % 3) as f32).collect();
    let kernels: [(&str, Kernel); 5] = [
        ("affine", affine),
        ("two_pass", two_pass),
        ("fused_vec", fused_vectors),
        ("fused_64", fused::<64>),
        ("fused_256", fused::<256>),
    ];
    let mut ratios = vec![Vec::new(); kernels.len()];
    let mut copies = Vec::new();
    for _ in 0..reps {
        for ((_, kernel), r) in kernels.iter().zip(&mut ratios) {
            let t = Instant::now();
            c.copy_from_slice(black_box(&x));
            let copy = t.elapsed().as_secs_f64();
            copies.push(copy);
            let t = Instant::now();
            kernel(black_box(&x), &mut y, &w, &b);
            r.push(copy / t.elapsed().as_secs_f64());
            black_box((&y, &c));
        }
    }
    copies.sort_by(f64::total_cmp);
    println!(
        "{rows}x{n} f32, 1 thread, against a copy of the same bytes (median copy {:.2} ms)",
        1e3 * copies[copies.len() / 2]
    );
    for ((name, _), mut r) in kernels.iter().zip(ratios) {
        r.sort_by(f64::total_cmp);
        let (lo, mid, hi) = (r[0], r[r.len() / 2], r[r.len() - 1]);
        println!(
            "{name:10} {:4.0} % of copy  [{:.0} .. {:.0}]",
            100.0 * mid,
            100.0 * lo,
            100.0 * hi
        );
    }
}
