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

use simdnorm::{
    BatchNorm, GroupNorm, LayerNorm, Layout, Moments, RmsNorm, col_moments, moments, row_moments,
    two_pass, welford,
};

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
    dtype: &'static str,
    shape: String,
    time: Duration,
    /// Bytes read once plus bytes written.
    bytes: usize,
    copy: Duration,
    /// The read-only pass over the input (reductions only).
    read: Option<Duration>,
    /// BatchNorm training's minimal traffic: one read-only pass plus one copy, same run.
    bound: Option<Duration>,
}

/// LayerNorm, RMSNorm and BatchNorm eval (as `(r, c)` = `Nc`) stored as `T`.
fn half_rows<T: simdnorm::Element>(
    dtype: &'static str,
    r: usize,
    c: usize,
    reps: usize,
    pool: &rayon::ThreadPool,
    rows: &mut Vec<Row>,
) {
    use simdnorm::Float;
    // centred data: `data`'s 1e4 offset is below half precision's resolution there (every
    // row would be constant)
    let conv = |v: Vec<f32>| -> Vec<T> {
        v.into_iter()
            .map(|x| T::from_acc(T::Acc::from_f64(x as f64 - 1.0e4)))
            .collect()
    };
    let (x, w, b) = (conv(data(r * c)), conv(data(c)), conv(data(c)));
    let mut y = x.clone();
    let reps = if r * c >= 1 << 22 { reps } else { reps * 20 };
    let copy = median(reps, || y.copy_from_slice(black_box(&x)));
    let shape = format!("{r}x{c}");
    let bytes = 2 * r * c * size_of::<T>();
    let mut push = |op: &'static str, time: Duration| {
        rows.push(Row {
            op,
            dtype,
            shape: shape.clone(),
            time,
            bytes,
            copy,
            read: None,
            bound: None,
        })
    };
    let ln = LayerNorm::new(c).weight(&w).bias(&b);
    push(
        "layer_norm",
        pool.install(|| median(reps, || ln.forward(black_box(&x), &mut y).unwrap())),
    );
    let rms = RmsNorm::new(c).weight(&w);
    push(
        "rms_norm",
        pool.install(|| median(reps, || rms.forward(black_box(&x), &mut y).unwrap())),
    );
    let bn = BatchNorm::new(c).weight(&w).bias(&b);
    let (rm, rv) = (
        vec![T::Acc::from_f64(0.0); c],
        vec![T::Acc::from_f64(0.1); c],
    );
    push(
        "bn_eval",
        pool.install(|| {
            median(reps, || {
                bn.forward_eval(black_box(&x), Layout::Nc { n: r }, &rm, &rv, &mut y)
                    .unwrap()
            })
        }),
    );
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
                dtype: "f32",
                op,
                shape: format!("{n}"),
                time,
                bytes: n * 4,
                copy,
                read: Some(read),
                bound: None,
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
        let read = Some(median(reps, || {
            black_box(xor_fold(black_box(&x)));
        }));
        let (shape, bytes) = (format!("({r}, {c})"), r * c * 4);
        let mut out = vec![Moments::default(); c];
        let time =
            pool.install(|| median(reps, || col_moments(black_box(&x), c, &mut out).unwrap()));
        rows.push(Row {
            dtype: "f32",
            op: "col_moments",
            shape: shape.clone(),
            time,
            bytes,
            copy,
            read,
            bound: None,
        });
        let mut out = vec![Moments::default(); r];
        let time =
            pool.install(|| median(reps, || row_moments(black_box(&x), c, &mut out).unwrap()));
        rows.push(Row {
            dtype: "f32",
            op: "row_moments",
            shape,
            time,
            bytes,
            copy,
            read,
            bound: None,
        });
    }
    // LayerNorm / RMSNorm forward: reads x once and writes y (2 × the bytes, as the copy).
    let shapes: &[(usize, usize)] = if o.quick {
        &[(1, 4096), (128, 4096)]
    } else {
        &[(1, 4096), (128, 4096), (4096, 4096), (65536, 256)]
    };
    for &(r, c) in shapes {
        let (x, w, b) = (data(r * c), data(c), data(c));
        let mut y = vec![0.0f32; r * c];
        let reps = if r * c >= 1 << 22 { reps } else { reps * 20 };
        let copy = median(reps, || y.copy_from_slice(black_box(&x)));
        let (ln, rms) = (
            LayerNorm::new(c).weight(&w).bias(&b),
            RmsNorm::new(c).weight(&w),
        );
        let shape = format!("{r}x{c}");
        let time = pool.install(|| median(reps, || ln.forward(black_box(&x), &mut y).unwrap()));
        rows.push(Row {
            dtype: "f32",
            op: "layer_norm",
            shape: shape.clone(),
            time,
            bytes: 2 * r * c * 4,
            copy,
            read: None,
            bound: None,
        });
        let time = pool.install(|| median(reps, || rms.forward(black_box(&x), &mut y).unwrap()));
        rows.push(Row {
            dtype: "f32",
            op: "rms_norm",
            shape,
            time,
            bytes: 2 * r * c * 4,
            copy,
            read: None,
            bound: None,
        });
    }
    // BatchNorm (train, eval) and GroupNorm: x read, y written; train also against read + copy.
    let shapes: &[(&str, Layout, usize)] = if o.quick {
        &[
            ("(4096, 256)", Layout::Nc { n: 4096 }, 256),
            ("(4, 64, 28, 28)", Layout::Nchw { n: 4, hw: 784 }, 64),
        ]
    } else {
        &[
            ("(65536, 256)", Layout::Nc { n: 65536 }, 256),
            ("(32, 64, 56, 56)", Layout::Nchw { n: 32, hw: 3136 }, 64),
            ("(32, 56·56, 64)", Layout::Nhwc { n: 32, hw: 3136 }, 64),
        ]
    };
    for &(shape, layout, c) in shapes {
        let len = match layout {
            Layout::Nc { n } => n * c,
            Layout::Nchw { n, hw } | Layout::Nhwc { n, hw } => n * hw * c,
        };
        let (x, w, b) = (data(len), data(c), data(c));
        let mut y = vec![0.0f32; len];
        let reps = if len >= 1 << 22 { reps } else { reps * 5 };
        let copy = median(reps, || y.copy_from_slice(black_box(&x)));
        let read = median(reps, || {
            black_box(xor_fold(black_box(&x)));
        });
        let bn = BatchNorm::new(c).weight(&w).bias(&b);
        let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
        let time = pool.install(|| {
            median(reps, || {
                bn.forward_train(black_box(&x), layout, &mut y, None, &mut m, &mut s)
                    .unwrap()
            })
        });
        let shape = shape.to_string();
        rows.push(Row {
            dtype: "f32",
            op: "bn_train",
            shape: shape.clone(),
            time,
            bytes: 2 * len * 4,
            copy,
            read: None,
            bound: Some(read + copy),
        });
        let (rm, rv) = (vec![1.0e4f32; c], vec![0.1f32; c]);
        let time = pool.install(|| {
            median(reps, || {
                bn.forward_eval(black_box(&x), layout, &rm, &rv, &mut y)
                    .unwrap()
            })
        });
        rows.push(Row {
            dtype: "f32",
            op: "bn_eval",
            shape: shape.clone(),
            time,
            bytes: 2 * len * 4,
            copy,
            read: None,
            bound: None,
        });
        if let Layout::Nchw { n, hw } = layout {
            let gn = GroupNorm::new(32, c).weight(&w).bias(&b);
            let time =
                pool.install(|| median(reps, || gn.forward(black_box(&x), n, hw, &mut y).unwrap()));
            rows.push(Row {
                dtype: "f32",
                op: "group_norm32",
                shape,
                time,
                bytes: 2 * len * 4,
                copy,
                read: None,
                bound: None,
            });
        }
    }
    // Backward passes: read x and dy, write dx; the copy baseline moves the same bytes
    // (a copy of 1.5 × the elements).
    let shapes: &[(&str, usize, usize, Option<Layout>)] = if o.quick {
        &[("128x4096", 128, 4096, None)]
    } else {
        &[
            ("4096x4096", 4096, 4096, None),
            ("65536x256", 65536, 256, None),
            ("(65536, 256)", 65536, 256, Some(Layout::Nc { n: 65536 })),
            (
                "(32, 64, 56, 56)",
                32 * 3136,
                64,
                Some(Layout::Nchw { n: 32, hw: 3136 }),
            ),
        ]
    };
    for &(shape, r, c, layout) in shapes {
        let len = r * c;
        let (x, dy, w) = (data(len), data(len), data(c));
        let big = data(len + len / 2);
        let mut dst = vec![0.0f32; big.len()];
        let reps = if len >= 1 << 22 { reps } else { reps * 5 };
        let copy = median(reps, || dst.copy_from_slice(black_box(&big)));
        let (mut y, mut dx) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (mut m, mut s) = (vec![0.0f32; r], vec![0.0f32; r]);
        let (mut dw, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
        let mut push = |op: &'static str, time: Duration| {
            rows.push(Row {
                dtype: "f32",
                op,
                shape: shape.to_string(),
                time,
                bytes: 3 * len * 4,
                copy,
                read: None,
                bound: None,
            })
        };
        match layout {
            None => {
                let ln = LayerNorm::new(c).weight(&w);
                ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
                let time = pool.install(|| {
                    median(reps, || {
                        ln.backward(
                            black_box(&dy),
                            &x,
                            &m,
                            &s,
                            &mut dx,
                            Some(&mut dw),
                            Some(&mut db),
                        )
                        .unwrap()
                    })
                });
                push("ln_backward", time);
                let rms = RmsNorm::new(c).weight(&w);
                let time = pool.install(|| {
                    median(reps, || {
                        rms.backward(black_box(&dy), &x, &s, &mut dx, Some(&mut dw))
                            .unwrap()
                    })
                });
                push("rms_backward", time);
            }
            Some(layout) => {
                let bn = BatchNorm::new(c).weight(&w);
                bn.forward_train(&x, layout, &mut y, None, &mut m[..c], &mut s[..c])
                    .unwrap();
                let time = pool.install(|| {
                    median(reps, || {
                        bn.backward_train(
                            black_box(&dy),
                            &x,
                            layout,
                            &m[..c],
                            &s[..c],
                            &mut dx,
                            Some(&mut dw),
                            Some(&mut db),
                        )
                        .unwrap()
                    })
                });
                push("bn_backward", time);
            }
        }
    }
    // Half storage (f32 accumulation): LayerNorm, RMSNorm, BatchNorm eval on the half bytes.
    let shapes: &[(usize, usize)] = if o.quick {
        &[(128, 4096)]
    } else {
        &[(128, 4096), (4096, 4096)]
    };
    for &(r, c) in shapes {
        half_rows::<half::bf16>("bf16", r, c, reps, &pool, &mut rows);
        half_rows::<half::f16>("f16", r, c, reps, &pool, &mut rows);
    }
    let gbs = |bytes: usize, t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
    // copy moves 2 × the input bytes; a reduction's `bytes` is the input alone.
    let copy_bytes = |r: &Row| {
        if r.read.is_some() {
            2 * r.bytes
        } else {
            r.bytes
        }
    };
    let pct_copy = |r: &Row| 100.0 * gbs(r.bytes, r.time) / gbs(copy_bytes(r), r.copy);
    let pct_read = |r: &Row| {
        r.read
            .map(|d| 100.0 * d.as_secs_f64() / r.time.as_secs_f64())
    };
    let vs_bound = |r: &Row| r.bound.map(|d| r.time.as_secs_f64() / d.as_secs_f64());
    if o.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"op\":\"{}\",\"shape\":\"{}\",\"dtype\":\"{}\",\"threads\":{},\"median_ns\":{},\"gbps\":{:.3},\"pct_copy\":{:.1},\"pct_read\":{},\"x_read_plus_copy\":{}}}",
                    r.op, r.shape, r.dtype, o.threads, r.time.as_nanos(), gbs(r.bytes, r.time), pct_copy(r),
                    pct_read(r).map_or("null".to_string(), |p| format!("{p:.1}")),
                    vs_bound(r).map_or("null".to_string(), |p| format!("{p:.3}"))
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
        "{:<12} {:>16} {:>5} {:>3} {:>12} {:>8} {:>7} {:>7} {:>11}",
        "op", "shape", "dtype", "thr", "median", "GB/s", "%copy", "%read", "×(read+copy)"
    );
    for r in &rows {
        println!(
            "{:<12} {:>16} {:>5} {:>3} {:>12} {:>8.2} {:>6.0}% {:>7} {:>11}",
            r.op,
            r.shape,
            r.dtype,
            o.threads,
            format!("{:.3?}", r.time),
            gbs(r.bytes, r.time),
            pct_copy(r),
            pct_read(r).map_or("—".to_string(), |p| format!("{p:.0}%")),
            vs_bound(r).map_or("—".to_string(), |p| format!("{p:.2}"))
        );
    }
}
