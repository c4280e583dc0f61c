//! Convolution kernels: im2col, col2im, and the threaded forward and backward passes of a
//! 2-D convolution over a batch, each sample one matrix product.
//!
//! ```text
//! colsᵢ = im2col(Xᵢ)            [c_in·kh·kw, oh·ow]   every patch of sample i as a column
//! Yᵢ    = Wmat·colsᵢ (+ b)      [c_out, oh·ow]        Wmat = W as [c_out, c_in·kh·kw]
//! ∂E/∂Wmat += dYᵢ·colsᵢᵀ,   ∂E/∂b += Σ_positions dYᵢ
//! ∂E/∂Xᵢ = col2im(Wmatᵀ·dYᵢ)                          each column added back into its patch
//! ```
//!
//! `Yᵢ` is sample `i` of the `[n, c_out, oh, ow]` output as it lies in memory, so the product
//! writes the output in place (a group of samples whose positions leave the GEMM kernel's
//! blocks part idle goes through one product, see [`Geometry::group`], and is then copied
//! into place). A training forward pass keeps the whole batch's columns when they fit
//! [`KEEP_FLOATS`], and the backward pass reads them; larger ones are unrolled again from
//! the input, which costs less than reading them back from memory (see there).
//! The batch is cut into one run of samples per thread; each thread has its own columns and
//! its own partial `∂E/∂W`, and the partial sums are added in a fixed order, so the result
//! does not depend on timing. Padding positions are skipped by im2col (they read as 0) and by
//! col2im (their gradient is dropped), so the padded input is never built.
//!
//! A layer with few input channels (a network's first, on images) has thin products
//! (`c·kh·kw = 25` rows of columns as large as the image) that GEMM cannot run at speed:
//! on x86-64 with AVX-512, [`direct`] computes its output, and `flat_grad` its weight
//! gradient, without columns (W6's first layer: forward 520–530 → 177–183 µs, weight
//! gradient 555–562 → 220–235 µs per batch of 64, alternating; with the flat layout of
//! `flat_grad`, 205–235 → 180–189 µs). `∂E/∂X`, when asked for, still goes through GEMM and
//! col2im.

use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::matmul::matmul_into;
use crate::parallel::{MAX_RUNS, parallelism, split_runs_with, split_runs2_with};

#[cfg(target_arch = "x86_64")]
pub mod direct;
#[cfg(target_arch = "x86_64")]
mod direct_avx2;
#[cfg(target_arch = "x86_64")]
mod flat_grad;
#[cfg(target_arch = "x86_64")]
mod rows;

/// The sizes of one call: input `[n, c, h, w]`, output `[n, c_out, oh, ow]`, kernel `k`,
/// stride `s`, zero padding `p` (each as (rows, columns)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Samples.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Kernel size.
    pub k: (usize, usize),
    /// Stride.
    pub s: (usize, usize),
    /// Zero padding on each side.
    pub p: (usize, usize),
}

impl Geometry {
    /// Rows of `colsᵢ`: `c_in·kh·kw`.
    pub fn kdim(&self) -> usize {
        self.c * self.k.0 * self.k.1
    }

    /// Output positions per channel: `oh·ow`.
    pub fn plane(&self) -> usize {
        self.oh * self.ow
    }

    /// How many samples one product takes together: their columns side by side,
    /// `[c·kh·kw, S·oh·ow]`, as many as keep `S·oh·ow ≤` [`GROUP_COLUMNS`] and the columns
    /// within [`GROUP_FLOATS`], at least one; one alone when `oh·ow` is a whole number of
    /// the GEMM kernel's 64-wide blocks ([`FULL_BLOCK`]).
    pub fn group(&self) -> usize {
        let plane = self.plane().max(1);
        if plane.is_multiple_of(FULL_BLOCK) {
            return 1;
        }
        let by_columns = GROUP_COLUMNS / plane;
        let by_size = GROUP_FLOATS / (self.kdim() * plane).max(1);
        by_columns.min(by_size).max(1)
    }

    /// The columns of the samples `group` of the batch `x`, side by side in `cols`
    /// (`[c·kh·kw, len·oh·ow]`): `colsᵢ` of the group's `t`-th sample in columns
    /// `t·oh·ow ..`. Returns the row length `len·oh·ow`.
    fn im2col_group(&self, x: &[f32], group: Range<usize>, cols: &mut [f32]) -> usize {
        let (len, plane) = (self.c * self.h * self.w, self.plane());
        let ld = group.len() * plane;
        for (t, i) in group.enumerate() {
            im2col_strided(&x[i * len..(i + 1) * len], self, &mut cols[t * plane..], ld);
        }
        ld
    }
}

/// The most output positions (columns) one product of a group of samples has.
///
/// Measured (one thread, per sample, the product alone): W6's second layer
/// (`[24, 300]·[300, 100]`) forward 16.8 µs alone, 15.6 in twos, 12.5 in fours;
/// `Wmatᵀ·dY` 17.0, 14.9, 14.2 — 100 columns leave much of the GEMM kernel's second 64-wide
/// block idle. In the layer (two threads, per batch of 64, alternating): forward 851–856 →
/// 790–821 µs, backward 1583–1595 → 1538–1584 µs.
pub const GROUP_COLUMNS: usize = 512;

/// The most floats of columns a training forward pass keeps for the backward pass (4 MiB).
///
/// Measured (two threads, per batch of 64, alternating): W3's second layer (3.3 MB of
/// columns) backward 451–459 → 350–353 µs, forward 226–234 → 232 µs; W6's second layer
/// (7.7 MB, beyond what the caches hold for it) forward 797–812 → 1137–1149 µs and backward
/// 1479–1568 → 1683–1838 µs: it unrolls the input again instead.
pub const KEEP_FLOATS: usize = 1 << 20;

/// The width of the GEMM kernel's blocks of columns. W3's second layer (64 columns, one
/// whole block) gains nothing from groups alone and loses in the layer (forward 229–237 µs
/// alone against 309 in eights: the larger columns leave the core's cache).
pub const FULL_BLOCK: usize = 64;

/// The most floats a group's columns take (512 KiB), so that they and their gradient stay
/// in the core's cache.
pub const GROUP_FLOATS: usize = 128 * 1024;

/// The runs of `group` consecutive samples that `samples` is cut into (the last shorter).
fn groups(samples: Range<usize>, group: usize) -> impl Iterator<Item = Range<usize>> {
    let end = samples.end;
    samples
        .step_by(group.max(1))
        .map(move |i| i..(i + group.max(1)).min(end))
}

/// The working memory of one thread: one sample's columns and the partial gradients of
/// the thread's samples.
#[derive(Debug, Clone, Default)]
struct Run {
    /// `colsᵢ`, `[c_in·kh·kw, oh·ow]`.
    cols: Vec<f32>,
    /// `∂E/∂colsᵢ`, same shape.
    dcols: Vec<f32>,
    /// A group's outputs or output gradients side by side, `[c_out, S·oh·ow]`.
    ys: Vec<f32>,
    /// `Σᵢ colsᵢ·dYᵢᵀ` (= `(∂E/∂Wmat)ᵀ`) over this thread's samples, `[c_in·kh·kw, c_out]`.
    dwt: Vec<f32>,
    /// `Σᵢ Σ_positions dYᵢ` over this thread's samples, `[c_out]`.
    db: Vec<f32>,
    /// The sample with its zero padding, for the direct kernels.
    #[cfg(target_arch = "x86_64")]
    xp: Vec<f32>,
    /// The sample's output gradient widened to the padded rows, for the direct weight
    /// gradient.
    #[cfg(target_arch = "x86_64")]
    dyw: Vec<f32>,
    /// The direct weight gradient's partial sums, 16 per weight.
    #[cfg(target_arch = "x86_64")]
    sums: Vec<f32>,
    /// The first error this thread's run met.
    error: Option<crate::Error>,
}

/// The working memory of the threaded passes, kept by the layer from batch to batch.
#[derive(Debug, Clone, Default)]
pub struct Scratch {
    runs: Vec<Run>,
    /// Whether the forward pass keeps the batch's columns for the backward pass.
    keep: bool,
    /// The columns of the last forward pass, group after group (`[c·kh·kw, S·oh·ow]` each),
    /// when it kept them.
    kept: Vec<f32>,
    /// The geometry `kept` was made for.
    kept_for: Option<Geometry>,
    /// The weight regrouped for the direct forward kernel.
    #[cfg(target_arch = "x86_64")]
    packed: Vec<f32>,
}

impl Scratch {
    /// Whether the forward pass keeps every sample's columns for the backward pass (a layer
    /// training: the backward pass then reads them instead of unrolling the input again),
    /// or keeps none (evaluation: the memory is released).
    pub fn keep_columns(&mut self, on: bool) {
        self.keep = on;
        if !on {
            self.kept = Vec::new();
            self.kept_for = None;
        }
    }

    /// How many floats of columns the last forward pass kept for the backward pass.
    pub fn kept_columns(&self) -> usize {
        if self.kept_for.is_some() {
            self.kept.len()
        } else {
            0
        }
    }

    /// Room for one group's columns per thread (and their gradient, zeroed partial sums
    /// with `backward`), no error. A run a pass does not use keeps zero partial sums, so
    /// adding all of them is exact.
    fn prepare(&mut self, g: &Geometry, backward: bool) {
        let threads = parallelism().clamp(1, MAX_RUNS);
        self.runs.resize_with(threads, Run::default);
        let cols = g.kdim() * g.plane() * g.group();
        for r in &mut self.runs {
            r.cols.resize(cols, 0.0);
            r.ys.resize(g.c_out * g.plane() * g.group(), 0.0);
            r.error = None;
            if backward {
                r.dcols.resize(cols, 0.0);
                r.dwt.clear();
                r.dwt.resize(g.kdim() * g.c_out, 0.0);
                r.db.clear();
                r.db.resize(g.c_out, 0.0);
            }
        }
    }

    /// The first error any thread's run met.
    fn take_error(&mut self) -> Result<()> {
        match self.runs.iter_mut().find_map(|r| r.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// `Y = W ⊛ X (+ b)` for the batch `x` (`[n, c, h, w]`, row-major) into `y`
/// (`[n, c_out, oh, ow]`), with `wmat` the weight as `[c_out, c·kh·kw]`.
///
/// # Errors
/// A shape error from a product (a broken invariant of the caller's geometry).
///
/// # Panics
/// If `x` or `y` does not hold the geometry's sizes.
pub fn forward(
    g: &Geometry,
    x: &[f32],
    wmat: ArrayView2<'_, f32>,
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<()> {
    scratch.kept_for = None;
    #[cfg(target_arch = "x86_64")]
    if direct_applies(g) {
        return forward_direct(g, x, wmat, bias, y, scratch);
    }
    let (kdim, plane) = (g.kdim(), g.plane());
    scratch.prepare(g, false);
    let per = g.c_out * plane;
    let keep = scratch.keep && g.n * kdim * plane <= KEEP_FLOATS;
    if keep {
        scratch.kept.resize(g.n * kdim * plane, 0.0);
    }
    let kept: &mut [f32] = if keep { &mut scratch.kept } else { &mut [] };
    // one run of samples per thread, each with its own columns
    split_runs2_with(
        g.n,
        (y, per),
        (kept, kdim * plane),
        &mut scratch.runs,
        g.n * kdim * plane,
        &|samples, y, kept, sc| {
            let first = samples.start;
            for group in groups(samples, g.group()) {
                let out = &mut y[(group.start - first) * per..(group.end - first) * per];
                let cols = (!kept.is_empty()).then(|| {
                    let at = (group.start - first) * kdim * plane;
                    &mut kept[at..at + group.len() * kdim * plane]
                });
                if let Err(e) = forward_group(g, x, group, wmat, out, cols, sc) {
                    sc.error.get_or_insert(e);
                    return;
                }
                if let Some(b) = bias {
                    for (row, &bo) in out.chunks_exact_mut(plane).zip(b.iter().cycle()) {
                        row.iter_mut().for_each(|v| *v += bo); // + b[o]
                    }
                }
            }
        },
    );
    scratch.take_error()?;
    scratch.kept_for = keep.then_some(*g);
    Ok(())
}

/// `Yᵢ = Wmat·colsᵢ` for the samples `group`, into their outputs `out` (`[len, c_out,
/// oh·ow]`): one product over the group's columns side by side, written straight into
/// `out` for a group of one, else into the run's buffer and then sample by sample.
fn forward_group(
    g: &Geometry,
    x: &[f32],
    group: Range<usize>,
    wmat: ArrayView2<'_, f32>,
    out: &mut [f32],
    keep: Option<&mut [f32]>,
    sc: &mut Run,
) -> Result<()> {
    let (kdim, plane, len) = (g.kdim(), g.plane(), group.len());
    let cols: &mut [f32] = match keep {
        Some(kept) => kept,
        None => &mut sc.cols,
    };
    let ld = g.im2col_group(x, group, cols);
    let cols = ArrayView2::from_shape((kdim, ld), &cols[..kdim * ld]).expect("sized");
    if len == 1 {
        let mut yi = ArrayViewMut2::from_shape((g.c_out, plane), out).expect("sized");
        return matmul_into(1.0, wmat, cols, 0.0, &mut yi); // Yᵢ = Wmat·colsᵢ
    }
    let ys = &mut sc.ys[..g.c_out * ld];
    let mut yg = ArrayViewMut2::from_shape((g.c_out, ld), &mut *ys).expect("sized");
    matmul_into(1.0, wmat, cols, 0.0, &mut yg)?; // [Y₁ … Y_S] = Wmat·[cols₁ … cols_S]
    for (t, yi) in out.chunks_exact_mut(g.c_out * plane).enumerate() {
        for (o, row) in yi.chunks_exact_mut(plane).enumerate() {
            row.copy_from_slice(&ys[o * ld + t * plane..o * ld + (t + 1) * plane]);
        }
    }
    Ok(())
}

/// [`forward`] by the direct kernels (see [`direct`]).
#[cfg(target_arch = "x86_64")]
fn forward_direct(
    g: &Geometry,
    x: &[f32],
    wmat: ArrayView2<'_, f32>,
    bias: Option<&[f32]>,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<()> {
    let threads = parallelism().clamp(1, MAX_RUNS);
    scratch.runs.resize_with(threads, Run::default);
    direct::pack_weights(g, wmat, &mut scratch.packed);
    let (per_in, per_out) = (g.c * g.h * g.w, g.c_out * g.plane());
    let packed = &scratch.packed;
    split_runs_with(
        g.n,
        (y, per_out),
        &mut scratch.runs,
        g.n * g.kdim() * g.plane(),
        &|samples, y, sc| {
            for (j, i) in samples.enumerate() {
                direct::pad(g, &x[i * per_in..(i + 1) * per_in], &mut sc.xp);
                direct::forward_sample(
                    g,
                    &sc.xp,
                    packed,
                    bias,
                    &mut y[j * per_out..(j + 1) * per_out],
                );
            }
        },
    );
    Ok(())
}

/// Adds `∂E/∂W` into `dw` (`[c_out, c·kh·kw]`, row-major) and `∂E/∂b` into `db`, and writes
/// `∂E/∂X` into `dx` when given, for the batch `x` and the output gradient `dy`.
///
/// # Errors
/// A shape error from a product (a broken invariant of the caller's geometry).
///
/// # Panics
/// If a slice does not hold the geometry's sizes.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Geometry,
    x: &[f32],
    wmat: ArrayView2<'_, f32>,
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    dx: Option<&mut [f32]>,
    scratch: &mut Scratch,
) -> Result<()> {
    let kdim = g.kdim();
    scratch.prepare(g, true);
    // the direct kernels take the parameter gradients where they apply; im2col and GEMM
    // take the rest (the same kernel either way, so the parameter gradients do not depend
    // on whether ∂E/∂X is asked for)
    let direct = direct_grad_applies(g);
    #[cfg(target_arch = "x86_64")]
    if direct {
        weight_grad_direct(g, x, dy, scratch);
    }
    if !direct || dx.is_some() {
        backward_runs(g, x, wmat, dy, dx, !direct, scratch)?;
    }
    // add the threads' partial sums in a fixed order
    for r in &scratch.runs {
        for (o, row) in dw.chunks_exact_mut(kdim).enumerate() {
            for (k, g_ok) in row.iter_mut().enumerate() {
                *g_ok += r.dwt[k * g.c_out + o]; // ∂E/∂Wmat[o, k] += (∂E/∂Wmat)ᵀ[k, o]
            }
        }
    }
    if let Some(db) = db {
        for r in &scratch.runs {
            db.iter_mut().zip(&r.db).for_each(|(g, &p)| *g += p);
        }
    }
    Ok(())
}

/// The threaded part of [`backward`] through im2col and GEMM: one run of samples per
/// thread, each with its own scratch and partial gradients.
fn backward_runs(
    g: &Geometry,
    x: &[f32],
    wmat: ArrayView2<'_, f32>,
    dy: &[f32],
    dx: Option<&mut [f32]>,
    params: bool,
    scratch: &mut Scratch,
) -> Result<()> {
    let dx: &mut [f32] = dx.unwrap_or_default();
    let (per_out, per_in, per_cols) = (g.c_out * g.plane(), g.c * g.h * g.w, g.kdim() * g.plane());
    // the forward pass's columns, when it kept them for this geometry
    let kept: &[f32] = match scratch.kept_for {
        Some(k) if k == *g => &scratch.kept,
        _ => &[],
    };
    split_runs_with(
        g.n,
        (dx, per_in),
        &mut scratch.runs,
        g.n * g.kdim() * g.plane(),
        &|samples, dx, sc| {
            let first = samples.start;
            for group in groups(samples, g.group()) {
                let dyg = &dy[group.start * per_out..group.end * per_out];
                let out = (&mut dx[..], (group.start - first) * per_in);
                let cols =
                    (!kept.is_empty()).then(|| &kept[group.start * per_cols..group.end * per_cols]);
                let input = (x, group, cols);
                if let Err(e) = group_backward(g, input, wmat, dyg, sc, out, params) {
                    sc.error.get_or_insert(e);
                    return;
                }
            }
        },
    );
    scratch.take_error()
}

/// The threaded part of [`backward`] by the direct kernels, when no `∂E/∂X` is asked for
/// (see [`direct`]): the runs' bias and weight gradients.
#[cfg(target_arch = "x86_64")]
fn weight_grad_direct(g: &Geometry, x: &[f32], dy: &[f32], scratch: &mut Scratch) {
    let (per_out, per_in) = (g.c_out * g.plane(), g.c * g.h * g.w);
    let none: &mut [f32] = &mut [];
    split_runs_with(
        g.n,
        (none, 0),
        &mut scratch.runs,
        g.n * g.kdim() * g.plane(),
        &|samples, _, sc| {
            sc.sums.clear();
            sc.sums.resize(g.c_out * g.kdim() * 16, 0.0);
            let flat = flat_grad::Flat::new(g);
            for i in samples {
                let dyi = &dy[i * per_out..(i + 1) * per_out];
                flat_grad::pad(g, &flat, &x[i * per_in..(i + 1) * per_in], &mut sc.xp);
                flat_grad::widen(g, &flat, dyi, &mut sc.dyw, &mut sc.db); // and ∂E/∂b
                flat_grad::weight_grad_sample(g, &flat, &sc.xp, &sc.dyw, &mut sc.sums);
            }
            flat_grad::fold_sums(g, &sc.sums, &mut sc.dwt);
        },
    );
}

/// One group of samples' share of [`backward`] (`x` the batch, `dyg` the group's output
/// gradients, `kept` their columns when the forward pass kept them): their bias and weight
/// gradients into the run's partial sums when `params`, and `∂E/∂Xᵢ` into `dx[at..]`
/// unless `dx` is empty.
fn group_backward(
    g: &Geometry,
    (x, group, kept): (&[f32], Range<usize>, Option<&[f32]>),
    wmat: ArrayView2<'_, f32>,
    dyg: &[f32],
    sc: &mut Run,
    (dx, at): (&mut [f32], usize),
    params: bool,
) -> Result<()> {
    let (kdim, plane, len) = (g.kdim(), g.plane(), group.len());
    let (per_in, per_out, ld) = (g.c * g.h * g.w, g.c_out * plane, len * plane);
    let Run {
        cols,
        dcols,
        ys,
        dwt,
        db,
        ..
    } = sc;
    // [dY₁ … dY_S], [c_out, S·oh·ow]: the group's output gradients side by side
    let dys = if len == 1 {
        &dyg[..per_out]
    } else {
        for (t, dyi) in dyg.chunks_exact(per_out).enumerate() {
            for (o, row) in dyi.chunks_exact(plane).enumerate() {
                ys[o * ld + t * plane..o * ld + (t + 1) * plane].copy_from_slice(row);
            }
        }
        &ys[..g.c_out * ld]
    };
    let dys = ArrayView2::from_shape((g.c_out, ld), dys).expect("sized by prepare");
    if params {
        dyg.chunks_exact(per_out)
            .for_each(|dyi| add_bias_grad(db, dyi, plane));
        let cols: &[f32] = match kept {
            Some(kept) => kept, // unrolled by the forward pass
            None => {
                g.im2col_group(x, group, cols);
                cols
            }
        };
        let cols = ArrayView2::from_shape((kdim, ld), &cols[..kdim * ld]).expect("sized");
        let mut dwt = ArrayViewMut2::from_shape((kdim, g.c_out), &mut dwt[..]).expect("sized");
        // (∂E/∂Wmat)ᵀ += Σᵢ colsᵢ·dYᵢᵀ: the transpose of dYᵢ·colsᵢᵀ, into a row-major
        // scratch (twice as fast as writing ∂E/∂Wmat's columns in place)
        matmul_into(1.0, cols, dys.t(), 1.0, &mut dwt)?;
    }
    if dx.is_empty() {
        return Ok(()); // parameter gradients only (the first layer of a network)
    }
    let mut dc = ArrayViewMut2::from_shape((kdim, ld), &mut dcols[..kdim * ld]).expect("sized");
    matmul_into(1.0, wmat.t(), dys, 0.0, &mut dc)?; // ∂E/∂colsᵢ = Wmatᵀ·dYᵢ, side by side
    for (t, dxi) in dx[at..at + len * per_in]
        .chunks_exact_mut(per_in)
        .enumerate()
    {
        col2im_strided(&dcols[t * plane..], g, dxi, ld); // ∂E/∂Xᵢ
    }
    Ok(())
}

/// `∂E/∂b[o] += Σ dYᵢ[o, ·]` for one sample's `dYᵢ` (`[c_out, plane]`).
fn add_bias_grad(db: &mut [f32], dyi: &[f32], plane: usize) {
    for (g_o, row) in db.iter_mut().zip(dyi.chunks_exact(plane)) {
        *g_o += crate::ops::sum(row);
    }
}

/// Whether the direct kernels take this geometry.
#[cfg(target_arch = "x86_64")]
fn direct_applies(g: &Geometry) -> bool {
    direct::applies(g)
}

/// Whether the direct weight gradient takes this geometry.
#[cfg(target_arch = "x86_64")]
fn direct_grad_applies(g: &Geometry) -> bool {
    direct::grad_applies(g)
}

/// Whether the direct weight gradient takes this geometry (never off x86-64).
#[cfg(not(target_arch = "x86_64"))]
fn direct_grad_applies(_: &Geometry) -> bool {
    false
}

/// Sample `x` (`[c, h, w]`) with its zero padding into `xp`: `[c, h + 2·ph, row]` (rows of
/// `row ≥ w + 2·pw` floats), the sample from row `ph`, column `pw` of each channel. (Used by
/// the x86-64 kernels: the direct convolution and the AVX2 im2col.)
#[cfg(target_arch = "x86_64")]
fn pad_sample(g: &Geometry, x: &[f32], row: usize, xp: &mut Vec<f32>) {
    let (ph, pw) = g.p;
    let hp = g.h + 2 * ph;
    xp.clear();
    xp.resize(g.c * hp * row, 0.0); // the border stays 0
    for ci in 0..g.c {
        for r in 0..g.h {
            let src = &x[(ci * g.h + r) * g.w..][..g.w];
            let at = (ci * hp + r + ph) * row + pw;
            xp[at..at + g.w].copy_from_slice(src); // Xp[c, r + ph, q + pw] = X[c, r, q]
        }
    }
}

/// The output columns `lo..hi` whose tap `v` falls inside the input row (`0 ≤ x·s + v − p < w`);
/// the others read the zero padding.
fn taps(ow: usize, s: usize, v: usize, p: usize, w: usize) -> (usize, usize) {
    let lo = if v >= p { 0 } else { (p - v).div_ceil(s) };
    let hi = if w + p > v {
        ((w + p - v - 1) / s + 1).min(ow) // (w + p − v ≥ 1 here, also for an empty row)
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
///
/// # Panics
/// If `x` or `cols` is shorter than the geometry says.
pub fn im2col(x: &[f32], g: &Geometry, cols: &mut [f32]) {
    im2col_strided(x, g, cols, g.plane());
}

/// [`im2col`] into rows `ld` floats apart (`ld ≥ oh·ow`): a sample's columns inside the
/// wider matrix of a group of samples, `[c·kh·kw, ld]`, starting at `cols[0]`.
fn im2col_strided(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) {
    #[cfg(target_arch = "x86_64")]
    if rows::try_im2col(x, g, cols, ld) || rows::try_im2col_avx2(x, g, cols, ld) {
        return;
    }
    im2col_portable(x, g, cols, ld);
}

/// [`im2col_strided`] by portable loops (inlined into an AVX2 build of them, `rows`).
#[inline(always)]
pub(super) fn im2col_portable(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) {
    let Geometry {
        c,
        h,
        w,
        k,
        s,
        p,
        oh,
        ow,
        ..
    } = *g;
    let plane = oh * ow;
    if s == (1, 1) && p == (0, 0) {
        // The common case, without padding or stride: the k shifted copies of each input
        // row are written while the row is in the cache (W3's second layer: 225 µs per
        // batch against 320 through the general loop below).
        for ci in 0..c {
            for u in 0..k.0 {
                for y in 0..oh {
                    let at = (ci * h + y + u) * w;
                    for v in 0..k.1 {
                        let r = (ci * k.0 + u) * k.1 + v;
                        let row = &mut cols[r * ld..r * ld + plane];
                        // cols[(c, u, v), (y, x)] = X[c, y + u, x + v]
                        let (from, to) = (at + v, y * ow);
                        if ow < 16 && to + 16 <= row.len() && from + 16 <= x.len() {
                            // one 16-float block: the overhang lands on (y + 1)'s place in this
                            // row, which the next y overwrites
                            let src: &[f32; 16] = x[from..from + 16].try_into().expect("16");
                            let dst: &mut [f32; 16] =
                                (&mut row[to..to + 16]).try_into().expect("16");
                            *dst = *src;
                        } else {
                            copy_row(&mut row[to..to + ow], &x[from..from + ow]);
                        }
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
                let out = &mut cols[row * ld..row * ld + plane];
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
///
/// # Panics
/// If `cols` or `dx` is shorter than the geometry says.
pub fn col2im(cols: &[f32], g: &Geometry, dx: &mut [f32]) {
    col2im_strided(cols, g, dx, g.plane());
}

/// [`col2im`] from rows `ld` floats apart (a sample's columns inside a group's matrix).
fn col2im_strided(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) {
    #[cfg(target_arch = "x86_64")]
    if rows::try_col2im(cols, g, dx, ld) || rows::try_col2im_avx2(cols, g, dx, ld) {
        return; // every entry of dx written
    }
    col2im_portable(cols, g, dx, ld);
}

/// [`col2im_strided`] by portable loops (inlined into an AVX2 build of them, `rows`).
#[inline(always)]
pub(super) fn col2im_portable(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) {
    let Geometry {
        c,
        h,
        w,
        k,
        s,
        p,
        oh,
        ow,
        ..
    } = *g;
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
                let col = &cols[row * ld..row * ld + plane];
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `cols[(c, u, v), (y, x)]` straight from the definition: the padded input at
    /// `(y·sh + u − ph, x·sw + v − pw)`, 0 outside.
    fn im2col_by_definition(x: &[f32], g: &Geometry) -> Vec<f32> {
        let mut cols = vec![f32::NAN; g.kdim() * g.plane()];
        for (ci, u, v) in
            (0..g.c).flat_map(|c| (0..g.k.0).flat_map(move |u| (0..g.k.1).map(move |v| (c, u, v))))
        {
            for (y, xo) in (0..g.oh).flat_map(|y| (0..g.ow).map(move |xo| (y, xo))) {
                let r = (y * g.s.0 + u) as isize - g.p.0 as isize;
                let q = (xo * g.s.1 + v) as isize - g.p.1 as isize;
                let inside = (0..g.h as isize).contains(&r) && (0..g.w as isize).contains(&q);
                let value = if inside {
                    x[(ci * g.h + r as usize) * g.w + q as usize]
                } else {
                    0.0
                };
                cols[((ci * g.k.0 + u) * g.k.1 + v) * g.plane() + y * g.ow + xo] = value;
            }
        }
        cols
    }

    /// One sample of `c` channels, one output channel, a square kernel `k`, stride `s` and
    /// padding `p` on both axes.
    pub(super) fn geometry(
        c: usize,
        (h, w): (usize, usize),
        k: usize,
        s: usize,
        p: usize,
    ) -> Geometry {
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
        Geometry {
            n: 1,
            c,
            h,
            w,
            c_out: 1,
            oh,
            ow,
            k: (k, k),
            s: (s, s),
            p: (p, p),
        }
    }

    /// Every path of im2col (unpadded rows shorter and longer than a 16-float block, padded,
    /// strided; the AVX-512 and AVX2 rows where the CPU has them and the portable loops
    /// everywhere)
    /// against the definition, also into rows wider than one sample's (a group's matrix),
    /// and col2im as its transpose: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
    #[test]
    fn im2col_and_col2im_match_the_definition() {
        let cases = [
            geometry(12, (14, 14), 5, 1, 0), // W6's second layer: rows of 10
            geometry(2, (20, 30), 3, 1, 0),  // rows of 28
            geometry(3, (16, 16), 1, 1, 0),  // rows of 16, input rows of 16
            geometry(2, (16, 9), 3, 1, 0),   // rows of 7
            geometry(8, (12, 12), 5, 1, 0),  // W3's second layer: rows of 8, in chunks of 16
            geometry(2, (7, 9), 3, 1, 0),    // rows of 7, an odd number (5) of them
            geometry(1, (9, 3), 3, 1, 0),    // rows of 1
            geometry(1, (66, 11), 3, 1, 0),  // rows of 9, more than 32 chunks: row by row
            geometry(1, (26, 20), 19, 1, 0), // rows of 2, 20 apart: chunks too wide, row by row
            geometry(1, (28, 28), 5, 1, 2),  // W6's first layer: padded
            geometry(2, (9, 19), 3, 1, 1), // padded, two channels, rows of 19 (a block of 8 between the ends)
            geometry(2, (6, 7), 2, 1, 1),  // padded, rows of exactly 8
            geometry(1, (0, 0), 1, 1, 4),  // padding alone: no input, 9×9 zero outputs
            geometry(3, (9, 7), 3, 2, 1),  // strided and padded
            geometry(2, (9, 9), 3, 2, 0),  // strided
            Geometry {
                k: (2, 1),
                oh: 2,
                ..geometry(1, (3, 2), 1, 3, 2) // padded, strided, sizes as if neither
            },
            geometry(2, (5, 5), 5, 1, 0), // one output
        ];
        type Im2col = fn(&[f32], &Geometry, &mut [f32], usize);
        type Col2im = fn(&[f32], &Geometry, &mut [f32], usize);
        #[allow(unused_mut)]
        let mut paths: Vec<(Im2col, Col2im)> = vec![
            (im2col_strided, col2im_strided),
            (im2col_portable, col2im_portable),
        ];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // the portable loops' AVX2 build, for every geometry (with AVX-512 the rows
            // kernels take the unpadded ones in `im2col_strided`)
            paths.push((
                |x, g, cols, ld| assert!(rows::try_im2col_avx2(x, g, cols, ld)),
                |cols, g, dx, ld| assert!(rows::try_col2im_avx2(cols, g, dx, ld)),
            ));
        }
        for (g, (to_cols, to_image)) in cases
            .iter()
            .flat_map(|g| paths.iter().map(move |&p| (g, p)))
        {
            let (len, plane) = (g.c * g.h * g.w, g.plane());
            let x: Vec<f32> = (0..len).map(|i| (i * 31 % 97) as f32 - 48.0).collect();
            let want = im2col_by_definition(&x, g);
            for ld in [plane, plane + 5] {
                // sample 1 of a pair whose rows are `ld` apart: columns ld − plane … ld − 1
                let at = ld - plane;
                let mut wide = vec![f32::NAN; g.kdim() * ld];
                to_cols(&x, g, &mut wide[at..], ld);
                let cols: Vec<f32> = wide
                    .chunks_exact(ld)
                    .flat_map(|r| r[at..].to_vec())
                    .collect();
                assert_eq!(cols, want, "{g:?}, ld {ld}");
                let c: Vec<f32> = (0..wide.len()).map(|i| (i * 7 % 13) as f32 - 6.0).collect();
                let mut dx = vec![f32::NAN; len];
                to_image(&c[at..], g, &mut dx, ld);
                let lhs: f64 = (0..g.kdim() * plane)
                    .map(|j| (want[j] * c[(j / plane) * ld + at + j % plane]) as f64)
                    .sum();
                let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
                assert_eq!(lhs, rhs, "{g:?}, ld {ld}");
            }
        }
        // the public entry points: one sample's columns
        let g = cases[0];
        let x: Vec<f32> = (0..g.c * g.h * g.w).map(|i| i as f32).collect();
        let mut cols = vec![f32::NAN; g.kdim() * g.plane()];
        im2col(&x, &g, &mut cols);
        assert_eq!(cols, im2col_by_definition(&x, &g));
        let mut dx = vec![f32::NAN; x.len()];
        col2im(&vec![1.0; cols.len()], &g, &mut dx);
        assert_eq!(dx[0], 1.0, "X[0, 0, 0] is read by one tap"); // (u, v) = (0, 0), y = x = 0
        assert_eq!(dx[4 * g.w + 4], 25.0, "X[0, 4, 4] by all 25");
    }

    /// A training forward pass keeps the columns (within [`KEEP_FLOATS`]) and the backward
    /// pass reads them: the gradients are the same bits as when it unrolls the input again
    /// (seven samples in groups of three, so that runs hold several groups); evaluation
    /// releases them; a backward pass for another geometry unrolls its own input.
    #[test]
    fn kept_columns_give_the_same_gradients() {
        let g = Geometry {
            n: 7,
            c_out: 2,
            ..geometry(4, (14, 14), 3, 1, 0)
        };
        assert_eq!(g.group(), 3);
        let (kdim, per_in) = (g.kdim(), g.c * g.h * g.w);
        let input = |n: usize| -> Vec<f32> {
            (0..n * per_in)
                .map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0)
                .collect()
        };
        let x = input(g.n);
        let w: Vec<f32> = (0..g.c_out * kdim)
            .map(|i| (i * 13 % 29) as f32 / 14.0 - 1.0)
            .collect();
        let dy: Vec<f32> = (0..g.n * g.c_out * g.plane())
            .map(|i| (i % 7) as f32 - 3.0)
            .collect();
        let wmat = ArrayView2::from_shape((g.c_out, kdim), &w[..]).unwrap();
        // the forward pass on `x`, then the backward pass handed `xb` for geometry `gb`
        let run = |keep: bool, xb: &[f32], gb: Geometry| {
            let mut scratch = Scratch::default();
            scratch.keep_columns(keep);
            let mut y = vec![0.0; g.n * g.c_out * g.plane()];
            forward(&g, &x, wmat, None, &mut y, &mut scratch).unwrap();
            assert_eq!(scratch.kept_for, keep.then_some(g));
            assert_eq!(
                scratch.kept.len(),
                if keep { g.n * kdim * g.plane() } else { 0 }
            );
            let (mut dw, mut dx) = (vec![0.0; w.len()], vec![0.0; xb.len()]);
            let dyb = &dy[..gb.n * g.c_out * g.plane()];
            backward(
                &gb,
                xb,
                wmat,
                dyb,
                &mut dw,
                None,
                Some(&mut dx),
                &mut scratch,
            )
            .unwrap();
            scratch.keep_columns(false);
            assert!(scratch.kept_for.is_none() && scratch.kept.capacity() == 0);
            (y, dw, dx)
        };
        let kept = run(true, &x, g);
        assert_eq!(kept, run(false, &x, g));
        // the kept columns are what the weight gradient reads: handed another input (which
        // the layer contract rules out), it is still the forward input's
        let zeros = vec![0.0; x.len()];
        assert_eq!(run(true, &zeros, g).1, kept.1);
        assert_ne!(run(false, &zeros, g).1, kept.1);
        // five samples: not the kept geometry, so their own columns
        let g5 = Geometry { n: 5, ..g };
        let x5 = input(5).iter().map(|v| -v).collect::<Vec<f32>>();
        assert_eq!(run(true, &x5, g5).1, run(false, &x5, g5).1);
        // too large a batch to keep: unrolled again
        let mut scratch = Scratch::default();
        scratch.keep_columns(true);
        let big = Geometry {
            n: KEEP_FLOATS / (kdim * g.plane()) + 1,
            ..g
        };
        let xb = vec![0.5f32; big.n * per_in];
        let mut yb = vec![0.0; big.n * g.c_out * g.plane()];
        forward(&big, &xb, wmat, None, &mut yb, &mut scratch).unwrap();
        assert!(scratch.kept_for.is_none());
    }

    /// Samples go in groups when their positions leave the GEMM kernel's blocks part idle:
    /// W6's second layer (100 positions) in fours (columns within 512 KiB), W3's (64, one
    /// whole block) alone, and never fewer than one.
    #[test]
    fn group_sizes() {
        assert_eq!(geometry(12, (14, 14), 5, 1, 0).group(), 4);
        assert_eq!(geometry(8, (12, 12), 5, 1, 0).group(), 1);
        assert_eq!(geometry(1, (40, 40), 3, 1, 0).group(), 1); // 38² positions
        assert_eq!(geometry(2, (5, 5), 5, 1, 0).group(), 512); // one position each
    }

    /// The threaded passes with samples taken in groups (three per product here: 12×12
    /// outputs, 144 columns each), seven samples so that a run ends on a shorter group,
    /// against the definition in f64: `Y[i, o] = Σ_k Wmat[o, k]·colsᵢ[k, ·] + b[o]`,
    /// `∂E/∂Wmat[o, k] = Σᵢ dYᵢ[o, ·]·colsᵢ[k, ·]`, `∂E/∂b[o] = Σ dY[·, o, ·]`, and
    /// `∂E/∂X[i, c, r, q] = Σ W[o, c, u, v]·dY[i, o, y, x]` over the taps that read `(r, q)`.
    #[test]
    fn grouped_products_match_the_definition() {
        let g = Geometry {
            n: 7,
            c_out: 3,
            ..geometry(4, (14, 14), 3, 1, 0)
        };
        assert_eq!((g.plane(), g.group()), (144, 3));
        let (kdim, plane, per_in) = (g.kdim(), g.plane(), g.c * g.h * g.w);
        let x: Vec<f32> = (0..g.n * per_in)
            .map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0)
            .collect();
        let w: Vec<f32> = (0..g.c_out * kdim)
            .map(|i| (i * 13 % 29) as f32 / 14.0 - 1.0)
            .collect();
        let b = [0.5f32, -0.25, 1.0];
        let dy: Vec<f32> = (0..g.n * g.c_out * plane)
            .map(|i| (i * 7 % 23) as f32 / 11.0 - 1.0)
            .collect();
        let wmat = ArrayView2::from_shape((g.c_out, kdim), &w[..]).unwrap();
        let mut scratch = Scratch::default();
        let mut y = vec![f32::NAN; g.n * g.c_out * plane];
        forward(&g, &x, wmat, Some(&b), &mut y, &mut scratch).unwrap();
        let (mut dw, mut db, mut dx) =
            (vec![0.0f32; w.len()], [0.0f32; 3], vec![f32::NAN; x.len()]);
        backward(
            &g,
            &x,
            wmat,
            &dy,
            &mut dw,
            Some(&mut db),
            Some(&mut dx),
            &mut scratch,
        )
        .unwrap();
        let close = |a: f32, b: f64| (a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs());
        let (mut dw_ref, mut db_ref) = (vec![0.0f64; w.len()], [0.0f64; 3]);
        let mut dx_ref = vec![0.0f64; x.len()];
        for i in 0..g.n {
            let cols = im2col_by_definition(&x[i * per_in..(i + 1) * per_in], &g);
            for (o, pos) in (0..g.c_out).flat_map(|o| (0..plane).map(move |p| (o, p))) {
                let at = (i * g.c_out + o) * plane + pos;
                let sum: f64 = (0..kdim)
                    .map(|k| w[o * kdim + k] as f64 * cols[k * plane + pos] as f64)
                    .sum();
                assert!(close(y[at], sum + b[o] as f64), "y[{i}, {o}, {pos}]");
                db_ref[o] += dy[at] as f64;
                for k in 0..kdim {
                    dw_ref[o * kdim + k] += dy[at] as f64 * cols[k * plane + pos] as f64;
                    let (ci, u, v) = (k / 9, k / 3 % 3, k % 3);
                    let (r, q) = (pos / g.ow + u, pos % g.ow + v);
                    dx_ref[i * per_in + (ci * g.h + r) * g.w + q] +=
                        w[o * kdim + k] as f64 * dy[at] as f64;
                }
            }
        }
        assert!(dw.iter().zip(&dw_ref).all(|(&a, &b)| close(a, b)), "∂E/∂W");
        assert!(db.iter().zip(&db_ref).all(|(&a, &b)| close(a, b)), "∂E/∂b");
        assert!(dx.iter().zip(&dx_ref).all(|(&a, &b)| close(a, b)), "∂E/∂X");
    }
}
