//! Every bad input returns a typed `NormError`, never panics, and writes no output.

use simdnorm::{Moments, NormError, col_moments, row_moments};

const SENTINEL: Moments<f32> = Moments {
    count: 77,
    mean: -5.0,
    m2: -6.0,
};

#[test]
fn row_and_col_moments_reject_bad_shapes_without_writing() {
    let x = [1.0f32; 12];
    type F = fn(&[f32], usize, &mut [Moments<f32>]) -> Result<(), NormError>;
    let fns: [(&str, F); 2] = [("row_moments", row_moments), ("col_moments", col_moments)];
    for (name, f) in fns {
        // (x length, row_len, out length, expected error)
        let cases = [
            (12, 0, 0, NormError::ZeroLength { arg: "row_len" }),
            (
                12,
                5,
                2,
                NormError::NotAMultiple {
                    arg: "x",
                    len: 12,
                    row_len: 5,
                },
            ),
            (0, 0, 0, NormError::ZeroLength { arg: "row_len" }),
        ];
        for (len, row_len, out_len, want) in cases {
            let mut out = vec![SENTINEL; out_len];
            assert_eq!(f(&x[..len], row_len, &mut out), Err(want.clone()), "{name}");
            assert!(out.iter().all(|m| *m == SENTINEL), "{name} wrote on Err");
        }
        // wrong output length: rows for row_moments, columns for col_moments
        let (row_len, good) = (4, if name == "row_moments" { 3 } else { 4 });
        for out_len in [0, good - 1, good + 1] {
            let mut out = vec![SENTINEL; out_len];
            let e = f(&x, row_len, &mut out).unwrap_err();
            assert_eq!(
                e,
                NormError::LengthMismatch {
                    arg: "out",
                    expected: good,
                    actual: out_len
                }
            );
            assert!(out.iter().all(|m| *m == SENTINEL), "{name} wrote on Err");
            assert!(
                e.to_string().contains("`out`"),
                "message names the argument: {e}"
            );
        }
        let mut out = vec![SENTINEL; good];
        f(&x, row_len, &mut out).unwrap();
        assert!(
            out.iter()
                .all(|m| m.count > 0 && m.m2 == 0.0 && m.mean == 1.0)
        );
    }
}

#[test]
fn empty_matrices() {
    // No rows: row_moments writes nothing; col_moments gives EMPTY per column.
    let mut out: Vec<Moments<f64>> = vec![];
    row_moments::<f64>(&[], 3, &mut out).unwrap();
    let mut out = vec![
        Moments {
            count: 1,
            mean: 0.0f64,
            m2: 0.0
        };
        3
    ];
    col_moments::<f64>(&[], 3, &mut out).unwrap();
    assert!(out.iter().all(|m| m.count == 0 && m.mean.is_nan()));
}

#[test]
fn errors_display_and_compare() {
    let all = [
        NormError::LengthMismatch {
            arg: "y",
            expected: 3,
            actual: 4,
        },
        NormError::NotAMultiple {
            arg: "x",
            len: 7,
            row_len: 2,
        },
        NormError::ZeroLength { arg: "row_len" },
        NormError::InvalidEps(-1.0),
        NormError::InvalidMomentum(2.0),
        NormError::InvalidGroups {
            groups: 3,
            channels: 4,
        },
        NormError::TooFewValues { per_channel: 1 },
    ];
    for (i, e) in all.iter().enumerate() {
        assert!(!e.to_string().is_empty());
        let as_dyn: &dyn std::error::Error = e;
        assert_eq!(as_dyn.to_string(), e.to_string());
        for (j, f) in all.iter().enumerate() {
            assert_eq!(i == j, e == f);
        }
    }
}
