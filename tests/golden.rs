//! Replays the PyTorch 2.15 reference cases of `tests/data/` (copied from `shared/golden/`;
//! format and tolerance rule in `tests/data/GOLDEN.md`) through the simdnorm API.
//! Every op's cases (LayerNorm, RMSNorm, BatchNorm train/eval/masked with running statistics
//! over three batches, GroupNorm / InstanceNorm), forward and backward.

mod common;

use common::storage_ulp;
use half::{bf16, f16};
use serde_json::Value;
use simdnorm::{BatchNorm, Element, Float, GroupNorm, LayerNorm, Layout, RmsNorm, RunningStats};

const K: f64 = 8.0;

static BACKWARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts replayed backward cases (checked by `backward_cases_are_replayed`).
fn replayed_backward(k: usize) {
    BACKWARD.fetch_add(k, std::sync::atomic::Ordering::Relaxed);
}

struct Golden {
    cases: Vec<Value>,
    data: Vec<u8>,
}

fn golden() -> Golden {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/");
    let index: Value =
        serde_json::from_slice(&std::fs::read(format!("{dir}index.json")).unwrap()).unwrap();
    Golden {
        cases: index["cases"].as_array().unwrap().clone(),
        data: std::fs::read(format!("{dir}data.bin")).unwrap(),
    }
}

/// A stored value type.
trait Stored: Sized {
    const WIDTH: usize;
    fn from_le(b: &[u8]) -> Self;
}
macro_rules! stored {
    ($t:ty, $w:expr, $f:expr) => {
        impl Stored for $t {
            const WIDTH: usize = $w;
            fn from_le(b: &[u8]) -> Self {
                $f(b.try_into().unwrap())
            }
        }
    };
}
stored!(f32, 4, f32::from_le_bytes);
stored!(f64, 8, f64::from_le_bytes);
stored!(f16, 2, |b| f16::from_bits(u16::from_le_bytes(b)));
stored!(u64, 8, u64::from_le_bytes);
stored!(bf16, 2, |b| bf16::from_bits(u16::from_le_bytes(b)));

impl Golden {
    fn arr<S: Stored>(&self, case: &Value, key: &str) -> Option<Vec<S>> {
        let a = case["arrays"].get(key)?.as_array()?;
        let (off, n) = (a[1].as_u64()? as usize, a[2].as_u64()? as usize);
        Some(
            self.data[off..off + n * S::WIDTH]
                .chunks(S::WIDTH)
                .map(S::from_le)
                .collect(),
        )
    }
}

#[track_caller]
fn close(got: f64, want: f64, tol: f64, what: &str) {
    let ok = (want.is_nan() && got.is_nan())
        || (want.is_infinite() && got == want)
        || (got.is_finite() && (got - want).abs() <= tol);
    assert!(ok, "{what}: {got} vs reference {want} (tol {tol:e})");
}

/// Per-row (μ, r, σ) of `x` around the reference statistics.
fn row_scales<T: Element>(x: &[T], n: usize, mean: &[f64], rstd: &[f64]) -> Vec<(f64, f64, f64)> {
    x.chunks(n)
        .enumerate()
        .map(|(i, row)| {
            let mu = mean[i];
            let var = row
                .iter()
                .map(|v| (v.to_acc().to_f64() - mu).powi(2))
                .sum::<f64>()
                / n as f64;
            (mu, rstd[i], var.sqrt())
        })
        .collect()
}

fn ln_case<T: Element + Stored>(g: &Golden, c: &Value) -> usize {
    let name = c["name"].as_str().unwrap();
    let (rows, n) = (
        c["rows"].as_u64().unwrap() as usize,
        c["row_len"].as_u64().unwrap() as usize,
    );
    let eps = c["eps"].as_f64().unwrap();
    let x: Vec<T> = g.arr(c, "x").unwrap();
    let (w, b): (Option<Vec<T>>, Option<Vec<T>>) = (g.arr(c, "w"), g.arr(c, "b"));
    let mut ln = LayerNorm::new(n).eps(eps);
    if let Some(w) = &w {
        ln = ln.weight(w);
    }
    if let Some(b) = &b {
        ln = ln.bias(b);
    }
    let (ry, rm, rr): (Vec<f64>, Vec<f64>, Vec<f64>) = (
        g.arr(c, "ref_y").unwrap(),
        g.arr(c, "ref_mean").unwrap(),
        g.arr(c, "ref_rstd").unwrap(),
    );
    let (e, ea) = (T::Acc::EPSILON.to_f64(), f32::EPSILON as f64);
    let ea = if size_of::<T>() == 8 { e } else { ea };
    let check_y = |y: &[T], x: &[T], mean: &[f64], rstd: &[f64], refy: &[f64], what: &str| {
        let sc = row_scales(x, n, mean, rstd);
        for (idx, v) in y.iter().enumerate() {
            let (i, j) = (idx / n, idx % n);
            let (mu, r, _) = sc[i];
            let wj = w.as_ref().map_or(1.0, |w| w[j].to_acc().to_f64());
            let bj = b.as_ref().map_or(0.0, |b| b[j].to_acc().to_f64());
            let xhat = (x[idx].to_acc().to_f64() - mu) * r;
            let s = wj.abs() * (1.0 + xhat.abs() + mu.abs() * r) + bj.abs();
            close(
                v.to_acc().to_f64(),
                refy[idx],
                storage_ulp::<T>(refy[idx]) + K * ea * s,
                &format!("{name} {what}[{i}][{j}]"),
            );
        }
    };
    let mut y = vec![T::from_acc(T::Acc::NAN); rows * n];
    let (mut mean, mut rstd) = (vec![T::Acc::NAN; rows], vec![T::Acc::NAN; rows]);
    ln.forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
        .unwrap();
    check_y(&y, &x, &rm, &rr, &ry, "y");
    for (i, (mu, r, sigma)) in row_scales(&x, n, &rm, &rr).into_iter().enumerate() {
        close(
            mean[i].to_f64(),
            mu,
            K * ea * (mu.abs() + sigma),
            &format!("{name} mean[{i}]"),
        );
        let kappa = mu.abs() * r;
        close(
            rstd[i].to_f64(),
            r,
            K * ea * r * (1.0 + ea * kappa * kappa),
            &format!("{name} rstd[{i}]"),
        );
    }
    let mut y2 = vec![T::from_acc(T::Acc::NAN); rows * n];
    ln.forward(&x, &mut y2).unwrap();
    check_y(&y2, &x, &rm, &rr, &ry, "forward");
    let mut y3 = x.clone();
    ln.forward_in_place(&mut y3).unwrap();
    check_y(&y3, &x, &rm, &rr, &ry, "in place");
    if let (Some(r0), Some(rres), Some(ryadd)) = (
        g.arr::<T>(c, "r"),
        g.arr::<T>(c, "ref_resid"),
        g.arr::<f64>(c, "ref_y_add"),
    ) {
        let mut res = r0.clone();
        let mut y4 = vec![T::from_acc(T::Acc::NAN); rows * n];
        ln.forward_add(&x, &mut res, &mut y4).unwrap();
        for (k, (a, b)) in res.iter().zip(&rres).enumerate() {
            let (a, b) = (a.to_acc().to_f64(), b.to_acc().to_f64());
            let tol = if size_of::<T>() == 2 {
                storage_ulp::<T>(b)
            } else {
                0.0
            };
            assert!((a - b).abs() <= tol, "{name} residual[{k}]: {a} vs {b}");
        }
        // the reference statistics of the summed residual, in f64
        let (am, ar): (Vec<f64>, Vec<f64>) = rres
            .chunks(n)
            .map(|row| {
                let m = row.iter().map(|v| v.to_acc().to_f64()).sum::<f64>() / n as f64;
                let var = row
                    .iter()
                    .map(|v| (v.to_acc().to_f64() - m).powi(2))
                    .sum::<f64>()
                    / n as f64;
                (m, 1.0 / (var + eps).sqrt())
            })
            .unzip();
        check_y(&y4, &rres, &am, &ar, &ryadd, "forward_add");
    }
    if let (Some(dy), Some(rdx)) = (g.arr::<T>(c, "dy"), g.arr::<f64>(c, "ref_dx")) {
        let (rdw, rdb): (Option<Vec<f64>>, Option<Vec<f64>>) =
            (g.arr(c, "ref_dw"), g.arr(c, "ref_db"));
        let (ma, ra): (Vec<T::Acc>, Vec<T::Acc>) = (
            rm.iter().map(|v| T::Acc::from_f64(*v)).collect(),
            rr.iter().map(|v| T::Acc::from_f64(*v)).collect(),
        );
        let mut dx = vec![T::from_acc(T::Acc::NAN); rows * n];
        let (mut dw, mut db) = (vec![T::Acc::NAN; n], vec![T::Acc::NAN; n]);
        ln.backward(
            &dy,
            &x,
            &ma,
            &ra,
            &mut dx,
            rdw.as_ref().map(|_| &mut dw[..]),
            rdb.as_ref().map(|_| &mut db[..]),
        )
        .unwrap();
        let stat = |s: usize| (ma[s].to_f64(), ra[s].to_f64());
        let sets = Sets {
            count: rows,
            set: &|i| i / n,
            ch: &|i| i % n,
            stat: &stat,
        };
        check_backward(
            name,
            &sets,
            &x,
            &dy,
            &w,
            false,
            &dx,
            &rdx,
            rdw.map(|r| (&dw[..], r)),
            rdb.map(|r| (&db[..], r)),
        );
        replayed_backward(1);
    }
    1
}

fn rms_case<T: Element + Stored>(g: &Golden, c: &Value) -> usize {
    let name = c["name"].as_str().unwrap();
    let (rows, n) = (
        c["rows"].as_u64().unwrap() as usize,
        c["row_len"].as_u64().unwrap() as usize,
    );
    let eps = c["eps"].as_f64();
    let x: Vec<T> = g.arr(c, "x").unwrap();
    let w: Option<Vec<T>> = g.arr(c, "w");
    let mut rms = RmsNorm::new(n);
    if let Some(e) = eps {
        rms = rms.eps(e);
    }
    if let Some(w) = &w {
        rms = rms.weight(w);
    }
    let (ry, rr): (Vec<f64>, Vec<f64>) =
        (g.arr(c, "ref_y").unwrap(), g.arr(c, "ref_rstd").unwrap());
    let ea = if size_of::<T>() == 8 {
        f64::EPSILON
    } else {
        f32::EPSILON as f64
    };
    let mut y = vec![T::from_acc(T::Acc::NAN); rows * n];
    let mut rstd = vec![T::Acc::NAN; rows];
    rms.forward_with_stats(&x, &mut y, &mut rstd).unwrap();
    for (idx, v) in y.iter().enumerate() {
        let (i, j) = (idx / n, idx % n);
        let wj = w.as_ref().map_or(1.0, |w| w[j].to_acc().to_f64());
        let s = (x[idx].to_acc().to_f64() * rr[i] * wj).abs();
        close(
            v.to_acc().to_f64(),
            ry[idx],
            storage_ulp::<T>(ry[idx]) + K * ea * s,
            &format!("{name} y[{i}][{j}]"),
        );
    }
    for (i, r) in rr.iter().enumerate() {
        close(
            rstd[i].to_f64(),
            *r,
            K * ea * r * (1.0 + ea * r * r),
            &format!("{name} rstd[{i}]"),
        );
    }
    let mut y2 = x.clone();
    rms.forward_in_place(&mut y2).unwrap();
    assert!(
        y2.iter()
            .zip(&y)
            .all(|(a, b)| a.to_acc().to_f64().to_bits() == b.to_acc().to_f64().to_bits()),
        "{name}: in place"
    );
    if let (Some(dy), Some(rdx)) = (g.arr::<T>(c, "dy"), g.arr::<f64>(c, "ref_dx")) {
        let rdw: Option<Vec<f64>> = g.arr(c, "ref_dw");
        let ra: Vec<T::Acc> = rr.iter().map(|v| T::Acc::from_f64(*v)).collect();
        let mut dx = vec![T::from_acc(T::Acc::NAN); rows * n];
        let mut dw = vec![T::Acc::NAN; n];
        rms.backward(&dy, &x, &ra, &mut dx, rdw.as_ref().map(|_| &mut dw[..]))
            .unwrap();
        let stat = |s: usize| (0.0, ra[s].to_f64());
        let sets = Sets {
            count: rows,
            set: &|i| i / n,
            ch: &|i| i % n,
            stat: &stat,
        };
        check_backward(
            name,
            &sets,
            &x,
            &dy,
            &w,
            true,
            &dx,
            &rdx,
            rdw.map(|r| (&dw[..], r)),
            None,
        );
        replayed_backward(1);
    }
    1
}

#[test]
fn layer_norm_and_rms_norm_cases_match_pytorch() {
    let g = golden();
    let mut replayed = 0;
    for c in &g.cases {
        replayed += match (c["op"].as_str().unwrap(), c["dtype"].as_str().unwrap()) {
            ("ln", "f32") => ln_case::<f32>(&g, c),
            ("ln", "f64") => ln_case::<f64>(&g, c),
            ("ln", "f16") => ln_case::<f16>(&g, c),
            ("ln", "bf16") => ln_case::<bf16>(&g, c),
            ("rms", "f32") => rms_case::<f32>(&g, c),
            ("rms", "f64") => rms_case::<f64>(&g, c),
            ("rms", "f16") => rms_case::<f16>(&g, c),
            ("rms", "bf16") => rms_case::<bf16>(&g, c),
            _ => 0,
        };
    }
    println!("replayed {replayed} LayerNorm / RMSNorm cases");
    assert_eq!(replayed, 32 + 22, "every ln and rms case of the index");
}

/// ε of the type statistics are stored in: f64 for f64 cases, f32 otherwise.
fn eps_acc<T>() -> f64 {
    if size_of::<T>() == 8 {
        f64::EPSILON
    } else {
        f32::EPSILON as f64
    }
}

/// Checks normalized outputs `y` against `refy`: element `idx` belongs to statistic set
/// `set(idx)` (a channel or a (sample, group)) with reference (μ, r) and has affine parameter
/// index `ch(idx)`.
#[allow(clippy::too_many_arguments)]
fn check_norm<T: Element>(
    what: &str,
    y: &[T],
    x: &[T],
    refy: &[f64],
    stat: &dyn Fn(usize) -> (f64, f64),
    ch: &dyn Fn(usize) -> usize,
    w: &Option<Vec<T>>,
    b: &Option<Vec<T>>,
) {
    let ea = eps_acc::<T>();
    for (idx, v) in y.iter().enumerate() {
        let (mu, r) = stat(idx);
        let c = ch(idx);
        let wc = w.as_ref().map_or(1.0, |w| w[c].to_acc().to_f64());
        let bc = b.as_ref().map_or(0.0, |b| b[c].to_acc().to_f64());
        let xhat = (x[idx].to_acc().to_f64() - mu) * r;
        let s = wc.abs() * (1.0 + xhat.abs() + mu.abs() * r) + bc.abs();
        close(
            v.to_acc().to_f64(),
            refy[idx],
            storage_ulp::<T>(refy[idx]) + K * ea * s,
            &format!("{what}[{idx}]"),
        );
    }
}

/// Checks a mean and an rstd/invstd against the reference, σ the population std around μ.
fn check_stats<A: Float>(what: &str, mean: A, rstd: A, mu: f64, r: f64, sigma: f64, ea: f64) {
    close(
        mean.to_f64(),
        mu,
        K * ea * (mu.abs() + sigma),
        &format!("{what} mean"),
    );
    let kappa = mu.abs() * r;
    close(
        rstd.to_f64(),
        r,
        K * ea * r * (1.0 + ea * kappa * kappa),
        &format!("{what} rstd"),
    );
}

fn u(c: &Value, k: &str) -> usize {
    c[k].as_u64().unwrap() as usize
}

fn bn_case<T: Element + Stored>(g: &Golden, c: &Value, masked: bool) -> usize
where
    T::Acc: Stored,
{
    let name = c["name"].as_str().unwrap();
    let (n, ch, hw) = (u(c, "n"), u(c, "c"), u(c, "hw"));
    let layout = match c["layout"].as_str().unwrap_or("ncl") {
        "nc" => Layout::Nc { n },
        "nhwc" => Layout::Nhwc { n, hw },
        _ => Layout::Nchw { n, hw },
    };
    let chan = |idx: usize| match layout {
        Layout::Nchw { .. } => (idx / hw) % ch,
        _ => idx % ch,
    };
    // sample and position of an element (for the masked validity test)
    let pos = |idx: usize| (idx / (ch * hw), idx % hw);
    let eps = c["eps"].as_f64().unwrap();
    let momentum = c["momentum"].as_f64();
    let ea = eps_acc::<T>();
    let (w, b): (Option<Vec<T>>, Option<Vec<T>>) = (g.arr(c, "w"), g.arr(c, "b"));
    let mut bn = BatchNorm::new(ch).eps(eps).momentum(momentum);
    if let Some(w) = &w {
        bn = bn.weight(w);
    }
    if let Some(b) = &b {
        bn = bn.bias(b);
    }
    let track = masked || c["track"].as_bool().unwrap();
    let mut rm: Vec<T::Acc> = g.arr(c, "rm0").unwrap_or_default();
    let mut rv: Vec<T::Acc> = g.arr(c, "rv0").unwrap_or_default();
    let mut nbt = c["nbt0"].as_u64().unwrap();
    let (mut sm, mut sv) = (
        rm.iter().map(|v| v.to_f64().abs()).collect::<Vec<_>>(),
        rv.iter().map(|v| v.to_f64().abs()).collect::<Vec<_>>(),
    );
    for k in 0..u(c, "batches") {
        let x: Vec<T> = g.arr(c, &format!("x{k}")).unwrap();
        let lengths: Option<Vec<usize>> = g
            .arr::<u64>(c, &format!("lengths{k}"))
            .map(|l| l.into_iter().map(|v| v as usize).collect());
        let valid = |idx: usize| {
            let (i, p) = pos(idx);
            lengths.as_ref().is_none_or(|l| p < l[i])
        };
        let refy: Vec<f64> = g.arr(c, &format!("ref_y{k}")).unwrap();
        let rmean: Vec<f64> = g.arr(c, &format!("ref_mean{k}")).unwrap();
        let rinv: Vec<f64> = g.arr(c, &format!("ref_invstd{k}")).unwrap();
        let mut y = vec![T::from_acc(T::Acc::NAN); x.len()];
        let (mut mean, mut inv) = (vec![T::Acc::NAN; ch], vec![T::Acc::NAN; ch]);
        let running = track.then(|| RunningStats {
            mean: &mut rm,
            var: &mut rv,
            num_batches_tracked: &mut nbt,
        });
        if let Some(l) = &lengths {
            bn.forward_train_masked(&x, n, hw, l, &mut y, running, &mut mean, &mut inv)
        } else {
            bn.forward_train(&x, layout, &mut y, running, &mut mean, &mut inv)
        }
        .unwrap_or_else(|e| panic!("{name} batch {k}: {e}"));
        // per-channel σ and unbiased var around the reference mean, valid positions only
        let mut acc = vec![(0.0f64, 0usize); ch];
        for (idx, v) in x.iter().enumerate() {
            if valid(idx) {
                let d = v.to_acc().to_f64() - rmean[chan(idx)];
                acc[chan(idx)].0 += d * d;
                acc[chan(idx)].1 += 1;
            }
        }
        for j in 0..ch {
            let sigma = (acc[j].0 / acc[j].1 as f64).sqrt();
            check_stats(
                &format!("{name} batch {k} channel {j}"),
                mean[j],
                inv[j],
                rmean[j],
                rinv[j],
                sigma,
                ea,
            );
        }
        let (yv, xv, rv_): (Vec<T>, Vec<T>, Vec<f64>) = (0..x.len())
            .filter(|&i| valid(i))
            .map(|i| (y[i], x[i], refy[i]))
            .fold((vec![], vec![], vec![]), |mut a, (p, q, r)| {
                a.0.push(p);
                a.1.push(q);
                a.2.push(r);
                a
            });
        let idxs: Vec<usize> = (0..x.len()).filter(|&i| valid(i)).collect();
        check_norm(
            &format!("{name} batch {k} y"),
            &yv,
            &xv,
            &rv_,
            &|i| (rmean[chan(idxs[i])], rinv[chan(idxs[i])]),
            &|i| chan(idxs[i]),
            &w,
            &b,
        );
        for idx in (0..x.len()).filter(|&i| !valid(i)) {
            assert_eq!(
                y[idx].to_acc().to_f64().to_bits(),
                0,
                "{name} padding[{idx}]"
            );
        }
        if track {
            assert_eq!(
                nbt,
                c["nbt"][k].as_u64().unwrap(),
                "{name} num_batches_tracked"
            );
            let m = momentum.unwrap_or(1.0 / nbt as f64);
            let (erm, erv): (Vec<f64>, Vec<f64>) = (
                g.arr(c, &format!("ref_rm{k}")).unwrap(),
                g.arr(c, &format!("ref_rv{k}")).unwrap(),
            );
            for j in 0..ch {
                let cnt = acc[j].1 as f64;
                let sigma = (acc[j].0 / cnt).sqrt();
                let var1 = acc[j].0 / (cnt - 1.0);
                let kappa = rmean[j].abs() * rinv[j];
                sm[j] = (1.0 - m) * sm[j] + m * (rmean[j].abs() + sigma);
                sv[j] = (1.0 - m) * sv[j] + m * var1 * (1.0 + ea * kappa * kappa);
                let what = format!("{name} batch {k} running");
                close(
                    rm[j].to_f64(),
                    erm[j],
                    K * ea * (erm[j].abs() + sm[j]),
                    &format!("{what} mean[{j}]"),
                );
                close(
                    rv[j].to_f64(),
                    erv[j],
                    K * ea * (erv[j].abs() + sv[j]),
                    &format!("{what} var[{j}]"),
                );
            }
        }
    }
    if let (Some(dy), Some(rdx)) = (g.arr::<T>(c, "dy"), g.arr::<f64>(c, "ref_dx")) {
        let x0: Vec<T> = g.arr(c, "x0").unwrap();
        let (rm0, ri0): (Vec<f64>, Vec<f64>) = (
            g.arr(c, "ref_mean0").unwrap(),
            g.arr(c, "ref_invstd0").unwrap(),
        );
        let (ma, ra): (Vec<T::Acc>, Vec<T::Acc>) = (
            rm0.iter().map(|v| T::Acc::from_f64(*v)).collect(),
            ri0.iter().map(|v| T::Acc::from_f64(*v)).collect(),
        );
        let (rdw, rdb): (Option<Vec<f64>>, Option<Vec<f64>>) =
            (g.arr(c, "ref_dw"), g.arr(c, "ref_db"));
        let mut dx = vec![T::from_acc(T::Acc::NAN); x0.len()];
        let (mut dw, mut db) = (vec![T::Acc::NAN; ch], vec![T::Acc::NAN; ch]);
        bn.backward_train(
            &dy,
            &x0,
            layout,
            &ma,
            &ra,
            &mut dx,
            rdw.as_ref().map(|_| &mut dw[..]),
            rdb.as_ref().map(|_| &mut db[..]),
        )
        .unwrap();
        let stat = |s: usize| (ma[s].to_f64(), ra[s].to_f64());
        let sets = Sets {
            count: ch,
            set: &chan,
            ch: &chan,
            stat: &stat,
        };
        check_backward(
            name,
            &sets,
            &x0,
            &dy,
            &w,
            false,
            &dx,
            &rdx,
            rdw.map(|r| (&dw[..], r)),
            rdb.map(|r| (&db[..], r)),
        );
        replayed_backward(1);
    }
    if let Some(xe) = g.arr::<T>(c, "x_eval") {
        let (rme, rve): (Vec<T::Acc>, Vec<T::Acc>) =
            (g.arr(c, "rm_eval").unwrap(), g.arr(c, "rv_eval").unwrap());
        let refy: Vec<f64> = g.arr(c, "ref_y_eval").unwrap();
        let mut y = vec![T::from_acc(T::Acc::NAN); xe.len()];
        bn.forward_eval(&xe, layout, &rme, &rve, &mut y).unwrap();
        let stat = |idx: usize| {
            let j = chan(idx);
            (rme[j].to_f64(), 1.0 / (rve[j].to_f64() + eps).sqrt())
        };
        check_norm(
            &format!("{name} eval y"),
            &y,
            &xe,
            &refy,
            &stat,
            &chan,
            &w,
            &b,
        );
    }
    1
}

fn gn_case<T: Element + Stored>(g: &Golden, c: &Value) -> usize {
    let name = c["name"].as_str().unwrap();
    let (n, ch, hw, groups) = (u(c, "n"), u(c, "c"), u(c, "hw"), u(c, "groups"));
    let eps = c["eps"].as_f64().unwrap();
    let x: Vec<T> = g.arr(c, "x").unwrap();
    let (w, b): (Option<Vec<T>>, Option<Vec<T>>) = (g.arr(c, "w"), g.arr(c, "b"));
    let mut gn = if c["instance"].as_bool().unwrap() {
        GroupNorm::instance(ch)
    } else {
        GroupNorm::new(groups, ch)
    };
    gn = gn.eps(eps);
    if let Some(w) = &w {
        gn = gn.weight(w);
    }
    if let Some(b) = &b {
        gn = gn.bias(b);
    }
    let (refy, rmean, rrstd): (Vec<f64>, Vec<f64>, Vec<f64>) = (
        g.arr(c, "ref_y").unwrap(),
        g.arr(c, "ref_mean").unwrap(),
        g.arr(c, "ref_rstd").unwrap(),
    );
    let mut y = vec![T::from_acc(T::Acc::NAN); x.len()];
    let (mut mean, mut rstd) = (vec![T::Acc::NAN; n * groups], vec![T::Acc::NAN; n * groups]);
    gn.forward_with_stats(&x, n, hw, &mut y, &mut mean, &mut rstd)
        .unwrap();
    let len = ch / groups * hw; // a (sample, group) is a contiguous run
    for (s, run) in x.chunks(len).enumerate() {
        let sigma = (run
            .iter()
            .map(|v| (v.to_acc().to_f64() - rmean[s]).powi(2))
            .sum::<f64>()
            / len as f64)
            .sqrt();
        check_stats(
            &format!("{name} group {s}"),
            mean[s],
            rstd[s],
            rmean[s],
            rrstd[s],
            sigma,
            eps_acc::<T>(),
        );
    }
    let stat = |idx: usize| (rmean[idx / len], rrstd[idx / len]);
    let chan = |idx: usize| (idx / hw) % ch;
    check_norm(&format!("{name} y"), &y, &x, &refy, &stat, &chan, &w, &b);
    let mut y2 = vec![T::from_acc(T::Acc::NAN); x.len()];
    gn.forward(&x, n, hw, &mut y2).unwrap();
    assert!(
        y2.iter()
            .zip(&y)
            .all(|(a, b)| a.to_acc().to_f64().to_bits() == b.to_acc().to_f64().to_bits()),
        "{name}: forward == forward_with_stats"
    );
    if let (Some(dy), Some(rdx)) = (g.arr::<T>(c, "dy"), g.arr::<f64>(c, "ref_dx")) {
        let (ma, ra): (Vec<T::Acc>, Vec<T::Acc>) = (
            rmean.iter().map(|v| T::Acc::from_f64(*v)).collect(),
            rrstd.iter().map(|v| T::Acc::from_f64(*v)).collect(),
        );
        let (rdw, rdb): (Option<Vec<f64>>, Option<Vec<f64>>) =
            (g.arr(c, "ref_dw"), g.arr(c, "ref_db"));
        let mut dx = vec![T::from_acc(T::Acc::NAN); x.len()];
        let (mut dw, mut db) = (vec![T::Acc::NAN; ch], vec![T::Acc::NAN; ch]);
        gn.backward(
            &dy,
            &x,
            n,
            hw,
            &ma,
            &ra,
            &mut dx,
            rdw.as_ref().map(|_| &mut dw[..]),
            rdb.as_ref().map(|_| &mut db[..]),
        )
        .unwrap();
        let stat = |s: usize| (ma[s].to_f64(), ra[s].to_f64());
        let set = |i: usize| i / len;
        let sets = Sets {
            count: n * groups,
            set: &set,
            ch: &chan,
            stat: &stat,
        };
        check_backward(
            name,
            &sets,
            &x,
            &dy,
            &w,
            false,
            &dx,
            &rdx,
            rdw.map(|r| (&dw[..], r)),
            rdb.map(|r| (&db[..], r)),
        );
        replayed_backward(1);
    }
    1
}

#[test]
fn batch_norm_and_group_norm_cases_match_pytorch() {
    let g = golden();
    let mut replayed = 0;
    for c in &g.cases {
        replayed += match (c["op"].as_str().unwrap(), c["dtype"].as_str().unwrap()) {
            ("bn", "f32") => bn_case::<f32>(&g, c, false),
            ("bn", "f64") => bn_case::<f64>(&g, c, false),
            ("bn", "f16") => bn_case::<f16>(&g, c, false),
            ("bn", "bf16") => bn_case::<bf16>(&g, c, false),
            ("bn-masked", "f32") => bn_case::<f32>(&g, c, true),
            ("bn-masked", "f64") => bn_case::<f64>(&g, c, true),
            ("gn", "f32") => gn_case::<f32>(&g, c),
            ("gn", "f64") => gn_case::<f64>(&g, c),
            _ => 0,
        };
    }
    println!("replayed {replayed} BatchNorm / GroupNorm cases");
    assert_eq!(
        replayed,
        22 + 4 + 9,
        "every bn, bn-masked and gn case of the index"
    );
}

/// K of the tolerance rule for backward outputs (dx, dweight, dbias).
const KB: f64 = 16.0;

/// The sets of a backward case: element `i` is in set `set(i)` (a row, channel or group) with
/// reference statistics `stat(s) = (μ, r)` and parameter channel `ch(i)`.
struct Sets<'a> {
    count: usize,
    set: &'a dyn Fn(usize) -> usize,
    ch: &'a dyn Fn(usize) -> usize,
    stat: &'a dyn Fn(usize) -> (f64, f64),
}

/// Checks dx, dweight and dbias against the references with the backward rows of the rule.
#[allow(clippy::too_many_arguments)]
#[allow(clippy::needless_range_loop)] // elements, sets and channels indexed together
fn check_backward<T: Element>(
    name: &str,
    sets: &Sets<'_>,
    x: &[T],
    dy: &[T],
    w: &Option<Vec<T>>,
    rms: bool,
    dx: &[T],
    ref_dx: &[f64],
    dw: Option<(&[T::Acc], Vec<f64>)>,
    db: Option<(&[T::Acc], Vec<f64>)>,
) {
    let ea = eps_acc::<T>();
    let f = |v: &T| v.to_acc().to_f64();
    let wc = |i: usize| w.as_ref().map_or(1.0, |w| f(&w[(sets.ch)(i)]));
    let xhat = |i: usize| {
        let (mu, r) = (sets.stat)((sets.set)(i));
        (f(&x[i]) - mu) * r
    };
    // per set: mean|g| and mean|g·x̂|
    let mut m = vec![(0.0f64, 0.0f64, 0usize); sets.count];
    for i in 0..x.len() {
        let g = f(&dy[i]) * wc(i);
        let e = &mut m[(sets.set)(i)];
        e.0 += g.abs();
        e.1 += (g * xhat(i)).abs();
        e.2 += 1;
    }
    for i in 0..x.len() {
        let s_ = (sets.set)(i);
        let (mu, r) = (sets.stat)(s_);
        let (mg, mgx) = (m[s_].0 / m[s_].2 as f64, m[s_].1 / m[s_].2 as f64);
        let g = (f(&dy[i]) * wc(i)).abs();
        let sc = if rms {
            r * (g + xhat(i).abs() * mgx)
        } else {
            r * (g + mg + xhat(i).abs() * mgx) * (1.0 + mu.abs() * r)
        };
        close(
            f(&dx[i]),
            ref_dx[i],
            KB * ea * sc,
            &format!("{name} dx[{i}]"),
        );
    }
    let nch = ref_dx.len().min(
        dw.as_ref()
            .map_or(0, |d| d.1.len())
            .max(db.as_ref().map_or(0, |d| d.1.len())),
    );
    let mut sw = vec![0.0f64; nch];
    let mut sb = vec![0.0f64; nch];
    for i in 0..x.len() {
        let c = (sets.ch)(i);
        if c < nch {
            let (mu, r) = (sets.stat)((sets.set)(i));
            let d = f(&dy[i]).abs();
            sw[c] += if rms {
                (d * xhat(i)).abs()
            } else {
                d * (xhat(i).abs() + mu.abs() * r)
            };
            sb[c] += d;
        }
    }
    if let Some((got, want)) = dw {
        for c in 0..want.len() {
            close(
                got[c].to_f64(),
                want[c],
                KB * ea * sw[c],
                &format!("{name} dweight[{c}]"),
            );
        }
    }
    if let Some((got, want)) = db {
        for c in 0..want.len() {
            close(
                got[c].to_f64(),
                want[c],
                KB * ea * sb[c],
                &format!("{name} dbias[{c}]"),
            );
        }
    }
}

/// Every case with a `dy` array has its backward replayed (ln/rms/bn/gn f32 and f64).
#[test]
fn backward_cases_are_replayed() {
    let g = golden();
    let with_dy = g
        .cases
        .iter()
        .filter(|c| c["arrays"].get("dy").is_some())
        .count();
    layer_norm_and_rms_norm_cases_match_pytorch();
    batch_norm_and_group_norm_cases_match_pytorch();
    // the other two tests may run concurrently and count too: at least one full pass
    assert!(
        BACKWARD.load(std::sync::atomic::Ordering::Relaxed) >= with_dy,
        "{with_dy} backward cases"
    );
    println!("{with_dy} backward cases replayed");
}
