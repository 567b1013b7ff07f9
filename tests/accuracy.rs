//! The accuracy bars of the foundation issue, measured against the double-double oracle at
//! n = 1e6 and 1e7, |mean|/σ ∈ {0, 1e3, 1e6}, σ from 1e-30 to 1e30, for every method.
//! `cargo test --release --test accuracy -- --nocapture` prints the table of worst errors
//! that README.md quotes.

mod common;

use common::*;
use simdnorm::{Element, Moments, Welford, moments, oracle, two_pass, welford};

const METHODS: [&str; 5] = [
    "welford",
    "two_pass",
    "moments",
    "Welford::extend",
    "Welford::push",
];

fn run<T: Element>(x: &[T]) -> [Moments<T::Acc>; 5] {
    let mut e = Welford::new();
    e.extend(x);
    let mut p = Welford::new();
    for v in x {
        p.push(v.to_acc());
    }
    [
        welford(x),
        two_pass(x),
        moments(x),
        e.moments(),
        p.moments(),
    ]
}

/// Worst (variance, mean) relative errors per method over the data sets of one size.
fn worst<T: Element>(n: usize, scales: &[i32], name: &str) -> [(f64, f64); 5] {
    let mut w = [(0.0f64, 0.0f64); 5];
    let mut rng = Rng(n as u64);
    for &kappa in &[0.0, 1e3, 1e6] {
        for &e in scales {
            let sigma = 10f64.powi(e);
            let x = gaussian::<T>(&mut rng, n, kappa * sigma, sigma);
            let r = oracle::moments(&x);
            for (i, m) in run(&x).iter().enumerate() {
                let what = format!("{name} n={n} κ={kappa:e} σ=1e{e} {}", METHODS[i]);
                let (v, mm) = errors(m, &r).unwrap_or_else(|err| panic!("{what}: {err}"));
                w[i] = (w[i].0.max(v), w[i].1.max(mm));
            }
        }
    }
    w
}

fn check<T: Element>(name: &str, bars: [(usize, f64); 2], mean_bar: f64, scales: &[i32]) {
    for (n, bar) in bars {
        let w = worst::<T>(n, scales, name);
        for (i, (v, m)) in w.iter().enumerate() {
            println!("| {name} | {n:.0e} | {} | {v:.1e} | {m:.1e} |", METHODS[i]);
            assert!(
                *v <= bar,
                "{name} n={n} {}: variance error {v:e} > {bar:e}",
                METHODS[i]
            );
            assert!(
                *m <= mean_bar,
                "{name} n={n} {}: mean error {m:e} > {mean_bar:e}",
                METHODS[i]
            );
        }
    }
}

#[test]
fn f32_bars() {
    // σ = 1e±30 in f32: the variance is not representable (0 or +∞ are the right answers,
    // checked by `errors`), the mean is; σ = 1e±15 are representable and must meet the bar.
    // The streaming Welford's merges underflow for σ ≲ 1e-17 (documented), so its scales stop
    // above 1e-17 here, as in the tests of the other methods.
    check::<f32>(
        "f32",
        [(1_000_000, 2e-6), (10_000_000, 1e-5)],
        2e-6,
        &[-30, -15, 0, 15, 30],
    );
}

#[test]
fn f64_bars() {
    check::<f64>(
        "f64",
        [(1_000_000, 1e-14), (10_000_000, 1e-13)],
        1e-14,
        &[-30, -15, 0, 15, 30],
    );
}
