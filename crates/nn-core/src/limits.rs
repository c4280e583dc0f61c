//! Explicit limits on sizes, and the checked arithmetic that enforces them.
//!
//! Sizes often come from strangers: a model file says how wide a layer is, a layer spec on
//! the command line how many filters a convolution has, an IDX header how many images
//! follow. Every such size is multiplied out with checked arithmetic and compared with one
//! of these limits *before* anything is allocated from it, so a hostile or mistyped number
//! ends in an error that names the limit instead of an overflow, a panic or an abort.
//!
//! | limit | value | what it bounds |
//! | --- | --- | --- |
//! | [`MAX_TENSOR_ELEMENTS`] | 2²⁸ (1 GiB of f32) | any one tensor: a weight, a batch of activations, a data set |
//! | [`MAX_PARAMETERS`] | 2²⁶ (256 MiB of f32) | all the parameters and buffers of a model together |
//! | [`MAX_ACTIVATIONS`] | 2²⁹ (2 GiB of f32) | all the layer outputs of a network for one batch together |
//! | [`MAX_LAYERS`] | 10,000 | layers in a network |
//! | [`MAX_RANK`] | 8 | axes of a tensor |
//! | [`MAX_CLASSES`] | 65,536 | classes of a classifier |
//!
//! The parameter limit is what lets every model and checkpoint the toolkit writes be read
//! back: a checkpoint holds at most four copies of the parameters (weights, the best
//! weights so far and two Adam moments), well inside the model file's payload limit.

use crate::error::{Error, Result, Shape};

/// The most elements one tensor may hold: 2²⁸, 1 GiB of `f32`.
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 28;

/// The most parameters and buffers a model may hold in total: 2²⁶, 256 MiB of `f32`.
pub const MAX_PARAMETERS: usize = 1 << 26;

/// The most elements all the layer outputs of a network may hold together for one batch.
pub const MAX_ACTIVATIONS: usize = 1 << 29;

/// The most layers a network may have.
pub const MAX_LAYERS: usize = 10_000;

/// The most axes a tensor may have (batch axis included).
pub const MAX_RANK: usize = 8;

/// The most classes a classifier may have.
pub const MAX_CLASSES: usize = 1 << 16;

/// Checked product of `dims`, or `None` when it overflows `usize`.
pub fn product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// The number of elements of a tensor of shape `shape`, checked against
/// [`MAX_TENSOR_ELEMENTS`] and [`MAX_RANK`]; `what` names the tensor in the error.
///
/// # Errors
/// [`Error::Limit`] naming `what`, its shape and the limit.
pub fn elements(what: impl FnOnce() -> String, shape: &[usize]) -> Result<usize> {
    if shape.len() > MAX_RANK {
        return Err(Error::Limit {
            what: format!("{} {}", what(), Shape(shape.to_vec())),
            amount: format!("{} axes", shape.len()),
            limit: format!("{MAX_RANK} axes"),
        });
    }
    check(what, shape, MAX_TENSOR_ELEMENTS, "elements per tensor")
}

/// As [`elements`] with another limit: `limit` elements, described by `per` in the message
/// (e.g. `"parameters in a model"`).
///
/// # Errors
/// [`Error::Limit`] naming `what`, its shape and the limit.
pub fn check(
    what: impl FnOnce() -> String,
    shape: &[usize],
    limit: usize,
    per: &str,
) -> Result<usize> {
    match product(shape) {
        Some(n) if n <= limit => Ok(n),
        n => Err(Error::Limit {
            what: format!("{} {}", what(), Shape(shape.to_vec())),
            amount: match n {
                Some(n) => format!("{n} elements"),
                None => "too many elements to count".into(),
            },
            limit: format!("{limit} {per}"),
        }),
    }
}

/// Checked `a + b` for a running total of `unit` that must stay within `limit`; `what`
/// names the total.
///
/// # Errors
/// [`Error::Limit`] when the sum overflows or exceeds `limit`.
pub fn add(
    what: impl FnOnce() -> String,
    a: usize,
    b: usize,
    limit: usize,
    unit: &str,
) -> Result<usize> {
    match a.checked_add(b) {
        Some(n) => count(what, n, limit, unit),
        None => Err(Error::Limit {
            what: what(),
            amount: format!("too many {unit} to count"),
            limit: limit.to_string(),
        }),
    }
}

/// `n` things of `unit` (layers, classes), at most `limit` of them; `what` names them.
///
/// # Errors
/// [`Error::Limit`] when `n` exceeds `limit`.
pub fn count(what: impl FnOnce() -> String, n: usize, limit: usize, unit: &str) -> Result<usize> {
    if n <= limit {
        return Ok(n);
    }
    Err(Error::Limit {
        what: what(),
        amount: format!("{n} {unit}"),
        limit: limit.to_string(),
    })
}

/// A value as it may be echoed in an error message: at most about 80 characters, cut at a
/// character boundary with `…` and the full length when longer.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        return text.to_string();
    }
    let cut: String = text.chars().take(MAX - 8).collect();
    format!("{cut}… ({} bytes)", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_are_checked() {
        assert_eq!(product(&[3, 4, 5]), Some(60));
        assert_eq!(product(&[]), Some(1));
        assert_eq!(product(&[usize::MAX, 2]), None);
        assert_eq!(
            elements(|| "w".into(), &[1 << 14, 1 << 14]).unwrap(),
            1 << 28
        );
        let e = elements(|| "dense weight".into(), &[(1 << 14) + 1, 1 << 14]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dense weight [16385, 16384]: 268451840 elements, more than the limit of 268435456 elements per tensor"
        );
        let e = elements(|| "x".into(), &[usize::MAX, 3]).unwrap_err();
        assert!(e.to_string().contains("too many elements to count"), "{e}");
        let e = elements(|| "x".into(), &[1; 9]).unwrap_err();
        assert!(e.to_string().contains("9 axes"), "{e}");
    }

    #[test]
    fn sums_are_checked() {
        assert_eq!(add(|| "total".into(), 2, 3, 5, "things").unwrap(), 5);
        assert_eq!(
            add(|| "total".into(), 2, 4, 5, "things")
                .unwrap_err()
                .to_string(),
            "total: 6 things, more than the limit of 5"
        );
        assert!(add(|| "total".into(), usize::MAX, 1, usize::MAX, "things").is_err());
        assert_eq!(count(|| "net".into(), 3, 3, "layers").unwrap(), 3);
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt("dense:64"), "dense:64");
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 72 + "… (200 bytes)".chars().count());
        assert!(e.ends_with("… (200 bytes)"), "{e}");
    }
}
