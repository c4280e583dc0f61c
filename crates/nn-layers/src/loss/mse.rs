//! Mean squared error.
//!
//! ```text
//! E      = (1/M) · Σ (y − t)²          M = number of entries
//! ∂E/∂y  = 2·(y − t) / M
//! ```

use ndarray::{ArrayViewD, Zip};
use nn_core::Buffer;

use super::{Loss, Target};
use crate::error::{Error, Result};
use crate::layer::require_forward;

/// Mean squared error over all entries.
///
/// # Example
///
/// ```
/// use nn_core::ndarray::array;
/// use nn_layers::{Loss, Mse, Target};
///
/// let mut loss = Mse::new();
/// let (y, t) = (array![[1.0f32, 3.0]].into_dyn(), array![[0.0f32, 1.0]].into_dyn());
/// let e = loss.forward(y.view(), Target::Values(t.view()))?;
/// assert_eq!(e, (1.0 + 4.0) / 2.0); // (1/M)·Σ (y − t)²
/// assert_eq!(loss.backward()?, array![[1.0f32, 2.0]].into_dyn()); // 2·(y − t)/M
/// # Ok::<(), nn_layers::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Mse {
    grad: Buffer,
    ready: bool,
}

impl Mse {
    /// The loss.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Loss for Mse {
    fn forward(&mut self, y: ArrayViewD<'_, f32>, target: Target<'_>) -> Result<f32> {
        let Target::Values(t) = target else {
            return Err(Error::Target {
                loss: "mse",
                message: "needs real-valued targets of the prediction's shape, got class indices"
                    .into(),
            });
        };
        nn_core::tensor::check_same_shape("mse", y.shape(), t.shape())?;
        let m = y.len().max(1) as f32;
        self.grad.resize(y.shape());
        let mut sum = 0.0f64;
        Zip::from(self.grad.view_mut())
            .and(&y)
            .and(&t)
            .for_each(|g, &y, &t| {
                let d = y - t;
                sum += (d * d) as f64; // Σ (y − t)²
                *g = 2.0 * d / m; // ∂E/∂y = 2(y − t)/M
            });
        self.ready = true;
        Ok((sum / m as f64) as f32) // E = (1/M)·Σ (y − t)²
    }

    fn backward(&mut self) -> Result<ArrayViewD<'_, f32>> {
        require_forward(self.ready, || "mse".into())?;
        Ok(self.grad.view())
    }

    fn name(&self) -> &'static str {
        "mse"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn by_hand() {
        // y = [1, 2; 3, 5], t = [1, 0; 4, 5]: diffs [0, 2; −1, 0], M = 4
        // E = (0 + 4 + 1 + 0)/4 = 1.25; ∂E/∂y = 2·diff/4 = [0, 1; −0.5, 0]
        let mut l = Mse::new();
        let y = array![[1.0f32, 2.0], [3.0, 5.0]].into_dyn();
        let t = array![[1.0f32, 0.0], [4.0, 5.0]].into_dyn();
        assert_eq!(l.forward(y.view(), Target::Values(t.view())).unwrap(), 1.25);
        assert_eq!(
            l.backward().unwrap(),
            array![[0.0f32, 1.0], [-0.5, 0.0]].into_dyn()
        );
    }

    #[test]
    fn errors() {
        let mut l = Mse::new();
        assert!(matches!(l.backward(), Err(Error::NoForward { .. })));
        let y = array![[1.0f32, 2.0]].into_dyn();
        let t = array![[1.0f32], [2.0]].into_dyn();
        assert_eq!(
            l.forward(y.view(), Target::Values(t.view()))
                .unwrap_err()
                .to_string(),
            "mse: shapes differ, input is [1, 2] and target is [2, 1]"
        );
        assert!(l.forward(y.view(), Target::Classes(&[0])).is_err());
    }
}
