//! Softmax + cross-entropy on logits, fused into one stable loss.
//!
//! For logits `z: [N, k]`, probabilities `p = softmax(z)` row by row, and targets `t` (a
//! one-hot row per class index, or any rows of non-negative weights):
//!
//! ```text
//! log p_ij = z_ij − m_i − ln Σ_k e^{z_ik − m_i}                  (m_i = max_k z_ik)
//! E        = −(1/N) · Σ_i Σ_j t_ij · log p_ij
//! ∂E/∂z_ij = (p_ij · Σ_k t_ik − t_ij) / N  =  (p_ij − t_ij) / N  when each row of t sums to 1
//! ```
//!
//! Fusing the two avoids the softmax Jacobian entirely and never takes the log of a
//! probability that rounded to zero: the loss is finite and correct for logits of ±1000.

use ndarray::{ArrayViewD, Ix2, Zip};
use nn_core::Buffer;
use nn_core::softmax::softmax_row;

use super::{Loss, Target};
use crate::error::{Error, Result};
use crate::layer::require_forward;

/// Softmax followed by cross-entropy, mean over the rows of the batch.
///
/// # Example
///
/// ```
/// use nn_core::ndarray::array;
/// use nn_layers::{Loss, SoftmaxCrossEntropy, Target};
///
/// let mut loss = SoftmaxCrossEntropy::new();
/// // equal logits: p = (½, ½), so E = −ln ½ = ln 2; the gradient is (p − y)/N
/// let e = loss.forward(array![[0.0f32, 0.0]].into_dyn().view(), Target::Classes(&[1]))?;
/// assert!((e - 2f32.ln()).abs() < 1e-6);
/// assert_eq!(loss.backward()?, array![[0.5f32, -0.5]].into_dyn());
/// # Ok::<(), nn_layers::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct SoftmaxCrossEntropy {
    /// Holds `p` during forward, then `∂E/∂z`.
    grad: Buffer,
    ready: bool,
}

impl SoftmaxCrossEntropy {
    /// The loss.
    pub fn new() -> Self {
        Self::default()
    }
}

const NAME: &str = "softmax_cross_entropy";

impl Loss for SoftmaxCrossEntropy {
    fn forward(&mut self, z: ArrayViewD<'_, f32>, target: Target<'_>) -> Result<f32> {
        let z = nn_core::tensor::as_matrix(z, NAME, None)?;
        let (n, k) = z.dim();
        let inv_n = 1.0 / n.max(1) as f32;
        self.grad.resize(&[n, k]);
        let mut g = self.grad.view2_mut();
        let mut sum = 0.0f64;
        match target {
            Target::Classes(c) => {
                if c.len() != n {
                    return Err(Error::Target {
                        loss: NAME,
                        message: format!(
                            "{} class indices for {n} rows of logits [{n}, {k}]",
                            c.len()
                        ),
                    });
                }
                if let Some((i, &bad)) = c.iter().enumerate().find(|(_, c)| **c >= k) {
                    return Err(Error::Target {
                        loss: NAME,
                        message: format!("class of row {i} is {bad}, expected 0..{k}"),
                    });
                }
                for ((z, mut g), &c) in z.rows().into_iter().zip(g.rows_mut()).zip(c) {
                    let (m, ln_s) = softmax_row(z, g.view_mut()); // g = p
                    sum -= ((z[c] - m) - ln_s) as f64; // − log p_c = −(z_c − m − ln Σ e^{z_k − m})
                    g.mapv_inplace(|p| p * inv_n);
                    g[c] -= inv_n; // ∂E/∂z = (p − onehot(c))/N
                }
            }
            Target::Values(t) => {
                let t = t
                    .into_dimensionality::<Ix2>()
                    .ok()
                    .filter(|t| t.dim() == (n, k));
                let Some(t) = t else {
                    return Err(Error::Target {
                        loss: NAME,
                        message: format!("target rows must have the logits' shape [{n}, {k}]"),
                    });
                };
                for ((z, mut g), t) in z.rows().into_iter().zip(g.rows_mut()).zip(t.rows()) {
                    let (m, ln_s) = softmax_row(z, g.view_mut()); // g = p
                    let mut t_sum = 0.0f32;
                    Zip::from(&z).and(&t).for_each(|&z, &t| {
                        if t != 0.0 {
                            sum -= (t * ((z - m) - ln_s)) as f64; // − t_j · log p_j
                        }
                        t_sum += t;
                    });
                    Zip::from(&mut g)
                        .and(&t)
                        .for_each(|g, &t| *g = (*g * t_sum - t) * inv_n); // (p·Σt − t)/N
                }
            }
        }
        self.ready = true;
        Ok((sum * inv_n as f64) as f32)
    }

    fn backward(&mut self) -> Result<ArrayViewD<'_, f32>> {
        require_forward(self.ready, || NAME.into())?;
        Ok(self.grad.view())
    }

    fn name(&self) -> &'static str {
        NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn known_logits_by_hand() {
        // Row 0: z = [1, 2, 3], class 2. e^{z−3} = [0.135335, 0.367879, 1], Σ = 1.503214,
        //   ln Σ = 0.407606; p = [0.090031, 0.244728, 0.665241]; −log p₂ = 0.407606.
        // Row 1: z = [0, 0, 0], class 0. p = 1/3 each; −log p₀ = ln 3 = 1.098612.
        // E = (0.407606 + 1.098612)/2 = 0.753109
        // ∂E/∂z = (p − onehot)/2:
        //   row 0: [0.045015, 0.122364, −0.167379]; row 1: [−0.333333, 0.166667, 0.166667]
        let mut l = SoftmaxCrossEntropy::new();
        let z = array![[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]].into_dyn();
        let e = l.forward(z.view(), Target::Classes(&[2, 0])).unwrap();
        assert!((e - 0.753_109).abs() < 1e-6, "{e}");
        let g = l.backward().unwrap().to_owned();
        let want = [
            0.045_015f32,
            0.122_364,
            -0.167_379,
            -0.333_333,
            0.166_667,
            0.166_667,
        ];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        // one-hot rows give the same loss and gradient
        let t = array![[0.0f32, 0.0, 1.0], [1.0, 0.0, 0.0]].into_dyn();
        let e2 = l.forward(z.view(), Target::Values(t.view())).unwrap();
        assert!((e - e2).abs() < 1e-7);
        for (a, b) in l.backward().unwrap().iter().zip(g.iter()) {
            assert!((a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn extreme_logits_are_finite_and_exact() {
        // z = [1000, −1000]: log p = [0, −2000]. Class 0 costs 0, class 1 costs 2000.
        // Mean over the two rows = 1000; gradients (p − onehot)/2 = [0, 0] and [0.5, −0.5].
        let mut l = SoftmaxCrossEntropy::new();
        let z = array![[1000.0f32, -1000.0], [1000.0, -1000.0]].into_dyn();
        let e = l.forward(z.view(), Target::Classes(&[0, 1])).unwrap();
        assert_eq!(e, 1000.0);
        let g = l.backward().unwrap();
        assert_eq!(g, array![[0.0f32, 0.0], [0.5, -0.5]].into_dyn());
    }

    #[test]
    fn bad_targets_name_the_problem() {
        let mut l = SoftmaxCrossEntropy::new();
        let z = ndarray::Array2::<f32>::zeros((2, 3)).into_dyn();
        assert_eq!(
            l.forward(z.view(), Target::Classes(&[0, 3]))
                .unwrap_err()
                .to_string(),
            "softmax_cross_entropy: class of row 1 is 3, expected 0..3"
        );
        assert_eq!(
            l.forward(z.view(), Target::Classes(&[0]))
                .unwrap_err()
                .to_string(),
            "softmax_cross_entropy: 1 class indices for 2 rows of logits [2, 3]"
        );
        let t = ndarray::Array2::<f32>::zeros((2, 2)).into_dyn();
        assert!(l.forward(z.view(), Target::Values(t.view())).is_err());
    }
}
