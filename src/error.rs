//! The one error type of the crate.

use core::fmt;

/// Why a call was refused. Every shape and parameter is checked before any output is written,
/// so on `Err` no output buffer has been touched.
///
/// # Example
/// ```
/// use simdnorm::{row_moments, Moments, NormError};
/// let x = [1.0f32; 6];
/// let mut out = [Moments::<f32>::default(); 2];
/// let err = row_moments(&x, 4, &mut out).unwrap_err();
/// assert_eq!(err, NormError::NotAMultiple { arg: "x", len: 6, row_len: 4 });
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum NormError {
    /// An argument has the wrong length.
    LengthMismatch {
        /// Which argument.
        arg: &'static str,
        /// The length the other arguments imply.
        expected: usize,
        /// The length passed.
        actual: usize,
    },
    /// A buffer's length is not a whole number of rows.
    NotAMultiple {
        /// Which argument.
        arg: &'static str,
        /// Its length.
        len: usize,
        /// The row length it must be a multiple of.
        row_len: usize,
    },
    /// The normalization axis (row length, channel count, ...) is zero.
    ZeroLength {
        /// Which size.
        arg: &'static str,
    },
    /// `eps` is negative, NaN or infinite.
    InvalidEps(f64),
    /// `momentum` is outside `[0, 1]` or NaN.
    InvalidMomentum(f64),
    /// `groups` is zero or does not divide `channels`.
    InvalidGroups {
        /// Groups asked for.
        groups: usize,
        /// Channels configured.
        channels: usize,
    },
    /// A sequence length of masked BatchNorm exceeds the padded length.
    LengthOutOfRange {
        /// Which sample.
        index: usize,
        /// Its length.
        length: usize,
        /// The padded length `hw`.
        max: usize,
    },
    /// Training statistics need more than one value per channel (PyTorch: "Expected more
    /// than 1 value per channel when training").
    TooFewValues {
        /// Values per channel in this batch.
        per_channel: usize,
    },
}

impl fmt::Display for NormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LengthMismatch {
                arg,
                expected,
                actual,
            } => write!(f, "`{arg}` has length {actual}, expected {expected}"),
            Self::NotAMultiple { arg, len, row_len } => write!(
                f,
                "`{arg}` has length {len}, which is not a multiple of the row length {row_len}"
            ),
            Self::ZeroLength { arg } => write!(f, "`{arg}` is zero: nothing to normalize over"),
            Self::InvalidEps(e) => write!(f, "eps = {e} is not a finite non-negative number"),
            Self::InvalidMomentum(m) => write!(f, "momentum = {m} is not in [0, 1]"),
            Self::InvalidGroups { groups, channels } => {
                write!(f, "{groups} groups do not divide {channels} channels")
            }
            Self::LengthOutOfRange { index, length, max } => write!(
                f,
                "`lengths[{index}]` = {length} exceeds the padded length {max}"
            ),
            Self::TooFewValues { per_channel } => write!(
                f,
                "expected more than 1 value per channel when training, got {per_channel}"
            ),
        }
    }
}

impl std::error::Error for NormError {}

/// `Err(LengthMismatch)` unless `actual == expected`.
pub(crate) fn check_len(
    arg: &'static str,
    expected: usize,
    actual: usize,
) -> Result<(), NormError> {
    if expected == actual {
        Ok(())
    } else {
        Err(NormError::LengthMismatch {
            arg,
            expected,
            actual,
        })
    }
}

/// Number of rows of `len` elements split into rows of `row_len`; `Err` for a zero `row_len`
/// or a ragged length.
pub(crate) fn rows_of(arg: &'static str, len: usize, row_len: usize) -> Result<usize, NormError> {
    if row_len == 0 {
        return Err(NormError::ZeroLength { arg: "row_len" });
    }
    if !len.is_multiple_of(row_len) {
        return Err(NormError::NotAMultiple { arg, len, row_len });
    }
    Ok(len / row_len)
}
