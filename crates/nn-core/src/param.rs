//! Trainable parameters.
//!
//! A [`Param`] pairs a value with the gradient of the loss with respect to it. Backward
//! passes *add* into `grad` (`grad += ∂E/∂value`), so gradients of several uses, or of
//! several micro-batches, accumulate until [`Param::zero_grad`] clears them.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Ix1, Ix2};

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

    /// The value as a matrix (a dense weight `[n_out, n_in]`).
    ///
    /// # Panics
    /// If the parameter does not have two axes: its layer created it with its shape, which
    /// never changes (a model file's tensors are checked against it before they are copied
    /// in), so this is a broken invariant, not a user error.
    pub fn matrix(&self) -> ArrayView2<'_, f32> {
        self.value
            .view()
            .into_dimensionality::<Ix2>()
            .expect("a matrix parameter has two axes")
    }

    /// The value as a vector (a bias).
    ///
    /// # Panics
    /// If the parameter does not have one axis (a broken invariant, as for [`Param::matrix`]).
    pub fn vector(&self) -> ArrayView1<'_, f32> {
        self.value
            .view()
            .into_dimensionality::<Ix1>()
            .expect("a vector parameter has one axis")
    }

    /// The gradient as a mutable matrix.
    ///
    /// # Panics
    /// As [`Param::matrix`].
    pub fn grad_matrix_mut(&mut self) -> ArrayViewMut2<'_, f32> {
        self.grad
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("a matrix parameter has two axes")
    }

    /// The gradient as a mutable vector.
    ///
    /// # Panics
    /// As [`Param::vector`].
    pub fn grad_vector_mut(&mut self) -> ArrayViewMut1<'_, f32> {
        self.grad
            .view_mut()
            .into_dimensionality::<Ix1>()
            .expect("a vector parameter has one axis")
    }

    /// The value's entries, row-major.
    ///
    /// # Panics
    /// If the value is not in standard layout (parameters are created contiguous and never
    /// re-strided: a broken invariant).
    pub fn values(&self) -> &[f32] {
        self.value.as_slice().expect("parameters are contiguous")
    }

    /// The gradient's entries, row-major.
    ///
    /// # Panics
    /// As [`Param::values`].
    pub fn grads_mut(&mut self) -> &mut [f32] {
        self.grad.as_slice_mut().expect("parameters are contiguous")
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
