//! Backward passes: central finite differences in f64 for every op and parameter, bad inputs,
//! determinism across thread counts, NaN and ±∞ confined to their set.

mod common;

use common::Rng;
use simdnorm::{BatchNorm, GroupNorm, LayerNorm, Layout, NormError, RmsNorm};

/// The relative bar of the issue: analytic and numeric gradients agree to 1e-7 of the
/// largest gradient component. Central differences with step h have error
/// O(h²·|f'''|) + O(ε·|L|/h): h = 1e-5 gives ~1e-10 + 2e-11 for these O(1) losses.
const REL: f64 = 1e-7;
const H: f64 = 1e-5;

/// `L(p) = Σ y(p)·r` for a fixed random `r` (= dy): dL/dp is what backward returns.
fn numeric_grad(p: &[f64], loss: &dyn Fn(&[f64]) -> f64) -> Vec<f64> {
    (0..p.len())
        .map(|i| {
            let (mut a, mut b) = (p.to_vec(), p.to_vec());
            a[i] += H;
            b[i] -= H;
            (loss(&a) - loss(&b)) / (2.0 * H)
        })
        .collect()
}

#[track_caller]
fn assert_grad(got: &[f64], want: &[f64], what: &str) {
    // floor: a gradient that is exactly 0 (a 1-value row) is matched to 1e-15 absolute
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-8);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= REL * scale,
            "{what}[{i}]: analytic {g}, numeric {w} (scale {scale})"
        );
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn randn(rng: &mut Rng, n: usize, mean: f64) -> Vec<f64> {
    (0..n).map(|_| mean + rng.normal()).collect()
}

#[test]
fn layer_norm_gradients_match_finite_differences() {
    for (rows, n) in [(3, 7), (2, 33), (1, 1), (4, 16)] {
        let mut rng = Rng(n as u64);
        let (x, w, b, r) = (
            randn(&mut rng, rows * n, 3.0),
            randn(&mut rng, n, 1.0),
            randn(&mut rng, n, 0.0),
            randn(&mut rng, rows * n, 0.0),
        );
        let eps = 1e-3;
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; x.len()];
            LayerNorm::new(n)
                .eps(eps)
                .weight(w)
                .bias(b)
                .forward(x, &mut y)
                .unwrap();
            dot(&y, &r)
        };
        let ln = LayerNorm::new(n).eps(eps).weight(&w).bias(&b);
        let (mut y, mut mean, mut rstd) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
        ln.forward_with_stats(&x, &mut y, &mut mean, &mut rstd)
            .unwrap();
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; n], vec![0.0; n]);
        ln.backward(&r, &x, &mean, &rstd, &mut dx, Some(&mut dw), Some(&mut db))
            .unwrap();
        assert_grad(&dx, &numeric_grad(&x, &|p| loss(p, &w, &b)), "ln dx");
        assert_grad(&dw, &numeric_grad(&w, &|p| loss(&x, p, &b)), "ln dw");
        assert_grad(&db, &numeric_grad(&b, &|p| loss(&x, &w, p)), "ln db");
        // without weight: dx from g = dy
        let ln0 = LayerNorm::new(n).eps(eps);
        let mut dx0 = vec![0.0; x.len()];
        ln0.backward(&r, &x, &mean, &rstd, &mut dx0, None, None)
            .unwrap();
        let loss0 = |x: &[f64]| {
            let mut y = vec![0.0; x.len()];
            ln0.forward(x, &mut y).unwrap();
            dot(&y, &r)
        };
        assert_grad(&dx0, &numeric_grad(&x, &loss0), "ln dx (no weight)");
    }
}

#[test]
fn rms_norm_gradients_match_finite_differences() {
    for (rows, n) in [(3, 7), (2, 33), (1, 1)] {
        let mut rng = Rng(100 + n as u64);
        let (x, w, r) = (
            randn(&mut rng, rows * n, 0.5),
            randn(&mut rng, n, 1.0),
            randn(&mut rng, rows * n, 0.0),
        );
        let loss = |x: &[f64], w: &[f64]| {
            let mut y = vec![0.0; x.len()];
            RmsNorm::new(n)
                .eps(1e-3)
                .weight(w)
                .forward(x, &mut y)
                .unwrap();
            dot(&y, &r)
        };
        let rms = RmsNorm::new(n).eps(1e-3).weight(&w);
        let (mut y, mut rstd) = (vec![0.0; x.len()], vec![0.0; rows]);
        rms.forward_with_stats(&x, &mut y, &mut rstd).unwrap();
        let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; n]);
        rms.backward(&r, &x, &rstd, &mut dx, Some(&mut dw)).unwrap();
        assert_grad(&dx, &numeric_grad(&x, &|p| loss(p, &w)), "rms dx");
        assert_grad(&dw, &numeric_grad(&w, &|p| loss(&x, p)), "rms dw");
    }
}

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let c = 5;
    for layout in [
        Layout::Nc { n: 6 },
        Layout::Nchw { n: 3, hw: 4 },
        Layout::Nhwc { n: 2, hw: 5 },
        Layout::Nchw { n: 4, hw: 1 },
        // segments of at least `tuning::SEGMENT_MIN_HW` (64) values: one channel at a time
        Layout::Nchw { n: 2, hw: 67 },
    ] {
        let len = match layout {
            Layout::Nc { n } => n * c,
            Layout::Nchw { n, hw } | Layout::Nhwc { n, hw } => n * hw * c,
        };
        let mut rng = Rng(len as u64);
        let (x, w, b, r) = (
            randn(&mut rng, len, -2.0),
            randn(&mut rng, c, 1.0),
            randn(&mut rng, c, 0.0),
            randn(&mut rng, len, 0.0),
        );
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; x.len()];
            let (mut m, mut s) = (vec![0.0; c], vec![0.0; c]);
            BatchNorm::new(c)
                .eps(1e-3)
                .weight(w)
                .bias(b)
                .forward_train(x, layout, &mut y, None, &mut m, &mut s)
                .unwrap();
            dot(&y, &r)
        };
        let bn = BatchNorm::new(c).eps(1e-3).weight(&w).bias(&b);
        let (mut y, mut m, mut s) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        bn.forward_train(&x, layout, &mut y, None, &mut m, &mut s)
            .unwrap();
        let (mut dx, mut dw, mut db) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        bn.backward_train(
            &r,
            &x,
            layout,
            &m,
            &s,
            &mut dx,
            Some(&mut dw),
            Some(&mut db),
        )
        .unwrap();
        let what = format!("{layout:?}");
        assert_grad(
            &dx,
            &numeric_grad(&x, &|p| loss(p, &w, &b)),
            &format!("{what} dx"),
        );
        assert_grad(
            &dw,
            &numeric_grad(&w, &|p| loss(&x, p, &b)),
            &format!("{what} dw"),
        );
        assert_grad(
            &db,
            &numeric_grad(&b, &|p| loss(&x, &w, p)),
            &format!("{what} db"),
        );
    }
}

#[test]
fn group_norm_gradients_match_finite_differences() {
    for (n, c, hw, groups) in [(2, 6, 5, 3), (1, 4, 7, 1), (3, 3, 4, 3), (2, 4, 1, 2)] {
        let len = n * c * hw;
        let mut rng = Rng(7 + len as u64);
        let (x, w, b, r) = (
            randn(&mut rng, len, 4.0),
            randn(&mut rng, c, 1.0),
            randn(&mut rng, c, 0.0),
            randn(&mut rng, len, 0.0),
        );
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; x.len()];
            GroupNorm::new(groups, c)
                .eps(1e-3)
                .weight(w)
                .bias(b)
                .forward(x, n, hw, &mut y)
                .unwrap();
            dot(&y, &r)
        };
        let gn = GroupNorm::new(groups, c).eps(1e-3).weight(&w).bias(&b);
        let (mut y, mut m, mut s) = (vec![0.0; len], vec![0.0; n * groups], vec![0.0; n * groups]);
        gn.forward_with_stats(&x, n, hw, &mut y, &mut m, &mut s)
            .unwrap();
        let (mut dx, mut dw, mut db) = (vec![0.0; len], vec![0.0; c], vec![0.0; c]);
        gn.backward(&r, &x, n, hw, &m, &s, &mut dx, Some(&mut dw), Some(&mut db))
            .unwrap();
        let what = format!("gn ({n}, {c}, {hw}) g{groups}");
        assert_grad(
            &dx,
            &numeric_grad(&x, &|p| loss(p, &w, &b)),
            &format!("{what} dx"),
        );
        assert_grad(
            &dw,
            &numeric_grad(&w, &|p| loss(&x, p, &b)),
            &format!("{what} dw"),
        );
        assert_grad(
            &db,
            &numeric_grad(&b, &|p| loss(&x, &w, p)),
            &format!("{what} db"),
        );
    }
}

#[test]
fn backward_bad_inputs_are_errors_and_write_nothing() {
    let s = 7.0f32;
    let (x, dy) = (vec![1.0f32; 12], vec![1.0f32; 12]);
    let untouched = |v: &[f32]| v.iter().all(|v| *v == s);
    let (mut dx, mut dw, mut db) = (vec![s; 12], vec![s; 4], vec![s; 4]);
    let ln = LayerNorm::<f32>::new(4);
    assert_eq!(
        ln.backward(
            &dy,
            &x[..8],
            &[0.0; 2],
            &[1.0; 2],
            &mut dx,
            Some(&mut dw),
            Some(&mut db)
        ),
        Err(NormError::LengthMismatch {
            arg: "dy",
            expected: 8,
            actual: 12
        })
    );
    assert_eq!(
        ln.backward(
            &dy,
            &x,
            &[0.0; 2],
            &[1.0; 3],
            &mut dx,
            Some(&mut dw),
            Some(&mut db)
        ),
        Err(NormError::LengthMismatch {
            arg: "mean",
            expected: 3,
            actual: 2
        })
    );
    assert_eq!(
        ln.backward(
            &dy,
            &x,
            &[0.0; 3],
            &[1.0; 3],
            &mut dx,
            Some(&mut dw[..3]),
            None
        ),
        Err(NormError::LengthMismatch {
            arg: "dweight",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        RmsNorm::<f32>::new(4).backward(&dy, &x, &[1.0; 3], &mut dx[..11], None),
        Err(NormError::LengthMismatch {
            arg: "dx",
            expected: 12,
            actual: 11
        })
    );
    assert_eq!(
        BatchNorm::<f32>::new(4).backward_train(
            &dy,
            &x,
            Layout::Nc { n: 3 },
            &[0.0; 4],
            &[1.0; 3],
            &mut dx,
            None,
            Some(&mut db)
        ),
        Err(NormError::LengthMismatch {
            arg: "saved_invstd",
            expected: 4,
            actual: 3
        })
    );
    assert_eq!(
        GroupNorm::<f32>::new(3, 4).backward(
            &dy,
            &x,
            1,
            3,
            &[0.0; 3],
            &[1.0; 3],
            &mut dx,
            Some(&mut dw),
            None
        ),
        Err(NormError::InvalidGroups {
            groups: 3,
            channels: 4
        })
    );
    assert_eq!(
        GroupNorm::<f32>::new(2, 4).backward(
            &dy,
            &x,
            1,
            3,
            &[0.0; 2],
            &[1.0; 2],
            &mut dx,
            Some(&mut dw),
            Some(&mut db[..1])
        ),
        Err(NormError::LengthMismatch {
            arg: "dbias",
            expected: 4,
            actual: 1
        })
    );
    assert!(untouched(&dx) && untouched(&dw) && untouched(&db));
}

/// dx, dweight and dbias bitwise identical for pools of 1, 2, 3 and 8 threads on inputs large
/// enough to be split (the cross-row sums are the part that could differ).
#[test]
fn backward_deterministic_across_thread_counts() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out: Vec<Vec<u32>> = Vec::new();
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let mut rng = Rng(3);
            let (rows, n) = (300, 1000);
            let x: Vec<f32> = (0..rows * n).map(|_| 10.0 + rng.normal() as f32).collect();
            let dy: Vec<f32> = (0..rows * n).map(|_| rng.normal() as f32).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
            let (mut y, mut m, mut s) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
            let ln = LayerNorm::new(n).weight(&w);
            ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; n], vec![0.0; n]);
            ln.backward(&dy, &x, &m, &s, &mut dx, Some(&mut dw), Some(&mut db))
                .unwrap();
            out.extend([bits(&dx), bits(&dw), bits(&db)]);
            RmsNorm::new(n)
                .weight(&w)
                .backward(&dy, &x, &s, &mut dx, Some(&mut dw))
                .unwrap();
            out.extend([bits(&dx), bits(&dw)]);
            let c = 20;
            for layout in [
                Layout::Nc { n: 15000 },
                Layout::Nchw { n: 30, hw: 500 },
                Layout::Nhwc { n: 30, hw: 500 },
                // short segments: rows of C·HW columns
                Layout::Nchw { n: 3000, hw: 5 },
            ] {
                let bn = BatchNorm::new(c).weight(&w[..c]);
                let (mut m, mut s) = (vec![0.0; c], vec![0.0; c]);
                bn.forward_train(&x, layout, &mut y, None, &mut m, &mut s)
                    .unwrap();
                let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
                bn.backward_train(
                    &dy,
                    &x,
                    layout,
                    &m,
                    &s,
                    &mut dx,
                    Some(&mut dw),
                    Some(&mut db),
                )
                .unwrap();
                out.extend([bits(&dx), bits(&dw), bits(&db)]);
            }
            let gn = GroupNorm::new(4, c).weight(&w[..c]);
            let (mut gm, mut gs) = (vec![0.0; 30 * 4], vec![0.0; 30 * 4]);
            gn.forward_with_stats(&x, 30, 500, &mut y, &mut gm, &mut gs)
                .unwrap();
            let (mut dw, mut db) = (vec![0.0; c], vec![0.0; c]);
            gn.backward(
                &dy,
                &x,
                30,
                500,
                &gm,
                &gs,
                &mut dx,
                Some(&mut dw),
                Some(&mut db),
            )
            .unwrap();
            out.extend([bits(&dx), bits(&dw), bits(&db)]);
            out
        })
    };
    let one = run(1);
    for t in [2, 3, 8] {
        assert!(run(t) == one, "{t} threads differ from 1");
    }
}

/// `len` values of `v` placed `off` elements past the start of a fresh buffer: every one of
/// the 16 positions relative to a 64-byte boundary is reached by some `off < 16`.
fn placed<T: Copy>(v: &[T], off: usize, fill: T) -> (Vec<T>, usize) {
    let mut buf = vec![fill; v.len() + 16];
    buf[off..off + v.len()].copy_from_slice(v);
    (buf, off)
}

/// One LayerNorm (`rms = false`) or RMSNorm backward on `rows` rows of `n` values, `x`, `dy`
/// and `dx` each at its own offset `offs`, against the oracle from the same statistics.
///
/// Tolerances, in units of ε of `T::Acc`: the row sums `Σg`, `Σg·x̂` are summed by lane
/// accumulators (at most `n/8` terms each in any build: ≥ 8 lanes) and a tree of depth ≤ 6,
/// so their error is ≤ (n/8 + 8)·ε·Σ|·|; `dx = (g·a) + x̂·β + γ` carries those through
/// β = −a·Σg·x̂/n and γ = −a·Σg/n, plus a few roundings of each term (×2 margin):
/// `tol = 2·(n/8 + 16)·ε·a·(|g| + |x̂|·Σ|g·x̂|/n + Σ|g|/n)`. dweight / dbias sum ≤ 3 rows of
/// one-rounding products: `8ε·Σ|dy|·(|x̂| + |μ|·a)` (x − μ rounds by ε·|x|) and `8ε·Σ|dy|`.
/// Half types add one rounding of dx to storage (`storage_ulp`). A lane counted twice or
/// dropped at a row's ends moves `Σg` by a whole term: ~n/8·ε beyond these bounds for
/// n ≤ 5000, so it is caught.
#[allow(clippy::too_many_arguments)]
fn check_rows_backward<T: simdnorm::Element>(
    rows: usize,
    n: usize,
    offs: [usize; 3],
    kappa: f64,
    rms: bool,
    weighted: bool,
    want: (bool, bool),
    seed: u64,
) -> Result<(), String> {
    use simdnorm::Float;
    let mut rng = Rng(seed);
    let eps = <T::Acc as Float>::EPSILON.to_f64();
    let x = common::gaussian::<T>(&mut rng, rows * n, kappa, 1.0);
    let dy = common::gaussian::<T>(&mut rng, rows * n, 0.0, 1.0);
    let w = if weighted {
        common::gaussian::<T>(&mut rng, n, 1.0, 0.5)
    } else {
        vec![]
    };
    let (zero, tz) = (T::Acc::from_f64(0.0), common::from_f64::<T>(0.0));
    let (mut y, mut mean, mut rstd) = (vec![tz; rows * n], vec![zero; rows], vec![zero; rows]);
    let ((xb, xo), (dyb, dyo)) = (placed(&x, offs[0], tz), placed(&dy, offs[1], tz));
    let (xs, dys) = (&xb[xo..xo + x.len()], &dyb[dyo..dyo + dy.len()]);
    let (mut dxb, dxo) = placed(&vec![tz; x.len()], offs[2], tz);
    let dxs = &mut dxb[dxo..dxo + x.len()];
    let (mut dw, mut db) = (vec![zero; n], vec![zero; n]);
    let (dwo, dbo) = (want.0.then_some(&mut dw[..]), want.1.then_some(&mut db[..]));
    if rms {
        let op = RmsNorm::new(n);
        let op = if weighted { op.weight(&w) } else { op };
        op.forward_with_stats(xs, &mut y, &mut rstd).unwrap();
        op.backward(dys, xs, &rstd, dxs, dwo).unwrap();
    } else {
        let op = LayerNorm::new(n);
        let op = if weighted { op.weight(&w) } else { op };
        op.forward_with_stats(xs, &mut y, &mut mean, &mut rstd)
            .unwrap();
        op.backward(dys, xs, &mean, &rstd, dxs, dwo, dbo).unwrap();
    }
    let f = |v: &[T::Acc]| v.iter().map(|a| a.to_f64()).collect::<Vec<f64>>();
    let (mf, rf) = (f(&mean), f(&rstd));
    let (rdx, rdw, rdb) =
        simdnorm::oracle::layer_norm_backward(&dy, &x, n, &w, (!rms).then_some(&mf[..]), &rf);
    let v = |t: T| t.to_acc().to_f64();
    let wv = |j: usize| if weighted { v(w[j]) } else { 1.0 };
    let k = 2.0 * (n as f64 / 8.0 + 16.0) * eps;
    let (mut tw, mut tb) = (vec![0.0f64; n], vec![0.0f64; n]);
    for r in 0..rows {
        let (mu, a) = (mf[r], rf[r]);
        let xh = |i: usize| (v(x[r * n + i]) - mu) * a;
        let g = |i: usize| v(dy[r * n + i]) * wv(i);
        let s1: f64 = (0..n).map(|i| g(i).abs()).sum();
        let s2: f64 = (0..n).map(|i| (g(i) * xh(i)).abs()).sum();
        for i in 0..n {
            let j = r * n + i;
            let tol = k * a * (g(i).abs() + xh(i).abs() * s2 / n as f64 + s1 / n as f64)
                + common::storage_ulp::<T>(rdx[j]);
            let got = v(dxs[j]);
            if (got - rdx[j]).abs() > tol || !got.is_finite() {
                return Err(format!(
                    "dx[{r}][{i}] = {got}, oracle {} (tol {tol:e})",
                    rdx[j]
                ));
            }
            let d = v(dy[j]).abs();
            tw[i] += 8.0 * eps * d * (xh(i).abs() + mu.abs() * a);
            tb[i] += 8.0 * eps * d;
        }
    }
    for (on, got, want, tol, what) in [
        (want.0, &dw, &rdw, &tw, "dweight"),
        (want.1 && !rms, &db, &rdb, &tb, "dbias"),
    ] {
        for i in (0..n).filter(|_| on) {
            let g = got[i].to_f64();
            if (g - want[i]).abs() > tol[i] + 1e-300 {
                return Err(format!(
                    "{what}[{i}] = {g}, oracle {} (tol {:e})",
                    want[i], tol[i]
                ));
            }
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// LayerNorm and RMSNorm backward against the oracle at every row length (1..=300 and
    /// longer), every alignment of x, dy and dx (the aligned body, the overlapped first and
    /// last vectors, rows shorter than a vector), with and without weight, dweight, dbias.
    #[test]
    fn rows_backward_matches_the_oracle_at_every_length_and_offset(
        rows in 1usize..4,
        n in proptest::prop_oneof![4 => 1usize..=300, 1 => 301usize..5000],
        offs in proptest::array::uniform3(0usize..16),
        kappa in proptest::prop_oneof![proptest::strategy::Just(0.0), proptest::strategy::Just(1e2), proptest::strategy::Just(1e4)],
        flags in proptest::prelude::any::<(bool, bool, bool, bool)>(),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let (rms, weighted, want) = (flags.0, flags.1, (flags.2, flags.3));
        let r = check_rows_backward::<f32>(rows, n, offs, kappa, rms, weighted, want, seed);
        proptest::prop_assert!(r.is_ok(), "f32 rows {} n {} offs {:?} kappa {} rms {}: {:?}", rows, n, offs, kappa, rms, r);
        let r = check_rows_backward::<f64>(rows, n, offs, kappa, rms, weighted, want, seed);
        proptest::prop_assert!(r.is_ok(), "f64 rows {} n {} offs {:?} kappa {} rms {}: {:?}", rows, n, offs, kappa, rms, r);
        // half storage: data near 1 (1e2 and 1e4 are past their resolution for σ = 1)
        let r = check_rows_backward::<half::bf16>(rows, n, offs, 1.0, rms, weighted, want, seed);
        proptest::prop_assert!(r.is_ok(), "bf16 rows {} n {} offs {:?} rms {}: {:?}", rows, n, offs, rms, r);
    }
}

/// Rows long enough to be taken in pairs (a whole number of vectors, ≥ 2048 values), odd row
/// counts (a pair and a single row), every alignment of dx: against the oracle, and dx bit
/// for bit equal to the rows' backward one call per row.
#[test]
fn paired_rows_backward_match_the_oracle_and_single_rows() {
    for (n, rows) in [(2048, 3), (4096, 5), (2064, 2), (4100, 3)] {
        for off in [0, 1, 5, 12] {
            for (rms, weighted, want) in [(false, true, (true, true)), (true, false, (true, false))]
            {
                let o = [off, 3, off];
                let ok = |r: Result<(), String>, t: &str| {
                    assert!(
                        r.is_ok(),
                        "{t} n {n} rows {rows} off {off} rms {rms}: {r:?}"
                    )
                };
                let seed = n as u64;
                ok(
                    check_rows_backward::<f32>(rows, n, o, 1e3, rms, weighted, want, seed),
                    "f32",
                );
                ok(
                    check_rows_backward::<f64>(rows, n, o, 1e3, rms, weighted, want, seed),
                    "f64",
                );
                // half data centred near 1: 1e3 is past their resolution for σ = 1
                ok(
                    check_rows_backward::<half::bf16>(rows, n, o, 1.0, rms, weighted, want, seed),
                    "bf16",
                );
                ok(
                    check_rows_backward::<half::f16>(rows, n, o, 1.0, rms, weighted, want, seed),
                    "f16",
                );
            }
        }
        let mut rng = Rng(n as u64);
        let x = common::gaussian::<f32>(&mut rng, rows * n, 3.0, 1.0);
        let dy = common::gaussian::<f32>(&mut rng, rows * n, 0.0, 1.0);
        let w = common::gaussian::<f32>(&mut rng, n, 1.0, 0.5);
        let ln = LayerNorm::new(n).weight(&w);
        let (mut y, mut m, mut s) = (vec![0.0; x.len()], vec![0.0; rows], vec![0.0; rows]);
        ln.forward_with_stats(&x, &mut y, &mut m, &mut s).unwrap();
        let mut dx = vec![0.0f32; x.len()];
        let mut dw = vec![0.0f32; n];
        ln.backward(&dy, &x, &m, &s, &mut dx, Some(&mut dw), None)
            .unwrap();
        for r in 0..rows {
            let q = r * n..(r + 1) * n;
            let mut one = vec![0.0f32; n];
            ln.backward(
                &dy[q.clone()],
                &x[q.clone()],
                &m[r..=r],
                &s[r..=r],
                &mut one,
                None,
                None,
            )
            .unwrap();
            let bits = |v: &[f32]| v.iter().map(|t| t.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&one), bits(&dx[q]), "n {n} row {r}");
        }
    }
}

/// Which set (row, channel or (sample, group)) element `i` of an `(n, c, hw)` input belongs
/// to, and its feature (the index of the weight that applies to it), per op.
#[derive(Clone, Copy, Debug)]
enum SetOp {
    /// LayerNorm (`rms = false`) or RMSNorm over rows of `c·hw`.
    Rows { rms: bool },
    /// BatchNorm training in a layout.
    Bn(u8),
    /// GroupNorm with this many groups.
    Gn(usize),
}

/// The backward of `op` on `x`, `dy` of shape `(n, c, hw)` (statistics from a forward pass
/// on `x`, eps 1e-5), with weight and bias: `(dx, dweight, dbias)` in f64, and each
/// element's set and each parameter's set (`None`: a parameter summed over every set).
#[allow(clippy::type_complexity)]
fn backward_of<T: simdnorm::Element>(
    op: SetOp,
    x: &[T],
    dy: &[T],
    (n, c, hw): (usize, usize, usize),
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<usize>, Vec<Option<usize>>) {
    use simdnorm::Float;
    let len = c * hw;
    let z = common::from_f64::<T>(0.0);
    let za = T::Acc::from_f64(0.0);
    let f = |v: &[T::Acc]| v.iter().map(|a| a.to_f64()).collect::<Vec<f64>>();
    let mut y = vec![z; x.len()];
    let mut dx = vec![z; x.len()];
    let (set, params, dw, db): (Vec<usize>, Vec<Option<usize>>, Vec<_>, Vec<_>) = match op {
        SetOp::Rows { rms } => {
            let w: Vec<T> = (0..len)
                .map(|i| common::from_f64(1.0 + i as f64 / 64.0))
                .collect();
            let (mut dw, mut db) = (vec![za; len], vec![za; len]);
            let (mut m, mut r) = (vec![za; n], vec![za; n]);
            if rms {
                let op = RmsNorm::new(len).weight(&w);
                op.forward_with_stats(x, &mut y, &mut r).unwrap();
                op.backward(dy, x, &r, &mut dx, Some(&mut dw)).unwrap();
            } else {
                let op = LayerNorm::new(len).weight(&w).bias(&w);
                op.forward_with_stats(x, &mut y, &mut m, &mut r).unwrap();
                op.backward(dy, x, &m, &r, &mut dx, Some(&mut dw), Some(&mut db))
                    .unwrap();
            }
            let set = (0..x.len()).map(|i| i / len).collect();
            (set, vec![None; len], f(&dw), f(&db))
        }
        SetOp::Bn(l) => {
            let layout = match l {
                0 => Layout::Nchw { n, hw },
                1 => Layout::Nc { n: n * hw },
                _ => Layout::Nhwc { n, hw },
            };
            let w: Vec<T> = (0..c)
                .map(|i| common::from_f64(1.0 + i as f64 / 8.0))
                .collect();
            let op = BatchNorm::new(c).weight(&w).bias(&w);
            let (mut m, mut s) = (vec![za; c], vec![za; c]);
            op.forward_train(x, layout, &mut y, None, &mut m, &mut s)
                .unwrap();
            let (mut dw, mut db) = (vec![za; c], vec![za; c]);
            op.backward_train(dy, x, layout, &m, &s, &mut dx, Some(&mut dw), Some(&mut db))
                .unwrap();
            let set = (0..x.len())
                .map(|i| if l == 0 { (i / hw) % c } else { i % c })
                .collect();
            (set, (0..c).map(Some).collect(), f(&dw), f(&db))
        }
        SetOp::Gn(g) => {
            let w: Vec<T> = (0..c)
                .map(|i| common::from_f64(1.0 + i as f64 / 8.0))
                .collect();
            let op = GroupNorm::new(g, c).weight(&w).bias(&w);
            let (mut m, mut r) = (vec![za; n * g], vec![za; n * g]);
            op.forward_with_stats(x, n, hw, &mut y, &mut m, &mut r)
                .unwrap();
            let (mut dw, mut db) = (vec![za; c], vec![za; c]);
            op.backward(dy, x, n, hw, &m, &r, &mut dx, Some(&mut dw), Some(&mut db))
                .unwrap();
            let cpg = c / g;
            let set = (0..x.len())
                .map(|i| (i / len) * g + (i / hw) % c / cpg)
                .collect();
            // a channel's parameters sum over every sample: tied to its group in each
            (set, vec![None; c], f(&dw), f(&db))
        }
    };
    let dxf = dx.iter().map(|v| v.to_acc().to_f64()).collect();
    (dxf, dw, db, set, params)
}

/// A NaN or ±∞ at element `at` of `x` (or of `dy`) makes `dx` of that element's set
/// non-finite throughout and leaves every other set's `dx` finite: the forward contract
/// ("a NaN stays where it is") carried to the backward passes. BatchNorm's dweight and dbias
/// are per channel: only the poisoned channel's may be non-finite (dbias not at all for a
/// poisoned `x`, which it does not read).
fn confined<T: simdnorm::Element>(
    op: SetOp,
    shape: (usize, usize, usize),
    at: usize,
    bad: f64,
    in_dy: bool,
    seed: u64,
) -> Result<(), String> {
    let (n, c, hw) = shape;
    let mut rng = Rng(seed);
    let mut x = common::gaussian::<T>(&mut rng, n * c * hw, 1.0, 1.0);
    let mut dy = common::gaussian::<T>(&mut rng, n * c * hw, 0.0, 1.0);
    let at = at % x.len();
    if in_dy {
        dy[at] = common::from_f64(bad);
    } else {
        x[at] = common::from_f64(bad);
    }
    let (dx, dw, db, set, params) = backward_of(op, &x, &dy, shape);
    for (i, v) in dx.iter().enumerate() {
        let poisoned = set[i] == set[at];
        if poisoned == v.is_finite() {
            return Err(format!(
                "dx[{i}] = {v} (set {}, poisoned set {}, bad {bad} in {})",
                set[i],
                set[at],
                if in_dy { "dy" } else { "x" }
            ));
        }
    }
    for (j, p) in params.iter().enumerate() {
        if let Some(s) = p {
            let poisoned = *s == set[at];
            let clean = dw[j].is_finite() && db[j].is_finite();
            if !poisoned && !clean {
                return Err(format!(
                    "dweight/dbias[{j}] = {}/{} outside the poisoned set",
                    dw[j], db[j]
                ));
            }
            if !in_dy && !db[j].is_finite() {
                return Err(format!("dbias[{j}] = {} from a bad x", db[j]));
            }
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 200, ..Default::default() })]

    /// [`confined`] for LN, RMS, BN in each layout and GN (one group a channel, two groups,
    /// one group), f32, f64 and bf16, shapes with rows and segments shorter and longer than a
    /// vector.
    #[test]
    fn a_nan_or_inf_stays_in_its_set_in_the_backward_passes(
        opi in 0usize..8,
        n in 2usize..5,
        c in proptest::sample::select(vec![2usize, 4, 6]),
        hw in proptest::prop_oneof![1usize..20, 20usize..70],
        at in proptest::prelude::any::<usize>(),
        bad in proptest::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
        in_dy in proptest::prelude::any::<bool>(),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let op = match opi {
            0 => SetOp::Rows { rms: false },
            1 => SetOp::Rows { rms: true },
            2..=4 => SetOp::Bn((opi - 2) as u8),
            5 => SetOp::Gn(c),
            6 => SetOp::Gn(2),
            _ => SetOp::Gn(1),
        };
        let shape = (n, c, hw);
        let r = confined::<f32>(op, shape, at, bad, in_dy, seed);
        proptest::prop_assert!(r.is_ok(), "f32 {:?} {:?}: {:?}", op, shape, r);
        let r = confined::<f64>(op, shape, at, bad, in_dy, seed);
        proptest::prop_assert!(r.is_ok(), "f64 {:?} {:?}: {:?}", op, shape, r);
        let r = confined::<half::bf16>(op, shape, at, bad, in_dy, seed);
        proptest::prop_assert!(r.is_ok(), "bf16 {:?} {:?}: {:?}", op, shape, r);
    }
}
