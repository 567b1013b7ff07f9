//! The throughput report: each kernel on representative shapes, against `copy_from_slice`
//! and a read-only pass over the same bytes, measured in pairs in the same run.
//!
//! ```text
//! cargo run --release --example roofline [-- --quick] [--threads N] [--json]
//! ```
//! Columns: op, shape, dtype, threads, median time, effective GB/s (bytes read once + bytes
//! written), that as a % of `copy_from_slice`'s GB/s on the same bytes (copy reads and writes
//! them), as a % of a read-only pass's GB/s (the ceiling of a reduction), and for BatchNorm
//! training its time in units of (read-only pass + copy), its minimal traffic.
//!
//! Every call of an op is timed right after one call of each of its baselines, on a thread of
//! the op's pool, and the percentages are medians of those per-call ratios: this machine's
//! bandwidth drifts 20–40 % between minutes at DRAM sizes, and two calls milliseconds apart
//! see the same machine (`benches/paired.rs` does the same under criterion).

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

/// A baseline call: `copy_from_slice` or a read-only pass over the op's bytes.
type Base<'a> = &'a mut (dyn FnMut() + Send);

/// An op's timings against its baselines.
struct Timing {
    /// Median time of the op.
    op: Duration,
    /// Per baseline, the median over the calls of op time / that baseline's time.
    ratio: Vec<f64>,
    /// The median over the calls of op time / (sum of the baselines' times).
    ratio_sum: f64,
}

fn mid(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `reps` calls of `op` on a thread of `pool`, each right after one call of every baseline;
/// one warm-up round first.
fn paired(
    pool: &rayon::ThreadPool,
    reps: usize,
    base: &mut [Base<'_>],
    op: &mut (dyn FnMut() + Send),
) -> Timing {
    pool.install(|| {
        base.iter_mut().for_each(|b| b());
        op();
        let mut t_op = Vec::with_capacity(reps);
        let mut t_base = vec![Vec::with_capacity(reps); base.len()];
        for _ in 0..reps {
            for (b, t) in base.iter_mut().zip(&mut t_base) {
                let s = Instant::now();
                b();
                t.push(s.elapsed().as_secs_f64());
            }
            let s = Instant::now();
            op();
            t_op.push(s.elapsed().as_secs_f64());
        }
        let ratio_sum = mid((0..reps)
            .map(|i| t_op[i] / t_base.iter().map(|t| t[i]).sum::<f64>())
            .collect());
        let ratio = t_base
            .iter()
            .map(|t| mid(t_op.iter().zip(t).map(|(o, b)| o / b).collect()))
            .collect();
        Timing {
            op: Duration::from_secs_f64(mid(t_op)),
            ratio,
            ratio_sum,
        }
    })
}

struct Row {
    op: &'static str,
    dtype: &'static str,
    shape: String,
    time: Duration,
    /// Bytes read once plus bytes written.
    bytes: usize,
    /// Bytes the copy baseline reads plus writes.
    copy_bytes: usize,
    /// Median op time / copy time.
    copy: f64,
    /// Median op time / read-only pass time (reductions only).
    read: Option<f64>,
    /// BatchNorm training: median op time / (read-only pass + copy), its minimal traffic.
    bound: Option<f64>,
}

impl Row {
    /// A row for an op timed against a copy of its bytes alone.
    fn vs_copy(
        op: &'static str,
        dtype: &'static str,
        shape: &str,
        bytes: usize,
        t: Timing,
    ) -> Self {
        Row {
            op,
            dtype,
            shape: shape.to_string(),
            time: t.op,
            bytes,
            copy_bytes: bytes,
            copy: t.ratio[0],
            read: None,
            bound: None,
        }
    }
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
    let (mut y, mut dst) = (x.clone(), x.clone());
    let reps = if r * c >= 1 << 22 { reps } else { reps * 20 };
    let mut copy = || dst.copy_from_slice(black_box(&x));
    let shape = format!("{r}x{c}");
    let bytes = 2 * r * c * size_of::<T>();
    let ln = LayerNorm::new(c).weight(&w).bias(&b);
    let t = paired(pool, reps, &mut [&mut copy], &mut || {
        ln.forward(black_box(&x), &mut y).unwrap()
    });
    rows.push(Row::vs_copy("layer_norm", dtype, &shape, bytes, t));
    let rms = RmsNorm::new(c).weight(&w);
    let t = paired(pool, reps, &mut [&mut copy], &mut || {
        rms.forward(black_box(&x), &mut y).unwrap()
    });
    rows.push(Row::vs_copy("rms_norm", dtype, &shape, bytes, t));
    let bn = BatchNorm::new(c).weight(&w).bias(&b);
    let (rm, rv) = (
        vec![T::Acc::from_f64(0.0); c],
        vec![T::Acc::from_f64(0.1); c],
    );
    let t = paired(pool, reps, &mut [&mut copy], &mut || {
        bn.forward_eval(black_box(&x), Layout::Nc { n: r }, &rm, &rv, &mut y)
            .unwrap()
    });
    rows.push(Row::vs_copy("bn_eval", dtype, &shape, bytes, t));
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
    // Reductions: read the input once; baselines a copy (2 × the bytes) and a read-only pass.
    let reduction = |op, shape: String, n: usize, t: Timing| Row {
        op,
        dtype: "f32",
        shape,
        time: t.op,
        bytes: n * 4,
        copy_bytes: 2 * n * 4,
        copy: t.ratio[0],
        read: Some(t.ratio[1]),
        bound: None,
    };
    for &n in sizes {
        let x = data(n);
        let mut dst = vec![0.0f32; n];
        let reps = if n >= 10_000_000 {
            reps.min(7)
        } else {
            reps * 20
        };
        let mut copy = || dst.copy_from_slice(black_box(&x));
        let mut read = || {
            black_box(xor_fold(black_box(&x)));
        };
        type K = fn(&[f32]) -> Moments<f32>;
        let ks: [(&str, K); 3] = [
            ("moments", moments),
            ("welford", welford),
            ("two_pass", two_pass),
        ];
        for (op, k) in ks {
            let t = paired(&pool, reps, &mut [&mut copy, &mut read], &mut || {
                black_box(k(black_box(&x)));
            });
            rows.push(reduction(op, format!("{n}"), n, t));
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
        let mut copy = || dst.copy_from_slice(black_box(&x));
        let mut read = || {
            black_box(xor_fold(black_box(&x)));
        };
        let shape = format!("({r}, {c})");
        let mut out = vec![Moments::default(); c];
        let t = paired(&pool, reps, &mut [&mut copy, &mut read], &mut || {
            col_moments(black_box(&x), c, &mut out).unwrap()
        });
        rows.push(reduction("col_moments", shape.clone(), r * c, t));
        let mut out = vec![Moments::default(); r];
        let t = paired(&pool, reps, &mut [&mut copy, &mut read], &mut || {
            row_moments(black_box(&x), c, &mut out).unwrap()
        });
        rows.push(reduction("row_moments", shape, r * c, t));
    }
    // LayerNorm / RMSNorm forward: reads x once and writes y (2 × the bytes, as the copy).
    let shapes: &[(usize, usize)] = if o.quick {
        &[(1, 4096), (128, 4096), (4096, 8)]
    } else {
        // rows shorter than a vector (65536×8) are per-row work, not bandwidth
        &[
            (1, 4096),
            (128, 4096),
            (4096, 4096),
            (65536, 256),
            (65536, 8),
        ]
    };
    for &(r, c) in shapes {
        let (x, w, b) = (data(r * c), data(c), data(c));
        let (mut y, mut dst) = (vec![0.0f32; r * c], vec![0.0f32; r * c]);
        let reps = if r * c >= 1 << 22 { reps } else { reps * 20 };
        let mut copy = || dst.copy_from_slice(black_box(&x));
        let (ln, rms) = (
            LayerNorm::new(c).weight(&w).bias(&b),
            RmsNorm::new(c).weight(&w),
        );
        let (shape, bytes) = (format!("{r}x{c}"), 2 * r * c * 4);
        let t = paired(&pool, reps, &mut [&mut copy], &mut || {
            ln.forward(black_box(&x), &mut y).unwrap()
        });
        rows.push(Row::vs_copy("layer_norm", "f32", &shape, bytes, t));
        let t = paired(&pool, reps, &mut [&mut copy], &mut || {
            rms.forward(black_box(&x), &mut y).unwrap()
        });
        rows.push(Row::vs_copy("rms_norm", "f32", &shape, bytes, t));
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
            // BatchNorm1d at a decode-sized batch: the per-channel plans weigh most
            ("(8, 4096)", Layout::Nc { n: 8 }, 4096),
            // 2×2 feature maps: segments (and InstanceNorm rows) shorter than a vector
            ("(64, 256, 2, 2)", Layout::Nchw { n: 64, hw: 4 }, 256),
        ]
    };
    for &(shape, layout, c) in shapes {
        let len = match layout {
            Layout::Nc { n } => n * c,
            Layout::Nchw { n, hw } | Layout::Nhwc { n, hw } => n * hw * c,
        };
        let (x, w, b) = (data(len), data(c), data(c));
        let (mut y, mut dst) = (vec![0.0f32; len], vec![0.0f32; len]);
        let reps = if len >= 1 << 22 { reps } else { reps * 5 };
        let mut copy = || dst.copy_from_slice(black_box(&x));
        let mut read = || {
            black_box(xor_fold(black_box(&x)));
        };
        let bytes = 2 * len * 4;
        let bn = BatchNorm::new(c).weight(&w).bias(&b);
        let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
        let t = paired(&pool, reps, &mut [&mut copy, &mut read], &mut || {
            bn.forward_train(black_box(&x), layout, &mut y, None, &mut m, &mut s)
                .unwrap()
        });
        let bound = Some(t.ratio_sum);
        rows.push(Row {
            bound,
            ..Row::vs_copy("bn_train", "f32", shape, bytes, t)
        });
        let (rm, rv) = (vec![1.0e4f32; c], vec![0.1f32; c]);
        let t = paired(&pool, reps, &mut [&mut copy], &mut || {
            bn.forward_eval(black_box(&x), layout, &rm, &rv, &mut y)
                .unwrap()
        });
        rows.push(Row::vs_copy("bn_eval", "f32", shape, bytes, t));
        if let Layout::Nchw { n, hw } = layout {
            let gn = GroupNorm::new(32, c).weight(&w).bias(&b);
            let t = paired(&pool, reps, &mut [&mut copy], &mut || {
                gn.forward(black_box(&x), n, hw, &mut y).unwrap()
            });
            rows.push(Row::vs_copy("group_norm32", "f32", shape, bytes, t));
            if hw < 16 {
                let inst = GroupNorm::instance(c).weight(&w).bias(&b);
                let t = paired(&pool, reps, &mut [&mut copy], &mut || {
                    inst.forward(black_box(&x), n, hw, &mut y).unwrap()
                });
                rows.push(Row::vs_copy("instance_norm", "f32", shape, bytes, t));
            }
        }
    }
    if !o.quick {
        // BatchNorm training with every eighth channel constant 0 (dead ReLU units): a
        // constant channel's m2 = 0 asks for the rescue, which must not cost a second pass
        let (n, c) = (65536, 256);
        let mut x = data(n * c);
        x.chunks_mut(8).for_each(|g| g[0] = 0.0);
        let (w, b) = (data(c), data(c));
        let (mut y, mut dst) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        let mut copy = || dst.copy_from_slice(black_box(&x));
        let mut read = || {
            black_box(xor_fold(black_box(&x)));
        };
        let bn = BatchNorm::new(c).weight(&w).bias(&b);
        let (mut m, mut s) = (vec![0.0f32; c], vec![0.0f32; c]);
        let t = paired(&pool, reps, &mut [&mut copy, &mut read], &mut || {
            bn.forward_train(
                black_box(&x),
                Layout::Nc { n },
                &mut y,
                None,
                &mut m,
                &mut s,
            )
            .unwrap()
        });
        rows.push(Row {
            bound: Some(t.ratio_sum),
            ..Row::vs_copy("bn_train_dead", "f32", "(65536, 256)", 2 * x.len() * 4, t)
        });
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
        let mut copy = || dst.copy_from_slice(black_box(&big));
        let (mut y, mut dx) = (vec![0.0f32; len], vec![0.0f32; len]);
        let (mut m, mut s) = (vec![0.0f32; r], vec![0.0f32; r]);
        let (mut dw, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
        let bytes = 3 * len * 4;
        match layout {
            None => {
                let ln = LayerNorm::new(c).weight(&w);
                ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
                let t = paired(&pool, reps, &mut [&mut copy], &mut || {
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
                });
                rows.push(Row::vs_copy("ln_backward", "f32", shape, bytes, t));
                let rms = RmsNorm::new(c).weight(&w);
                let t = paired(&pool, reps, &mut [&mut copy], &mut || {
                    rms.backward(black_box(&dy), &x, &s, &mut dx, Some(&mut dw))
                        .unwrap()
                });
                rows.push(Row::vs_copy("rms_backward", "f32", shape, bytes, t));
            }
            Some(layout) => {
                let bn = BatchNorm::new(c).weight(&w);
                bn.forward_train(&x, layout, &mut y, None, &mut m[..c], &mut s[..c])
                    .unwrap();
                let t = paired(&pool, reps, &mut [&mut copy], &mut || {
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
                });
                rows.push(Row::vs_copy("bn_backward", "f32", shape, bytes, t));
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
    // %copy: the op's GB/s over the copy's, from the paired time ratio.
    let pct_copy = |r: &Row| 100.0 * r.bytes as f64 / r.copy_bytes as f64 / r.copy;
    let pct_read = |r: &Row| r.read.map(|q| 100.0 / q);
    if o.json {
        let items: Vec<String> = rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"op\":\"{}\",\"shape\":\"{}\",\"dtype\":\"{}\",\"threads\":{},\"median_ns\":{},\"gbps\":{:.3},\"pct_copy\":{:.1},\"pct_read\":{},\"x_read_plus_copy\":{}}}",
                    r.op, r.shape, r.dtype, o.threads, r.time.as_nanos(), gbs(r.bytes, r.time), pct_copy(r),
                    pct_read(r).map_or("null".to_string(), |p| format!("{p:.1}")),
                    r.bound.map_or("null".to_string(), |p| format!("{p:.3}"))
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
            r.bound.map_or("—".to_string(), |p| format!("{p:.2}"))
        );
    }
}
