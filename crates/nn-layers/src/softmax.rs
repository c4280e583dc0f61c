//! Softmax as a layer: turns each row of scores into probabilities.
//!
//! ```text
//! forward    y_j = e^{x_j − m} / Σ_k e^{x_k − m}          (m = max_k x_k, per row)
//! backward   ∂E/∂x_j = y_j · (∂E/∂y_j − Σ_k ∂E/∂y_k · y_k)
//! ```
//!
//! The backward line is the Jacobian `∂y_k/∂x_j = y_k·(δ_kj − y_j)` applied to `∂E/∂y`
//! without forming the `[k, k]` matrix. For classification, prefer
//! [`SoftmaxCrossEntropy`](crate::loss::SoftmaxCrossEntropy) on logits: fused with the loss
//! the gradient collapses to `(p − y)/N` and stays exact where `p` rounds to 0 or 1.

use ndarray::{ArrayViewD, Zip};
use nn_core::tensor::as_matrix;
use nn_core::{Buffer, Rng};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output};
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, check_backward};
use crate::spec::LayerSpec;

/// Configuration of a [`Softmax`] layer (it has no attribute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftmaxConfig;

impl SoftmaxConfig {
    /// Reads the (empty) attributes.
    ///
    /// # Errors
    /// [`Error::Spec`](crate::Error::Spec) for any attribute.
    pub fn from_spec(spec: &LayerSpec, _ctx: &Context<'_>) -> Result<Self> {
        spec.only(&[])?;
        Ok(SoftmaxConfig)
    }
}

impl LayerConfig for SoftmaxConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("softmax")
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        Ok(Vec::new())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        if input.len() != 2 {
            return Err(nn_core::Error::shape("softmax forward", "[n, classes]", input).into());
        }
        checked_output(|| "softmax".into(), input.to_vec())
    }

    fn build(&self, _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Softmax::new()))
    }
}

/// Row-wise softmax of `[n, k]` scores.
#[derive(Clone, Copy, Debug, Default)]
pub struct Softmax;

impl Softmax {
    /// The layer.
    pub fn new() -> Self {
        Softmax
    }
}

impl Layer for Softmax {
    fn visit<'a>(&'a mut self, _f: &mut dyn FnMut(&str, Slot<'a>)) {}

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, _mode: Mode) -> Result<()> {
        let x = as_matrix(x, "softmax forward", None)?;
        y.resize(&[x.nrows(), x.ncols()]);
        nn_core::softmax::softmax_rows_into(x, &mut y.view2_mut())?;
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        check_backward(|| "softmax".into(), x.shape(), &y, &dy)?;
        let Some(dx) = dx else {
            return Ok(());
        };
        let (y, dy) = (
            as_matrix(y, "softmax backward", None)?,
            as_matrix(dy, "softmax backward", None)?,
        );
        dx.resize(&[dy.nrows(), dy.ncols()]);
        let mut dx = dx.view2_mut();
        for ((y, dy), mut dx) in y.rows().into_iter().zip(dy.rows()).zip(dx.rows_mut()) {
            let s: f32 = y.dot(&dy); // Σ_k ∂E/∂y_k · y_k
            Zip::from(&mut dx)
                .and(&y)
                .and(&dy)
                .for_each(|dx, &y, &dy| *dx = y * (dy - s)); // y_j·(∂E/∂y_j − s)
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(SoftmaxConfig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{apply, apply_backward};
    use ndarray::array;

    #[test]
    fn backward_by_hand() {
        // x = [ln 1, ln 3] → y = [0.25, 0.75]; dy = [1, 0]
        // s = 0.25; dx = [0.25·(1 − 0.25), 0.75·(0 − 0.25)] = [0.1875, −0.1875]
        let mut l = Softmax::new();
        let x = array![[0.0f32, 3.0f32.ln()]].into_dyn();
        let dy = array![[1.0f32, 0.0]].into_dyn();
        let (y, dx) = apply_backward(&mut l, x.view(), dy.view()).unwrap();
        assert!((y[[0, 0]] - 0.25).abs() < 1e-6 && (y[[0, 1]] - 0.75).abs() < 1e-6);
        assert!((dx[[0, 0]] - 0.1875).abs() < 1e-6);
        assert!((dx[[0, 1]] + 0.1875).abs() < 1e-6);
    }

    #[test]
    fn needs_rows() {
        let mut l = Softmax::new();
        let x = array![1.0f32, 2.0].into_dyn();
        assert_eq!(
            apply(&mut l, x.view(), Mode::Train)
                .unwrap_err()
                .to_string(),
            "softmax forward: expected shape [n, features], got [2]"
        );
    }

    #[test]
    fn softmax_takes_no_attribute() {
        let registry = crate::Registry::new();
        let ctx = Context::new(&registry);
        registry.config(&LayerSpec::new("softmax"), &ctx).unwrap();
        let spec = LayerSpec::new("softmax").with("axis", 1usize);
        assert!(registry.config(&spec, &ctx).is_err());
    }
}
