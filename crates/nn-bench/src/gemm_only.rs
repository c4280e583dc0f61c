//! W2's GEMM-only time: the matrix products one W2 epoch makes, at W2's shapes and in its
//! order, with nothing else — no gather, activation, loss or update. The epoch time over this
//! is what the rest of training costs on top of the products (`nn-bench w2-gemm`).
//!
//! Per mini-batch of `n` rows and per dense layer `in → out` (weights `[out, in]`, as
//! `Dense` keeps them), the three products `Dense` makes:
//! forward `Y = X·Wᵀ` (`[n, in]·[in, out]`), `∂E/∂W += dYᵀ·X` (`[out, n]·[n, in]`), and
//! `∂E/∂X = dY·W` (`[n, out]·[out, in]`) for every layer but the first.

use std::time::Instant;

use anyhow::Result;
use ndarray::Array2;
use nn_core::matmul_into;

/// One layer's operands, allocated once at the full batch size.
struct Operands {
    x: Array2<f32>,
    w: Array2<f32>,
    y: Array2<f32>,
    dy: Array2<f32>,
    dw: Array2<f32>,
    dx: Array2<f32>,
}

impl Operands {
    fn new(batch: usize, fan_in: usize, fan_out: usize) -> Self {
        // values do not change a product's time; small distinct ones keep the sums finite
        let fill = |r: usize, c: usize| {
            Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 1e-3)
        };
        Operands {
            x: fill(batch, fan_in),
            w: fill(fan_out, fan_in),
            y: Array2::zeros((batch, fan_out)),
            dy: fill(batch, fan_out),
            dw: Array2::zeros((fan_out, fan_in)),
            dx: Array2::zeros((batch, fan_in)),
        }
    }

    /// The products of one mini-batch of `n` rows.
    fn step(&mut self, n: usize, first: bool) -> Result<()> {
        let s = ndarray::s![..n, ..];
        let (x, dy) = (self.x.slice(s), self.dy.slice(s));
        matmul_into(1.0, x, self.w.t(), 0.0, &mut self.y.slice_mut(s))?; // Y = X·Wᵀ
        matmul_into(1.0, dy.t(), x, 1.0, &mut self.dw.view_mut())?; // ∂E/∂W += dYᵀ·X
        if !first {
            matmul_into(1.0, dy, self.w.view(), 0.0, &mut self.dx.slice_mut(s))?; // ∂E/∂X = dY·W
        }
        Ok(())
    }
}

/// The products of W2-shaped epochs, operands allocated once.
pub(crate) struct Epoch {
    layers: Vec<Operands>,
    rows: usize,
    batch: usize,
}

impl Epoch {
    /// An MLP with layer `sizes` over `rows` samples in mini-batches of `batch` (the last one
    /// partial, as the protocol keeps it).
    pub(crate) fn new(sizes: &[usize], rows: usize, batch: usize) -> Self {
        let layers = (sizes.windows(2))
            .map(|p| Operands::new(batch, p[0], p[1]))
            .collect();
        Epoch {
            layers,
            rows,
            batch,
        }
    }

    /// Runs one epoch's products; returns its seconds.
    pub(crate) fn run(&mut self) -> Result<f64> {
        let t = Instant::now();
        for start in (0..self.rows).step_by(self.batch) {
            let n = self.batch.min(self.rows - start);
            for (i, layer) in self.layers.iter_mut().enumerate().rev() {
                layer.step(n, i == 0)?; // backward runs last layer first; order does not change the sum
            }
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
