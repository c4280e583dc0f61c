//! Losses: one number `E` measuring how far a batch of predictions is from its targets,
//! and its gradient `∂E/∂y` to start backward propagation.
//!
//! | loss | prediction | target | `E` | `∂E/∂y` |
//! | --- | --- | --- | --- | --- |
//! | [`Mse`] | any shape | same shape | `(1/M)·Σ (y − t)²` | `2(y − t)/M` |
//! | [`BceWithLogits`] | logits `z` | same shape, in `[0, 1]` (or classes 0/1) | `(1/M)·Σ [max(z,0) − z·t + ln(1 + e^{−│z│})]` | `(σ(z) − t)/M` |
//! | [`SoftmaxCrossEntropy`] | logits `[n, k]` | class indices or rows of `[n, k]` | `−(1/N)·Σ_i Σ_j t_ij · log p_ij` | `(p − t)/N` |
//!
//! `M` is the number of entries, `N` the number of rows. Every loss is a mean, so its size
//! does not depend on the batch size. Each loss computes `E` and `∂E/∂y` in the same pass
//! in `forward`; `backward` hands the gradient out.

use std::fmt::Debug;

use ndarray::ArrayViewD;

use crate::error::Result;

mod bce;
mod mse;
mod softmax_ce;

pub use bce::BceWithLogits;
pub use mse::Mse;
pub use softmax_ce::SoftmaxCrossEntropy;

/// What a prediction is compared with.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    /// One class index per row (`0..k`).
    Classes(&'a [usize]),
    /// Real-valued targets of the prediction's shape (regression values, one-hot or soft
    /// class distributions, binary labels).
    Values(ArrayViewD<'a, f32>),
}

/// A loss function: `E(y, t)` and `∂E/∂y`.
pub trait Loss: Debug + Send {
    /// Computes the mean loss of the batch (and its gradient, kept for `backward`).
    ///
    /// # Errors
    /// [`Error::Target`](crate::Error::Target) or [`Error::Core`](crate::Error::Core) when
    /// the target does not fit the prediction; the message gives both shapes or the bad
    /// value.
    fn forward(&mut self, y: ArrayViewD<'_, f32>, target: Target<'_>) -> Result<f32>;

    /// `∂E/∂y` for the last `forward`, the same shape as its prediction.
    ///
    /// # Errors
    /// [`Error::NoForward`](crate::Error::NoForward) before the first `forward`.
    fn backward(&mut self) -> Result<ArrayViewD<'_, f32>>;

    /// The loss's name in messages and specs.
    fn name(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names model files record as the training loss, which `nn predict` and the ONNX
    /// export read back to decide what the outputs mean.
    #[test]
    fn names_are_those_files_record() {
        assert_eq!(SoftmaxCrossEntropy::new().name(), "softmax_cross_entropy");
        assert_eq!(BceWithLogits::new().name(), "bce_with_logits");
        assert_eq!(Mse::new().name(), "mse");
    }
}
