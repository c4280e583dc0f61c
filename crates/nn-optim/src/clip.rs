//! Gradient clipping by global norm.
//!
//! ```text
//! ‖g‖ = √(Σ over every parameter and entry of g²)
//! if ‖g‖ > c:   g ← g · c / (‖g‖ + 1e-6)
//! ```
//!
//! All gradients are scaled by the same factor, so the update keeps its direction and only
//! its length is capped (PyTorch's `clip_grad_norm_`, including its `1e-6`).

use nn_layers::{Layer, Slot};

/// The global L2 norm of all parameter gradients.
pub fn grad_norm(model: &mut dyn Layer) -> f32 {
    let mut sum = 0.0f64;
    model.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            sum += match p.grad.as_slice_memory_order() {
                Some(s) => nn_core::ops::sum_squares(s), // Σ g²
                None => p.grad.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>(),
            };
        }
    });
    sum.sqrt() as f32
}

/// Scales all gradients so that their global norm is at most `max_norm`; returns the norm
/// before clipping.
pub fn clip_grad_norm(model: &mut dyn Layer, max_norm: f32) -> f32 {
    let norm = grad_norm(model);
    let scale = max_norm / (norm + 1e-6); // c / (‖g‖ + 1e-6)
    if scale < 1.0 {
        model.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.grad.mapv_inplace(|g| g * scale);
            }
        });
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use nn_layers::Dense;

    #[test]
    fn clips_to_the_global_norm() {
        // grads: W = [[3, 0]], b = [4] → ‖g‖ = 5; clip to 1: scale = 1/(5 + 1e-6)
        let mut d = Dense::from_weights(
            array![[1.0f32, 1.0]].into_dyn(),
            Some(array![0.0f32].into_dyn()),
        )
        .unwrap();
        d.visit(&mut |n, slot| {
            if let Slot::Param(p) = slot {
                p.grad = if n == "weight" {
                    array![[3.0f32, 0.0]].into_dyn()
                } else {
                    array![4.0f32].into_dyn()
                };
            }
        });
        assert_eq!(clip_grad_norm(&mut d, 10.0), 5.0);
        assert_eq!(
            d.bias().unwrap().grad[[0]],
            4.0,
            "under the limit nothing changes"
        );
        assert_eq!(clip_grad_norm(&mut d, 1.0), 5.0);
        assert!((d.weight().grad[[0, 0]] - 0.6).abs() < 1e-6);
        assert!((d.bias().unwrap().grad[[0]] - 0.8).abs() < 1e-6);
        assert!((grad_norm(&mut d) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_scale_is_the_limit_over_the_norm_plus_a_millionth() {
        // one gradient [3, 4] stored with a stride (every other entry of [3, 9, 4, 9]):
        // ‖g‖ = 5 read entry by entry; clipped to 2, g ← g · 2/(5 + 1e-6)
        let mut d = Dense::from_weights(array![[1.0f32, 1.0]].into_dyn(), None).unwrap();
        d.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                let strided = array![[3.0f32, 9.0, 4.0, 9.0]].slice_move(ndarray::s![.., ..;2]);
                assert!(strided.as_slice_memory_order().is_none());
                p.grad = strided.into_dyn();
            }
        });
        assert_eq!(grad_norm(&mut d), 5.0);
        assert_eq!(clip_grad_norm(&mut d, 2.0), 5.0);
        let scale = 2.0f32 / (5.0 + 1e-6);
        assert_eq!(d.weight().grad[[0, 0]], 3.0 * scale);
        assert_eq!(d.weight().grad[[0, 1]], 4.0 * scale);
    }
}
