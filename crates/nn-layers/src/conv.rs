//! 2-D convolution over `[n, c, h, w]` batches, with stride and zero padding.
//!
//! Each of the `c_out` filters `W[o]` (`[c_in, kh, kw]`) slides over the zero-padded input
//! with stride `s`; at each position it takes the dot product with the patch under it:
//!
//! ```text
//! oh = (h + 2·ph − kh) / sh + 1,   ow = (w + 2·pw − kw) / sw + 1
//!
//! forward    Y[i, o, y, x] = b[o] + Σ_{c, u, v} W[o, c, u, v] · X̃[i, c, y·sh + u, x·sw + v]
//!            (X̃ = X with ph rows and pw columns of zeros around it)
//!
//! backward   ∂E/∂W[o, c, u, v] = Σ_{i, y, x} dY[i, o, y, x] · X̃[i, c, y·sh + u, x·sw + v]
//!            ∂E/∂b[o]          = Σ_{i, y, x} dY[i, o, y, x]
//!            ∂E/∂X̃[i, c, p, q] = Σ_{o, y, x : y·sh + u = p, x·sw + v = q} dY[i, o, y, x] · W[o, c, u, v]
//! ```
//!
//! The input gradient is the derivation's "full convolution of `dY` with the filter rotated
//! by 180°": for stride 1, `∂E/∂X̃ = dY ⊛ rot180(W)` with `dY` zero-padded by `k − 1`; with a
//! stride, `dY` is first spread out with `s − 1` zeros between its entries. Computing it as
//! below scatters each `dY` entry back through the same patch it came from, which is that
//! rotated convolution written the other way round — no rotated copy is ever formed.
//!
//! **im2col, one sample at a time.** Every patch of sample `i` is unrolled into a column of
//! `colsᵢ` (`[c_in·kh·kw, oh·ow]`), so each sample's forward pass is one matrix product and
//! its backward pass two:
//!
//! ```text
//! forward    Yᵢ = Wmat · colsᵢ                Wmat: [c_out, c_in·kh·kw]   Yᵢ: [c_out, oh·ow]
//! backward   ∂E/∂Wmat += dYᵢ · colsᵢᵀ         (summed over the samples)
//!            ∂E/∂colsᵢ = Wmatᵀ · dYᵢ,  then col2im adds every column back into its patch of ∂E/∂X̃ᵢ
//! ```
//!
//! The kernels — im2col, col2im, the per-thread columns and the threading — live in
//! [`nn_core::conv`]; this layer holds the weights and says which formula runs when.
//! In [`Mode::Train`] the columns of the whole batch are kept for the backward pass when
//! they are small (a few MB); otherwise `colsᵢ` is rebuilt from the input the network hands
//! back at backward time. [`Mode::Eval`] keeps nothing. `∂E/∂X` is computed only when asked
//! (not for the first layer of a network).

use ndarray::ArrayViewD;
use nn_core::conv::{self, Scratch};
use nn_core::{Buffer, Param, Rng, row_major};

use crate::config::LayerConfig;
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, check_backward, require_shape};

mod config;

pub use config::Conv2dConfig;

/// A 2-D convolution; see the module doc for the formulas.
///
/// # Example
///
/// A 2×2 kernel of ones over a 3×3 image sums each 2×2 patch; with padding 1 the corners
/// see one pixel each.
///
/// ```
/// use nn_core::{Buffer, ndarray::{Array4, array}};
/// use nn_layers::{Conv2d, Conv2dConfig, Layer, Mode};
///
/// let mut conv = Conv2d::new(&Conv2dConfig::new(1, 1, 2), &mut nn_core::seeded(0))?;
/// conv.set_weights(Array4::ones((1, 1, 2, 2)).into_dyn(), Some(array![0.5f32].into_dyn()))?;
/// let x = Array4::from_shape_fn((1, 1, 3, 3), |(_, _, r, c)| (3 * r + c + 1) as f32);
/// let mut y = Buffer::new();
/// conv.forward(x.view().into_dyn(), &mut y, Mode::Eval)?; // x = 1 2 3 / 4 5 6 / 7 8 9
/// assert_eq!(y.shape(), &[1, 1, 2, 2]);
/// assert_eq!(y.as_slice(), &[12.5, 16.5, 24.5, 28.5]); // 1+2+4+5 + 0.5, …
///
/// let mut padded = Conv2dConfig::new(1, 1, 2);
/// padded.padding = (1, 1);
/// let mut conv = Conv2d::new(&padded, &mut nn_core::seeded(0))?;
/// conv.set_weights(Array4::ones((1, 1, 2, 2)).into_dyn(), None)?;
/// conv.forward(x.view().into_dyn(), &mut y, Mode::Eval)?;
/// assert_eq!(y.shape(), &[1, 1, 4, 4]);
/// assert_eq!((y.as_slice()[0], y.as_slice()[15]), (1.0, 9.0));
/// # Ok::<(), nn_layers::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Conv2d {
    cfg: Conv2dConfig,
    weight: Param,
    bias: Option<Param>,
    /// The kernels' working memory (one sample's columns per thread).
    scratch: Scratch,
}

impl Conv2d {
    /// Builds the layer, drawing the initial weights from `rng`.
    ///
    /// # Errors
    /// As [`Conv2dConfig::validate`].
    pub fn new(cfg: &Conv2dConfig, rng: &mut Rng) -> Result<Self> {
        cfg.validate()?;
        let (k, c_out) = (cfg.kernel, cfg.out_channels);
        let w = cfg.init.tensor(&[c_out, cfg.in_channels, k.0, k.1], rng)?;
        Ok(Conv2d {
            cfg: cfg.clone(),
            weight: Param::new(w),
            bias: cfg
                .bias
                .then(|| Param::new(nn_core::Tensor::zeros(vec![c_out]))),
            scratch: Scratch::default(),
        })
    }

    /// The configuration.
    pub fn conv_config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// The weight `[c_out, c_in, kh, kw]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// Sets the weight (and bias), e.g. for hand-worked examples.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when a shape differs from the layer's.
    pub fn set_weights(&mut self, w: nn_core::Tensor, b: Option<nn_core::Tensor>) -> Result<()> {
        require_shape(
            || format!("{} weight", self.cfg.name()),
            self.weight.value.shape(),
            w.shape(),
        )?;
        self.weight = Param::new(w);
        if let (Some(p), Some(b)) = (&mut self.bias, b) {
            require_shape(|| "conv2d bias".into(), p.value.shape(), b.shape())?;
            *p = Param::new(b);
        }
        Ok(())
    }
}

/// The weight `[c_out, c_in, kh, kw]` as `Wmat`, `[c_out, c_in·kh·kw]`.
fn wmat(weight: &nn_core::Tensor) -> ndarray::ArrayView2<'_, f32> {
    let c_out = weight.shape()[0];
    weight
        .view()
        .into_shape_with_order((c_out, weight.len() / c_out))
        .expect("a contiguous [c_out, c_in, kh, kw] weight")
}

impl Layer for Conv2d {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("weight", Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", Slot::Param(b));
        }
    }

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()> {
        let g = self.cfg.geometry(x.shape())?; // [n, c_in, h, w], or an error naming both shapes
        // training keeps the unrolled input for the backward pass; evaluation keeps nothing
        self.scratch.keep_columns(mode == Mode::Train);
        y.resize(&[g.n, g.c_out, g.oh, g.ow]);
        let bias = self.bias.as_ref().map(Param::values);
        let w = wmat(&self.weight.value);
        conv::forward(
            &g,
            &row_major(&x),
            w,
            bias,
            y.as_mut_slice(),
            &mut self.scratch,
        )?; // Yᵢ = Wmat·colsᵢ + b
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        let g = self.cfg.geometry(x.shape())?;
        check_backward(|| self.cfg.name(), &[g.n, g.c_out, g.oh, g.ow], &y, &dy)?;
        let dx = dx.map(|d| {
            d.resize(&[g.n, g.c, g.h, g.w]);
            d.as_mut_slice()
        });
        let (xs, dys) = (row_major(&x), row_major(&dy));
        let Conv2d {
            weight,
            bias,
            scratch,
            ..
        } = self;
        let dw = weight
            .grad
            .as_slice_mut()
            .expect("a gradient is contiguous");
        let db = bias.as_mut().map(Param::grads_mut);
        // ∂E/∂W += Σᵢ dYᵢ·colsᵢᵀ, ∂E/∂b += Σ dY, ∂E/∂Xᵢ = col2im(Wmatᵀ·dYᵢ)
        conv::backward(&g, &xs, wmat(&weight.value), &dys, dw, db, dx, scratch)?;
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(self.cfg.clone())
    }

    fn name(&self) -> String {
        self.cfg.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;
    use nn_core::seeded;

    /// Training keeps the unrolled input for the backward pass; evaluation keeps none.
    #[test]
    fn training_keeps_columns_and_evaluation_none() {
        let mut layer = Conv2d::new(&Conv2dConfig::new(4, 2, 3), &mut seeded(1)).unwrap();
        let x = Array4::<f32>::from_shape_fn((2, 4, 6, 6), |(i, c, h, w)| (i + c + h * w) as f32)
            .into_dyn();
        let mut y = Buffer::new();
        layer.forward(x.view(), &mut y, Mode::Train).unwrap();
        assert_eq!(layer.scratch.kept_columns(), 2 * 36 * 16); // n · c·kh·kw · oh·ow
        layer.forward(x.view(), &mut y, Mode::Eval).unwrap();
        assert_eq!(layer.scratch.kept_columns(), 0);
    }

    /// The derivation-style example: a 5×5 input, one 3×3 filter, stride 2, padding 1.
    ///
    /// ```text
    /// X = [[ 1  2  0  1  2]        W = [[ 1  0 -1]      b = 0.5
    ///      [ 0  1  3  1  0]             [ 2  1  0]
    ///      [ 2  1  0  2  1]             [ 0 -1  1]]
    ///      [ 1  0  1  0  3]
    ///      [ 0  2  1  1  0]]
    ///
    /// oh = ow = (5 + 2·1 − 3)/2 + 1 = 3. Output (y, x) sees rows 2y..2y+2 and columns
    /// 2x..2x+2 of the zero-bordered 7×7 input X̃ (the products with zero weights left out):
    ///   (0,0) patch [[0 0 0] [0 1 2] [0 0 1]] → 1·1 + 1·1                              = 2 → 2.5
    ///   (0,1) patch [[0 0 0] [2 0 1] [1 3 1]] → 2·2 + 3·(−1) + 1·1                     = 2 → 2.5
    ///   (0,2) patch [[0 0 0] [1 2 0] [1 0 0]] → 1·2 + 2·1                              = 4 → 4.5
    ///   (1,0) patch [[0 0 1] [0 2 1] [0 1 0]] → 1·(−1) + 2·1 + 1·(−1)                  = 0 → 0.5
    ///   (1,1) patch [[1 3 1] [1 0 2] [0 1 0]] → 1·1 + 1·(−1) + 1·2 + 1·(−1)            = 1 → 1.5
    ///   (1,2) patch [[1 0 0] [2 1 0] [0 3 0]] → 1·1 + 2·2 + 1·1 + 3·(−1)               = 3 → 3.5
    ///   (2,0) patch [[0 1 0] [0 0 2] [0 0 0]] → (nothing under a non-zero weight)      = 0 → 0.5
    ///   (2,1) patch [[0 1 0] [2 1 1] [0 0 0]] → 2·2 + 1·1                              = 5 → 5.5
    ///   (2,2) patch [[0 3 0] [1 0 0] [0 0 0]] → 1·2                                    = 2 → 2.5
    ///
    /// With dY = all ones, ∂E/∂W[u, v] is the sum of entry (u, v) over the nine patches:
    ///   (0,0) 1+1 = 2      (0,1) 3+1+1+3 = 8        (0,2) 1+1 = 2
    ///   (1,0) 2+1+1+2+2+1 = 9   (1,1) 1+2+2+1+1 = 7   (1,2) 2+1+1+2+2+1 = 9
    ///   (2,0) 1+1 = 2      (2,1) 3+1+1+3 = 8        (2,2) 1+1 = 2
    /// and ∂E/∂b = 9 (one per output).
    /// ```
    #[test]
    fn hand_worked_stride_two_padding_one() {
        let x = Array4::from_shape_vec(
            (1, 1, 5, 5),
            vec![
                1., 2., 0., 1., 2., 0., 1., 3., 1., 0., 2., 1., 0., 2., 1., 1., 0., 1., 0., 3., 0.,
                2., 1., 1., 0.,
            ],
        )
        .unwrap()
        .into_dyn();
        let w = Array4::from_shape_vec((1, 1, 3, 3), vec![1., 0., -1., 2., 1., 0., 0., -1., 1.])
            .unwrap()
            .into_dyn();
        let mut conv = Conv2d::new(
            &Conv2dConfig::new(1, 1, 3).stride(2).padding(1),
            &mut seeded(0),
        )
        .unwrap();
        conv.set_weights(w, Some(ndarray::arr1(&[0.5f32]).into_dyn()))
            .unwrap();
        let dy = nn_core::Tensor::ones(vec![1, 1, 3, 3]);
        let (y, _) = crate::layer::apply_backward(&mut conv, x.view(), dy.view()).unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        let want = [2.5f32, 2.5, 4.5, 0.5, 1.5, 3.5, 0.5, 5.5, 2.5];
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
        let dw: Vec<f32> = conv.weight().grad.iter().copied().collect();
        assert_eq!(dw, [2., 8., 2., 9., 7., 9., 2., 8., 2.]);
        assert_eq!(conv.bias.as_ref().unwrap().grad[[0]], 9.0);
        // backward accumulates: a second call (without dx) doubles the gradients
        conv.backward(x.view(), y.view(), dy.view(), None).unwrap();
        let dw: Vec<f32> = conv.weight().grad.iter().copied().collect();
        assert_eq!(dw, [4., 16., 4., 18., 14., 18., 4., 16., 4.]);
        assert_eq!(conv.bias.as_ref().unwrap().grad[[0]], 18.0);
    }

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let mut conv = Conv2d::new(&Conv2dConfig::new(1, 2, 5), &mut seeded(0)).unwrap();
        let x = nn_core::Tensor::zeros(vec![2, 1, 3, 3]);
        let e = crate::layer::apply(&mut conv, x.view(), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kernel larger than the padded input") && e.contains("got [2, 1, 3, 3]"),
            "{e}"
        );
        let x = nn_core::Tensor::zeros(vec![2, 3, 8, 8]);
        let e = crate::layer::apply(&mut conv, x.view(), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("[n, 1, h, w]") && e.contains("got [2, 3, 8, 8]"),
            "{e}"
        );
        assert_eq!(
            conv.output_shape(&[4, 1, 28, 28]).unwrap(),
            vec![4, 2, 24, 24]
        );
    }

    #[test]
    fn parameter_gradients_do_not_depend_on_dx_being_asked_for() {
        let cfg = Conv2dConfig::new(2, 3, 3).padding(1);
        let x = Array4::from_shape_fn((3, 2, 5, 4), |(i, c, h, w)| {
            ((i * 7 + c * 5 + h * 3 + w) % 11) as f32 * 0.1 - 0.5
        })
        .into_dyn();
        let dy = Array4::from_shape_fn((3, 3, 5, 4), |(i, o, h, w)| {
            ((i + 2 * o + h * w) % 7) as f32 * 0.2 - 0.6
        })
        .into_dyn();
        let mut a = Conv2d::new(&cfg, &mut seeded(5)).unwrap();
        let mut b = a.clone();
        let (y, dx) = crate::layer::apply_backward(&mut a, x.view(), dy.view()).unwrap();
        assert_eq!(dx.shape(), x.shape());
        b.backward(x.view(), y.view(), dy.view(), None).unwrap();
        assert_eq!(a.weight().grad, b.weight().grad);
        assert_eq!(a.bias.as_ref().unwrap().grad, b.bias.as_ref().unwrap().grad);
        assert!(a.weight().grad.iter().any(|&g| g != 0.0));
    }
}
