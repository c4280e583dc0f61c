//! The GEMM kernel behind [`matmul_into`](crate::matmul_into): the `gemm` crate (pure Rust,
//! AVX-512/AVX2/NEON kernels chosen at run time), threaded with rayon.
//!
//! Measured on the workload shapes (2-core AVX-512 machine, `docs/PERFORMANCE.md`), it beats
//! ndarray's `matrixmultiply` by 1.3–2× with two threads and by 3–5× for a single row.
//!
//! Threads: products smaller than [`PARALLEL_MIN_FLOP`] run on the calling thread (handing
//! a 64×128×10 product to another core costs more than computing it); larger ones use
//! rayon's pool, whose size honours `RAYON_NUM_THREADS` and defaults to all cores.

// The one place the toolkit calls an `unsafe` API: `gemm::gemm` takes raw pointers and
// strides. Every call is preceded by the shape checks of `matmul_into`.
#![allow(unsafe_code)]

use ndarray::{ArrayView2, ArrayViewMut2};

/// Products with fewer floating-point operations than this stay on one thread.
pub const PARALLEL_MIN_FLOP: usize = 1 << 21;

/// `C ← α·A·B + β·C` for shapes already checked by the caller: `a: [m, k]`, `b: [k, n]`,
/// `c: [m, n]`.
pub(crate) fn gemm(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    debug_assert_eq!((b.nrows(), c.dim()), (k, (m, n)));
    if m == 0 || n == 0 {
        return;
    }
    let flop = 2 * m * n * k;
    let parallelism = if flop >= PARALLEL_MIN_FLOP && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    let (a_rs, a_cs) = (a.strides()[0], a.strides()[1]);
    let (b_rs, b_cs) = (b.strides()[0], b.strides()[1]);
    let (c_rs, c_cs) = (c.strides()[0], c.strides()[1]);
    // gemm's convention: dst ← alpha·dst + beta·lhs·rhs, with `read_dst = false` meaning
    // "ignore dst" (so β = 0 never reads stale or NaN contents).
    let read_dst = beta != 0.0;
    // SAFETY: the pointers come from live ndarray views whose dimensions are (m, k), (k, n)
    // and (m, n) — checked by `matmul_into` — and whose strides are passed unchanged, so
    // every element gemm addresses lies inside its view. `c` is borrowed mutably and does
    // not alias `a` or `b` (Rust's borrow rules forbid a `&mut` view overlapping the others).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs,
            c_rs,
            read_dst,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}
