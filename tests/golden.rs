//! Replays the PyTorch 2.15 reference cases of `tests/data/` (copied from `shared/golden/`;
//! format and tolerance rule in `tests/data/GOLDEN.md`) through the simdnorm API.
//! LayerNorm and RMSNorm cases; the BatchNorm / GroupNorm / backward cases wait for those ops.

mod common;

use common::storage_ulp;
use half::{bf16, f16};
use serde_json::Value;
use simdnorm::{Element, Float, LayerNorm, RmsNorm};

const K: f64 = 8.0;

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
