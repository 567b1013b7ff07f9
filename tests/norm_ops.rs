//! LayerNorm and RMSNorm forward against the f64 oracle, edge semantics, method agreement,
//! bad inputs and determinism.

mod common;

use common::*;
use proptest::prelude::*;
use simdnorm::{Element, Float, LayerNorm, NormError, RmsNorm, oracle};

/// K of the golden tolerance rule (`../shared/golden/README.md`): forward outputs and
/// statistics are within `8·ε·s` of the reference, `s` the condition scale of the element.
const K: f64 = 8.0;

fn eps_of<T: Element>() -> f64 {
    T::Acc::EPSILON.to_f64()
}

/// Checks LayerNorm outputs against the oracle with the golden rule:
/// y: s = |w|·(1 + |x̂| + |μ|·r) + |b|; mean: |μ| + σ; rstd: r·(1 + ε·κ²), κ = |μ|·r.
#[allow(clippy::too_many_arguments)] // the case and the three outputs under test
fn check_ln<T: Element>(
    x: &[T],
    n: usize,
    w: &[T],
    b: &[T],
    eps: f64,
    y: &[T],
    mean: &[T::Acc],
    rstd: &[T::Acc],
    what: &str,
) {
    let (ry, rm, rr) = oracle::layer_norm(x, n, w, b, eps);
    let e = eps_of::<T>();
    let ea = T::Acc::EPSILON.to_f64();
    for (i, row) in x.chunks(n).enumerate() {
        let (mu, r) = (rm[i], rr[i]);
        if mu.is_nan() {
            assert!(
                row.iter().any(|v| !v.to_acc().is_finite()),
                "{what}: NaN mean on a finite row"
            );
            assert!(
                y[i * n..][..n].iter().all(|v| v.to_acc().is_nan()),
                "{what}: row {i} not NaN"
            );
            continue;
        }
        let sigma = oracle::moments(row).variance(0).sqrt();
        let got = mean[i].to_f64();
        // + one subnormal spacing of Acc: a mean below the normal range is stored rounded to it
        let sub = (T::Acc::MIN_POSITIVE * T::Acc::EPSILON).to_f64();
        assert!(
            (got - mu).abs() <= K * ea * (mu.abs() + sigma) + sub,
            "{what}: row {i} mean {got} vs {mu}"
        );
        let kappa = mu.abs() * r;
        let got = rstd[i].to_f64();
        if r > T::Acc::MAX.to_f64() {
            assert_eq!(got, f64::INFINITY, "{what}: row {i} rstd {r} is beyond Acc");
        } else {
            assert!(
                (got - r).abs() <= K * ea * r * (1.0 + ea * kappa * kappa),
                "{what}: row {i} rstd {got} vs {r}"
            );
        }
        for j in 0..n {
            let (wj, bj) = (
                w.get(j).map_or(1.0, |v| v.to_acc().to_f64()),
                b.get(j).map_or(0.0, |v| v.to_acc().to_f64()),
            );
            let xhat = (row[j].to_acc().to_f64() - mu) * r;
            let s = wj.abs() * (1.0 + xhat.abs() + kappa) + bj.abs();
            let (got, want) = (y[i * n + j].to_acc().to_f64(), ry[i * n + j]);
            let tol = storage_ulp::<T>(want) + K * e * s;
            assert!(
                (got - want).abs() <= tol,
                "{what}: y[{i}][{j}] = {got}, reference {want} (tol {tol})"
            );
        }
    }
}

fn check_rms<T: Element>(
    x: &[T],
    n: usize,
    w: &[T],
    eps: f64,
    y: &[T],
    rstd: &[T::Acc],
    what: &str,
) {
    let (ry, rr) = oracle::rms_norm(x, n, w, eps);
    let e = eps_of::<T>();
    for (i, _) in x.chunks(n).enumerate() {
        let r = rr[i];
        if r.is_nan() {
            assert!(
                rstd[i].to_f64().is_nan() && y[i * n..][..n].iter().all(|v| v.to_acc().is_nan()),
                "{what}: row {i} not NaN"
            );
            continue;
        }
        let got = rstd[i].to_f64();
        if r > T::Acc::MAX.to_f64() {
            assert_eq!(got, f64::INFINITY, "{what}: row {i} rstd {r} is beyond Acc");
        } else {
            assert!((got - r).abs() <= K * e * r, "{what}: rstd {got} vs {r}");
        }
        for j in 0..n {
            let (got, want) = (y[i * n + j].to_acc().to_f64(), ry[i * n + j]);
            let tol = storage_ulp::<T>(want) + K * e * want.abs();
            assert!(
                (got - want).abs() <= tol,
                "{what}: y[{i}][{j}] = {got} vs {want}"
            );
        }
    }
}

/// Runs every LayerNorm method on `x` and checks each against the oracle and each other.
fn all_ln<T: Element>(x: &[T], n: usize, w: &[T], b: &[T], eps: f64, what: &str) {
    let rows = x.len() / n;
    let mut ln = LayerNorm::new(n).eps(eps);
    if !w.is_empty() {
        ln = ln.weight(w);
    }
    if !b.is_empty() {
        ln = ln.bias(b);
    }
    let sentinel = T::from_acc(T::Acc::from_f64(-7.25));
    let mut y = vec![sentinel; x.len()];
    let (mut mean, mut rstd) = (vec![T::Acc::NAN; rows], vec![T::Acc::NAN; rows]);
    ln.forward_with_stats(x, &mut y, &mut mean, &mut rstd)
        .unwrap();
    check_ln(x, n, w, b, eps, &y, &mean, &rstd, what);
    let mut y2 = vec![sentinel; x.len()];
    ln.forward(x, &mut y2).unwrap();
    let mut y3 = x.to_vec();
    ln.forward_in_place(&mut y3).unwrap();
    assert_eq!(bits(&y2), bits(&y), "{what}: forward vs forward_with_stats");
    assert_eq!(bits(&y3), bits(&y), "{what}: forward_in_place vs forward");
    // forward_add with residual = x and x = 0 must equal forward, and leave residual = x + 0
    // (x itself but for −0, which becomes +0)
    let zeros = vec![T::from_acc(T::Acc::ZERO); x.len()];
    let mut res = x.to_vec();
    let mut y4 = vec![sentinel; x.len()];
    ln.forward_add(&zeros, &mut res, &mut y4).unwrap();
    let plus0: Vec<T> = x
        .iter()
        .map(|v| T::from_acc(v.to_acc() + T::Acc::ZERO))
        .collect();
    assert_eq!(bits(&res), bits(&plus0), "{what}: residual + 0");
    assert_eq!(bits(&y4), bits(&y), "{what}: forward_add vs forward");
}

fn all_rms<T: Element>(x: &[T], n: usize, w: &[T], eps: Option<f64>, what: &str) {
    let rows = x.len() / n;
    let mut rms = RmsNorm::new(n);
    if let Some(e) = eps {
        rms = rms.eps(e);
    }
    if !w.is_empty() {
        rms = rms.weight(w);
    }
    let mut y = vec![T::from_acc(T::Acc::ZERO); x.len()];
    let mut rstd = vec![T::Acc::NAN; rows];
    rms.forward_with_stats(x, &mut y, &mut rstd).unwrap();
    check_rms(
        x,
        n,
        w,
        eps.unwrap_or(T::Acc::EPSILON.to_f64()),
        &y,
        &rstd,
        what,
    );
    let mut y3 = x.to_vec();
    rms.forward_in_place(&mut y3).unwrap();
    assert_eq!(bits(&y3), bits(&y), "{what}: in place");
}

#[derive(Clone, Debug)]
struct Case {
    rows: usize,
    n: usize,
    kappa: f64,
    scale: i32,
    affine: (bool, bool),
    eps: f64,
    seed: u64,
}

fn case(max_scale: i32) -> impl Strategy<Value = Case> {
    (
        1usize..6,
        prop_oneof![4 => 1usize..=300, 1 => 301usize..5000],
        prop_oneof![Just(0.0), Just(1.0), Just(1e2), Just(1e4), Just(1e6)],
        -max_scale..=max_scale,
        any::<(bool, bool)>(),
        prop_oneof![Just(0.0), Just(1e-5), Just(1e-6), Just(1.0)],
        any::<u64>(),
    )
        .prop_map(|(rows, n, kappa, scale, affine, eps, seed)| Case {
            rows,
            n,
            kappa,
            scale,
            affine,
            eps,
            seed,
        })
}

fn data<T: Element>(c: &Case) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut rng = Rng(c.seed);
    let sigma = 10f64.powi(c.scale);
    let mut x = Vec::new();
    for _ in 0..c.rows {
        // per-row offsets: rows differ in mean and scale
        let s = sigma * (1.0 + rng.sym().abs() * 3.0);
        let mean = c.kappa * s * rng.sym().signum();
        x.extend(gaussian::<T>(&mut rng, c.n, mean, s));
    }
    let w = if c.affine.0 {
        gaussian::<T>(&mut rng, c.n, 1.0, 0.5)
    } else {
        vec![]
    };
    let b = if c.affine.1 {
        gaussian::<T>(&mut rng, c.n, 0.0, 1.0)
    } else {
        vec![]
    };
    (x, w, b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn layer_norm_f32_matches_oracle(c in case(15)) {
        let (x, w, b) = data::<f32>(&c);
        all_ln(&x, c.n, &w, &b, c.eps, &format!("{c:?}"));
    }

    #[test]
    fn layer_norm_f64_matches_oracle(c in case(100)) {
        let (x, w, b) = data::<f64>(&c);
        all_ln(&x, c.n, &w, &b, c.eps, &format!("{c:?}"));
    }

    #[test]
    fn layer_norm_half_matches_oracle(c in case(1)) {
        let c = Case { kappa: c.kappa.min(10.0), ..c };
        let (x, w, b) = data::<half::f16>(&c);
        all_ln(&x, c.n, &w, &b, c.eps, &format!("f16 {c:?}"));
        let (x, w, b) = data::<half::bf16>(&c);
        all_ln(&x, c.n, &w, &b, c.eps, &format!("bf16 {c:?}"));
    }

    #[test]
    fn rms_norm_matches_oracle(c in case(15)) {
        let eps = if c.eps == 1.0 { None } else { Some(c.eps) };
        let (x, w, _) = data::<f32>(&c);
        all_rms(&x, c.n, &w, eps, &format!("{c:?}"));
        let (x, w, _) = data::<f64>(&c);
        all_rms(&x, c.n, &w, eps, &format!("f64 {c:?}"));
    }

    /// LN(2^k·x) == LN(x) bit for bit when eps = 0: the statistics scale exactly.
    #[test]
    fn layer_norm_is_scale_invariant(c in case(3), k in -60i32..60) {
        let (x, w, b) = data::<f32>(&Case { eps: 0.0, ..c });
        let xs: Vec<f32> = x.iter().map(|v| v * 2f32.powi(k)).collect();
        let ln = LayerNorm::new(c.n).eps(0.0);
        let (ln, lnw) = (ln, if w.is_empty() { ln } else { ln.weight(&w) });
        let lnw = if b.is_empty() { lnw } else { lnw.bias(&b) };
        let _ = ln;
        let (mut y1, mut y2) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        lnw.forward(&x, &mut y1).unwrap();
        lnw.forward(&xs, &mut y2).unwrap();
        let bits = |v: &[f32]| v.iter().map(|t| t.to_bits()).collect::<Vec<_>>();
        prop_assert_eq!(bits(&y1), bits(&y2));
    }
}

#[test]
fn every_row_length_f32() {
    let mut rng = Rng(3);
    for n in (1..=130).chain([255, 256, 257, 2047, 2048, 2049, 4096]) {
        let x = gaussian::<f32>(&mut rng, 3 * n, 1.0e4, 1.0);
        let w = gaussian::<f32>(&mut rng, n, 1.0, 0.3);
        let b = gaussian::<f32>(&mut rng, n, 0.0, 1.0);
        all_ln(&x, n, &w, &b, 1e-5, &format!("n={n}"));
        all_rms(&x, n, &w, None, &format!("rms n={n}"));
    }
}

#[test]
fn mean_1e4_sigma_1_max_abs_error_below_1e_6() {
    // The bar of the LayerNorm issue: 4096-wide rows, mean 1e4, σ 1, f32 in and out; and
    // rstd within 1.5 ulp of the f64 value on every row (a one-pass variance around a pilot
    // a σ away from the mean gave 2.2 ulp and 1.0e-6 here; see `two_pass::piloted`).
    let mut rng = Rng(4);
    let (rows, n) = (1024, 4096);
    let x = gaussian::<f32>(&mut rng, rows * n, 1.0e4, 1.0);
    let mut y = vec![0.0f32; x.len()];
    let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    LayerNorm::new(n)
        .forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
        .unwrap();
    let (ry, _, rr) = oracle::layer_norm(&x, n, &[], &[], 1e-5);
    for (i, (a, r)) in rstd.iter().zip(&rr).enumerate() {
        let ulps = (*a as f64 - r).abs() / (r * f32::EPSILON as f64);
        assert!(ulps <= 1.5, "row {i}: rstd {a} vs {r} ({ulps:.2} ulp)");
    }
    let worst = y
        .iter()
        .zip(&ry)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    println!("max abs error, mean 1e4 σ 1: {worst:e}");
    assert!(worst <= 1e-6, "max abs error {worst:e}");
}

#[test]
fn constant_rows_give_exactly_the_bias() {
    for c in [
        0.0f32,
        1.0,
        -3.0e-38,
        1.0e-45,
        1.0e4,
        7.0e37,
        f32::MAX,
        -f32::MAX,
    ] {
        for n in [1usize, 2, 17, 64, 300] {
            let x = vec![c; 2 * n];
            let b: Vec<f32> = (0..n).map(|j| j as f32 - 3.5).collect();
            let w = vec![2.0f32; n];
            for eps in [0.0, 1e-5] {
                let mut y = vec![f32::NAN; 2 * n];
                let (mut mean, mut rstd) = ([0.0f32; 2], [0.0f32; 2]);
                LayerNorm::new(n)
                    .eps(eps)
                    .weight(&w)
                    .bias(&b)
                    .forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
                    .unwrap();
                assert_eq!(&y[..n], &b[..], "c={c} n={n} eps={eps}");
                assert_eq!(&y[n..], &b[..]);
                assert_eq!(mean, [c, c]);
                if eps == 0.0 {
                    assert_eq!(rstd, [0.0, 0.0], "InvStd rule");
                }
                let mut y = vec![f32::NAN; 2 * n];
                LayerNorm::new(n).eps(eps).forward(&x, &mut y).unwrap();
                assert!(y.iter().all(|v| *v == 0.0));
            }
        }
    }
}

/// RMSNorm is `x·rstd·w` (PyTorch): a zero keeps its sign, at every position of rows of
/// every tail length, from a source and in place, with and without a weight, f32 and bf16.
#[test]
fn rms_norm_keeps_the_sign_of_zero() {
    fn check<T: Element>() {
        for n in [1usize, 15, 16, 17, 100, 300] {
            let x: Vec<T> = (0..n)
                .map(|j| match j % 3 {
                    0 => T::from_acc(T::Acc::from_f64(-0.0)),
                    1 => T::from_acc(T::Acc::from_f64(0.0)),
                    _ => T::from_acc(T::Acc::from_f64(j as f64)),
                })
                .collect();
            let w: Vec<T> = (0..n)
                .map(|j| T::from_acc(T::Acc::from_f64(1.0 + j as f64)))
                .collect();
            for weight in [None, Some(&w[..])] {
                let rms = match weight {
                    Some(w) => RmsNorm::new(n).weight(w),
                    None => RmsNorm::new(n),
                };
                let mut y = x.clone();
                rms.forward(&x, &mut y).unwrap();
                let mut z = x.clone();
                rms.forward_in_place(&mut z).unwrap();
                for (j, (y, z)) in y.iter().zip(&z).enumerate() {
                    let (y, z) = (y.to_acc().to_f64(), z.to_acc().to_f64());
                    if j % 3 < 2 {
                        let neg = j % 3 == 0;
                        assert!(y == 0.0 && y.is_sign_negative() == neg, "n {n} j {j}: {y}");
                        assert!(
                            z == 0.0 && z.is_sign_negative() == neg,
                            "in place, n {n} j {j}"
                        );
                    } else {
                        assert!(y > 0.0 && z == y, "n {n} j {j}");
                    }
                }
            }
        }
    }
    check::<f32>();
    check::<f64>();
    check::<half::bf16>();
    check::<half::f16>();
}

#[test]
fn rows_near_overflow_and_underflow_normalize() {
    let mut rng = Rng(5);
    for (mu, s) in [
        (3.0e38f64, 1.0e37),
        (0.0, 1.0e38),
        (-2.0e38, 1.0e38),
        (1.0e-30, 1.0e-31),
        (0.0, 1.0e-40),
    ] {
        let x: Vec<f32> = gaussian::<f32>(&mut rng, 4 * 100, mu, s)
            .iter()
            .map(|v| v.clamp(-f32::MAX, f32::MAX))
            .collect();
        all_ln(&x, 100, &[], &[], 0.0, &format!("mu {mu} s {s}"));
        all_rms(&x, 100, &[], Some(0.0), &format!("rms mu {mu} s {s}"));
    }
    // f64 rows below 2^-511 (the rescue scales them by 2^k, k > 511): eps·4^k is beyond f64,
    // which made rstd 0 and every output the bias alone; var + eps is eps there (the oracle's
    // rstd 316.2 for eps = 1e-5). With eps = 0 the oracle's own squares underflow: not
    // compared.
    for (mu, s) in [(0.0, 1.0e-160), (1.0e-300, 1.0e-301), (0.0, 1.0e-310)] {
        let x = gaussian::<f64>(&mut rng, 4 * 100, mu, s);
        all_ln(&x, 100, &[], &[], 1e-5, &format!("f64 mu {mu} s {s}"));
        all_rms(&x, 100, &[], Some(1e-5), &format!("f64 rms mu {mu} s {s}"));
    }
}

#[test]
fn nan_and_inf_stay_in_their_row() {
    let mut rng = Rng(6);
    let n = 37;
    let mut x = gaussian::<f32>(&mut rng, 5 * n, 2.0, 1.0);
    x[n + 3] = f32::NAN;
    x[3 * n] = f32::INFINITY;
    // Rows 1 and 3 are NaN in every output and statistic; the others in none.
    let check = |y: &[f32], stats: &[&[f32]], what: &str| {
        for i in 0..5 {
            let nan_row = i == 1 || i == 3;
            let row = &y[i * n..][..n];
            assert_eq!(row.iter().all(|v| v.is_nan()), nan_row, "{what} row {i}");
            assert_eq!(row.iter().any(|v| v.is_nan()), nan_row, "{what} row {i}");
            for s in stats {
                assert_eq!(s[i].is_nan(), nan_row, "{what} statistic of row {i}");
            }
        }
    };
    let mut y = vec![0.0f32; x.len()];
    let (mut mean, mut rstd) = ([0.0f32; 5], [0.0f32; 5]);
    LayerNorm::new(n)
        .forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
        .unwrap();
    check(&y, &[&mean, &rstd], "LayerNorm");
    let mut rstd = [0.0f32; 5];
    RmsNorm::new(n)
        .forward_with_stats(&x, &mut y, &mut rstd)
        .unwrap();
    check(&y, &[&rstd], "RMSNorm");
}

/// `residual + x` beyond f32: the stored sum is ±∞, as f32's addition gives it, and that row
/// (only) normalizes to NaN, for LayerNorm and RMSNorm.
#[test]
fn forward_add_overflowing_sums_poison_only_their_row() {
    let n = 20;
    let x: Vec<f32> = (0..3 * n).map(|i| (i % 7) as f32 - 3.0).collect();
    let mut base = x.clone();
    base[n + 5] = f32::MAX;
    let mut xs = x.clone();
    xs[n + 5] = f32::MAX;
    for rms in [false, true] {
        let (mut r, mut y) = (base.clone(), vec![0.0f32; 3 * n]);
        if rms {
            RmsNorm::new(n).forward_add(&xs, &mut r, &mut y).unwrap();
        } else {
            LayerNorm::new(n).forward_add(&xs, &mut r, &mut y).unwrap();
        }
        assert_eq!(r[n + 5], f32::INFINITY);
        for (i, v) in y.iter().enumerate() {
            assert_eq!(v.is_nan(), i / n == 1, "rms {rms}: y[{i}] = {v}");
        }
    }
}

#[test]
fn forward_add_rounds_the_residual_once() {
    let mut rng = Rng(7);
    let n = 100;
    let x = gaussian::<half::bf16>(&mut rng, 3 * n, 0.0, 1.0);
    let r0 = gaussian::<half::bf16>(&mut rng, 3 * n, 5.0, 2.0);
    let mut r = r0.clone();
    let mut y = vec![half::bf16::ZERO; 3 * n];
    LayerNorm::new(n).forward_add(&x, &mut r, &mut y).unwrap();
    for i in 0..3 * n {
        assert_eq!(r[i], half::bf16::from_f32(x[i].to_f32() + r0[i].to_f32()));
    }
    let mut y2 = vec![half::bf16::ZERO; 3 * n];
    LayerNorm::new(n).forward(&r, &mut y2).unwrap();
    assert_eq!(y, y2);
    let mut r = r0.clone();
    RmsNorm::new(n).forward_add(&x, &mut r, &mut y).unwrap();
    RmsNorm::new(n).forward(&r, &mut y2).unwrap();
    assert_eq!(y, y2);
}

#[test]
fn bad_inputs_are_refused_without_writing() {
    let x = [1.0f32; 12];
    let w4 = [1.0f32; 4];
    let w3 = [1.0f32; 3];
    let s = -9.0f32;
    let mut y = [s; 12];
    let (mut m, mut r) = ([s; 3], [s; 3]);
    let mut res = [s; 12];
    let cases: Vec<(LayerNorm<f32>, usize, NormError)> = vec![
        (
            LayerNorm::new(0),
            12,
            NormError::ZeroLength {
                arg: "normalized_len",
            },
        ),
        (
            LayerNorm::new(5),
            12,
            NormError::NotAMultiple {
                arg: "x",
                len: 12,
                row_len: 5,
            },
        ),
        (LayerNorm::new(4).eps(-1.0), 12, NormError::InvalidEps(-1.0)),
        (
            LayerNorm::new(4).weight(&w3),
            12,
            NormError::LengthMismatch {
                arg: "weight",
                expected: 4,
                actual: 3,
            },
        ),
        (
            LayerNorm::new(4).bias(&w3),
            12,
            NormError::LengthMismatch {
                arg: "bias",
                expected: 4,
                actual: 3,
            },
        ),
    ];
    for (ln, len, want) in cases {
        assert_eq!(ln.forward(&x[..len], &mut y), Err(want.clone()));
        assert_eq!(
            ln.forward_with_stats(&x[..len], &mut y, &mut m, &mut r),
            Err(want.clone())
        );
        assert_eq!(
            ln.forward_add(&x[..len], &mut res, &mut y),
            Err(want.clone())
        );
        let mut xi = x;
        assert_eq!(ln.forward_in_place(&mut xi), Err(want));
        assert_eq!(xi, x);
    }
    let ln = LayerNorm::new(4).weight(&w4);
    assert!(matches!(
        ln.eps(f64::NAN).forward(&x, &mut y),
        Err(NormError::InvalidEps(_))
    ));
    assert!(matches!(
        ln.eps(f64::INFINITY).forward(&x, &mut y),
        Err(NormError::InvalidEps(_))
    ));
    assert_eq!(
        ln.forward(&x, &mut y[..11]),
        Err(NormError::LengthMismatch {
            arg: "y",
            expected: 12,
            actual: 11
        })
    );
    assert_eq!(
        ln.forward_with_stats(&x, &mut y, &mut m[..2], &mut r),
        Err(NormError::LengthMismatch {
            arg: "mean",
            expected: 3,
            actual: 2
        })
    );
    assert_eq!(
        ln.forward_with_stats(&x, &mut y, &mut m, &mut r[..2]),
        Err(NormError::LengthMismatch {
            arg: "rstd",
            expected: 3,
            actual: 2
        })
    );
    assert_eq!(
        ln.forward_add(&x, &mut res[..8], &mut y),
        Err(NormError::LengthMismatch {
            arg: "residual",
            expected: 12,
            actual: 8
        })
    );
    assert!(
        y.iter().chain(&m).chain(&r).chain(&res).all(|v| *v == s),
        "an output was written on Err"
    );
    let rms = RmsNorm::new(4).weight(&w3);
    assert_eq!(
        rms.forward(&x, &mut y),
        Err(NormError::LengthMismatch {
            arg: "weight",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        RmsNorm::<f32>::new(4).eps(-0.5).forward(&x, &mut y),
        Err(NormError::InvalidEps(-0.5))
    );
    assert_eq!(
        RmsNorm::<f32>::new(0).forward_in_place(&mut y),
        Err(NormError::ZeroLength {
            arg: "normalized_len"
        })
    );
    assert_eq!(
        RmsNorm::new(4).forward_with_stats(&x, &mut y, &mut r[..1]),
        Err(NormError::LengthMismatch {
            arg: "rstd",
            expected: 3,
            actual: 1
        })
    );
    assert!(
        y.iter().chain(&r).all(|v| *v == s),
        "an output was written on Err"
    );
}

#[test]
fn identical_bits_for_1_2_3_8_threads() {
    let mut rng = Rng(8);
    let (rows, n) = (300, 1001);
    let x = gaussian::<f32>(&mut rng, rows * n, 10.0, 3.0);
    let w = gaussian::<f32>(&mut rng, n, 1.0, 0.1);
    let run = || {
        let mut y = vec![0.0f32; x.len()];
        let (mut m, mut r) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        LayerNorm::new(n)
            .weight(&w)
            .forward_with_stats(&x, &mut y, &mut m, &mut r)
            .unwrap();
        let mut y2 = vec![0.0f32; x.len()];
        RmsNorm::new(n).weight(&w).forward(&x, &mut y2).unwrap();
        y.iter()
            .chain(&m)
            .chain(&r)
            .chain(&y2)
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    };
    let serial = run();
    for t in [1, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap();
        assert!(pool.install(run) == serial, "{t} threads");
    }
}

/// Rows normalized two at a time (LayerNorm with weight and bias whose x, y, weight and bias
/// fill L1, a whole number of vectors: 2048, 2064 and 4096 f32 values, 4096 bf16; the 2048
/// and 2064 bf16 rows go one by one): every output, mean and rstd bit for bit equal to the
/// same row normalized alone,
/// for an odd row count (a pair and a single row), y at every alignment, with and without
/// weight and bias, LayerNorm (`forward_with_stats`, and `forward_add`, whose rows pair from
/// 1366 f32 values: six streams with the residual) and RMSNorm, f32 / bf16; and a row with
/// NaN confined to itself.
#[test]
fn paired_rows_match_single_rows_bitwise() {
    fn check<T: Element>(n: usize, rows: usize, off: usize, what: &str) {
        let mut rng = Rng(n as u64 + off as u64);
        let mut x = gaussian::<T>(&mut rng, rows * n, 3.0, 1.0);
        x[n + 5] = T::from_acc(T::Acc::from_f64(f64::NAN));
        let w = gaussian::<T>(&mut rng, n, 1.0, 0.5);
        let b = gaussian::<T>(&mut rng, n, 0.0, 1.0);
        let zero = T::from_acc(T::Acc::from_f64(0.0));
        let mut ybuf = vec![zero; rows * n + 16];
        let mut one = vec![zero; n];
        let (a0, a1) = (T::Acc::from_f64(0.0), T::Acc::from_f64(0.0));
        for (wt, bs) in [(true, true), (true, false), (false, false)] {
            let ln = LayerNorm::new(n);
            let ln = if wt { ln.weight(&w) } else { ln };
            let ln = if bs { ln.bias(&b) } else { ln };
            let y = &mut ybuf[off..off + rows * n];
            let (mut m, mut s) = (vec![a0; rows], vec![a1; rows]);
            ln.forward_with_stats(&x, y, &mut m, &mut s).unwrap();
            for r in 0..rows {
                let (mut m1, mut s1) = ([a0], [a1]);
                ln.forward_with_stats(&x[r * n..][..n], &mut one, &mut m1, &mut s1)
                    .unwrap();
                assert_eq!(
                    bits(&one),
                    bits(&y[r * n..][..n]),
                    "{what} LN n {n} row {r} off {off}"
                );
                assert_eq!(
                    m1[0].to_f64().to_bits(),
                    m[r].to_f64().to_bits(),
                    "{what} mean {r}"
                );
                assert_eq!(
                    s1[0].to_f64().to_bits(),
                    s[r].to_f64().to_bits(),
                    "{what} rstd {r}"
                );
            }
            // forward_add: residuals and outputs of paired rows equal one-row calls
            let res0 = gaussian::<T>(&mut rng, rows * n, 1.0, 1.0);
            let mut res = res0.clone();
            ln.forward_add(&x, &mut res, y).unwrap();
            for r in 0..rows {
                let mut r1 = res0[r * n..][..n].to_vec();
                ln.forward_add(&x[r * n..][..n], &mut r1, &mut one).unwrap();
                let at = |v: &[T]| bits(&v[r * n..][..n]);
                assert_eq!(bits(&one), at(y), "{what} LN add n {n} row {r} off {off}");
                assert_eq!(bits(&r1), at(&res), "{what} LN add residual {r}");
            }
            let rms = RmsNorm::new(n);
            let rms = if wt { rms.weight(&w) } else { rms };
            rms.forward(&x, y).unwrap();
            for r in 0..rows {
                rms.forward(&x[r * n..][..n], &mut one).unwrap();
                assert_eq!(
                    bits(&one),
                    bits(&y[r * n..][..n]),
                    "{what} RMS n {n} row {r} off {off}"
                );
            }
            assert!(
                y[n..2 * n].iter().all(|v| v.to_acc().to_f64().is_nan()),
                "{what} NaN row"
            );
            assert!(
                !y[..n].iter().any(|v| v.to_acc().to_f64().is_nan()),
                "{what} NaN leaked"
            );
        }
    }
    for (n, rows) in [(2048, 3), (4096, 5), (2064, 2)] {
        for off in [0, 3, 8] {
            check::<f32>(n, rows, off, "f32");
            check::<half::bf16>(n, rows, off, "bf16");
        }
    }
}

/// Inputs beyond the last-level cache (≥ 32 MiB) with f32 or f64 rows that fill L1 go four at
/// a time (then two, then one at a task's end; LayerNorm with a weight, RMSNorm): every
/// output, mean, rstd and `forward_add` residual bit for bit that of the row normalized alone,
/// in the default pool (tasks split the rows), a NaN row confined to itself and a row at the
/// rescue's scale beside it.
#[test]
fn rows_four_at_a_time_match_single_rows_bitwise() {
    fn check<T: Element>(n: usize, rows: usize) {
        let mut rng = Rng(rows as u64);
        let mut x = gaussian::<T>(&mut rng, rows * n, 3.0, 1.0);
        x[n + 5] = from_f64(f64::NAN);
        for v in &mut x[2 * n..3 * n] {
            *v = from_f64(v.to_acc().to_f64() * 1e-30);
        }
        assert!(size_of_val(&x[..]) >= 32 << 20);
        let w = gaussian::<T>(&mut rng, n, 1.0, 0.5);
        let b = gaussian::<T>(&mut rng, n, 0.0, 1.0);
        let z = from_f64::<T>(0.0);
        let za = T::Acc::from_f64(0.0);
        let ln = LayerNorm::new(n).weight(&w).bias(&b);
        let mut y = vec![z; rows * n];
        let (mut m, mut s) = (vec![za; rows], vec![za; rows]);
        ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
        let mut one = vec![z; n];
        let (mut m1, mut s1) = ([za], [za]);
        // every row of the first and last few hundred (the tasks' ends), and every 7th
        for r in (0..rows).filter(|r| *r < 300 || *r + 300 >= rows || r.is_multiple_of(7)) {
            ln.forward_with_stats(&x[r * n..][..n], &mut one, &mut m1, &mut s1)
                .unwrap();
            assert_eq!(bits(&one), bits(&y[r * n..][..n]), "n {n} row {r}");
            assert_eq!(bits(&m1), bits(&m[r..=r]), "mean {r}");
            assert_eq!(bits(&s1), bits(&s[r..=r]), "rstd {r}");
        }
        assert!(y[n..2 * n].iter().all(|v| v.to_acc().to_f64().is_nan()));
        assert!(
            !y[..n]
                .iter()
                .chain(&y[2 * n..])
                .any(|v| v.to_acc().to_f64().is_nan())
        );
        let res0 = gaussian::<T>(&mut rng, rows * n, 1.0, 1.0);
        let mut res = res0.clone();
        ln.forward_add(&x, &mut res, &mut y).unwrap();
        let some = |r: &usize| *r < 300 || *r + 300 >= rows || r.is_multiple_of(7);
        for r in (0..rows).filter(some) {
            let mut r1 = res0[r * n..][..n].to_vec();
            ln.forward_add(&x[r * n..][..n], &mut r1, &mut one).unwrap();
            assert_eq!(bits(&one), bits(&y[r * n..][..n]), "add n {n} row {r}");
            assert_eq!(bits(&r1), bits(&res[r * n..][..n]), "add residual {r}");
        }
        // LayerNorm with a weight only, RMSNorm with and without one: four at a time too
        let lnw = LayerNorm::new(n).weight(&w);
        lnw.forward(&x, &mut y).unwrap();
        for r in (0..rows).filter(some) {
            lnw.forward(&x[r * n..][..n], &mut one).unwrap();
            assert_eq!(bits(&one), bits(&y[r * n..][..n]), "LN+w n {n} row {r}");
        }
        for rms in [RmsNorm::new(n).weight(&w), RmsNorm::new(n)] {
            let mut s = vec![za; rows];
            rms.forward_with_stats(&x, &mut y, &mut s).unwrap();
            for r in (0..rows).filter(some) {
                rms.forward_with_stats(&x[r * n..][..n], &mut one, &mut s1)
                    .unwrap();
                assert_eq!(bits(&one), bits(&y[r * n..][..n]), "RMS n {n} row {r}");
                assert_eq!(bits(&s1), bits(&s[r..=r]), "RMS rstd {r}");
            }
            let mut res = res0.clone();
            rms.forward_add(&x, &mut res, &mut y).unwrap();
            for r in (0..rows).filter(some) {
                let mut r1 = res0[r * n..][..n].to_vec();
                rms.forward_add(&x[r * n..][..n], &mut r1, &mut one)
                    .unwrap();
                assert_eq!(bits(&one), bits(&y[r * n..][..n]), "RMS add n {n} row {r}");
                assert_eq!(bits(&r1), bits(&res[r * n..][..n]), "RMS add residual {r}");
            }
        }
    }
    check::<f32>(4096, 2051);
    check::<f64>(4096, 1027);
}

/// With the `row-along` feature (`.ci/run` tests it), rows of 256..=16384 values taken
/// together (LayerNorm, and RMSNorm from 1024, from a source, not in place) have the next
/// row's statistics pass carried along this row's normalize step (`ops::map_row_along`);
/// without it they go one (or two) at a time. Either way outputs, means and rstds must be
/// bit for bit those of one-row calls, also for rows whose statistics need a second pass (a
/// sorted ramp: the pilot is far from the mean), a rescale (values near the overflow
/// limit), or none at all (NaN / Inf rows), at the lengths around the path's limits (255,
/// 256, 1023, 1024, 16384, 16385) and in several lane remainder classes. bf16 LayerNorm rows
/// go in pairs instead (checked all the same).
#[test]
fn rows_with_the_next_rows_stats_alongside_match_single_rows_bitwise() {
    fn row<T: Element>(kind: usize, n: usize, rng: &mut common::Rng) -> Vec<T> {
        let mut v = |i: usize| -> f64 {
            let t = i as f64 / n as f64;
            match kind {
                0 => 3.0 + rng.normal(),
                1 => 1e4 * t,                      // sorted: pilot far from the mean
                2 => 1e30,                         // constant at large magnitude
                3 => 3.0e38 * (0.5 + 0.5 * t),     // near the f32 overflow limit
                4 if i == n / 2 => f64::NAN,       // one NaN
                5 if i == 7 => f64::INFINITY,      // one Inf
                6 => 1e-30 * (1.0 + rng.normal()), // tiny values
                _ => 1e6 + rng.normal(),           // mean 1e6, σ 1
            }
        };
        (0..n).map(|i| from_f64::<T>(v(i))).collect()
    }
    fn check<T: Element>(n: usize, what: &str) {
        let mut rng = common::Rng(n as u64 * 31 + 7);
        let kinds = [0, 1, 0, 2, 3, 0, 4, 0, 5, 6, 7, 1, 0];
        let x: Vec<T> = kinds.iter().flat_map(|&k| row(k, n, &mut rng)).collect();
        let rows = kinds.len();
        let w = gaussian::<T>(&mut rng, n, 1.0, 0.5);
        let b = gaussian::<T>(&mut rng, n, 0.0, 1.0);
        let zero = from_f64::<T>(0.0);
        let (mut y, mut one) = (vec![zero; rows * n], vec![zero; n]);
        let a0 = T::Acc::from_f64(0.0);
        for (wt, bs) in [(true, true), (false, false)] {
            let ln = LayerNorm::new(n);
            let ln = if wt { ln.weight(&w) } else { ln };
            let ln = if bs { ln.bias(&b) } else { ln };
            let (mut m, mut s) = (vec![a0; rows], vec![a0; rows]);
            ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
            let mut y2 = vec![zero; rows * n];
            ln.forward(&x, &mut y2).unwrap();
            assert_eq!(bits(&y), bits(&y2), "{what} n {n}: forward vs with_stats");
            for r in 0..rows {
                let (mut m1, mut s1) = ([a0], [a0]);
                ln.forward_with_stats(&x[r * n..][..n], &mut one, &mut m1, &mut s1)
                    .unwrap();
                let k = kinds[r];
                assert_eq!(
                    bits(&one),
                    bits(&y[r * n..][..n]),
                    "{what} n {n} row {r} kind {k}"
                );
                let same = |a: T::Acc, b: T::Acc| a.to_f64().to_bits() == b.to_f64().to_bits();
                assert!(same(m1[0], m[r]), "{what} n {n} mean of row {r} kind {k}");
                assert!(same(s1[0], s[r]), "{what} n {n} rstd of row {r} kind {k}");
            }
            let rms = RmsNorm::new(n);
            let rms = if wt { rms.weight(&w) } else { rms };
            rms.forward(&x, &mut y).unwrap();
            for r in 0..rows {
                rms.forward(&x[r * n..][..n], &mut one).unwrap();
                let k = kinds[r];
                assert_eq!(
                    bits(&one),
                    bits(&y[r * n..][..n]),
                    "{what} RMS n {n} row {r} kind {k}"
                );
            }
        }
    }
    for n in [
        255, 256, 257, 1023, 1024, 1025, 1031, 2047, 4111, 8200, 16383, 16384, 16385,
    ] {
        check::<f32>(n, "f32");
        check::<f64>(n, "f64");
        check::<half::bf16>(n, "bf16");
        check::<half::f16>(n, "f16");
    }
}
