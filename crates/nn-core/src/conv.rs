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
//! writes the output in place. `colsᵢ` is small enough to stay in the core's cache, so it is
//! rebuilt from the input in the backward pass instead of being stored for the whole batch.
//! The batch is cut into one run of samples per thread; each thread has its own columns and
//! its own partial `∂E/∂W`, and the partial sums are added in a fixed order, so the result
//! does not depend on timing. Padding positions are skipped by im2col (they read as 0) and by
//! col2im (their gradient is dropped), so the padded input is never built.
//!
//! A layer with few input channels (a network's first, on images) has thin products
//! (`c·kh·kw = 25` rows of columns as large as the image) that GEMM cannot run at speed:
//! on x86-64 with AVX-512, [`direct`] computes its output and weight gradient without
//! columns (W6's first layer: forward 520–530 → 177–183 µs, weight gradient 555–562 →
//! 220–235 µs per batch of 64, alternating). `∂E/∂X`, when asked for, still goes through
//! GEMM and col2im.

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::error::Result;
use crate::matmul::matmul_into;
use crate::parallel::{MAX_RUNS, parallelism, split_runs_with};

#[cfg(target_arch = "x86_64")]
pub mod direct;

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

    /// `colsᵢ ← im2col(Xᵢ)` for sample `i` of the batch `x`.
    fn im2col_sample(&self, x: &[f32], i: usize, cols: &mut [f32]) {
        let len = self.c * self.h * self.w;
        im2col(&x[i * len..(i + 1) * len], self, cols);
    }
}

/// The working memory of one thread: one sample's columns and the partial gradients of
/// the thread's samples.
#[derive(Debug, Clone, Default)]
struct Run {
    /// `colsᵢ`, `[c_in·kh·kw, oh·ow]`.
    cols: Vec<f32>,
    /// `∂E/∂colsᵢ`, same shape.
    dcols: Vec<f32>,
    /// `Σᵢ colsᵢ·dYᵢᵀ` (= `(∂E/∂Wmat)ᵀ`) over this thread's samples, `[c_in·kh·kw, c_out]`.
    dwt: Vec<f32>,
    /// `Σᵢ Σ_positions dYᵢ` over this thread's samples, `[c_out]`.
    db: Vec<f32>,
    /// The sample with its zero padding, for the direct kernels.
    #[cfg(target_arch = "x86_64")]
    xp: Vec<f32>,
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
    /// The weight regrouped for the direct forward kernel.
    #[cfg(target_arch = "x86_64")]
    packed: Vec<f32>,
}

impl Scratch {
    /// Room for one sample's columns per thread (and their gradient, zeroed partial sums
    /// with `backward`), no error. A run a pass does not use keeps zero partial sums, so
    /// adding all of them is exact.
    fn prepare(&mut self, g: &Geometry, backward: bool) {
        let threads = parallelism().clamp(1, MAX_RUNS);
        self.runs.resize_with(threads, Run::default);
        let cols = g.kdim() * g.plane();
        for r in &mut self.runs {
            r.cols.resize(cols, 0.0);
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
    #[cfg(target_arch = "x86_64")]
    if direct_applies(g) {
        return forward_direct(g, x, wmat, bias, y, scratch);
    }
    let (kdim, plane) = (g.kdim(), g.plane());
    scratch.prepare(g, false);
    let per = g.c_out * plane;
    // one run of samples per thread, each with its own columns
    split_runs_with(
        g.n,
        (y, per),
        &mut scratch.runs,
        g.n * kdim * plane,
        &|samples, y, sc| {
            for (j, i) in samples.enumerate() {
                g.im2col_sample(x, i, &mut sc.cols);
                let cols =
                    ArrayView2::from_shape((kdim, plane), &sc.cols[..]).expect("sized above");
                let out = &mut y[j * per..(j + 1) * per];
                let mut yi = ArrayViewMut2::from_shape((g.c_out, plane), &mut *out)
                    .expect("sized by the caller");
                // Yᵢ = Wmat·colsᵢ
                if let Err(e) = matmul_into(1.0, wmat, cols, 0.0, &mut yi) {
                    sc.error.get_or_insert(e);
                    return;
                }
                if let Some(b) = bias {
                    for (row, &bo) in out.chunks_exact_mut(plane).zip(b) {
                        row.iter_mut().for_each(|v| *v += bo); // + b[o]
                    }
                }
            }
        },
    );
    scratch.take_error()
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
    let direct = direct_applies(g);
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
    let (per_out, per_in) = (g.c_out * g.plane(), g.c * g.h * g.w);
    split_runs_with(
        g.n,
        (dx, per_in),
        &mut scratch.runs,
        g.n * g.kdim() * g.plane(),
        &|samples, dx, sc| {
            for (j, i) in samples.enumerate() {
                let dyi = &dy[i * per_out..(i + 1) * per_out];
                let out = (&mut dx[..], j * per_in);
                if let Err(e) = sample_backward(g, (x, i), wmat, dyi, sc, out, params) {
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
            for i in samples {
                let dyi = &dy[i * per_out..(i + 1) * per_out];
                add_bias_grad(&mut sc.db, dyi, g.plane());
                direct::pad(g, &x[i * per_in..(i + 1) * per_in], &mut sc.xp);
                direct::weight_grad_sample(g, &sc.xp, dyi, &mut sc.sums);
            }
            direct::fold_sums(g, &sc.sums, &mut sc.dwt);
        },
    );
}

/// One sample's share of [`backward`]: its bias and weight gradients into the run's
/// partial sums when `params`, and `∂E/∂Xᵢ` into `dx[at..]` unless `dx` is empty.
fn sample_backward(
    g: &Geometry,
    (x, i): (&[f32], usize),
    wmat: ArrayView2<'_, f32>,
    dyi: &[f32],
    sc: &mut Run,
    (dx, at): (&mut [f32], usize),
    params: bool,
) -> Result<()> {
    let (kdim, plane) = (g.kdim(), g.plane());
    let dyv = ArrayView2::from_shape((g.c_out, plane), dyi).expect("sized by the caller");
    if params {
        add_bias_grad(&mut sc.db, dyi, plane);
        g.im2col_sample(x, i, &mut sc.cols);
        let cols = ArrayView2::from_shape((kdim, plane), &sc.cols[..]).expect("sized by prepare");
        let mut dwt =
            ArrayViewMut2::from_shape((kdim, g.c_out), &mut sc.dwt[..]).expect("sized by prepare");
        // (∂E/∂Wmat)ᵀ += colsᵢ·dYᵢᵀ: the transpose of dYᵢ·colsᵢᵀ, into a row-major scratch
        // (twice as fast as writing ∂E/∂Wmat's columns in place)
        matmul_into(1.0, cols, dyv.t(), 1.0, &mut dwt)?;
    }
    if dx.is_empty() {
        return Ok(()); // parameter gradients only (the first layer of a network)
    }
    let mut dcols =
        ArrayViewMut2::from_shape((kdim, plane), &mut sc.dcols[..]).expect("sized by prepare");
    matmul_into(1.0, wmat.t(), dyv, 0.0, &mut dcols)?; // ∂E/∂colsᵢ = Wmatᵀ·dYᵢ
    let len = g.c * g.h * g.w;
    col2im(&sc.dcols, g, &mut dx[at..at + len]); // ∂E/∂Xᵢ
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

/// Whether the direct kernels take this geometry (never off x86-64).
#[cfg(not(target_arch = "x86_64"))]
fn direct_applies(_: &Geometry) -> bool {
    false
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
///
/// # Panics
/// If `x` or `cols` is shorter than the geometry says.
pub fn im2col(x: &[f32], g: &Geometry, cols: &mut [f32]) {
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
                let rows =
                    &mut cols[(ci * k.0 + u) * k.1 * plane..(ci * k.0 + u + 1) * k.1 * plane];
                for y in 0..oh {
                    let at = (ci * h + y + u) * w;
                    for (v, row) in rows.chunks_exact_mut(plane).enumerate() {
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
///
/// # Panics
/// If `cols` or `dx` is shorter than the geometry says.
pub fn col2im(cols: &[f32], g: &Geometry, dx: &mut [f32]) {
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

    fn geometry(c: usize, (h, w): (usize, usize), k: usize, s: usize, p: usize) -> Geometry {
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
    /// strided) against the definition, and col2im as its transpose: ⟨im2col(x), c⟩ = ⟨x, col2im(c)⟩.
    #[test]
    fn im2col_and_col2im_match_the_definition() {
        let cases = [
            geometry(12, (14, 14), 5, 1, 0), // W6's second layer: rows of 10
            geometry(2, (20, 30), 3, 1, 0),  // rows of 28
            geometry(1, (28, 28), 5, 1, 2),  // W6's first layer: padded
            geometry(3, (9, 7), 3, 2, 1),    // strided and padded
            geometry(2, (5, 5), 5, 1, 0),    // one output
        ];
        for g in cases {
            let len = g.c * g.h * g.w;
            let x: Vec<f32> = (0..len).map(|i| (i * 31 % 97) as f32 - 48.0).collect();
            let mut cols = vec![f32::NAN; g.kdim() * g.plane()];
            im2col(&x, &g, &mut cols);
            assert_eq!(cols, im2col_by_definition(&x, &g), "{g:?}");
            let c: Vec<f32> = (0..cols.len()).map(|i| (i * 7 % 13) as f32 - 6.0).collect();
            let mut dx = vec![f32::NAN; len];
            col2im(&c, &g, &mut dx);
            let lhs: f64 = cols.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| (a * b) as f64).sum();
            assert_eq!(lhs, rhs, "{g:?}");
        }
    }
}
