//! Every moment kernel against the scalar oracle: proptest over lengths 0..=300 (every tail
//! length, every lane remainder), start offsets inside a larger buffer, ill-conditioned data,
//! NaN/±Inf; and a deterministic table of lengths reaching every code path.

mod common;

use common::*;
use proptest::prelude::*;
use simdnorm::{
    Element, Float, Moments, Welford, col_moments, moments, oracle, row_moments, two_pass, welford,
};

/// Lengths that reach every code path (f32: LANES = 16, NACC·LANES = 64, BLOCK = 2048;
/// f64: LANES = 8, NACC·LANES = 32).
fn lens() -> Vec<usize> {
    let mut v: Vec<usize> = (0..=2 * 64 + 1).collect(); // every tail and lane remainder up to 2 Welford steps (f32)
    for k in [3usize, 4, 5, 31, 32, 33] {
        v.extend([k * 64 - 1, k * 64, k * 64 + 1]); // whole Welford steps ± 1
    }
    v.extend([2047, 2048, 2049]); // BLOCK ± 1: one leaf / two leaves
    v.extend([4095, 4096, 4097, 3 * 2048 + 65]); // 2 and 4 leaves; a non-power-of-two tree
    v.extend([64 * 2048 - 1, 64 * 2048 + 17]); // around PAR_BLOCKS leaves: the parallel split
    v
}

/// The kernels under test, named.
fn kernels<T: Element>(x: &[T]) -> [(&'static str, Moments<T::Acc>); 5] {
    let mut streamed = Welford::new();
    streamed.extend(x);
    let mut pushed = Welford::new();
    for v in x {
        pushed.push(v.to_acc());
    }
    [
        ("welford", welford(x)),
        ("two_pass", two_pass(x)),
        ("moments", moments(x)),
        ("Welford::extend", streamed.moments()),
        ("Welford::push", pushed.moments()),
    ]
}

fn check_all<T: Element>(x: &[T], k: f64, what: &str) {
    check_some(x, k, what, true)
}

/// `streaming == false` leaves out the streaming `Welford`, whose merges of parts run in
/// unscaled units (documented limit: f32 deviations below ~1e-19 underflow there).
fn check_some<T: Element>(x: &[T], k: f64, what: &str, streaming: bool) {
    let r = oracle::moments(x);
    for (name, m) in kernels(x) {
        if !streaming && name.starts_with("Welford::") {
            continue;
        }
        assert_close(&m, &r, k, &format!("{what} {name} n={}", x.len()));
    }
}

/// One data set: length, offset in a bigger buffer, and the shape of its values.
#[derive(Clone, Debug)]
struct Data {
    len: usize,
    offset: usize,
    /// log10 of σ.
    scale: i32,
    /// |mean| / σ.
    kappa: f64,
    special: Special,
    seed: u64,
}

#[derive(Clone, Debug)]
enum Special {
    None,
    /// All values equal.
    Constant,
    /// One value multiplied by 10^k.
    Outlier(usize, i32),
    /// A NaN, +Inf or −Inf at a position.
    NonFinite(usize, u8),
    /// Values in the subnormal range of the type (ignored for f64 scales).
    Subnormal,
}

fn data_strategy(max_scale: i32, max_kappa_exp: i32) -> impl Strategy<Value = Data> {
    (
        prop_oneof![8 => 0usize..=300, 1 => 301usize..5000],
        0usize..16,
        -max_scale..=max_scale,
        prop_oneof![Just(0.0), (0..=max_kappa_exp).prop_map(|e| 10f64.powi(e))],
        prop_oneof![
            6 => Just(Special::None),
            1 => Just(Special::Constant),
            1 => (any::<usize>(), 1i32..=6).prop_map(|(p, k)| Special::Outlier(p, k)),
            1 => (any::<usize>(), 0u8..3).prop_map(|(p, k)| Special::NonFinite(p, k)),
            1 => Just(Special::Subnormal),
        ],
        any::<u64>(),
    )
        .prop_map(|(len, offset, scale, kappa, special, seed)| Data {
            len,
            offset,
            scale,
            kappa,
            special,
            seed,
        })
}

/// The buffer (with `offset` guard values before and 7 after) and the range under test.
fn make<T: Element>(d: &Data) -> (Vec<T>, std::ops::Range<usize>) {
    let mut rng = Rng(d.seed);
    let sigma = 10f64.powi(d.scale);
    let mean = if rng.sym() < 0.0 {
        -d.kappa * sigma
    } else {
        d.kappa * sigma
    };
    let mut v: Vec<f64> = (0..d.len).map(|_| mean + sigma * rng.normal()).collect();
    match d.special {
        Special::None => {}
        Special::Constant => v.iter_mut().for_each(|x| *x = mean + sigma),
        Special::Outlier(p, k) if d.len > 0 => v[p % d.len] *= 10f64.powi(k),
        Special::NonFinite(p, k) if d.len > 0 => {
            v[p % d.len] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][k as usize]
        }
        Special::Subnormal => {
            let tiny = T::Acc::MIN_POSITIVE.to_f64();
            v.iter_mut().for_each(|x| *x = tiny * rng.sym())
        }
        _ => {}
    }
    let mut buf: Vec<T> = vec![from_f64(1.0e3); d.offset];
    buf.extend(v.iter().map(|&x| from_f64::<T>(x)));
    buf.extend([from_f64::<T>(-7.0e3); 7]);
    (buf, d.offset..d.offset + d.len)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// f32 data: σ from 1e-30 to 1e30 (a variance beyond f32's range must come out +∞ or
    /// rounded into the subnormals, as a rescaled copy would give), |mean|/σ up to 1e6.
    #[test]
    fn f32_kernels_match_oracle(d in data_strategy(30, 6)) {
        let (buf, r) = make::<f32>(&d);
        check_some(&buf[r], 1.0, &format!("{d:?}"), d.scale >= -17);
    }

    /// f64 data: σ from 1e-30 to 1e30, |mean|/σ up to 1e6.
    #[test]
    fn f64_kernels_match_oracle(d in data_strategy(30, 6)) {
        let (buf, r) = make::<f64>(&d);
        check_all(&buf[r], 1.0, &format!("{d:?}"));
    }

    /// Half-precision storage, f32 accumulation: inputs are exact in f32, so the f32 bars hold.
    #[cfg(feature = "half")]
    #[test]
    fn half_kernels_match_oracle(d in data_strategy(2, 2)) {
        let (buf, r) = make::<half::f16>(&d);
        check_all(&buf[r], 1.0, &format!("f16 {d:?}"));
        let (buf, r) = make::<half::bf16>(&d);
        check_all(&buf[r], 1.0, &format!("bf16 {d:?}"));
    }

    /// Merging the moments of two halves at every split point equals the whole
    /// (well-conditioned data: `Moments<f32>` rounds each part's mean, see `Moments::merge`).
    /// The rounded means move the merge's `δ²·n_a·n_b/n` term by up to `ε·|mean|/σ` of the
    /// variance, σ the sample's own: a few values drawn from a well-conditioned distribution
    /// can sit close together (3 values with |mean|/σ ≈ 100 failed the plain bound at 26 ε in
    /// a run of 20000 cases), so that is added to the tolerance.
    #[test]
    fn merge_of_halves_is_whole(d in data_strategy(10, 0)) {
        let (buf, r) = make::<f32>(&Data { special: Special::None, len: d.len.min(300), ..d });
        let x = &buf[r];
        let whole = oracle::moments(x);
        let kappa = whole.mean.abs() / (whole.m2 / x.len() as f64).sqrt();
        let slack = if kappa.is_finite() { kappa * f32::EPSILON as f64 / tol::<f32>() } else { 0.0 };
        for k in 0..=x.len() {
            let m = welford(&x[..k]).merge(&welford(&x[k..]));
            assert_close(&m, &whole, 1.0 + slack, &format!("split {k} of {}", x.len()));
        }
    }

    /// Streaming: push == extend == merge of streamed parts, for ill-conditioned data too
    /// (the state keeps a pilot, so parts merge without rounding their means).
    #[test]
    fn streaming_parts_merge(d in data_strategy(17, 6), cut in any::<usize>()) {
        let (buf, r) = make::<f32>(&Data { special: Special::None, ..d });
        let x = &buf[r];
        let k = if x.is_empty() { 0 } else { cut % (x.len() + 1) };
        let (mut a, mut b) = (Welford::new(), Welford::new());
        a.extend(&x[..k]);
        for v in &x[k..] {
            b.push(*v);
        }
        a.merge(&b);
        assert_close(&a.moments(), &oracle::moments(x), 1.0, &format!("cut {k}"));
    }

    /// The empty value is the identity of `merge`, bit for bit, on either side.
    #[test]
    fn empty_is_identity(d in data_strategy(30, 6)) {
        let (buf, r) = make::<f32>(&d);
        let m = welford(&buf[r]);
        let e = Moments::<f32>::EMPTY;
        prop_assert_eq!(format!("{:?}", m.merge(&e)), format!("{:?}", m));
        prop_assert_eq!(format!("{:?}", e.merge(&m)), format!("{:?}", m));
        if m.count > 0 {
            let zero_count = Moments { count: 0, mean: 3.0f32, m2: 1.0 };
            prop_assert_eq!(format!("{:?}", zero_count.merge(&m)), format!("{:?}", m));
            prop_assert_eq!(format!("{:?}", m.merge(&zero_count)), format!("{:?}", m));
        }
    }

    /// Rows and columns of a random matrix (offset inside a larger buffer) match the oracle.
    #[test]
    fn rows_and_cols_match_oracle(rows in 1usize..40, row_len in 1usize..300, offset in 0usize..16,
                                  kappa in 0i32..=6, seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let mean = 10f64.powi(kappa);
        let mut buf: Vec<f32> = vec![5.0; offset];
        buf.extend(gaussian::<f32>(&mut rng, rows * row_len, mean, 1.0));
        let x = &buf[offset..];
        let sentinel = Moments { count: 99, mean: -1.0f32, m2: -1.0 };
        let mut out = vec![sentinel; rows + 2];
        row_moments(x, row_len, &mut out[1..=rows]).unwrap();
        let r = oracle::row_moments(x, row_len);
        for i in 0..rows {
            assert_close(&out[1 + i], &r[i], 1.0, &format!("row {i}"));
        }
        prop_assert_eq!(out[0], sentinel);
        prop_assert_eq!(out[rows + 1], sentinel);
        let mut out = vec![sentinel; row_len + 2];
        col_moments(x, row_len, &mut out[1..=row_len]).unwrap();
        let r = oracle::col_moments(x, row_len);
        for j in 0..row_len {
            assert_close(&out[1 + j], &r[j], 1.0, &format!("col {j}"));
        }
        prop_assert_eq!(out[0], sentinel);
        prop_assert_eq!(out[row_len + 1], sentinel);
    }
}

#[test]
fn every_length_and_offset_f32() {
    let mut rng = Rng(7);
    for n in lens() {
        for offset in 0..16 {
            let mut buf = vec![1.0e30f32; offset];
            buf.extend(gaussian::<f32>(&mut rng, n, 1.0e4, 1.0));
            check_all(&buf[offset..], 1.0, &format!("offset {offset}"));
        }
    }
}

#[test]
fn every_length_and_offset_f64() {
    let mut rng = Rng(8);
    for n in lens() {
        for offset in 0..8 {
            let mut buf = vec![1.0e300f64; offset];
            buf.extend(gaussian::<f64>(&mut rng, n, 1.0e6, 1.0));
            check_all(&buf[offset..], 1.0, &format!("offset {offset}"));
        }
    }
}

#[test]
fn columns_every_width_and_height() {
    // widths around LANES and the 256-column panel; heights around one 256-row leaf.
    let mut rng = Rng(9);
    for row_len in [1usize, 2, 3, 15, 16, 17, 31, 33, 255, 256, 257, 513] {
        for rows in [1usize, 2, 3, 255, 256, 257, 1025] {
            let x = gaussian::<f32>(&mut rng, rows * row_len, -3.0e5, 2.0);
            let mut out = vec![Moments::default(); row_len];
            col_moments(&x, row_len, &mut out).unwrap();
            for (j, r) in oracle::col_moments(&x, row_len).iter().enumerate() {
                assert_close(&out[j], r, 1.0, &format!("({rows}, {row_len}) col {j}"));
            }
        }
    }
}

#[test]
fn columns_with_non_finite_and_overflowing_columns() {
    // Column 0: NaN; column 1: +Inf; column 2: values near ±f32::MAX (squares overflow);
    // column 3: 1e-30 scale (squares underflow); the rest ordinary. Each column's statistics
    // are its own: a NaN stays in its column.
    let (rows, row_len) = (300, 21);
    let mut rng = Rng(10);
    let mut x = gaussian::<f32>(&mut rng, rows * row_len, 1.0, 1.0);
    x[17 * row_len] = f32::NAN;
    x[5 * row_len + 1] = f32::INFINITY;
    for r in 0..rows {
        x[r * row_len + 2] =
            if r % 2 == 0 { 3.0e38 } else { -3.0e38 } * (1.0 - rng.sym().abs() as f32 * 0.1);
        x[r * row_len + 3] = 1.0e-30 * (1.0 + rng.sym() as f32);
    }
    let mut out = vec![Moments::default(); row_len];
    col_moments(&x, row_len, &mut out).unwrap();
    let r = oracle::col_moments(&x, row_len);
    assert!(out[0].mean.is_nan() && out[0].m2.is_nan());
    assert!(out[1].mean.is_nan() && out[1].m2.is_nan());
    assert!(out[2].mean.is_finite() && out[2].m2 == f32::INFINITY);
    for j in 2..row_len {
        assert_close(&out[j], &r[j], 1.0, &format!("col {j}"));
    }
}

#[test]
fn overflow_and_underflow_are_rescued() {
    // |x| up to f32::MAX: squares (and sums) overflow f32, the variance does not.
    let x: Vec<f32> = (0..1000)
        .map(|i| f32::MAX * (0.5 + (i % 7) as f32 / 16.0))
        .collect();
    check_all(&x, 1.0, "near f32::MAX");
    let x: Vec<f32> = (0..1000)
        .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX })
        .collect();
    for n in [2, 17, 40, 64, 65, 1000] {
        // mean 0 (or MAX/n), m2 beyond f32: +∞; `assert_close` checks both against the oracle.
        // The streaming state stores means relative to its pilot (here ±MAX), and
        // |mean − pilot| = f32::MAX is at the edge of f32: documented limit of `Welford`.
        check_some(&x[..n], 1.0, "alternating ±f32::MAX", false);
        assert_eq!(welford(&x[..n]).m2, f32::INFINITY);
    }
    let x: Vec<f64> = (0..5000)
        .map(|i| f64::MAX * (0.25 + (i % 11) as f64 / 32.0))
        .collect();
    check_all(&x, 1.0, "near f64::MAX");
    // σ = 1e-20: squares underflow f32 (1e-40 is subnormal); the rescue keeps full accuracy.
    let mut rng = Rng(11);
    let x = gaussian::<f32>(&mut rng, 10_000, 0.0, 1.0e-20);
    check_some(&x, 1.0, "sigma 1e-20", false);
    let x = gaussian::<f32>(&mut rng, 10_000, 1.0e-17, 1.0e-19);
    check_some(&x, 1.0, "sigma 1e-19, kappa 100", false);
}

#[test]
fn exact_cases() {
    // Constant data: m2 exactly 0 and the mean exactly the value, at any magnitude.
    for c in [
        0.0f32,
        -0.0,
        1.0,
        -3.5e-38,
        1.0e-45,
        7.0e37,
        f32::MAX,
        -f32::MAX,
    ] {
        for n in [1usize, 2, 17, 64, 65, 3000] {
            let x = vec![c; n];
            for (name, m) in kernels(&x[..]) {
                assert_eq!(
                    (m.count, m.mean, m.m2),
                    (n as u64, c, 0.0),
                    "{name} {c} × {n}"
                );
            }
        }
    }
    // 0..n: mean (n−1)/2, population variance (n²−1)/12, exact in f64 for the two-pass.
    for n in [1usize, 2, 3, 63, 64, 65, 1000, 4097] {
        let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
        let m = two_pass(&x);
        assert_eq!(m.mean, (n as f64 - 1.0) / 2.0);
        assert_eq!(m.variance(0), (n as f64 * n as f64 - 1.0) / 12.0, "n = {n}");
    }
    // Empty input.
    for (_, m) in kernels::<f32>(&[]) {
        assert_eq!(m.count, 0);
        assert!(m.mean.is_nan() && m.m2.is_nan());
    }
    assert!(Moments::<f64>::default().variance(0).is_nan());
}

#[test]
fn merge_of_means_near_opposite_limits_keeps_the_mean() {
    // δ = mean_b − mean_a overflows f32; the merged mean is still the weighted mean.
    let a = Moments {
        count: 3,
        mean: 3.0e38f32,
        m2: 0.0,
    };
    let b = Moments {
        count: 1,
        mean: -3.0e38f32,
        m2: 0.0,
    };
    let m = a.merge(&b);
    assert_eq!(m.count, 4);
    assert!((m.mean - 1.5e38).abs() <= 1.5e38 * 1e-6, "mean {}", m.mean);
    assert_eq!(m.m2, f32::INFINITY, "m2 = 2.7e77 is beyond f32");
    // and a NaN part stays NaN
    let n = Moments {
        count: 2,
        mean: f32::NAN,
        m2: f32::NAN,
    };
    assert!(a.merge(&n).mean.is_nan() && n.merge(&a).m2.is_nan());
}

/// Fuzz regression (fuzz/artifacts/moments): a streaming state whose pilot (3e38) lies far
/// outside a later one-value part (0.041) overflowed in the part's rescue (`pilot·2^k`) and
/// returned a NaN mean.
#[test]
fn streaming_part_far_from_the_pilot_keeps_a_finite_mean() {
    for n in [2usize, 3, 64, 65, 200] {
        let mut x = vec![0.0f32; n];
        x[0] = 3.0e38;
        x[1] = 0.041;
        let mut w = simdnorm::Welford::new();
        for v in &x {
            w.extend(std::slice::from_ref(v));
        }
        let (m, r) = (w.moments(), simdnorm::oracle::moments(&x));
        assert_eq!(m.count, n as u64);
        assert!(m.mean.is_finite(), "n = {n}: mean {}", m.mean);
        // the mean bar of the crate: 8ε·(|mean| + σ)
        let sigma = (r.m2 / n as f64).sqrt();
        let tol = 8.0 * f32::EPSILON as f64 * (r.mean.abs() + sigma);
        let err = (m.mean as f64 - r.mean).abs();
        assert!(err <= tol, "n = {n}: {} vs {}", m.mean, r.mean);
        assert_eq!(m.m2, f32::INFINITY, "the spread of ±3e38 is beyond f32");
    }
}
