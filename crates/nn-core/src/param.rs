//! Trainable parameters.
//!
//! A [`Param`] pairs a value with the gradient of the loss with respect to it. Backward
//! passes *add* into `grad` (`grad += ∂E/∂value`), so gradients of several uses, or of
//! several micro-batches, accumulate until [`Param::zero_grad`] clears them.

use crate::tensor::Tensor;

/// A trainable tensor and its accumulated gradient (same shape).
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The current value `w`.
    pub value: Tensor,
    /// The accumulated gradient `∂E/∂w`.
    pub grad: Tensor,
}

impl Param {
    /// A parameter with the given value and a zero gradient.
    pub fn new(value: Tensor) -> Self {
        let grad = Tensor::zeros(value.raw_dim());
        Param { value, grad }
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        match self.grad.as_slice_memory_order_mut() {
            // a large gradient is cleared by all threads
            Some(g) => {
                let len = g.len();
                crate::parallel::split_runs(len, (g, 1), len, &|_, g| g.fill(0.0))
            }
            None => self.grad.fill(0.0),
        }
    }

    /// Number of scalar entries.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// Whether the parameter holds no entry.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_has_zero_gradient_of_same_shape() {
        let mut p = Param::new(Tensor::ones(vec![2, 3]));
        assert_eq!(p.grad.shape(), &[2, 3]);
        assert!(p.grad.iter().all(|&g| g == 0.0));
        p.grad.fill(5.0);
        p.zero_grad();
        assert!(p.grad.iter().all(|&g| g == 0.0));
        assert_eq!(p.len(), 6);
    }
}
