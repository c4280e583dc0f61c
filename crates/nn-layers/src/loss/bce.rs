//! Binary cross-entropy on logits (sigmoid fused into the loss).
//!
//! With `p = σ(z)` the probability of class 1:
//!
//! ```text
//! E      = −(1/M) · Σ [t·ln p + (1 − t)·ln(1 − p)]
//!        =  (1/M) · Σ [max(z, 0) − z·t + ln(1 + e^{−|z|})]      (same value, no overflow)
//! ∂E/∂z  = (σ(z) − t) / M
//! ```
//!
//! The second form never takes the log of a probability that rounded to 0, so it stays
//! finite for logits of any size.

use ndarray::{ArrayViewD, Zip};
use nn_core::Buffer;

use super::{Loss, Target};
use crate::activation::sigmoid;
use crate::error::{Error, Result};
use crate::layer::require_forward;

/// Binary cross-entropy on logits, mean over all entries.
///
/// # Example
///
/// ```
/// use nn_core::ndarray::array;
/// use nn_layers::{BceWithLogits, Loss, Target};
///
/// let mut loss = BceWithLogits::new();
/// let (z, t) = (array![[0.0f32], [1000.0]].into_dyn(), array![[1.0f32], [1.0]].into_dyn());
/// // z = 0: p = ½, E = ln 2; z = 1000, t = 1: E = 0 (finite, no overflow); mean ln 2 / 2
/// let e = loss.forward(z.view(), Target::Values(t.view()))?;
/// assert!((e - 2f32.ln() / 2.0).abs() < 1e-6);
/// assert_eq!(loss.backward()?, array![[-0.25f32], [0.0]].into_dyn()); // (σ(z) − t)/M
/// # Ok::<(), nn_layers::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct BceWithLogits {
    grad: Buffer,
    ready: bool,
}

impl BceWithLogits {
    /// The loss.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One term `max(z, 0) − z·t + ln(1 + e^{−|z|})` and its derivative `σ(z) − t`.
fn term(z: f32, t: f32) -> (f32, f32) {
    (
        z.max(0.0) - z * t + (-z.abs()).exp().ln_1p(),
        sigmoid(z) - t,
    )
}

impl Loss for BceWithLogits {
    fn forward(&mut self, z: ArrayViewD<'_, f32>, target: Target<'_>) -> Result<f32> {
        let m = z.len().max(1) as f32;
        self.grad.resize(z.shape());
        let mut sum = 0.0f64;
        match target {
            Target::Values(t) => {
                nn_core::tensor::check_same_shape("bce_with_logits", z.shape(), t.shape())?;
                Zip::from(self.grad.view_mut())
                    .and(&z)
                    .and(&t)
                    .for_each(|g, &z, &t| {
                        let (e, d) = term(z, t);
                        sum += e as f64;
                        *g = d / m; // ∂E/∂z = (σ(z) − t)/M
                    });
            }
            Target::Classes(c) => {
                // one logit per row: [n] or [n, 1], classes 0 or 1
                if z.len() != c.len() || (z.ndim() == 2 && z.shape()[1] != 1) || z.ndim() > 2 {
                    return Err(Error::Target {
                        loss: "bce_with_logits",
                        message: format!(
                            "class targets need one logit per row, [{}] or [{}, 1], got {}",
                            c.len(),
                            c.len(),
                            nn_core::Shape(z.shape().to_vec())
                        ),
                    });
                }
                if let Some((i, &bad)) = c.iter().enumerate().find(|(_, c)| **c > 1) {
                    return Err(Error::Target {
                        loss: "bce_with_logits",
                        message: format!("class of row {i} is {bad}, expected 0 or 1"),
                    });
                }
                for ((g, &z), &c) in self.grad.as_mut_slice().iter_mut().zip(z.iter()).zip(c) {
                    let (e, d) = term(z, c as f32);
                    sum += e as f64;
                    *g = d / m; // ∂E/∂z = (σ(z) − t)/M
                }
            }
        }
        self.ready = true;
        Ok((sum / m as f64) as f32)
    }

    fn backward(&mut self) -> Result<ArrayViewD<'_, f32>> {
        require_forward(self.ready, || "bce_with_logits".into())?;
        Ok(self.grad.view())
    }

    fn name(&self) -> &'static str {
        "bce_with_logits"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn by_hand() {
        // z = [0, 2], t = [1, 0], M = 2
        // term(0, 1) = 0 − 0 + ln 2 = 0.693147;   σ(0) − 1 = −0.5
        // term(2, 0) = 2 − 0 + ln(1 + e^-2) = 2.126928;   σ(2) − 0 = 0.880797
        // E = (0.693147 + 2.126928)/2 = 1.410038; ∂E/∂z = [−0.25, 0.440399]
        let mut l = BceWithLogits::new();
        let z = array![0.0f32, 2.0].into_dyn();
        let t = array![1.0f32, 0.0].into_dyn();
        let e = l.forward(z.view(), Target::Values(t.view())).unwrap();
        assert!((e - 1.410_038).abs() < 1e-6, "{e}");
        let g = l.backward().unwrap();
        assert!((g[[0]] + 0.25).abs() < 1e-7 && (g[[1]] - 0.440_399).abs() < 1e-6);
        // the same through class indices
        let e2 = l.forward(z.view(), Target::Classes(&[1, 0])).unwrap();
        assert_eq!(e, e2);
    }

    #[test]
    fn extreme_logits_are_finite() {
        // z = 1000, t = 0: E = 1000 (the loss of being confidently wrong); z = −1000, t = 0: 0
        let mut l = BceWithLogits::new();
        let z = array![1000.0f32, -1000.0].into_dyn();
        let e = l.forward(z.view(), Target::Classes(&[0, 0])).unwrap();
        assert_eq!(e, 500.0);
    }

    #[test]
    fn bad_classes() {
        let mut l = BceWithLogits::new();
        let z = array![[0.0f32], [1.0]].into_dyn();
        assert_eq!(
            l.forward(z.view(), Target::Classes(&[0, 2]))
                .unwrap_err()
                .to_string(),
            "bce_with_logits: class of row 1 is 2, expected 0 or 1"
        );
        assert!(l.forward(z.view(), Target::Classes(&[0])).is_err());
    }

    #[test]
    fn class_targets_take_one_logit_per_row() {
        let mut l = BceWithLogits::new();
        for shape in [vec![2, 2], vec![2, 1, 1], vec![1, 2]] {
            let z = nn_core::Tensor::zeros(shape.clone());
            let e = l.forward(z.view(), Target::Classes(&[0, 1]));
            assert!(e.is_err(), "{shape:?}");
        }
        for shape in [vec![2], vec![2, 1]] {
            let z = nn_core::Tensor::zeros(shape);
            // σ(0) = ½ for both rows: E = ln 2
            let e = l.forward(z.view(), Target::Classes(&[0, 1])).unwrap();
            assert!((e - std::f32::consts::LN_2).abs() < 1e-6);
        }
    }
}
