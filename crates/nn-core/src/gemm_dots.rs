//! `C ← α·A·Wᵀ + β·C` as dot products of rows, for a few rows against a dense layer's
//! weight (AVX-512):
//!
//! ```text
//! c_ij ← β·c_ij + α · Σ_p a_ip · w_jp        (a_i: row i of A, w_j: row j of W)
//! ```
//!
//! A dense layer keeps its weight as `W: [n_out, n_in]` in rows, so its forward product
//! `Y = X·Wᵀ` multiplies by a column-major `Wᵀ`. A general GEMM first copies (packs) `Wᵀ`
//! into the order its inner loop reads, at every call; at a batch of 64 rows each packed
//! value is used 64 times, and for a wide layer the copy is a whole extra pass over the
//! weight (the `gemm` crate's packing was 13 % of a 784 → 2048 network's training time).
//! Here both factors are read where they lie: row `i` of `A` and row `j` of `W` are both
//! contiguous, and `c_ij` is their dot product.
//!
//! Blocks of 4 rows of `A` by 6 rows of `W` keep 24 sums of 16 lanes in registers: each
//! step of 16 depths loads 4 + 6 vectors for 24 multiply-adds. The 6 rows of `W` (at most
//! [`DEPTH_BLOCK`] values each) stay in L1 while every block of rows of `A` passes over
//! them. At the end of a block each register's 16 lanes are summed, 16 registers at a
//! time, by a tree of interleaves and adds that leaves their 16 sums in one register;
//! depths beyond a multiple of 16 are read with masked loads.
//!
//! A load of 64 bytes that straddles two cache lines costs two, and the rows of an
//! allocation this size usually start 16 bytes past a line. So each block first takes the
//! depths up to `W`'s next line boundary, and a wide product whose rows of `A` start
//! elsewhere in their line than `W`'s copies `A` so that they line up.
//!
//! Measured on two threads (Xeon with AVX-512, best of 15, alternating with the `gemm`
//! crate in one process): 64×784×2048 in 0.91 ms against 0.94–0.95, 64×2048×10 in 13
//! against 44 µs, 64×128×10 in 2.2–3.3 against 3.3–3.9; but 64×784×128 in 63 against 55 µs
//! and 64×256×128 in 27 against 20, 16×128×10 in 0.6–0.9 against 0.55–0.6, and from 256
//! rows on the packed GEMM is faster on one thread too (1.35 against 1.91 ms for
//! 256×784×512). Hence the products taken: [`MIN_ROWS`] to [`MAX_ROWS`]
//! rows, a depth of at least [`MIN_DEPTH`], and at most [`NARROW`] or at least [`WIDE`]
//! columns — decided for the whole product, before it is cut between threads, so that the
//! thread count does not change which kernel sums an output. In training, the 784 → 2048 →
//! 10 network of `cargo xtask bench scale` took 1.92–2.04 s per epoch against 1.96–2.14
//! (three alternating pairs, the same binary with this kernel switched off).

// The loads take raw pointers; each states why it stays inside its row.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_fmadd_ps, _mm512_loadu_si512,
    _mm512_maskz_loadu_ps, _mm512_permutexvar_ps, _mm512_setzero_ps, _mm512_shuffle_f32x4,
    _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
    _mm512_unpacklo_ps,
};

use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder, s};

use crate::avx512;

/// Rows of `A` per block.
const MR: usize = 4;

/// Rows of `W` (columns of `C`) per block.
const NR: usize = 6;

/// Depths per pass: longer rows are taken in parts of this many, each part's products
/// added to `C`, so that six rows of `W` (24 KiB) stay in L1.
pub const DEPTH_BLOCK: usize = 1024;

/// The most rows of `A` for which the dot products beat the packed GEMM (measured: even at
/// 128 rows, slower from 256).
pub const MAX_ROWS: usize = 96;

/// The fewest rows of `A` for which the dot products beat the packed GEMM (measured on two
/// threads: 32×128×10 in 1.3 against 2.5 µs, but 16×128×10 in 0.73–0.89 against 0.55–0.62,
/// and a single row in 0.16 against 0.10).
pub const MIN_ROWS: usize = 32;

/// The least depth worth it: shorter dot products spend too much on summing the lanes
/// (64×64×128: 11.4 against 9.1 µs).
pub const MIN_DEPTH: usize = 128;

/// Products with at most this many columns are computed here: the packed GEMM's
/// narrowest kernels are slow (measured on two threads, 64×2048×10 in 13 against 44 µs,
/// 64×128×10 in 3.3 against 3.9).
pub const NARROW: usize = 16;

/// Products with at least this many columns are computed here: the dot products win from
/// about half this width per thread on (two threads, 64×784×2048 in 0.91 against
/// 0.94–0.95 ms, 64×784×1024 in 0.43 against 0.44–0.45; behind for narrower ones:
/// 64×784×128 in 63 against 55 µs).
pub const WIDE: usize = 1024;

/// Whether `C ← α·A·B + β·C` is computed here: the CPU has AVX-512, `A` has
/// [`MIN_ROWS`] to [`MAX_ROWS`] rows in unit-stride rows, `B` has at most [`NARROW`] or at
/// least [`WIDE`] columns, `B` is column-major (a transposed weight, so its
/// columns are rows in memory), and the depth is at least [`MIN_DEPTH`].
pub(crate) fn suits(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> bool {
    (b.ncols() <= NARROW || b.ncols() >= WIDE)
        && (MIN_ROWS..=MAX_ROWS).contains(&a.nrows())
        && a.ncols() >= MIN_DEPTH
        && computable(a, b)
}

/// Whether [`gemm`] can compute the product at all: the CPU has AVX-512, the rows of `A`
/// and the columns of `B` have unit stride and come in increasing order in memory.
fn computable(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> bool {
    (a.strides()[1] == 1 || a.ncols() <= 1)
        && (b.strides()[0] == 1 || b.nrows() <= 1)
        && a.strides()[0] >= 0
        && b.strides()[1] >= 0
        && avx512::available()
}

/// `C ← α·A·B + β·C` for `a: [m, k]` with unit-stride rows and `b: [k, n]` with unit-stride
/// columns (shapes checked by the caller), any number of rows and columns; [`suits`] says
/// when it is the faster kernel. With `β = 0` the old contents of `C` are not read.
pub(crate) fn gemm(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    assert!(
        computable(&a, &b),
        "gemm_dots: operands in the wrong layout"
    );
    if lined_up(&a, &b) || b.ncols() <= NARROW {
        // (a narrow product reads each row of `A` only a few times: copying costs more)
        return by_parts(alpha, a, b, beta, c);
    }
    LINED_UP.with_borrow_mut(|buf| {
        let a = copy_lined_up(a, &b, buf);
        by_parts(alpha, a, b, beta, c)
    })
}

/// Floats in a cache line (also the lanes of a register).
const LINE: usize = crate::prefetch::LINE / size_of::<f32>();

/// Where `v` starts within its cache line, in floats.
fn offset(v: &ArrayView2<'_, f32>) -> usize {
    line_offset(v.as_ptr())
}

/// Where the float at `p` lies within its cache line, in floats.
fn line_offset(p: *const f32) -> usize {
    (p as usize / size_of::<f32>()) % LINE
}

/// Whether every row of `a` starts where the rows of `W = bᵀ` start within a cache line,
/// so that [`block`]'s loads of both line up once `W`'s are aligned. A load of 64 bytes
/// that straddles two lines costs two: measured, 64×784×128 took 116 µs with `A` 16 bytes
/// off `W` against 94 µs with both aligned and 96 with both 16 bytes off.
fn lined_up(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> bool {
    offset(a) == offset(b) && (a.nrows() <= 1 || a.strides()[0] % LINE as isize == 0)
}

thread_local! {
    /// Each thread's copy of `A`, lined up with `W` (see [`lined_up`]).
    static LINED_UP: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `a` copied into `buf` so that it is [`lined_up`] with `b`: rows a whole number of cache
/// lines apart, the first starting where `b` does. Copying a batch of rows costs a few
/// percent of the product (64 × 784: 200 KB, from and to L2).
fn copy_lined_up<'b>(
    a: ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    buf: &'b mut Vec<f32>,
) -> ArrayView2<'b, f32> {
    let (m, k) = a.dim();
    let stride = k.next_multiple_of(LINE);
    buf.resize(m * stride + 2 * LINE, 0.0);
    let here = line_offset(buf.as_ptr());
    let start = (offset(b) + LINE - here) % LINE;
    let rows = &mut buf[start..start + m * stride];
    for (dst, src) in rows.chunks_exact_mut(stride).zip(a.rows()) {
        for (d, &v) in dst.iter_mut().zip(&src) {
            *d = v;
        }
    }
    ArrayView2::from_shape((m, k).strides((stride, 1)), &buf[start..])
        .expect("buffer sized for m rows of the padded stride")
}

/// [`part`] over the depths, [`DEPTH_BLOCK`] at a time.
fn by_parts(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let k = a.ncols();
    if k == 0 {
        c.mapv_inplace(|v| if beta == 0.0 { 0.0 } else { beta * v }); // C ← β·C
        return;
    }
    let mut beta = beta;
    for p in (0..k).step_by(DEPTH_BLOCK) {
        let depths = p..(p + DEPTH_BLOCK).min(k);
        // SAFETY: the CPU has AVX-512 (checked by `computable` in `gemm`).
        unsafe {
            part(
                alpha,
                a.slice(s![.., depths.clone()]),
                b.slice(s![depths, ..]),
                beta,
                c,
            )
        };
        beta = 1.0; // later parts add to the earlier ones
    }
}

/// One part of the depths: every block of at most `MR × NR` outputs, `W`'s rows outermost.
#[target_feature(enable = "avx512f")]
fn part(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let out = Out { alpha, beta };
    let (x0, w0) = (Rows::of(a), Rows::of(b.t()));
    for j in (0..n).step_by(NR) {
        let (cols, w) = (NR.min(n - j), w0.from(j));
        for i in (0..m).step_by(MR) {
            let (rows, x) = (MR.min(m - i), x0.from(i));
            // SAFETY: `x` and `w` hold `rows` and `cols` rows of `k` floats (from row i of
            // the m of `a` and row j of the n of `bᵀ`).
            let sums = unsafe {
                match rows {
                    4 => by_cols::<4>(x, w, cols, k),
                    3 => by_cols::<3>(x, w, cols, k),
                    2 => by_cols::<2>(x, w, cols, k),
                    _ => by_cols::<1>(x, w, cols, k),
                }
            };
            out.write(&sums, (i, rows), (j, cols), c);
        }
    }
}

/// Rows of a view with unit-stride rows: row `r` starts at `ptr + r·stride`. A raw pointer
/// rather than slices, so that only the view's own elements are ever addressed (the
/// memory between its rows may belong to someone else).
#[derive(Clone, Copy)]
struct Rows {
    ptr: *const f32,
    stride: usize,
}

impl Rows {
    /// The rows of `v` (unit column stride, checked by `suits`).
    fn of(v: ArrayView2<'_, f32>) -> Self {
        assert!(v.strides()[1] == 1 || v.ncols() <= 1, "rows of unit stride");
        let stride = usize::try_from(v.strides()[0]).expect("rows in increasing order");
        Rows {
            ptr: v.as_ptr(),
            stride,
        }
    }

    /// The rows from row `r` on.
    fn from(self, r: usize) -> Self {
        Rows {
            ptr: self.ptr.wrapping_add(r * self.stride),
            ..self
        }
    }

    /// Row `r` from depth `p` on (`p` may be negative: masked loads start before a row).
    fn at(self, r: usize, p: isize) -> *const f32 {
        self.ptr.wrapping_add(r * self.stride).wrapping_offset(p)
    }
}

/// How the sums of a block go into `C`.
struct Out {
    alpha: f32,
    beta: f32,
}

impl Out {
    /// `c_(i+r)(j+c) ← α·sums[r·cols + c] + β·c_(i+r)(j+c)` for the block's `rows × cols`
    /// outputs.
    fn write(
        &self,
        sums: &[f32; 32],
        (i, rows): (usize, usize),
        (j, cols): (usize, usize),
        c: &mut ArrayViewMut2<'_, f32>,
    ) {
        for r in 0..rows {
            for col in 0..cols {
                let v = self.alpha * sums[r * cols + col];
                let dst = &mut c[[i + r, j + col]];
                *dst = if self.beta == 0.0 {
                    v
                } else {
                    v + self.beta * *dst
                };
            }
        }
    }
}

/// The block of `R` rows of `A` by `cols` (1 to `NR`) rows of `W`.
///
/// # Safety
/// As [`block`].
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn by_cols<const R: usize>(x: Rows, w: Rows, cols: usize, k: usize) -> [f32; 32] {
    // SAFETY: passed on from the caller.
    unsafe {
        match cols {
            6 => block::<R, 6>(x, w, k),
            5 => block::<R, 5>(x, w, k),
            4 => block::<R, 4>(x, w, k),
            3 => block::<R, 3>(x, w, k),
            2 => block::<R, 2>(x, w, k),
            _ => block::<R, 1>(x, w, k),
        }
    }
}

/// The `R × C` dot products of `R` rows of `x` with `C` rows of `w`, `k` floats each, as
/// `sums[r·C + c]` (`R·C ≤ 32`).
///
/// # Safety
/// `x` has `R` rows and `w` has `C` rows, each of at least `k` readable floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn block<const R: usize, const C: usize>(x: Rows, w: Rows, k: usize) -> [f32; 32] {
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    // Depths up to `w`'s next 64-byte boundary first, so that the loads of the main loop do
    // not straddle two cache lines (an allocation of this size usually starts 16 bytes
    // past one; then `x`, allocated alike, lines up as well). They are loaded into the
    // lanes the main loop gives their residues mod 16: depth `d` always lands in lane
    // `(d − head) mod 16`, and rotating the sums by `head` at the end puts it in lane
    // `d mod 16` whatever the alignment, so the result does not depend on where the rows lie.
    let head = (LINE - line_offset(w.ptr)) % LINE;
    let mut p = head.min(k);
    if p > 0 {
        let lanes = (avx512::mask(p) as u32) << (16 - head); // depths 0..p in lanes 16 − head…
        // SAFETY: passed on from the caller; the lanes set address depths 0..p ≤ k of each
        // row, and the others (before the row) are masked off, so never read.
        unsafe { step(&mut acc, x, w, head as isize - 16, lanes as u16) };
    }
    while p + 16 <= k {
        // SAFETY: as above, all 16 lanes within the rows since p + 16 ≤ k.
        unsafe { step(&mut acc, x, w, p as isize, u16::MAX) };
        p += 16;
    }
    if p < k {
        // SAFETY: as above; the mask stops at k.
        unsafe { step(&mut acc, x, w, p as isize, avx512::mask(k - p)) }; // lanes past k read as 0
    }
    if head > 0 {
        rotate(&mut acc, head);
    }
    lane_sums(&acc)
}

/// Every register's lanes moved up by `head` (lane `l` to lane `(l + head) mod 16`).
#[inline]
#[target_feature(enable = "avx512f")]
fn rotate<const R: usize, const C: usize>(acc: &mut [[__m512; C]; R], head: usize) {
    let from: [i32; 16] = std::array::from_fn(|l| ((l + 16 - head) % 16) as i32);
    // SAFETY: `from` holds 16 integers.
    let from = unsafe { _mm512_loadu_si512(from.as_ptr().cast()) };
    for v in acc.iter_mut().flatten() {
        *v = _mm512_permutexvar_ps(from, *v); // lane l ← lane (l − head) mod 16
    }
}

/// `acc[r][c] += x_r[p..p+16] ⊙ w_c[p..p+16]`, lane by lane, for the lanes of `mask` (the
/// others read as 0): one step of 16 depths of `Σ_p a_ip·w_jp`.
///
/// # Safety
/// `x` has `R` rows and `w` has `C` rows, each readable at the depths `p + l` for the lanes
/// `l` set in `mask` (lanes not set are not read, wherever they point).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn step<const R: usize, const C: usize>(
    acc: &mut [[__m512; C]; R],
    x: Rows,
    w: Rows,
    p: isize,
    mask: u16,
) {
    let mut xv = [_mm512_setzero_ps(); R];
    for (r, v) in xv.iter_mut().enumerate() {
        // SAFETY: passed on from the caller.
        *v = unsafe { _mm512_maskz_loadu_ps(mask, x.at(r, p)) };
    }
    for c in 0..C {
        // SAFETY: passed on from the caller.
        let wv = unsafe { _mm512_maskz_loadu_ps(mask, w.at(c, p)) };
        for r in 0..R {
            acc[r][c] = _mm512_fmadd_ps(xv[r], wv, acc[r][c]);
        }
    }
}

/// The lane sums of an `R × C` block of registers, in row order.
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_sums<const R: usize, const C: usize>(acc: &[[__m512; C]; R]) -> [f32; 32] {
    let mut v = [_mm512_setzero_ps(); 32];
    for r in 0..R {
        v[r * C..(r + 1) * C].copy_from_slice(&acc[r]);
    }
    let mut sums = [0.0f32; 32];
    for h in 0..(R * C).div_ceil(16) {
        let sixteen: &[__m512; 16] = v[16 * h..16 * h + 16].try_into().expect("16 registers");
        // SAFETY: `sums` holds 32 floats, and `16·h + 16 ≤ 32`.
        unsafe { _mm512_storeu_ps(sums.as_mut_ptr().add(16 * h), sums_of_16(sixteen)) };
    }
    sums
}

/// One register holding the lane sums of 16 registers, `out[i] = Σ_l v[i][l]`: 45
/// instructions instead of 16 separate reductions of 8.
///
/// Each level adds pairs of registers whose lanes are interleaved so that every lane
/// still holds a partial sum of one register only:
/// - interleaving 32-bit lanes of `v[2i]` and `v[2i+1]` and adding: each 128-bit quarter
///   holds two partial sums of each of the pair (8 registers);
/// - the same with 64-bit lanes: each quarter holds one partial sum of each of four
///   registers (4 registers);
/// - quarters 0+1 and 2+3 of a pair of those (2 registers), then once more: every quarter
///   holds the four complete sums of four registers, in order.
#[inline]
#[target_feature(enable = "avx512f")]
fn sums_of_16(v: &[__m512; 16]) -> __m512 {
    // (closures would not inherit the target feature: plain loops)
    let mut t = [_mm512_setzero_ps(); 8];
    for (i, ti) in t.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        *ti = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    let mut u = [_mm512_setzero_ps(); 4];
    for (i, ui) in u.iter_mut().enumerate() {
        let (a, b) = (_mm512_castps_pd(t[2 * i]), _mm512_castps_pd(t[2 * i + 1]));
        *ui = _mm512_add_ps(
            _mm512_castpd_ps(_mm512_unpacklo_pd(a, b)),
            _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)),
        );
    }
    let (w0, w1) = (halves(u[0], u[1]), halves(u[2], u[3]));
    halves(w0, w1)
}

/// Quarters `(a₀, a₂, b₀, b₂) + (a₁, a₃, b₁, b₃)` of two registers.
#[inline]
#[target_feature(enable = "avx512f")]
fn halves(a: __m512, b: __m512) -> __m512 {
    _mm512_add_ps(
        _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
        _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};
    use std::arch::x86_64::_mm512_loadu_ps;

    /// `A` with row `i` all `i + 1` and `W` with row `j` all `j + 1`: `c_ij = k·(i+1)·(j+1)`.
    /// 5 × 7 outputs and 130 depths leave a short block of rows, of columns and of depths.
    #[test]
    fn constant_rows_by_hand() {
        if !avx512::available() {
            return;
        }
        let (m, k, n) = (5, 130, 7);
        let a = Array2::from_shape_fn((m, k), |(i, _)| (i + 1) as f32);
        let w = Array2::from_shape_fn((n, k), |(j, _)| (j + 1) as f32);
        let mut c = Array2::from_elem((m, n), 1.0f32);
        // c ← 0.5·k·(i+1)·(j+1) + 2·1
        gemm(0.5, a.view(), w.t(), 2.0, &mut c.view_mut());
        let want = Array2::from_shape_fn((m, n), |(i, j)| 65.0 * ((i + 1) * (j + 1)) as f32 + 2.0);
        assert_eq!(c, want);
        // β = 0 ignores what C held, NaN included
        c.fill(f32::NAN);
        gemm(1.0, a.view(), w.t(), 0.0, &mut c.view_mut());
        assert_eq!(c, want.mapv(|v| (v - 2.0) * 2.0));
    }

    /// Where a view starts within its cache line: 0 at a 64-byte boundary, one more per
    /// float after it.
    #[test]
    fn offsets_within_a_line() {
        let buf = vec![0.0f32; 64];
        let at = |s: usize| ArrayView2::from_shape((1, 16), &buf[s..s + 16]).unwrap();
        let first = (0..16)
            .find(|&s| (buf.as_ptr() as usize + 4 * s).is_multiple_of(64))
            .expect("a line boundary within 16 floats");
        for s in 0..40 {
            assert_eq!(offset(&at(s)), (s + 16 - first) % 16, "start {s}");
        }
    }

    /// Rows line up with `W`'s when they start at the same place in a line and lie whole
    /// lines apart; the copy makes them so, with the same values.
    #[test]
    fn lining_up_rows() {
        let buf: Vec<f32> = (0..4096).map(|v| v as f32).collect();
        let view = |s: usize, rows: usize, stride: usize| {
            ArrayView2::from_shape((rows, 20).strides((stride, 1)), &buf[s..]).unwrap()
        };
        let w = view(3, 1, 20).reversed_axes(); // bᵀ's one row starts at float 3
        assert!(lined_up(&view(3, 4, 32), &w));
        assert!(lined_up(&view(19, 4, 48), &w)); // 16 floats on: the same place in a line
        assert!(!lined_up(&view(4, 4, 32), &w)); // one float off
        assert!(!lined_up(&view(3, 4, 33), &w)); // rows not whole lines apart
        assert!(lined_up(&view(3, 1, 33), &w)); // a single row: its stride does not matter
        let mut copy = Vec::new();
        let a = view(5, 3, 21);
        let lined = copy_lined_up(a, &w, &mut copy);
        assert!(lined_up(&lined, &w));
        assert_eq!(lined, a);
    }

    /// Wide products whose rows do not line up take the copy; lined-up and narrow ones do
    /// not (each in a thread of its own, whose copy buffer starts empty).
    #[test]
    fn which_products_copy() {
        if !avx512::available() {
            return;
        }
        let copied = |m: usize, n: usize, a_at: usize| {
            std::thread::spawn(move || {
                let (k, w) = (128, Array2::<f32>::ones((n, 128)));
                let at = offset(&w.view());
                let buf = vec![1.0f32; m * k + 32];
                let s = (at + 16 - offset(&ArrayView2::from_shape((1, 1), &buf[..1]).unwrap()))
                    % 16
                    + a_at;
                let a = ArrayView2::from_shape((m, k), &buf[s..s + m * k]).unwrap();
                let mut c = Array2::zeros((m, n));
                gemm(1.0, a, w.t(), 0.0, &mut c.view_mut());
                assert!(c.iter().all(|&v| v == 128.0));
                LINED_UP.with_borrow(|b| !b.is_empty())
            })
            .join()
            .unwrap()
        };
        assert!(copied(4, 20, 1)); // A one float off W
        assert!(!copied(4, 20, 0)); // A where W starts in its line
        assert!(!copied(4, 16, 1)); // narrow: read where it lies
    }

    /// No depth at all: `C ← β·C` (0 for β = 0, even over NaN).
    #[test]
    fn no_depth_scales_c() {
        if !avx512::available() {
            return;
        }
        let (a, w) = (Array2::<f32>::zeros((3, 0)), Array2::<f32>::zeros((2, 0)));
        let mut c = Array2::from_elem((3, 2), 1.5f32);
        gemm(1.0, a.view(), w.t(), 2.0, &mut c.view_mut());
        assert_eq!(c, Array2::from_elem((3, 2), 3.0));
        c.fill(f32::NAN);
        gemm(1.0, a.view(), w.t(), 0.0, &mut c.view_mut());
        assert_eq!(c, Array2::zeros((3, 2)));
    }

    /// Register `i` holding `16·i + l` in lane `l` sums to `256·i + 120`.
    #[test]
    fn lane_sums_of_16_registers_in_order() {
        if !avx512::available() {
            return;
        }
        let vals: Vec<f32> = (0..256).map(|v| v as f32).collect();
        let v: [__m512; 16] = std::array::from_fn(|i| {
            // SAFETY: `vals` holds 256 floats and `16·i + 16 ≤ 256`.
            unsafe { _mm512_loadu_ps(vals.as_ptr().add(16 * i)) }
        });
        let mut out = [0.0f32; 16];
        // SAFETY: the CPU has AVX-512 (checked above); `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), sums_of_16(&v)) };
        assert_eq!(out, std::array::from_fn(|i| (256 * i + 120) as f32));
    }

    /// Against the formula's loops, on every size of tail, depths beyond one part, and a
    /// column-major `C`.
    #[test]
    fn agrees_with_the_loops() {
        if !avx512::available() {
            return;
        }
        let mut rng = crate::seeded(11);
        let shapes = [
            (1, 128, 1),
            (3, 200, 5),
            (4, 784, 6),
            (64, 784, 13),
            (96, 2100, 10),
        ];
        for (m, k, n) in shapes.into_iter().chain([(5, 300, 530), (2, 1030, 515)]) {
            let mut r = |shape: (usize, usize), f: bool| {
                let v = (0..shape.0 * shape.1)
                    .map(|_| crate::rng::uniform(&mut rng, -1.0, 1.0))
                    .collect();
                Array2::from_shape_vec(shape.set_f(f), v).unwrap()
            };
            // A one column into a wider array: its rows start off `W`'s, so wide products
            // take the copy that lines them up
            let (a, w) = (r((m, k + 1), false), r((n, k), false));
            let a = a.slice(ndarray::s![.., 1..]);
            for c_major in [false, true] {
                let c0 = r((m, n), c_major);
                let (mut mine, mut loops) = (c0.clone(), c0);
                gemm(0.7, a.view(), w.t(), 1.3, &mut mine.view_mut());
                crate::gemm_loops::gemm(0.7, a.view(), w.t(), 1.3, &mut loops.view_mut());
                for (x, y) in mine.iter().zip(&loops) {
                    let tol = 1e-6 * k as f32;
                    assert!((x - y).abs() <= tol, "{m}×{k}×{n}: {x} vs {y}");
                }
            }
        }
    }

    /// The result does not depend on where the rows lie: the same product with `W` (and
    /// `A`) moved by 0–15 floats within their cache lines gives the same bits (the sums of
    /// each lane hold the same depths in the same order). Determinism rests on it: the
    /// same seed gives the same weights however the allocator placed them.
    #[test]
    fn results_do_not_depend_on_alignment() {
        if !avx512::available() {
            return;
        }
        let mut rng = crate::seeded(8);
        let (m, k, n) = (5, 203, 9);
        let a: Vec<f32> = (0..m * k)
            .map(|_| crate::rng::uniform(&mut rng, -1.0, 1.0))
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|_| crate::rng::uniform(&mut rng, -1.0, 1.0))
            .collect();
        let place = |v: &[f32], at: usize| {
            let mut buf = vec![0.0f32; v.len() + 16];
            buf[at..at + v.len()].copy_from_slice(v);
            buf
        };
        let mut first: Option<Array2<f32>> = None;
        for (wa, aa) in (0..16).map(|s| (s, (s * 7) % 16)) {
            let (wb, ab) = (place(&w, wa), place(&a, aa));
            let wv = ArrayView2::from_shape((n, k), &wb[wa..wa + n * k]).unwrap();
            let av = ArrayView2::from_shape((m, k), &ab[aa..aa + m * k]).unwrap();
            let mut c = Array2::zeros((m, n));
            gemm(1.0, av, wv.t(), 0.0, &mut c.view_mut());
            match &first {
                None => first = Some(c),
                Some(f) => assert_eq!(&c, f, "W at {wa}, A at {aa} floats"),
            }
        }
    }

    /// A few rows by a transposed weight, deep enough, in unit-stride rows: nothing else.
    #[test]
    fn which_products_suit() {
        let x = |m, k| Array2::<f32>::zeros((m, k));
        let (w, wt) = (x(16, 128), x(128, 16));
        assert_eq!(suits(&x(96, 128).view(), &w.t()), avx512::available());
        assert!(!suits(&x(97, 128).view(), &w.t())); // too many rows
        assert_eq!(suits(&x(32, 128).view(), &w.t()), avx512::available());
        assert!(!suits(&x(31, 128).view(), &w.t())); // too few rows
        assert!(!suits(&x(64, 128).view(), &x(100, 128).t())); // neither narrow nor wide
        assert!(!suits(&x(64, 128).view(), &x(1023, 128).t())); // not wide enough
        let wide = x(1024, 128);
        assert_eq!(suits(&x(64, 128).view(), &wide.t()), avx512::available());
        assert!(!suits(&x(64, 127).view(), &x(10, 127).t())); // too shallow
        assert!(!suits(&x(128, 64).t(), &w.t())); // A column-major
        assert!(!suits(&x(64, 128).view(), &wt.view())); // B row-major
        let a = x(64, 128);
        let backwards = a.slice(ndarray::s![..;-1, ..]);
        assert!(!suits(&backwards, &w.t())); // rows of A in decreasing order
    }

    /// `matmul_into` takes this path for a dense layer's forward product: its result is
    /// this kernel's bit for bit (the packed GEMM sums 784 random products in another
    /// order, and differs in the last bits).
    #[test]
    fn matmul_into_takes_this_path() {
        if !avx512::available() {
            return;
        }
        let mut rng = crate::seeded(3);
        let mut r = |shape| {
            Array2::from_shape_simple_fn(shape, || crate::rng::uniform(&mut rng, -1.0, 1.0))
        };
        let (a, w) = (r((64, 784)), r((10, 784)));
        let mut c = Array2::zeros((64, 10));
        crate::matmul_into(1.0, a.view(), w.t(), 0.0, &mut c.view_mut()).unwrap();
        let mut mine = Array2::zeros((64, 10));
        gemm(1.0, a.view(), w.t(), 0.0, &mut mine.view_mut());
        assert_eq!(c, mine);
    }
}
