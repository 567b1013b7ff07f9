//! The throughput report: each kernel on representative shapes, against `copy_from_slice`
//! and a read-only pass over the same bytes, measured in the same run.
//!
//! ```text
//! cargo run --release --example roofline [-- --quick] [--threads N] [--json]
//! ```
//! Columns: op, shape, dtype, threads, median time, effective GB/s (bytes read once + bytes
//! written), that as a % of `copy_from_slice`'s GB/s on the same bytes (copy reads and writes
//! them), and as a % of a read-only pass's GB/s (the ceiling of a reduction).

use std::hint::black_box;
use std::time::{Duration, Instant};

#[path = "../benches/support/mod.rs"]
mod support;
use support::{data, xor_fold};

use simdnorm::{Moments, col_moments, moments, row_moments, two_pass, welford};

struct Opts {
    quick: bool,
    threads: usize,
    json: bool,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Opts {
        quick: false,
        threads: 1,
        json: false,
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = true,
            "--threads" => {
                i += 1;
                o.threads = args.get(i).and_then(|t| t.parse().ok()).unwrap_or_else(|| {
                    eprintln!("--threads needs a number");
                    std::process::exit(2)
                });
            }
            other => {
                eprintln!("unknown option {other}; use --quick, --threads N, --json");
                std::process::exit(2)
            }
        }
        i += 1;
    }
    o
}

/// Median of `reps` timings of `f`, after one warm-up call.
fn median(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut t: Vec<Duration> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

struct Row {
    op: &'static str,
    shape: String,
    time: Duration,
    bytes: usize,
    copy: Duration,
    read: Duration,
}

fn main() {
    let o = opts();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(o.threads)
        .build()
        .expect("rayon pool");
    let (sizes, reps): (&[usize], usize) = if o.quick {
        (&[4096, 1_000_000], 5)
    } else {
        (&[4096, 1_000_000, 100_000_000], 11)
    };
    let mut rows = Vec::new();
    for &n in sizes {
        let x = data(n);
        let mut dst = vec![0.0f32; n];
        let reps = if n >= 10_000_000 {
            reps.min(7)
        } else {
            reps * 20
        };
        let copy = median(reps, || dst.copy_from_slice(black_box(&x)));
        let read = median(reps, || {
            black_box(xor_fold(black_box(&x)));
        });
        type K = fn(&[f32]) -> Moments<f32>;
        let ks: [(&str, K); 3] = [
            ("moments", moments),
            ("welford", welford),
            ("two_pass", two_pass),
        ];
        for (op, k) in ks {
            let time = pool.install(|| {
                median(reps, || {
                    black_box(k(black_box(&x)));
                })
            });
            rows.push(Row {
                op,
                shape: format!("{n}"),
                time,
                bytes: n * 4,
                copy,
                read,
            });
        }
    }
    let shapes: &[(usize, usize)] = if o.quick {
        &[(4096, 256)]
    } else {
        &[(65536, 256), (4096, 4096)]
    };
    for &(r, c) in shapes {
        let x = data(r * c);
        let mut dst = vec![0.0f32; r * c];
        let copy = median(reps, || dst.copy_from_slice(black_box(&x)));
        let read = median(reps, || {
            black_box(xor_fold(black_box(&x)));
        });
        let mut out = vec![Moments::default(); c];
        let time =
            pool.install(|| median(reps, || col_moments(black_box(&x), c, &mut out).unwrap()));
        rows.push(Row {
            op: "col_moments",
            shape: format!("({r}, {c})"),
            time,
            bytes: r * c * 4,
            copy,
            read,
        });
        let mut out = vec![Moments::default(); r];
        let time =
            pool.install(|| median(reps, || row_moments(black_box(&x), c, &mut out).unwrap()));
        rows.push(Row {
            op: "row_moments",
            shape: format!("({r}, {c})"),
            time,
            bytes: r * c * 4,
            copy,
            read,
        });
    }
    let gbs = |bytes: usize, t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
    if o.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"op\":\"{}\",\"shape\":\"{}\",\"dtype\":\"f32\",\"threads\":{},\"median_ns\":{},\"gbps\":{:.3},\"pct_copy\":{:.1},\"pct_read\":{:.1}}}",
                    r.op, r.shape, o.threads, r.time.as_nanos(), gbs(r.bytes, r.time),
                    100.0 * gbs(r.bytes, r.time) / gbs(2 * r.bytes, r.copy),
                    100.0 * r.read.as_secs_f64() / r.time.as_secs_f64()
                )
            })
            .collect();
        println!(
            "{{\"simd\":\"{}\",\"rows\":[{}]}}",
            simdnorm::simd_width(),
            items.join(",")
        );
        return;
    }
    println!(
        "simdnorm roofline — SIMD: {} — {} thread(s){}",
        simdnorm::simd_width(),
        o.threads,
        if o.quick { " — quick" } else { "" }
    );
    println!(
        "{:<12} {:>14} {:>5} {:>3} {:>12} {:>8} {:>7} {:>7}",
        "op", "shape", "dtype", "thr", "median", "GB/s", "%copy", "%read"
    );
    for r in &rows {
        println!(
            "{:<12} {:>14} {:>5} {:>3} {:>12} {:>8.2} {:>6.0}% {:>6.0}%",
            r.op,
            r.shape,
            "f32",
            o.threads,
            format!("{:.3?}", r.time),
            gbs(r.bytes, r.time),
            100.0 * gbs(r.bytes, r.time) / gbs(2 * r.bytes, r.copy),
            100.0 * r.read.as_secs_f64() / r.time.as_secs_f64()
        );
    }
}
