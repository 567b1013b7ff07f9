//! The bad-input table: every public function that can refuse a call, each argument that can
//! be wrong, the error it must return (naming the argument), and proof that it neither
//! panicked (`catch_unwind`) nor wrote any output (every output buffer is compared bit for bit
//! with its sentinel fill). The moment free functions (`welford`, `two_pass`, `moments`,
//! `Welford`) accept every slice (empty gives count 0, NaN statistics) and are not listed.

use simdnorm::{
    BatchNorm, GroupNorm, LayerNorm, Layout, Moments, NormError, RmsNorm, RunningStats,
    col_moments, row_moments,
};
use std::panic::{AssertUnwindSafe, catch_unwind};

const S: f32 = -4321.5;

/// Output buffers of one call, filled with the sentinel.
struct Out {
    bufs: Vec<Vec<f32>>,
    nbt: u64,
}

impl Out {
    fn new(lens: &[usize]) -> Self {
        Out {
            bufs: lens.iter().map(|n| vec![S; *n]).collect(),
            nbt: 7,
        }
    }
    fn untouched(&self) -> bool {
        self.nbt == 7
            && self
                .bufs
                .iter()
                .flatten()
                .all(|v| v.to_bits() == S.to_bits())
    }
}

type Call = Box<dyn Fn(&mut Out) -> Result<(), NormError>>;

fn lm(arg: &'static str, expected: usize, actual: usize) -> NormError {
    NormError::LengthMismatch {
        arg,
        expected,
        actual,
    }
}

#[test]
fn every_bad_input_is_an_error_naming_it_with_outputs_untouched() {
    static XS: [f32; 24] = [
        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0,
        17.0, 18.0, 19.0, 20.0, 21.0, 22.0, 23.0,
    ];
    static P4: [f32; 4] = [1.0; 4];
    static P3: [f32; 3] = [1.0; 3];
    let x: &'static [f32] = &XS;
    let (p4, p3): (&'static [f32], &'static [f32]) = (&P4, &P3);
    let nc = Layout::Nc { n: 6 };
    let nchw = Layout::Nchw { n: 2, hw: 3 };
    // (function, case, output lengths, call, expected error)
    let mut table: Vec<(&str, &str, Vec<usize>, Call, NormError)> = Vec::new();
    macro_rules! case {
        ($f:expr, $c:expr, $lens:expr, $want:expr, |$o:ident| $body:expr) => {{
            let call: Call = Box::new(move |$o: &mut Out| $body);
            table.push(($f, $c, $lens, call, $want));
        }};
    }
    // ---- row_moments / col_moments
    for (f, cols) in [("row_moments", false), ("col_moments", true)] {
        let call = move |x: &[f32], row_len: usize, out: usize| {
            let mut m = vec![
                Moments::<f32> {
                    count: 9,
                    mean: S,
                    m2: S
                };
                out
            ];
            let r = if cols {
                col_moments(x, row_len, &mut m)
            } else {
                row_moments(x, row_len, &mut m)
            };
            assert!(
                m.iter().all(|m| m.count == 9 && m.mean == S),
                "{f} wrote on Err"
            );
            r
        };
        assert_eq!(
            call(x, 0, 0),
            Err(NormError::ZeroLength { arg: "row_len" }),
            "{f}"
        );
        assert_eq!(
            call(x, 5, 4),
            Err(NormError::NotAMultiple {
                arg: "x",
                len: 24,
                row_len: 5
            }),
            "{f}"
        );
        let good = if cols { 4 } else { 6 };
        assert_eq!(call(x, 4, good + 1), Err(lm("out", good, good + 1)), "{f}");
    }
    // ---- LayerNorm (rows of 4) and RMSNorm
    case!(
        "LayerNorm::forward",
        "normalized_len 0",
        vec![24],
        NormError::ZeroLength {
            arg: "normalized_len"
        },
        |o| LayerNorm::<f32>::new(0).forward(x, &mut o.bufs[0])
    );
    case!(
        "LayerNorm::forward",
        "x ragged",
        vec![23],
        NormError::NotAMultiple {
            arg: "x",
            len: 23,
            row_len: 4
        },
        |o| LayerNorm::new(4).forward(&x[..23], &mut o.bufs[0])
    );
    case!("LayerNorm::forward", "y", vec![20], lm("y", 24, 20), |o| {
        LayerNorm::new(4).forward(x, &mut o.bufs[0])
    });
    case!(
        "LayerNorm::forward",
        "weight",
        vec![24],
        lm("weight", 4, 3),
        |o| LayerNorm::new(4).weight(p3).forward(x, &mut o.bufs[0])
    );
    case!(
        "LayerNorm::forward",
        "bias",
        vec![24],
        lm("bias", 4, 3),
        |o| LayerNorm::new(4).bias(p3).forward(x, &mut o.bufs[0])
    );
    for eps in [-1e-5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        case!(
            "LayerNorm::forward",
            "eps",
            vec![24],
            NormError::InvalidEps(eps),
            |o| LayerNorm::new(4).eps(eps).forward(x, &mut o.bufs[0])
        );
        case!(
            "RmsNorm::forward",
            "eps",
            vec![24],
            NormError::InvalidEps(eps),
            |o| RmsNorm::new(4).eps(eps).forward(x, &mut o.bufs[0])
        );
        case!(
            "BatchNorm::forward_train",
            "eps",
            vec![24, 4, 4],
            NormError::InvalidEps(eps),
            |o| {
                let [y, m, s] = &mut o.bufs[..] else {
                    unreachable!()
                };
                BatchNorm::new(4)
                    .eps(eps)
                    .forward_train(x, nc, y, None, m, s)
            }
        );
        case!(
            "GroupNorm::forward",
            "eps",
            vec![24],
            NormError::InvalidEps(eps),
            |o| GroupNorm::new(2, 4)
                .eps(eps)
                .forward(x, 2, 3, &mut o.bufs[0])
        );
    }
    case!(
        "LayerNorm::forward_in_place",
        "x ragged",
        vec![22],
        NormError::NotAMultiple {
            arg: "x",
            len: 22,
            row_len: 4
        },
        |o| LayerNorm::<f32>::new(4).forward_in_place(&mut o.bufs[0])
    );
    case!(
        "LayerNorm::forward_with_stats",
        "mean",
        vec![24, 5, 6],
        lm("mean", 6, 5),
        |o| {
            let [y, m, s] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).forward_with_stats(x, y, m, s)
        }
    );
    case!(
        "LayerNorm::forward_with_stats",
        "rstd",
        vec![24, 6, 7],
        lm("rstd", 6, 7),
        |o| {
            let [y, m, s] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).forward_with_stats(x, y, m, s)
        }
    );
    case!(
        "LayerNorm::forward_add",
        "residual",
        vec![23, 24],
        lm("residual", 24, 23),
        |o| {
            let [r, y] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).forward_add(x, r, y)
        }
    );
    case!(
        "LayerNorm::backward",
        "dy",
        vec![24, 4, 4],
        lm("dy", 24, 20),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).backward(&x[..20], x, &[0.0; 6], &[1.0; 6], dx, Some(dw), Some(db))
        }
    );
    case!(
        "LayerNorm::backward",
        "dx",
        vec![25, 4, 4],
        lm("dx", 24, 25),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).backward(x, x, &[0.0; 6], &[1.0; 6], dx, Some(dw), Some(db))
        }
    );
    case!(
        "LayerNorm::backward",
        "mean",
        vec![24, 4, 4],
        lm("mean", 6, 1),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).backward(x, x, &[0.0; 1], &[1.0; 6], dx, Some(dw), Some(db))
        }
    );
    case!(
        "LayerNorm::backward",
        "dweight",
        vec![24, 3, 4],
        lm("dweight", 4, 3),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).backward(x, x, &[0.0; 6], &[1.0; 6], dx, Some(dw), Some(db))
        }
    );
    case!(
        "LayerNorm::backward",
        "dbias",
        vec![24, 4, 5],
        lm("dbias", 4, 5),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            LayerNorm::new(4).backward(x, x, &[0.0; 6], &[1.0; 6], dx, Some(dw), Some(db))
        }
    );
    case!(
        "RmsNorm::forward",
        "weight",
        vec![24],
        lm("weight", 4, 3),
        |o| RmsNorm::new(4).weight(p3).forward(x, &mut o.bufs[0])
    );
    case!(
        "RmsNorm::forward_in_place",
        "normalized_len 0",
        vec![24],
        NormError::ZeroLength {
            arg: "normalized_len"
        },
        |o| RmsNorm::<f32>::new(0).forward_in_place(&mut o.bufs[0])
    );
    case!(
        "RmsNorm::forward_with_stats",
        "rstd",
        vec![24, 5],
        lm("rstd", 6, 5),
        |o| {
            let [y, s] = &mut o.bufs[..] else {
                unreachable!()
            };
            RmsNorm::new(4).forward_with_stats(x, y, s)
        }
    );
    case!(
        "RmsNorm::forward_add",
        "y",
        vec![24, 23],
        lm("y", 24, 23),
        |o| {
            let [r, y] = &mut o.bufs[..] else {
                unreachable!()
            };
            RmsNorm::new(4).forward_add(x, r, y)
        }
    );
    case!(
        "RmsNorm::backward",
        "rstd",
        vec![24, 4],
        lm("rstd", 6, 5),
        |o| {
            let [dx, dw] = &mut o.bufs[..] else {
                unreachable!()
            };
            RmsNorm::new(4).backward(x, x, &[1.0; 5], dx, Some(dw))
        }
    );
    case!(
        "RmsNorm::backward",
        "dweight",
        vec![24, 5],
        lm("dweight", 4, 5),
        |o| {
            let [dx, dw] = &mut o.bufs[..] else {
                unreachable!()
            };
            RmsNorm::new(4).backward(x, x, &[1.0; 6], dx, Some(dw))
        }
    );
    // ---- BatchNorm (C = 4)
    let train = |bn: BatchNorm<'static, f32>, layout: Layout, xl: usize| -> Call {
        Box::new(move |o: &mut Out| {
            let [y, m, s, rm, rv] = &mut o.bufs[..] else {
                unreachable!()
            };
            let running = RunningStats {
                mean: rm,
                var: rv,
                num_batches_tracked: &mut o.nbt,
            };
            bn.forward_train(&x[..xl], layout, y, Some(running), m, s)
        })
    };
    let w3: &'static [f32] = &[1.0; 3];
    for (case, bn, layout, xl, lens, want) in [
        (
            "channels 0",
            BatchNorm::new(0),
            nc,
            24,
            vec![24, 4, 4, 4, 4],
            NormError::ZeroLength { arg: "channels" },
        ),
        (
            "n 0",
            BatchNorm::new(4),
            Layout::Nc { n: 0 },
            0,
            vec![0, 4, 4, 4, 4],
            NormError::ZeroLength { arg: "n" },
        ),
        (
            "hw 0",
            BatchNorm::new(4),
            Layout::Nhwc { n: 2, hw: 0 },
            0,
            vec![0, 4, 4, 4, 4],
            NormError::ZeroLength { arg: "hw" },
        ),
        (
            "x",
            BatchNorm::new(4),
            nchw,
            20,
            vec![24, 4, 4, 4, 4],
            lm("x", 24, 20),
        ),
        (
            "y",
            BatchNorm::new(4),
            nchw,
            24,
            vec![25, 4, 4, 4, 4],
            lm("y", 24, 25),
        ),
        (
            "weight",
            BatchNorm::new(4).weight(w3),
            nc,
            24,
            vec![24, 4, 4, 4, 4],
            lm("weight", 4, 3),
        ),
        (
            "bias",
            BatchNorm::new(4).bias(w3),
            nc,
            24,
            vec![24, 4, 4, 4, 4],
            lm("bias", 4, 3),
        ),
        (
            "momentum > 1",
            BatchNorm::new(4).momentum(Some(1.5)),
            nc,
            24,
            vec![24, 4, 4, 4, 4],
            NormError::InvalidMomentum(1.5),
        ),
        (
            "momentum < 0",
            BatchNorm::new(4).momentum(Some(-0.5)),
            nc,
            24,
            vec![24, 4, 4, 4, 4],
            NormError::InvalidMomentum(-0.5),
        ),
        (
            "running.mean",
            BatchNorm::new(4),
            nc,
            24,
            vec![24, 4, 4, 3, 4],
            lm("running.mean", 4, 3),
        ),
        (
            "running.var",
            BatchNorm::new(4),
            nc,
            24,
            vec![24, 4, 4, 4, 5],
            lm("running.var", 4, 5),
        ),
        (
            "saved_mean",
            BatchNorm::new(4),
            nc,
            24,
            vec![24, 3, 4, 4, 4],
            lm("saved_mean", 4, 3),
        ),
        (
            "saved_invstd",
            BatchNorm::new(4),
            nc,
            24,
            vec![24, 4, 2, 4, 4],
            lm("saved_invstd", 4, 2),
        ),
        (
            "1 value per channel",
            BatchNorm::new(24),
            Layout::Nc { n: 1 },
            24,
            vec![24, 24, 24, 24, 24],
            NormError::TooFewValues { per_channel: 1 },
        ),
        (
            "element count overflows",
            BatchNorm::new(4),
            Layout::Nchw {
                n: usize::MAX / 2,
                hw: 3,
            },
            24,
            vec![24, 4, 4, 4, 4],
            lm("x", usize::MAX, 24),
        ),
    ] {
        table.push((
            "BatchNorm::forward_train",
            case,
            lens,
            train(bn, layout, xl),
            want,
        ));
    }
    // momentum NaN: NaN != NaN, so checked by its variant below
    let masked = |lengths: Vec<usize>, lens: Vec<usize>| -> Call {
        let _ = lens;
        Box::new(move |o: &mut Out| {
            let [y, m, s] = &mut o.bufs[..] else {
                unreachable!()
            };
            BatchNorm::new(4).forward_train_masked(x, 2, 3, &lengths, y, None, m, s)
        })
    };
    table.push((
        "BatchNorm::forward_train_masked",
        "lengths.len()",
        vec![24, 4, 4],
        masked(vec![3], vec![]),
        lm("lengths", 2, 1),
    ));
    table.push((
        "BatchNorm::forward_train_masked",
        "lengths[1] > hw",
        vec![24, 4, 4],
        masked(vec![3, 4], vec![]),
        NormError::LengthOutOfRange {
            index: 1,
            length: 4,
            max: 3,
        },
    ));
    table.push((
        "BatchNorm::forward_train_masked",
        "1 valid value",
        vec![24, 4, 4],
        masked(vec![0, 1], vec![]),
        NormError::TooFewValues { per_channel: 1 },
    ));
    case!(
        "BatchNorm::forward_eval",
        "running_mean",
        vec![24],
        lm("running_mean", 4, 3),
        |o| BatchNorm::new(4).forward_eval(x, nc, p3, p4, &mut o.bufs[0])
    );
    case!(
        "BatchNorm::forward_eval",
        "running_var",
        vec![24],
        lm("running_var", 4, 3),
        |o| BatchNorm::new(4).forward_eval(x, nc, p4, p3, &mut o.bufs[0])
    );
    case!(
        "BatchNorm::forward_eval",
        "y",
        vec![23],
        lm("y", 24, 23),
        |o| BatchNorm::new(4).forward_eval(x, nchw, p4, p4, &mut o.bufs[0])
    );
    case!(
        "BatchNorm::backward_train",
        "dy",
        vec![24, 4, 4],
        lm("dy", 24, 23),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            BatchNorm::new(4).backward_train(&x[..23], x, nc, p4, p4, dx, Some(dw), Some(db))
        }
    );
    case!(
        "BatchNorm::backward_train",
        "dx",
        vec![22, 4, 4],
        lm("dx", 24, 22),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            BatchNorm::new(4).backward_train(x, x, nc, p4, p4, dx, Some(dw), Some(db))
        }
    );
    case!(
        "BatchNorm::backward_train",
        "saved_mean",
        vec![24, 4, 4],
        lm("saved_mean", 4, 3),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            BatchNorm::new(4).backward_train(x, x, nc, p3, p4, dx, Some(dw), Some(db))
        }
    );
    case!(
        "BatchNorm::backward_train",
        "dweight",
        vec![24, 5, 4],
        lm("dweight", 4, 5),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            BatchNorm::new(4).backward_train(x, x, nchw, p4, p4, dx, Some(dw), Some(db))
        }
    );
    case!(
        "BatchNorm::backward_train",
        "dbias",
        vec![24, 4, 3],
        lm("dbias", 4, 3),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            BatchNorm::new(4).backward_train(x, x, nchw, p4, p4, dx, Some(dw), Some(db))
        }
    );
    // ---- GroupNorm (C = 4, n = 2, hw = 3)
    for (case, groups, want) in [
        (
            "groups 0",
            0,
            NormError::InvalidGroups {
                groups: 0,
                channels: 4,
            },
        ),
        (
            "groups ∤ channels",
            3,
            NormError::InvalidGroups {
                groups: 3,
                channels: 4,
            },
        ),
    ] {
        case!("GroupNorm::forward", case, vec![24], want.clone(), |o| {
            GroupNorm::new(groups, 4).forward(x, 2, 3, &mut o.bufs[0])
        });
    }
    case!(
        "GroupNorm::forward",
        "channels 0",
        vec![24],
        NormError::ZeroLength { arg: "channels" },
        |o| GroupNorm::<f32>::instance(0).forward(x, 2, 3, &mut o.bufs[0])
    );
    case!(
        "GroupNorm::forward",
        "n 0",
        vec![24],
        NormError::ZeroLength { arg: "n" },
        |o| GroupNorm::new(2, 4).forward(x, 0, 3, &mut o.bufs[0])
    );
    case!("GroupNorm::forward", "x", vec![24], lm("x", 16, 24), |o| {
        GroupNorm::new(2, 4).forward(x, 2, 2, &mut o.bufs[0])
    });
    case!(
        "GroupNorm::forward",
        "weight",
        vec![24],
        lm("weight", 4, 3),
        |o| GroupNorm::new(2, 4)
            .weight(p3)
            .forward(x, 2, 3, &mut o.bufs[0])
    );
    case!(
        "GroupNorm::forward",
        "bias",
        vec![24],
        lm("bias", 4, 3),
        |o| GroupNorm::new(2, 4)
            .bias(p3)
            .forward(x, 2, 3, &mut o.bufs[0])
    );
    case!(
        "GroupNorm::forward_with_stats",
        "mean",
        vec![24, 3, 4],
        lm("mean", 4, 3),
        |o| {
            let [y, m, s] = &mut o.bufs[..] else {
                unreachable!()
            };
            GroupNorm::new(2, 4).forward_with_stats(x, 2, 3, y, m, s)
        }
    );
    case!(
        "GroupNorm::forward_with_stats",
        "rstd",
        vec![24, 4, 5],
        lm("rstd", 4, 5),
        |o| {
            let [y, m, s] = &mut o.bufs[..] else {
                unreachable!()
            };
            GroupNorm::new(2, 4).forward_with_stats(x, 2, 3, y, m, s)
        }
    );
    case!(
        "GroupNorm::backward",
        "dy",
        vec![24, 4, 4],
        lm("dy", 24, 12),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            GroupNorm::new(2, 4).backward(&x[..12], x, 2, 3, p4, p4, dx, Some(dw), Some(db))
        }
    );
    case!(
        "GroupNorm::backward",
        "rstd",
        vec![24, 4, 4],
        lm("rstd", 4, 3),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            GroupNorm::new(2, 4).backward(x, x, 2, 3, p4, p3, dx, Some(dw), Some(db))
        }
    );
    case!(
        "GroupNorm::backward",
        "dweight",
        vec![24, 3, 4],
        lm("dweight", 4, 3),
        |o| {
            let [dx, dw, db] = &mut o.bufs[..] else {
                unreachable!()
            };
            GroupNorm::new(2, 4).backward(x, x, 2, 3, p4, p4, dx, Some(dw), Some(db))
        }
    );

    let mut functions = std::collections::BTreeSet::new();
    for (f, case, lens, call, want) in &table {
        let mut out = Out::new(lens);
        let r = catch_unwind(AssertUnwindSafe(|| call(&mut out)));
        let r = r.unwrap_or_else(|_| panic!("{f} ({case}) panicked"));
        // compared through Debug: `InvalidEps(NaN)` ≠ itself under PartialEq
        assert_eq!(
            format!("{:?}", r.as_ref().err()),
            format!("{:?}", Some(want)),
            "{f} ({case})"
        );
        assert!(out.untouched(), "{f} ({case}) wrote an output on Err");
        functions.insert(*f);
    }
    // NaN momentum (NaN ≠ NaN: compared by variant)
    let mut out = Out::new(&[24, 4, 4, 4, 4]);
    let r = train(BatchNorm::new(4).momentum(Some(f64::NAN)), nc, 24)(&mut out);
    assert!(matches!(r, Err(NormError::InvalidMomentum(m)) if m.is_nan()) && out.untouched());
    println!(
        "{} bad-input cases over {} functions",
        table.len() + 1,
        functions.len()
    );
    assert_eq!(
        functions.len(),
        17,
        "every fallible op method: {functions:?}"
    );
}
