//! W2's GEMM-only time: the matrix products one W2 epoch makes, at W2's shapes and in a
//! training step's order, with nothing else — no gather, activation, loss or update. The
//! epoch time over this is what the rest of training costs on top of the products
//! (`nn-bench w2-gemm`).
//!
//! Per mini-batch of `n` rows and per dense layer `in → out` (weights `[out, in]`, as
//! `Dense` keeps them), the three products `Dense` makes:
//! forward `Y = X·Wᵀ` (`[n, in]·[in, out]`), `∂E/∂W += dYᵀ·X` (`[out, n]·[n, in]`), and
//! `∂E/∂X = dY·W` (`[n, out]·[out, in]`) for every layer but the first. As in a step, the
//! forward products run first layer to last, each reading the output the one before wrote,
//! then the backward products last layer to first, each layer's `∂E/∂X` the next one's
//! `∂E/∂Y`: the products meet their operands in the caches where training leaves them
//! (measured: the same time, within the noise, as each layer's three products run together).

use std::time::Instant;

use anyhow::Result;
use ndarray::{Array2, s};
use nn_core::matmul_into;

/// Values that do not change a product's time; small distinct ones keep the sums finite.
fn fill(r: usize, c: usize) -> Array2<f32> {
    Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 1e-3)
}

/// The products of W2-shaped epochs, operands allocated once at the full batch size.
pub(crate) struct Epoch {
    /// Each layer's weight `[out, in]` and its gradient.
    weights: Vec<(Array2<f32>, Array2<f32>)>,
    /// The layers' inputs and the last layer's output: `acts[l]` is `[batch, sizes[l]]`.
    acts: Vec<Array2<f32>>,
    /// `∂E/∂` of the same: `grads[l]` is `[batch, sizes[l]]` (the input's is not computed).
    grads: Vec<Array2<f32>>,
    rows: usize,
    batch: usize,
}

impl Epoch {
    /// An MLP with layer `sizes` over `rows` samples in mini-batches of `batch` (the last one
    /// partial, as the protocol keeps it).
    pub(crate) fn new(sizes: &[usize], rows: usize, batch: usize) -> Self {
        let weights = (sizes.windows(2))
            .map(|p| (fill(p[1], p[0]), Array2::zeros((p[1], p[0]))))
            .collect();
        Epoch {
            weights,
            acts: sizes.iter().map(|&d| fill(batch, d)).collect(),
            grads: sizes.iter().map(|&d| fill(batch, d)).collect(),
            rows,
            batch,
        }
    }

    /// The products of one mini-batch of `n` rows, in a training step's order.
    fn step(&mut self, n: usize) -> Result<()> {
        let rows = s![..n, ..];
        for (l, (w, _)) in self.weights.iter().enumerate() {
            let (x, y) = self.acts.split_at_mut(l + 1);
            matmul_into(1.0, x[l].slice(rows), w.t(), 0.0, &mut y[0].slice_mut(rows))?; // Y = X·Wᵀ
        }
        for (l, (w, dw)) in self.weights.iter_mut().enumerate().rev() {
            let (dx, dy) = self.grads.split_at_mut(l + 1);
            let (x, dy) = (self.acts[l].slice(rows), dy[0].slice(rows));
            matmul_into(1.0, dy.t(), x, 1.0, &mut dw.view_mut())?; // ∂E/∂W += dYᵀ·X
            if l > 0 {
                matmul_into(1.0, dy, w.view(), 0.0, &mut dx[l].slice_mut(rows))?; // ∂E/∂X = dY·W
            }
        }
        Ok(())
    }

    /// Runs one epoch's products; returns its seconds.
    pub(crate) fn run(&mut self) -> Result<f64> {
        let t = Instant::now();
        for start in (0..self.rows).step_by(self.batch) {
            self.step(self.batch.min(self.rows - start))?;
        }
        Ok(t.elapsed().as_secs_f64())
    }
}

/// Seconds for each of `epochs` GEMM-only epochs (see [`Epoch::new`]).
pub(crate) fn epochs(
    sizes: &[usize],
    rows: usize,
    batch: usize,
    epochs: usize,
) -> Result<Vec<f64>> {
    let mut epoch = Epoch::new(sizes, rows, batch);
    (0..epochs).map(|_| epoch.run()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayView2;

    fn close(got: ArrayView2<'_, f32>, want: ArrayView2<'_, f32>) {
        assert_eq!(got.dim(), want.dim());
        let worst = (&got - &want).iter().fold(0.0f32, |m, d| m.max(d.abs()));
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0 && worst <= 1e-5 * scale, "{got} against {want}");
    }

    #[test]
    fn a_step_chains_the_layers_as_training_does() {
        // sizes 5 → 4 → 3 over 6 rows in batches of 4 and 2; each product's output against
        // ndarray's `dot` on the operands it should have read
        let mut e = Epoch::new(&[5, 4, 3], 6, 4);
        let (x, dy2) = (e.acts[0].clone(), e.grads[2].clone()); // only read
        let (w0, w1) = (e.weights[0].0.clone(), e.weights[1].0.clone());
        e.run().expect("products");
        let last = s![..2, ..]; // the last batch's rows
        let y1 = x.slice(last).dot(&w0.t());
        close(e.acts[1].slice(last), y1.view()); // Y₁ = X·W₀ᵀ
        close(e.acts[2].slice(last), y1.dot(&w1.t()).view()); // Y₂ = Y₁·W₁ᵀ
        let dy1 = dy2.dot(&w1); // ∂E/∂Y₁ = ∂E/∂Y₂·W₁, 4 rows in the first batch
        close(e.grads[1].slice(last), dy1.slice(last));
        // ∂E/∂W₁ = Σ over both batches of ∂E/∂Y₂ᵀ·Y₁ (the first batch's Y₁ from all 4 rows)
        let y1_first = x.dot(&w0.t());
        let dw1 = dy2.t().dot(&y1_first) + dy2.slice(last).t().dot(&y1);
        close(e.weights[1].1.view(), dw1.view());
        // ∂E/∂W₀ = Σ over both batches of ∂E/∂Y₁ᵀ·X
        let dw0 = dy1.t().dot(&x) + dy1.slice(last).t().dot(&x.slice(last));
        close(e.weights[0].1.view(), dw0.view());
        // the input's gradient is not a product training makes: left as filled
        assert_eq!(e.grads[0], fill(4, 5));
    }
}
