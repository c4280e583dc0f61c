//! `C ← α·A·B + β·C` for a few rows against a wide transposed weight, computed the other
//! way round and transposed back (AVX-512):
//!
//! ```text
//! S = Bᵀ·Aᵀ = (A·B)ᵀ          [n, m], row-major, in a scratch buffer (the packed GEMM)
//! C ← α·Sᵀ + β·C              16 × 16 blocks transposed in registers
//! ```
//!
//! A dense layer's forward product `Y = X·Wᵀ` has `B = Wᵀ`, column-major because the
//! weight is stored `[n_out, n_in]` in rows; so `Bᵀ = W` is row-major and `Aᵀ = Xᵀ` a
//! view. For a batch of up to 128 rows and a layer of at least 512 neurons, the packed GEMM
//! runs `W·Xᵀ` into a row-major `[n_out, batch]` buffer much faster than `X·Wᵀ` into the
//! row-major `[batch, n_out]` output, and the transposition back costs little (measured on
//! two threads, 784 inputs, batch 64, the transposition on one thread: 2,048 neurons in
//! 592 against 825 µs, 1,024 in 303 against 408, 512 in 169 against 192; batch 128 and
//! 512 neurons 316 against 335; but batch 256 and 1,024 neurons 1,103 against 1,048, and
//! 256 neurons at batch 64 or 128 gain little or lose). Where the packed GEMM would have
//! computed `X·Wᵀ` itself, the sums are the same, in the same order: it packs and sums
//! both ways alike.
//!
//! The transposition takes 16 rows of `S` (16 floats each) into registers and interleaves
//! them in four rounds (pairs of floats, pairs of pairs, then 128-bit lanes twice), leaving
//! 16 columns of `S`, the 16 rows of a block of `C`; edges of fewer than 16 are done one
//! value at a time.

// The loads and stores take raw pointers; each block states why it stays inside its
// matrix.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m512, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_loadu_ps, _mm512_mul_ps,
    _mm512_set1_ps, _mm512_shuffle_f32x4, _mm512_storeu_ps, _mm512_unpackhi_pd, _mm512_unpackhi_ps,
    _mm512_unpacklo_pd, _mm512_unpacklo_ps,
};

use ndarray::{ArrayView2, ArrayViewMut2};

use crate::avx512;

/// The most rows of `A` (a batch) taken this way.
pub const MAX_ROWS: usize = 128;

/// The fewest rows of `A`: below, a product is a few dot products per weight row, which
/// [`gemm_dots`](crate::gemm_dots) and the inference kernels handle.
pub const MIN_ROWS: usize = 16;

/// The fewest columns of `B` (neurons).
pub const MIN_COLS: usize = 512;

/// Floats per register and per side of a transposed block.
const LANES: usize = 16;

thread_local! {
    /// Each thread's buffer for `S`.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether a product `a·b` is computed here: AVX-512, [`MIN_ROWS`] to [`MAX_ROWS`] rows
/// of `a`, at least [`MIN_COLS`] columns of a column-major `b`.
pub(crate) fn suits(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> bool {
    (MIN_ROWS..=MAX_ROWS).contains(&a.nrows())
        && b.ncols() >= MIN_COLS
        && b.strides()[0] == 1
        && avx512::available()
}

/// `C ← α·A·B + β·C` on the calling thread (shapes checked by the caller): `S = Bᵀ·Aᵀ` by
/// the packed GEMM, then [`transpose_into`]. With `β = 0` the old contents of `C` are not
/// read.
pub(crate) fn gemm(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, n) = (a.nrows(), b.ncols());
    SCRATCH.with_borrow_mut(|buf| {
        buf.resize(n * m, 0.0);
        let mut s = ArrayViewMut2::from_shape((n, m), &mut buf[..n * m]).expect("sized above");
        crate::gemm_kernel::gemm_one(1.0, b.t(), a.t(), 0.0, &mut s); // S = Bᵀ·Aᵀ
        transpose_into(alpha, s.view(), beta, c);
    });
}

/// `C ← α·Sᵀ + β·C` for `s: [n, m]` and `c: [m, n]` (with `β = 0`, `C` is not read).
///
/// # Panics
/// If the shapes do not fit.
pub(crate) fn transpose_into(
    alpha: f32,
    s: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (n, m) = s.dim();
    assert_eq!(c.dim(), (m, n), "C is Sᵀ's shape");
    let unit = s.strides()[1] == 1 && c.strides()[1] == 1 && avx512::available();
    let (full_m, full_n) = if unit {
        (m - m % LANES, n - n % LANES)
    } else {
        (0, 0)
    };
    if unit {
        // SAFETY: the CPU has AVX-512 and the rows have unit stride (`unit`); every block
        // lies inside both matrices (the block loops stop at whole blocks; none when a side
        // is shorter than 16).
        unsafe { blocks(alpha, s, beta, c, (full_m, full_n)) };
    }
    // the edges: columns past the whole blocks for every row, then rows past them
    let one = |alpha: f32, v: f32, beta: f32, old: f32| {
        if beta == 0.0 {
            alpha * v
        } else {
            alpha * v + beta * old
        }
    };
    for i in 0..m {
        let from = if i < full_m { full_n } else { 0 };
        for j in from..n {
            c[[i, j]] = one(alpha, s[[j, i]], beta, c[[i, j]]); // C[i, j] = α·S[j, i] + β·C[i, j]
        }
    }
}

/// The whole 16 × 16 blocks of [`transpose_into`]: rows `0..full_m` and columns
/// `0..full_n` of `C`.
///
/// # Safety
/// The CPU must have AVX-512F; `full_m ≤ m`, `full_n ≤ n`, both multiples of 16, and the
/// rows of `s` and `c` must have unit stride.
#[target_feature(enable = "avx512f")]
unsafe fn blocks(
    alpha: f32,
    s: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
    (full_m, full_n): (usize, usize),
) {
    let (ss, cs) = (s.strides()[0], c.strides()[0]);
    let (sp, cp) = (s.as_ptr(), c.as_mut_ptr());
    let (va, vb) = (_mm512_set1_ps(alpha), _mm512_set1_ps(beta));
    for j0 in (0..full_n).step_by(LANES) {
        for i0 in (0..full_m).step_by(LANES) {
            // SAFETY: rows j0..j0+16 of S, floats i0..i0+16 of each: inside S since
            // j0 + 16 ≤ n and i0 + 16 ≤ m; the same for the block of C.
            unsafe {
                let rows: [__m512; LANES] = std::array::from_fn(|r| {
                    _mm512_loadu_ps(sp.offset((j0 + r) as isize * ss + i0 as isize))
                });
                let cols = transpose16(rows);
                for (q, col) in cols.into_iter().enumerate() {
                    let at = cp.offset((i0 + q) as isize * cs + j0 as isize);
                    let mut v = _mm512_mul_ps(va, col); // α·S[j, i]
                    if beta != 0.0 {
                        v = _mm512_add_ps(v, _mm512_mul_ps(vb, _mm512_loadu_ps(at))); // + β·C
                    }
                    _mm512_storeu_ps(at, v);
                }
            }
        }
    }
}

/// Sixteen rows of 16 floats as their sixteen columns.
#[inline]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512; LANES]) -> [__m512; LANES] {
    let (pd, ps) = (_mm512_castps_pd, _mm512_castpd_ps);
    // pairs of rows interleaved float by float: t[2p] = (r[2p][0], r[2p+1][0], r[2p][1], …)
    let mut t = r;
    for p in 0..LANES / 2 {
        t[2 * p] = _mm512_unpacklo_ps(r[2 * p], r[2 * p + 1]);
        t[2 * p + 1] = _mm512_unpackhi_ps(r[2 * p], r[2 * p + 1]);
    }
    // then pairs of pairs: u[4g + q] holds, in its four 128-bit lanes, columns q, q + 4,
    // q + 8 and q + 12 of rows 4g … 4g + 3
    let mut u = t;
    for g in 0..LANES / 4 {
        let (a, b, c, d) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = ps(_mm512_unpacklo_pd(pd(a), pd(c)));
        u[4 * g + 1] = ps(_mm512_unpackhi_pd(pd(a), pd(c)));
        u[4 * g + 2] = ps(_mm512_unpacklo_pd(pd(b), pd(d)));
        u[4 * g + 3] = ps(_mm512_unpackhi_pd(pd(b), pd(d)));
    }
    // then the 128-bit lanes, twice: column q gathers lane 0 of u[q], u[4 + q], u[8 + q],
    // u[12 + q]; column q + 4 lane 1; q + 8 lane 2; q + 12 lane 3
    let mut out = u;
    for q in 0..4 {
        let even_lo = _mm512_shuffle_f32x4::<0x88>(u[q], u[4 + q]); // lanes 0, 2 of each
        let odd_lo = _mm512_shuffle_f32x4::<0xDD>(u[q], u[4 + q]); // lanes 1, 3
        let even_hi = _mm512_shuffle_f32x4::<0x88>(u[8 + q], u[12 + q]);
        let odd_hi = _mm512_shuffle_f32x4::<0xDD>(u[8 + q], u[12 + q]);
        out[q] = _mm512_shuffle_f32x4::<0x88>(even_lo, even_hi);
        out[q + 8] = _mm512_shuffle_f32x4::<0xDD>(even_lo, even_hi);
        out[q + 4] = _mm512_shuffle_f32x4::<0x88>(odd_lo, odd_hi);
        out[q + 12] = _mm512_shuffle_f32x4::<0xDD>(odd_lo, odd_hi);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder};

    /// `C = α·Sᵀ + β·C` written out.
    fn by_definition(alpha: f32, s: &Array2<f32>, beta: f32, c: &Array2<f32>) -> Array2<f32> {
        Array2::from_shape_fn(c.dim(), |(i, j)| alpha * s[[j, i]] + beta * c[[i, j]])
    }

    #[test]
    fn transposes_by_hand() {
        // S = [[1, 2, 3], [4, 5, 6]] (2 × 3): Sᵀ = [[1, 4], [2, 5], [3, 6]]; α = 2, β = −1
        // on C = 1 everywhere: 2·Sᵀ − 1
        let s = ndarray::array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        let mut c = Array2::from_elem((3, 2), 1.0f32);
        transpose_into(2.0, s.view(), -1.0, &mut c.view_mut());
        assert_eq!(c, ndarray::array![[1.0, 7.0], [3.0, 9.0], [5.0, 11.0]]);
    }

    /// Whole blocks, edges on either side, sides shorter than a block, both β paths (β = 0
    /// must not read a NaN `C`), a column-major `C` and a column-major `S` (the edge loop
    /// alone).
    #[test]
    fn every_block_and_edge_lands_in_place() {
        for (n, m) in [
            (16usize, 16usize),
            (48, 32),
            (35, 18),
            (17, 64),
            (5, 40),
            (20, 5),
        ] {
            let s = Array2::from_shape_fn((n, m), |(j, i)| (j * 37 + i * 11) as f32 * 0.25 - 50.0);
            let c0 = Array2::from_shape_fn((m, n), |(i, j)| (i * 5 + j) as f32 * 0.5);
            let mut c = c0.clone();
            transpose_into(0.5, s.view(), 2.0, &mut c.view_mut());
            assert_eq!(c, by_definition(0.5, &s, 2.0, &c0), "{n} × {m}, β = 2");
            let mut c = Array2::from_elem((m, n), f32::NAN);
            transpose_into(1.0, s.view(), 0.0, &mut c.view_mut());
            assert_eq!(c, s.t(), "{n} × {m}, β = 0");
            let mut f = Array2::from_elem((m, n).f(), f32::NAN);
            transpose_into(1.0, s.view(), 0.0, &mut f.view_mut());
            assert_eq!(f, s.t(), "{n} × {m}, column-major C");
            let sf = s.t().as_standard_layout().into_owned().reversed_axes(); // S, column-major
            let mut c = Array2::from_elem((m, n), f32::NAN);
            transpose_into(1.0, sf.view(), 0.0, &mut c.view_mut());
            assert_eq!(c, s.t(), "{n} × {m}, column-major S");
        }
    }

    #[test]
    fn the_product_matches_the_definition_where_it_is_taken() {
        if !avx512::available() {
            eprintln!("no AVX-512 on this CPU: the kernel is not used here");
            return;
        }
        // Y = X·Wᵀ with W stored [n_out, n_in]: 20 rows, 600 neurons, 70 inputs
        let x = Array2::from_shape_fn((20, 70), |(i, p)| ((i * 3 + p * 7) % 13) as f32 - 6.0);
        let w = Array2::from_shape_fn((600, 70), |(j, p)| ((j * 5 + p) % 9) as f32 * 0.5 - 2.0);
        assert!(suits(&x.view(), &w.t()));
        let c0 = Array2::from_shape_fn((20, 600), |(i, j)| (i + j % 7) as f32);
        let mut c = c0.clone();
        gemm(1.5, x.view(), w.t(), -0.5, &mut c.view_mut());
        // integers times halves: every sum is exact in f32, so equality holds
        let want = Array2::from_shape_fn((20, 600), |(i, j)| {
            let dot: f32 = (0..70).map(|p| x[[i, p]] * w[[j, p]]).sum();
            1.5 * dot - 0.5 * c0[[i, j]]
        });
        assert_eq!(c, want);
        // and through `matmul_into`, threads and all, with β = 0 and a NaN-filled output
        let mut y = Array2::from_elem((20, 600), f32::NAN);
        crate::matmul_into(1.0, x.view(), w.t(), 0.0, &mut y.view_mut()).unwrap();
        assert_eq!(y, x.dot(&w.t()));
    }

    #[test]
    fn taken_only_for_a_few_rows_against_a_wide_column_major_weight() {
        let (x, w) = (
            Array2::<f32>::zeros((64, 10)),
            Array2::<f32>::zeros((512, 10)),
        );
        let have = avx512::available();
        assert_eq!(suits(&x.view(), &w.t()), have);
        assert!(!suits(&x.view(), &w.t().as_standard_layout().view())); // B row-major
        let narrow = Array2::<f32>::zeros((511, 10));
        assert!(!suits(&x.view(), &narrow.t()));
        for rows in [MIN_ROWS - 1, MAX_ROWS + 1] {
            assert!(!suits(&Array2::<f32>::zeros((rows, 10)).view(), &w.t()));
        }
        for rows in [MIN_ROWS, MAX_ROWS] {
            assert_eq!(
                suits(&Array2::<f32>::zeros((rows, 10)).view(), &w.t()),
                have
            );
        }
    }
}
