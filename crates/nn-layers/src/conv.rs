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
//! **im2col.** Every patch is unrolled into a column of `cols` (`[c_in·kh·kw, n·oh·ow]`),
//! so the whole forward pass is one matrix product and the backward pass two:
//!
//! ```text
//! forward    Ymat = Wmat · cols              Wmat: [c_out, c_in·kh·kw]   Ymat: [c_out, n·oh·ow]
//! backward   ∂E/∂Wmat = dYmat · colsᵀ
//!            ∂E/∂cols = Wmatᵀ · dYmat,   then col2im adds every column back into its patch of ∂E/∂X̃
//! ```
//!
//! Padding positions are skipped by im2col (they read as 0) and by col2im (their gradient is
//! dropped), so `X̃` itself is never built.

use ndarray::ArrayViewD;
use nn_core::{Buffer, Init, Param, Rng, matmul_into};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::{Layer, Mode, Parameterized, Slot, require_forward, require_shape};
use crate::spec::{Attr, LayerSpec};

/// Configuration of a [`Conv2d`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv2dConfig {
    /// Input channels `c_in`.
    pub in_channels: usize,
    /// Output channels (filters) `c_out`.
    pub out_channels: usize,
    /// Kernel `(kh, kw)`.
    pub kernel: (usize, usize),
    /// Stride `(sh, sw)`.
    pub stride: (usize, usize),
    /// Zero padding `(ph, pw)` on each side.
    pub padding: (usize, usize),
    /// Whether the layer has a bias per output channel.
    pub bias: bool,
    /// Weight initialiser (He uniform with fan-in `c_in·kh·kw` by default).
    pub init: Init,
}

impl Conv2dConfig {
    /// `c_in → c_out` channels with a square `k×k` kernel, stride 1, no padding, a bias.
    pub fn new(in_channels: usize, out_channels: usize, k: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel: (k, k),
            stride: (1, 1),
            padding: (0, 0),
            bias: true,
            init: Init::HeUniform,
        }
    }

    /// With stride `s` in both directions.
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }

    /// With zero padding `p` on every side.
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }

    /// With or without a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }
}

/// Output positions along one axis: `(size + 2·pad − k) / stride + 1`, or `None` if the
/// kernel does not fit.
fn out_len(size: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = size + 2 * pad;
    (padded >= k).then(|| (padded - k) / stride + 1)
}

/// A 2-D convolution; see the module doc for the formulas.
#[derive(Debug, Clone)]
pub struct Conv2d {
    cfg: Conv2dConfig,
    weight: Param,
    bias: Option<Param>,
    /// im2col of the last train-mode input, `[c_in·kh·kw, n·oh·ow]`.
    cols: Buffer,
    /// `Ymat` or `dYmat`, `[c_out, n·oh·ow]`.
    ymat: Buffer,
    y: Buffer,
    dcols: Buffer,
    dx: Buffer,
    in_shape: Vec<usize>,
    ready: bool,
}

impl Conv2d {
    /// Builds the layer, drawing the initial weights from `rng`.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero channel count, kernel or stride.
    pub fn new(cfg: &Conv2dConfig, rng: &mut Rng) -> Result<Self> {
        let c = cfg;
        if c.in_channels == 0
            || c.out_channels == 0
            || c.kernel.0 == 0
            || c.kernel.1 == 0
            || c.stride.0 == 0
            || c.stride.1 == 0
        {
            return Err(Error::Config {
                layer: "conv2d".into(),
                message: format!(
                    "channels, kernel and stride must be positive, got {} → {} channels, kernel {}×{}, stride {}×{}",
                    c.in_channels, c.out_channels, c.kernel.0, c.kernel.1, c.stride.0, c.stride.1
                ),
            });
        }
        let w = c.init.tensor(
            &[c.out_channels, c.in_channels, c.kernel.0, c.kernel.1],
            rng,
        )?;
        let b = c.bias.then(|| nn_core::Tensor::zeros(vec![c.out_channels]));
        Ok(Conv2d {
            cfg: c.clone(),
            weight: Param::new(w),
            bias: b.map(Param::new),
            cols: Buffer::new(),
            ymat: Buffer::new(),
            y: Buffer::new(),
            dcols: Buffer::new(),
            dx: Buffer::new(),
            in_shape: Vec::new(),
            ready: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// The weight `[c_out, c_in, kh, kw]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// Sets the weight (and bias), e.g. for hand-worked examples.
    ///
    /// # Errors
    /// [`Error::Core`] when a shape differs from the layer's.
    pub fn set_weights(&mut self, w: nn_core::Tensor, b: Option<nn_core::Tensor>) -> Result<()> {
        require_shape(
            || format!("{} weight", self.label()),
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

    fn label(&self) -> String {
        let c = &self.cfg;
        format!(
            "conv2d({} → {}, {}×{}, stride {}, padding {})",
            c.in_channels, c.out_channels, c.kernel.0, c.kernel.1, c.stride.0, c.padding.0
        )
    }

    /// `(n, oh, ow)` for an input shape, or the error naming both shapes.
    fn geometry(&self, input: &[usize]) -> Result<(usize, usize, usize)> {
        let c = &self.cfg;
        let bad = |why: &str| -> Error {
            nn_core::Error::shape(
                format!("{} forward{why}", self.label()),
                format!(
                    "[n, {}, h, w] with h + 2·{} ≥ {} and w + 2·{} ≥ {}",
                    c.in_channels, c.padding.0, c.kernel.0, c.padding.1, c.kernel.1
                ),
                input,
            )
            .into()
        };
        if input.len() != 4 || input[1] != c.in_channels {
            return Err(bad(""));
        }
        let oh = out_len(input[2], c.kernel.0, c.stride.0, c.padding.0);
        let ow = out_len(input[3], c.kernel.1, c.stride.1, c.padding.1);
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok((input[0], oh, ow)),
            _ => Err(bad(" (kernel larger than the padded input)")),
        }
    }
}

/// The output columns `lo..hi` whose tap `v` falls inside the input row (`0 ≤ x·s + v − p < w`);
/// the others read the zero padding.
fn taps(ow: usize, s: usize, v: usize, p: usize, w: usize) -> (usize, usize) {
    let lo = if v >= p { 0 } else { (p - v).div_ceil(s) };
    let hi = if w + p > v {
        ((w - 1 + p - v) / s + 1).min(ow)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Unrolls every patch of `x` (`[n, c, h, w]`, row-major) into a column of `cols`
/// (`[c·kh·kw, n·oh·ow]`): `cols[(c, u, v), (i, y, x)] = X̃[i, c, y·sh + u, x·sw + v]`.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    shape: &[usize],
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    oh: usize,
    ow: usize,
    cols: &mut [f32],
) {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let ncols = n * oh * ow;
    for ci in 0..c {
        for u in 0..k.0 {
            for v in 0..k.1 {
                let row = (ci * k.0 + u) * k.1 + v;
                let out = &mut cols[row * ncols..(row + 1) * ncols];
                for i in 0..n {
                    let plane = &x[(i * c + ci) * h * w..(i * c + ci + 1) * h * w];
                    for y in 0..oh {
                        let dst = &mut out[(i * oh + y) * ow..(i * oh + y + 1) * ow];
                        let r = (y * s.0 + u) as isize - p.0 as isize; // input row of this tap
                        if r < 0 || r >= h as isize {
                            dst.fill(0.0); // padding row
                            continue;
                        }
                        let src = &plane[r as usize * w..(r as usize + 1) * w];
                        let (lo, hi) = taps(ow, s.1, v, p.1, w);
                        dst[..lo].fill(0.0); // left padding
                        dst[hi..].fill(0.0); // right padding
                        if s.1 == 1 {
                            let q0 = lo + v - p.1; // input column of output column lo
                            dst[lo..hi].copy_from_slice(&src[q0..q0 + hi - lo]);
                        } else {
                            for xo in lo..hi {
                                dst[xo] = src[xo * s.1 + v - p.1]; // input column x·s + v − p
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds every column of `cols` back into its patch of `dx` (the transpose of [`im2col`]);
/// entries that fall on padding are dropped.
#[allow(clippy::too_many_arguments)]
fn col2im(
    cols: &[f32],
    shape: &[usize],
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    oh: usize,
    ow: usize,
    dx: &mut [f32],
) {
    let (n, c, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let ncols = n * oh * ow;
    dx.fill(0.0);
    for ci in 0..c {
        for u in 0..k.0 {
            for v in 0..k.1 {
                let row = (ci * k.0 + u) * k.1 + v;
                let col = &cols[row * ncols..(row + 1) * ncols];
                for i in 0..n {
                    let plane = &mut dx[(i * c + ci) * h * w..(i * c + ci + 1) * h * w];
                    for y in 0..oh {
                        let r = (y * s.0 + u) as isize - p.0 as isize;
                        if r < 0 || r >= h as isize {
                            continue;
                        }
                        let src = &col[(i * oh + y) * ow..(i * oh + y + 1) * ow];
                        let dst = &mut plane[r as usize * w..(r as usize + 1) * w];
                        let (lo, hi) = taps(ow, s.1, v, p.1, w);
                        if s.1 == 1 {
                            let q0 = lo + v - p.1;
                            for (d, &g) in dst[q0..q0 + hi - lo].iter_mut().zip(&src[lo..hi]) {
                                *d += g; // ∂E/∂X̃[i, c, r, q] += ∂E/∂cols[(c, u, v), (i, y, x)]
                            }
                        } else {
                            for xo in lo..hi {
                                dst[xo * s.1 + v - p.1] += src[xo];
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Parameterized for Conv2d {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("weight", Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", Slot::Param(b));
        }
    }
}

impl Layer for Conv2d {
    fn forward<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
    ) -> Result<ArrayViewD<'s, f32>> {
        let (n, oh, ow) = self.geometry(x.shape())?;
        let c = self.cfg.clone();
        let kdim = c.in_channels * c.kernel.0 * c.kernel.1;
        let npos = n * oh * ow;
        let x = x.as_standard_layout();
        self.cols.resize(&[kdim, npos]);
        im2col(
            x.as_slice().expect("standard layout"),
            x.shape(),
            c.kernel,
            c.stride,
            c.padding,
            oh,
            ow,
            self.cols.as_mut_slice(),
        );
        self.ymat.resize(&[c.out_channels, npos]);
        let wmat = self
            .weight
            .value
            .view()
            .into_shape_with_order((c.out_channels, kdim))
            .expect("contiguous weight");
        // Ymat = Wmat·cols, computed as Ymatᵀ = colsᵀ·Wmatᵀ: the long operand then has unit
        // stride along the GEMM's rows and is used in place instead of being repacked.
        matmul_into(
            1.0,
            self.cols.view2().t(),
            wmat.t(),
            0.0,
            &mut self.ymat.view2_mut().reversed_axes(),
        )?;
        // [c_out, n·oh·ow] → [n, c_out, oh, ow], adding b[o]
        self.y.resize(&[n, c.out_channels, oh, ow]);
        let plane = oh * ow;
        let ymat = self.ymat.as_slice();
        let y = self.y.as_mut_slice();
        for o in 0..c.out_channels {
            let b = self.bias.as_ref().map_or(0.0, |b| b.value[[o]]);
            for i in 0..n {
                let src = &ymat[o * npos + i * plane..o * npos + (i + 1) * plane];
                let dst =
                    &mut y[(i * c.out_channels + o) * plane..(i * c.out_channels + o + 1) * plane];
                for (d, &s) in dst.iter_mut().zip(src) {
                    *d = s + b; // Y = Wmat·cols + b
                }
            }
        }
        self.in_shape.clear();
        self.in_shape.extend_from_slice(x.shape());
        self.ready = mode == Mode::Train;
        Ok(self.y.view())
    }

    fn backward_params(&mut self, dy: ArrayViewD<'_, f32>) -> Result<()> {
        require_forward(self.ready, || self.label())?;
        require_shape(
            || format!("{} backward", self.label()),
            self.y.shape(),
            dy.shape(),
        )?;
        let c = self.cfg.clone();
        let (n, oh, ow) = (self.y.shape()[0], self.y.shape()[2], self.y.shape()[3]);
        let (plane, npos, kdim) = (
            oh * ow,
            n * oh * ow,
            c.in_channels * c.kernel.0 * c.kernel.1,
        );
        // [n, c_out, oh, ow] → dYmat [c_out, n·oh·ow]
        let dy = dy.as_standard_layout();
        let dys = dy.as_slice().expect("standard layout");
        self.ymat.resize(&[c.out_channels, npos]);
        let dymat = self.ymat.as_mut_slice();
        for o in 0..c.out_channels {
            for i in 0..n {
                let src =
                    &dys[(i * c.out_channels + o) * plane..(i * c.out_channels + o + 1) * plane];
                dymat[o * npos + i * plane..o * npos + (i + 1) * plane].copy_from_slice(src);
            }
        }
        if let Some(b) = &mut self.bias {
            for (o, g) in b.grad.iter_mut().enumerate() {
                *g += dymat[o * npos..(o + 1) * npos].iter().sum::<f32>(); // ∂E/∂b[o] += Σ dY[·, o, ·, ·]
            }
        }
        let dymat = self.ymat.view2();
        let mut dw = self
            .weight
            .grad
            .view_mut()
            .into_shape_with_order((c.out_channels, kdim))
            .expect("contiguous");
        matmul_into(1.0, dymat, self.cols.view2().t(), 1.0, &mut dw)?; // ∂E/∂Wmat += dYmat·colsᵀ
        Ok(())
    }

    fn backward<'s>(&'s mut self, dy: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        self.backward_params(dy)?; // leaves dYmat in self.ymat
        let c = self.cfg.clone();
        let (n, oh, ow) = (self.y.shape()[0], self.y.shape()[2], self.y.shape()[3]);
        let (npos, kdim) = (n * oh * ow, c.in_channels * c.kernel.0 * c.kernel.1);
        let dymat = self.ymat.view2();
        let wmat = self
            .weight
            .value
            .view()
            .into_shape_with_order((c.out_channels, kdim))
            .expect("contiguous");
        self.dcols.resize(&[kdim, npos]);
        // ∂E/∂cols = Wmatᵀ·dYmat, as ∂E/∂colsᵀ = dYmatᵀ·Wmat (the long operand in place)
        matmul_into(
            1.0,
            dymat.t(),
            wmat,
            0.0,
            &mut self.dcols.view2_mut().reversed_axes(),
        )?;
        self.dx.resize(&self.in_shape);
        let shape = self.in_shape.clone();
        col2im(
            self.dcols.as_slice(),
            &shape,
            c.kernel,
            c.stride,
            c.padding,
            oh,
            ow,
            self.dx.as_mut_slice(),
        ); // ∂E/∂X
        Ok(self.dx.view())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (n, oh, ow) = self.geometry(input)?;
        Ok(vec![n, self.cfg.out_channels, oh, ow])
    }

    fn spec(&self) -> LayerSpec {
        let c = &self.cfg;
        let pair = |p: (usize, usize)| Attr::Ints(vec![p.0 as i64, p.1 as i64]);
        LayerSpec::new("conv2d")
            .with("in_channels", Attr::Int(c.in_channels as i64))
            .with("out_channels", Attr::Int(c.out_channels as i64))
            .with("kernel", pair(c.kernel))
            .with("stride", pair(c.stride))
            .with("padding", pair(c.padding))
            .with("bias", Attr::Bool(c.bias))
    }

    fn name(&self) -> String {
        self.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;
    use nn_core::seeded;

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
        let y = conv.forward(x.view(), Mode::Train).unwrap().to_owned();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        let want = [2.5f32, 2.5, 4.5, 0.5, 1.5, 3.5, 0.5, 5.5, 2.5];
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
        let dy = nn_core::Tensor::ones(vec![1, 1, 3, 3]);
        conv.backward(dy.view()).unwrap();
        let dw: Vec<f32> = conv.weight().grad.iter().copied().collect();
        assert_eq!(dw, [2., 8., 2., 9., 7., 9., 2., 8., 2.]);
        assert_eq!(conv.bias.as_ref().unwrap().grad[[0]], 9.0);
        // backward accumulates: a second call doubles the gradients
        conv.backward(dy.view()).unwrap();
        let dw: Vec<f32> = conv.weight().grad.iter().copied().collect();
        assert_eq!(dw, [4., 16., 4., 18., 14., 18., 4., 16., 4.]);
        assert_eq!(conv.bias.as_ref().unwrap().grad[[0]], 18.0);
    }

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let mut conv = Conv2d::new(&Conv2dConfig::new(1, 2, 5), &mut seeded(0)).unwrap();
        let x = nn_core::Tensor::zeros(vec![2, 1, 3, 3]);
        let e = conv.forward(x.view(), Mode::Train).unwrap_err().to_string();
        assert!(
            e.contains("kernel larger than the padded input") && e.contains("got [2, 1, 3, 3]"),
            "{e}"
        );
        let x = nn_core::Tensor::zeros(vec![2, 3, 8, 8]);
        let e = conv.forward(x.view(), Mode::Train).unwrap_err().to_string();
        assert!(
            e.contains("[n, 1, h, w]") && e.contains("got [2, 3, 8, 8]"),
            "{e}"
        );
        assert_eq!(
            conv.output_shape(&[4, 1, 28, 28]).unwrap(),
            vec![4, 2, 24, 24]
        );
    }
}
