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
//! `Yᵢ` is sample `i` of the `[n, c_out, oh, ow]` output as it lies in memory, so the product
//! writes the output in place. `colsᵢ` is small enough to stay in the core's cache (for a 5×5
//! kernel over 8 channels and an 8×8 output, 51 KB), so it is rebuilt from the input in the
//! backward pass instead of being stored for the whole batch (the input is the layer's own
//! copy, or, after [`Layer::forward_input_kept`], the caller's, handed back to
//! [`Layer::backward_with_input`]). The batch is cut into one
//! run of samples per thread; each thread has its own `colsᵢ` and its own partial `∂E/∂W`,
//! and the partial sums are added in a fixed order, so the result does not depend on timing.
//!
//! Padding positions are skipped by im2col (they read as 0) and by col2im (their gradient is
//! dropped), so `X̃` itself is never built.

use ndarray::{ArrayView2, ArrayViewD, ArrayViewMut2};
use nn_core::parallel::split_runs_with;
use nn_core::{Buffer, Init, Param, Rng, matmul_into};
use serde::{Deserialize, Serialize};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output, ensure, param_elements};
use crate::error::{Error, Result};
use crate::layer::{Layer, Mode, Parameterized, Slot, kept_input, require_forward, require_shape};
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

    /// Checks the sizes: channels, kernel and stride positive, the weight within the
    /// parameter limit.
    ///
    /// # Errors
    /// [`Error::Config`] or a limit error naming the layer.
    pub fn validate(&self) -> Result<()> {
        let (k, s) = (self.kernel, self.stride);
        ensure(
            self.in_channels > 0
                && self.out_channels > 0
                && k.0 > 0
                && k.1 > 0
                && s.0 > 0
                && s.1 > 0,
            "conv2d",
            || {
                format!(
                    "channels, kernel and stride must be positive, got {} → {} channels, kernel {}×{}, stride {}×{}",
                    self.in_channels, self.out_channels, k.0, k.1, s.0, s.1
                )
            },
        )?;
        param_elements(
            || format!("{} weight", self.name()),
            &[self.out_channels, self.in_channels, k.0, k.1],
        )?;
        Ok(())
    }

    /// Reads `in_channels` (inferred from a `[n, c, h, w]` input when absent),
    /// `out_channels`, `kernel`, `stride` (default 1), `padding` (default 0) and `bias`
    /// (default true), and validates them. Sizes are pairs or one integer for both axes.
    ///
    /// # Errors
    /// [`Error::Spec`] for a missing, unknown or ill-typed attribute; as
    /// [`Conv2dConfig::validate`].
    pub fn from_spec(spec: &LayerSpec, ctx: &Context<'_>) -> Result<Self> {
        spec.only(&[
            "in_channels",
            "out_channels",
            "kernel",
            "stride",
            "padding",
            "bias",
        ])?;
        if spec.get("kernel").is_none() {
            return Err(spec.invalid("missing attribute `kernel`"));
        }
        let cfg = Conv2dConfig {
            in_channels: ctx.width(spec, "in_channels", &[4], "[n, c, h, w]")?,
            out_channels: spec.usize("out_channels")?,
            kernel: spec.pair_or("kernel", (0, 0))?,
            stride: spec.pair_or("stride", (1, 1))?,
            padding: spec.pair_or("padding", (0, 0))?,
            bias: spec.bool_or("bias", true)?,
            init: Init::HeUniform,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// The sizes of a call with input shape `input`, computed with checked arithmetic, or
    /// the error naming both shapes (or the limit an output or a sample's columns exceed).
    fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        let bad = |why: &str| -> Error {
            nn_core::Error::shape(
                format!("{} forward{why}", self.name()),
                format!(
                    "[n, {}, h, w] with h + 2·{} ≥ {} and w + 2·{} ≥ {}",
                    self.in_channels, self.padding.0, self.kernel.0, self.padding.1, self.kernel.1
                ),
                input,
            )
            .into()
        };
        if input.len() != 4 || input[1] != self.in_channels {
            return Err(bad(""));
        }
        let padded = |size: usize, pad: usize| {
            let p = pad.checked_mul(2).and_then(|p| p.checked_add(size));
            p.ok_or_else(|| -> Error {
                nn_core::Error::Limit {
                    what: format!("{} padded input", self.name()),
                    amount: "too many elements to count".into(),
                    limit: format!(
                        "{} elements per tensor",
                        nn_core::limits::MAX_TENSOR_ELEMENTS
                    ),
                }
                .into()
            })
        };
        let oh = out_len(
            padded(input[2], self.padding.0)?,
            self.kernel.0,
            self.stride.0,
        );
        let ow = out_len(
            padded(input[3], self.padding.1)?,
            self.kernel.1,
            self.stride.1,
        );
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(bad(" (kernel larger than the padded input)"));
        };
        let g = Geometry {
            n: input[0],
            c: input[1],
            h: input[2],
            w: input[3],
            c_out: self.out_channels,
            oh,
            ow,
            k: self.kernel,
            s: self.stride,
            p: self.padding,
        };
        // one sample's columns, [c_in·kh·kw, oh·ow], are each thread's working memory
        let kdim = [g.c, g.k.0, g.k.1];
        let kdim = nn_core::limits::product(&kdim).unwrap_or(usize::MAX);
        nn_core::limits::elements(
            || format!("{} columns of one sample", self.name()),
            &[kdim, oh, ow],
        )?;
        Ok(g)
    }
}

/// Output positions along one axis of padded size `padded = size + 2·pad`:
/// `(padded − k) / stride + 1`, or `None` if the kernel does not fit.
fn out_len(padded: usize, k: usize, stride: usize) -> Option<usize> {
    (padded >= k).then(|| (padded - k) / stride + 1)
}

impl LayerConfig for Conv2dConfig {
    fn spec(&self) -> LayerSpec {
        let pair = |p: (usize, usize)| Attr::Ints(vec![p.0 as i64, p.1 as i64]);
        LayerSpec::new("conv2d")
            .with("in_channels", Attr::Int(self.in_channels as i64))
            .with("out_channels", Attr::Int(self.out_channels as i64))
            .with("kernel", pair(self.kernel))
            .with("stride", pair(self.stride))
            .with("padding", pair(self.padding))
            .with("bias", Attr::Bool(self.bias))
    }

    fn name(&self) -> String {
        format!(
            "conv2d({} → {}, {}×{}, stride {}, padding {})",
            self.in_channels,
            self.out_channels,
            self.kernel.0,
            self.kernel.1,
            self.stride.0,
            self.padding.0
        )
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        let (k, c) = (self.kernel, self.out_channels);
        let mut t = vec![TensorSpec::param(
            "weight",
            vec![c, self.in_channels, k.0, k.1],
        )];
        if self.bias {
            t.push(TensorSpec::param("bias", vec![c]));
        }
        Ok(t)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geometry(input)?;
        checked_output(|| self.name(), vec![g.n, g.c_out, g.oh, g.ow])
    }

    fn build(&self, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Conv2d::new(self, rng)?))
    }
}

/// A 2-D convolution; see the module doc for the formulas.
#[derive(Debug, Clone)]
pub struct Conv2d {
    cfg: Conv2dConfig,
    weight: Param,
    bias: Option<Param>,
    /// The last train-mode input `[n, c_in, h, w]`, from which backward rebuilds `colsᵢ`
    /// (unless the caller kept it: `input_kept`).
    x: Buffer,
    /// Shape of the last input.
    in_shape: Vec<usize>,
    /// The last train-mode forward left its input with the caller.
    input_kept: bool,
    y: Buffer,
    dx: Buffer,
    /// Working memory of each thread's run of samples.
    scratch: Vec<Scratch>,
    ready: bool,
}

/// The working memory of one thread: one sample's columns and the partial gradients of
/// the thread's samples.
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// `colsᵢ`, `[c_in·kh·kw, oh·ow]`.
    cols: Vec<f32>,
    /// `∂E/∂colsᵢ`, same shape.
    dcols: Vec<f32>,
    /// `Σᵢ colsᵢ·dYᵢᵀ` (= `(∂E/∂Wmat)ᵀ`) over this thread's samples, `[c_in·kh·kw, c_out]`.
    dwt: Vec<f32>,
    /// `Σᵢ Σ_positions dYᵢ` over this thread's samples, `[c_out]`.
    db: Vec<f32>,
    /// The first error this thread's run met.
    error: Option<nn_core::Error>,
}

/// The sizes of one call: input `[n, c, h, w]`, output `[n, c_out, oh, ow]`.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    c_out: usize,
    oh: usize,
    ow: usize,
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
}

impl Geometry {
    /// Rows of `colsᵢ`: `c_in·kh·kw`.
    fn kdim(&self) -> usize {
        self.c * self.k.0 * self.k.1
    }
    /// Output positions per channel: `oh·ow`.
    fn plane(&self) -> usize {
        self.oh * self.ow
    }
    /// `colsᵢ ← im2col(Xᵢ)`.
    fn im2col(&self, x: &[f32], i: usize, cols: &mut [f32]) {
        let len = self.c * self.h * self.w;
        im2col(
            &x[i * len..(i + 1) * len],
            (self.c, self.h, self.w),
            self.k,
            self.s,
            self.p,
            self.oh,
            self.ow,
            cols,
        );
    }
}

impl Conv2d {
    /// Builds the layer, drawing the initial weights from `rng`.
    ///
    /// # Errors
    /// As [`Conv2dConfig::validate`].
    pub fn new(cfg: &Conv2dConfig, rng: &mut Rng) -> Result<Self> {
        let c = cfg;
        c.validate()?;
        let w = c.init.tensor(
            &[c.out_channels, c.in_channels, c.kernel.0, c.kernel.1],
            rng,
        )?;
        let b = c.bias.then(|| nn_core::Tensor::zeros(vec![c.out_channels]));
        Ok(Conv2d {
            cfg: c.clone(),
            weight: Param::new(w),
            bias: b.map(Param::new),
            x: Buffer::new(),
            in_shape: Vec::new(),
            input_kept: false,
            y: Buffer::new(),
            dx: Buffer::new(),
            scratch: Vec::new(),
            ready: false,
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
        self.cfg.name()
    }

    /// The sizes of a call with this input shape, or the error naming both shapes.
    fn geometry(&self, input: &[usize]) -> Result<Geometry> {
        self.cfg.geometry(input)
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

/// `dst ← src` for the short rows of small images: whole 8-float blocks, then the rest one
/// by one, without a call into `memcpy` for every few floats.
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    if dst.len() > 64 {
        dst.copy_from_slice(src);
        return;
    }
    let (d8, d1) = dst.as_chunks_mut::<8>();
    let (s8, s1) = src[..d8.len() * 8 + d1.len()].as_chunks::<8>();
    for (d, s) in d8.iter_mut().zip(s8) {
        *d = *s;
    }
    for (d, s) in d1.iter_mut().zip(s1) {
        *d = *s;
    }
}

/// `dst += src`, in whole 8-float blocks and then the rest.
#[inline(always)]
fn add_row(dst: &mut [f32], src: &[f32]) {
    let (d8, d1) = dst.as_chunks_mut::<8>();
    let (s8, s1) = src[..d8.len() * 8 + d1.len()].as_chunks::<8>();
    for (d, s) in d8.iter_mut().zip(s8) {
        for (d, &s) in d.iter_mut().zip(s) {
            *d += s;
        }
    }
    for (d, &s) in d1.iter_mut().zip(s1) {
        *d += s;
    }
}

/// Unrolls every patch of one sample `x` (`[c, h, w]`, row-major) into a column of `cols`
/// (`[c·kh·kw, oh·ow]`): `cols[(c, u, v), (y, x)] = X̃[c, y·sh + u, x·sw + v]`.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    oh: usize,
    ow: usize,
    cols: &mut [f32],
) {
    let plane = oh * ow;
    if s == (1, 1) && p == (0, 0) {
        // The common case, without padding or stride: the k shifted copies of each input
        // row are written while the row is in the cache (W3's second layer: 225 µs per
        // batch against 320 through the general loop below).
        for ci in 0..c {
            for u in 0..k.0 {
                let rows =
                    &mut cols[(ci * k.0 + u) * k.1 * plane..(ci * k.0 + u + 1) * k.1 * plane];
                for y in 0..oh {
                    let src = &x[(ci * h + y + u) * w..(ci * h + y + u + 1) * w];
                    for (v, row) in rows.chunks_exact_mut(plane).enumerate() {
                        // cols[(c, u, v), (y, x)] = X[c, y + u, x + v]
                        copy_row(&mut row[y * ow..(y + 1) * ow], &src[v..v + ow]);
                    }
                }
            }
        }
        return;
    }
    for ci in 0..c {
        let xc = &x[ci * h * w..(ci + 1) * h * w];
        for u in 0..k.0 {
            for v in 0..k.1 {
                let row = (ci * k.0 + u) * k.1 + v;
                let out = &mut cols[row * plane..(row + 1) * plane];
                // output columns lo..hi read inside the input row, the others the padding
                let (lo, hi) = taps(ow, s.1, v, p.1, w);
                for (y, dst) in out.chunks_exact_mut(ow).enumerate() {
                    let r = (y * s.0 + u) as isize - p.0 as isize; // input row of this tap
                    if r < 0 || r >= h as isize {
                        dst.fill(0.0); // padding row
                        continue;
                    }
                    let src = &xc[r as usize * w..(r as usize + 1) * w];
                    dst[..lo].fill(0.0); // left padding
                    dst[hi..].fill(0.0); // right padding
                    if s.1 == 1 {
                        let q0 = lo + v - p.1; // input column of output column lo
                        copy_row(&mut dst[lo..hi], &src[q0..q0 + hi - lo]);
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

/// Adds every column of `cols` back into its patch of one sample's `dx` (`[c, h, w]`; the
/// transpose of [`im2col`]); entries that fall on padding are dropped.
#[allow(clippy::too_many_arguments)]
fn col2im(
    cols: &[f32],
    (c, h, w): (usize, usize, usize),
    k: (usize, usize),
    s: (usize, usize),
    p: (usize, usize),
    oh: usize,
    ow: usize,
    dx: &mut [f32],
) {
    let plane = oh * ow;
    dx.fill(0.0);
    // Taps v outermost: the k overlapping additions into one input row are then oh rows
    // apart. Adding them back to back (v innermost) makes each vector load wait for the
    // previous, overlapping store (measured up to 30 % slower on W3's second layer).
    for ci in 0..c {
        let dxc = &mut dx[ci * h * w..(ci + 1) * h * w];
        for u in 0..k.0 {
            for v in 0..k.1 {
                let row = (ci * k.0 + u) * k.1 + v;
                let col = &cols[row * plane..(row + 1) * plane];
                let (lo, hi) = taps(ow, s.1, v, p.1, w);
                for (y, src) in col.chunks_exact(ow).enumerate() {
                    let r = (y * s.0 + u) as isize - p.0 as isize;
                    if r < 0 || r >= h as isize {
                        continue;
                    }
                    let dst = &mut dxc[r as usize * w..(r as usize + 1) * w];
                    if s.1 == 1 {
                        let q0 = lo + v - p.1;
                        // ∂E/∂X̃[c, r, q] += ∂E/∂cols[(c, u, v), (y, x)]
                        add_row(&mut dst[q0..q0 + hi - lo], &src[lo..hi]);
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

impl Parameterized for Conv2d {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("weight", Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", Slot::Param(b));
        }
    }
}

impl Conv2d {
    /// Accumulates `∂E/∂W` and `∂E/∂b`, and computes `∂E/∂X` into `self.dx` if `want_dx`.
    /// `x` is the forward pass's input when the caller kept it, else `None` (the layer's copy).
    fn backward_inner(
        &mut self,
        x: Option<ArrayViewD<'_, f32>>,
        dy: ArrayViewD<'_, f32>,
        want_dx: bool,
    ) -> Result<()> {
        require_forward(self.ready, || self.label())?;
        require_shape(
            || format!("{} backward", self.label()),
            self.y.shape(),
            dy.shape(),
        )?;
        let g = self.geometry(&self.in_shape)?;
        let given = kept_input(|| self.label(), self.input_kept, x, &self.in_shape)?;
        let given = given.as_ref().map(|x| x.as_standard_layout());
        let (kdim, plane) = (g.kdim(), g.plane());
        let dy = dy.as_standard_layout();
        let dys = dy.as_slice().expect("standard layout");
        if want_dx {
            self.dx.resize(&[g.n, g.c, g.h, g.w]);
        }
        let dx: &mut [f32] = if want_dx {
            self.dx.as_mut_slice()
        } else {
            &mut []
        };
        let xs = match &given {
            Some(x) => x.as_slice().expect("standard layout"),
            None => self.x.as_slice(),
        };
        prepare_scratch(&mut self.scratch, &g, true);
        let wmat = self
            .weight
            .value
            .view()
            .into_shape_with_order((g.c_out, kdim))
            .expect("contiguous weight");
        let (per_out, per_in) = (g.c_out * plane, g.c * g.h * g.w);
        // one run of samples per thread, each with its own scratch and partial gradients
        split_runs_with(
            g.n,
            (dx, per_in),
            &mut self.scratch,
            g.n * kdim * plane,
            &|samples, dx, sc| {
                for (j, i) in samples.enumerate() {
                    let dyi_s = &dys[i * per_out..(i + 1) * per_out];
                    for (g_o, row) in sc.db.iter_mut().zip(dyi_s.chunks_exact(plane)) {
                        *g_o += nn_core::ops::sum(row); // ∂E/∂b[o] += Σ dYᵢ[o, ·]
                    }
                    g.im2col(xs, i, &mut sc.cols);
                    let cols =
                        ArrayView2::from_shape((kdim, plane), &sc.cols[..]).expect("sized above");
                    let dyi =
                        ArrayView2::from_shape((g.c_out, plane), dyi_s).expect("shape checked");
                    let mut dwt = ArrayViewMut2::from_shape((kdim, g.c_out), &mut sc.dwt[..])
                        .expect("sized above");
                    // (∂E/∂Wmat)ᵀ += colsᵢ·dYᵢᵀ: the transpose of dYᵢ·colsᵢᵀ, into a row-major
                    // scratch (twice as fast as writing ∂E/∂Wmat's columns in place)
                    if let Err(e) = matmul_into(1.0, cols, dyi.t(), 1.0, &mut dwt) {
                        sc.error.get_or_insert(e);
                        return;
                    }
                    if dx.is_empty() {
                        continue; // parameter gradients only
                    }
                    let mut dcols = ArrayViewMut2::from_shape((kdim, plane), &mut sc.dcols[..])
                        .expect("sized above");
                    // ∂E/∂colsᵢ = Wmatᵀ·dYᵢ
                    if let Err(e) = matmul_into(1.0, wmat.t(), dyi, 0.0, &mut dcols) {
                        sc.error.get_or_insert(e);
                        return;
                    }
                    let dxi = &mut dx[j * per_in..(j + 1) * per_in];
                    col2im(&sc.dcols, (g.c, g.h, g.w), g.k, g.s, g.p, g.oh, g.ow, dxi); // ∂E/∂Xᵢ
                }
            },
        );
        take_error(&mut self.scratch)?;
        // add the threads' partial sums in a fixed order
        let g_c_out = g.c_out;
        let mut dw = self.weight.grad.view_mut();
        let dw = dw.as_slice_mut().expect("contiguous gradient");
        for sc in &self.scratch {
            for (o, row) in dw.chunks_exact_mut(kdim).enumerate() {
                for (r, g) in row.iter_mut().enumerate() {
                    *g += sc.dwt[r * g_c_out + o]; // ∂E/∂Wmat[o, r] += (∂E/∂Wmat)ᵀ[r, o]
                }
            }
        }
        if let Some(b) = &mut self.bias {
            let db = b.grad.as_slice_mut().expect("contiguous gradient");
            for sc in &self.scratch {
                db.iter_mut().zip(&sc.db).for_each(|(g, &p)| *g += p);
            }
        }
        Ok(())
    }
}

/// Gives every thread's scratch room for one sample's columns (and their gradient with
/// `backward`), with zeroed partial gradients and no error. Scratch a pass does not use keeps
/// zero partial sums, so adding all of them is exact.
fn prepare_scratch(scratch: &mut Vec<Scratch>, g: &Geometry, backward: bool) {
    let threads = nn_core::parallel::parallelism().clamp(1, nn_core::parallel::MAX_RUNS);
    scratch.resize_with(threads, Scratch::default);
    let cols = g.kdim() * g.plane();
    for sc in scratch.iter_mut() {
        sc.cols.resize(cols, 0.0);
        sc.error = None;
        if backward {
            sc.dcols.resize(cols, 0.0);
            sc.dwt.clear();
            sc.dwt.resize(g.kdim() * g.c_out, 0.0);
            sc.db.clear();
            sc.db.resize(g.c_out, 0.0);
        }
    }
}

/// The first error any thread's run met.
fn take_error(scratch: &mut [Scratch]) -> Result<()> {
    match scratch.iter_mut().find_map(|sc| sc.error.take()) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

impl Conv2d {
    /// The forward pass into `self.y`; in train mode keeps a copy of `x` unless `kept`.
    fn forward_impl(&mut self, x: ArrayViewD<'_, f32>, mode: Mode, kept: bool) -> Result<()> {
        let g = self.geometry(x.shape())?;
        let x = x.as_standard_layout();
        let xs = x.as_slice().expect("standard layout");
        self.y.resize(&[g.n, g.c_out, g.oh, g.ow]);
        let (kdim, plane) = (g.kdim(), g.plane());
        prepare_scratch(&mut self.scratch, &g, false);
        let wmat = self
            .weight
            .value
            .view()
            .into_shape_with_order((g.c_out, kdim))
            .expect("contiguous weight");
        let bias = self.bias.as_ref().map(|b| b.value.view());
        let per = g.c_out * plane;
        // one run of samples per thread, each with its own columns
        split_runs_with(
            g.n,
            (self.y.as_mut_slice(), per),
            &mut self.scratch,
            g.n * kdim * plane,
            &|samples, y, sc| {
                for (j, i) in samples.enumerate() {
                    g.im2col(xs, i, &mut sc.cols);
                    let cols =
                        ArrayView2::from_shape((kdim, plane), &sc.cols[..]).expect("sized above");
                    let out = &mut y[j * per..(j + 1) * per];
                    let mut yi = ArrayViewMut2::from_shape((g.c_out, plane), &mut *out)
                        .expect("output sized above");
                    // Yᵢ = Wmat·colsᵢ
                    if let Err(e) = matmul_into(1.0, wmat, cols, 0.0, &mut yi) {
                        sc.error.get_or_insert(e);
                        return;
                    }
                    if let Some(b) = &bias {
                        for (row, &bo) in out.chunks_exact_mut(plane).zip(b.iter()) {
                            row.iter_mut().for_each(|v| *v += bo); // + b[o]
                        }
                    }
                }
            },
        );
        take_error(&mut self.scratch)?;
        self.ready = mode == Mode::Train;
        self.input_kept = self.ready && kept;
        self.in_shape.clear();
        self.in_shape.extend_from_slice(x.shape());
        if self.ready && !kept {
            self.x.assign(x.view());
        }
        Ok(())
    }
}

impl Layer for Conv2d {
    fn forward<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
    ) -> Result<ArrayViewD<'s, f32>> {
        self.forward_impl(x, mode, false)?;
        Ok(self.y.view())
    }

    fn forward_input_kept<'s>(&'s mut self, x: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        self.forward_impl(x, Mode::Train, true)?; // no copy of X: the caller keeps it
        Ok(self.y.view())
    }

    fn backward_params(&mut self, dy: ArrayViewD<'_, f32>) -> Result<()> {
        self.backward_inner(None, dy, false)
    }

    fn backward<'s>(&'s mut self, dy: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        self.backward_inner(None, dy, true)?;
        Ok(self.dx.view())
    }

    fn backward_params_with_input(
        &mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<()> {
        self.backward_inner(Some(x), dy, false)
    }

    fn backward_with_input<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<ArrayViewD<'s, f32>> {
        self.backward_inner(Some(x), dy, true)?;
        Ok(self.dx.view())
    }

    fn output(&self) -> Option<ArrayViewD<'_, f32>> {
        Some(self.y.view())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(self.cfg.clone())
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

    #[test]
    fn kept_input_matches_the_copying_path() {
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
        let ya = a.forward(x.view(), Mode::Train).unwrap().to_owned();
        let dxa = a.backward(dy.view()).unwrap().to_owned();
        let yb = b.forward_input_kept(x.view()).unwrap().to_owned();
        let dxb = b
            .backward_with_input(x.view(), dy.view())
            .unwrap()
            .to_owned();
        assert_eq!((ya, dxa), (yb, dxb));
        assert_eq!(a.weight().grad, b.weight().grad);
        assert!(matches!(
            b.backward(dy.view()).unwrap_err(),
            Error::InputNeeded { .. }
        ));
    }
}
