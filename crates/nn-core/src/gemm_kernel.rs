//! The GEMM kernel behind [`matmul_into`](crate::matmul_into): the `gemm` crate (pure Rust,
//! AVX-512/AVX2/NEON kernels chosen at run time), threaded by the toolkit's own pool.
//!
//! Measured on the workload shapes (2-core AVX-512 machine, `docs/PERFORMANCE.md`), it beats
//! ndarray's `matrixmultiply` by 1.3–2× with two threads and by 3–5× for a single row.
//!
//! Threads: products smaller than [`PARALLEL_MIN_FLOP`] run on the calling thread (handing
//! a 64×128×10 product to another core costs more than computing it); larger ones are cut
//! into column (or row) blocks, one per thread of [`parallel`](crate::parallel), each block
//! a single-threaded `gemm` call.
//!
//! A few rows times a transposed weight that is very wide or very narrow (`X·Wᵀ` of a dense
//! layer's forward pass) goes to [`gemm_dots`](crate::gemm_dots) instead on CPUs with
//! AVX-512, which reads `W` where it lies rather than packing it; a batch of 16 to 128 rows
//! times a `Wᵀ` of at least 512 columns is computed as `(W·Xᵀ)ᵀ` (`gemm_swapped`), the
//! packed GEMM's faster way round for that shape.
//!
//! On `wasm32` the `gemm` crate is not linked (its kernels for every instruction set cost
//! more of the page's download than they save in time on a small model): the same blocks
//! are computed by [`gemm_loops`](crate::gemm_loops).

// The one place the toolkit calls an `unsafe` API: `gemm::gemm` takes raw pointers and
// strides. Every call is preceded by the shape checks of `matmul_into`.
#![allow(unsafe_code)]

use std::sync::Mutex;

use ndarray::{ArrayView2, ArrayViewMut2, Axis, ShapeBuilder, s};

/// Products with fewer floating-point operations than this stay on one thread.
pub const PARALLEL_MIN_FLOP: usize = 1 << 20;

/// The most blocks one product is cut into.
const MAX_PARTS: usize = 16;

/// Blocks narrower than this are not worth a thread.
const MIN_BLOCK: usize = 16;

/// `C ← α·A·B + β·C`, split across threads when large enough (shapes checked by the caller).
pub(crate) fn gemm(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    mut c: ArrayViewMut2<'_, f32>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let kernel = Kernel::for_product(&a, &b);
    let threads = crate::parallel::parallelism();
    // A few rows against a large matrix (batch-1 inference) is memory-bound: two cores'
    // caches pay off from a smaller size on.
    let min_flop = if m <= 4 {
        PARALLEL_MIN_FLOP / 8
    } else {
        PARALLEL_MIN_FLOP
    };
    if threads < 2 || 2 * m * n * k < min_flop || (n < 2 * MIN_BLOCK && m < 2 * MIN_BLOCK) {
        return kernel.run(alpha, a, b, beta, &mut c);
    }
    // Cut C (and B or A with it) into blocks of whole columns or rows, so that the largest
    // matrix is divided rather than read by every thread: each thread then keeps working on
    // the same part of a layer's weights (or of their gradient) step after step, and of the
    // same flat half that `parallel::split_runs` gives it in the optimizer — the data stays
    // in that core's cache instead of moving between cores (measured on this machine: when
    // its two cores do not share a cache, moving it costs more than the split saves).
    let by_cols = if m < 2 * MIN_BLOCK {
        true
    } else if n < 2 * MIN_BLOCK {
        false
    } else if m * n >= m * k && m * n >= k * n {
        c.strides()[1] != 1 // C is largest: blocks of whole rows when it is row-major
    } else {
        k * n >= m * k // B larger than A: divide B by columns
    };
    let len = if by_cols { n } else { m };
    // One block per thread: measured, two blocks per thread (so that a late helper costs
    // less) make the W1 products 10–20 % slower when both cores are free.
    let parts = threads.min(MAX_PARTS).min(len / MIN_BLOCK).max(1);
    // one slot per part, on the stack: splitting a product allocates nothing
    let mut blocks: [Mutex<Option<_>>; MAX_PARTS] = std::array::from_fn(|_| Mutex::new(None));
    let mut rest = c;
    let mut start = 0;
    for p in 0..parts {
        let end = (p + 1) * len / parts;
        let (head, tail) = rest.split_at(if by_cols { Axis(1) } else { Axis(0) }, end - start);
        let (a_p, b_p) = if by_cols {
            (a, b.slice_move(s![.., start..end]))
        } else {
            (a.slice_move(s![start..end, ..]), b)
        };
        *blocks[p].get_mut().unwrap_or_else(|e| e.into_inner()) = Some((a_p, b_p, head));
        rest = tail;
        start = end;
    }
    crate::parallel::run_parts(parts, &|i| {
        let block = blocks[i].lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((a_p, b_p, mut c_p)) = block {
            kernel.run(alpha, a_p, b_p, beta, &mut c_p);
        }
    });
}

/// Which kernel computes a product's blocks: chosen once for the whole product, so that
/// how it is cut between threads does not change how any output is summed.
#[derive(Clone, Copy)]
enum Kernel {
    /// The `gemm` crate ([`gemm_one`]).
    Packed,
    /// Dot products of rows ([`gemm_dots`](crate::gemm_dots)): a few rows times a very wide
    /// or very narrow `Wᵀ`.
    #[cfg(target_arch = "x86_64")]
    Dots,
    /// `(Bᵀ·Aᵀ)ᵀ` (`gemm_swapped`): a batch times a wide `Wᵀ`.
    #[cfg(target_arch = "x86_64")]
    Swapped,
}

impl Kernel {
    fn for_product(a: &ArrayView2<'_, f32>, b: &ArrayView2<'_, f32>) -> Self {
        #[cfg(target_arch = "x86_64")]
        if crate::gemm_swapped::suits(a, b) {
            return Kernel::Swapped;
        }
        #[cfg(target_arch = "x86_64")]
        if crate::gemm_dots::suits(a, b) {
            return Kernel::Dots;
        }
        let _ = (a, b);
        Kernel::Packed
    }

    /// `C ← α·A·B + β·C` for one block, on the calling thread.
    fn run(
        self,
        alpha: f32,
        a: ArrayView2<'_, f32>,
        b: ArrayView2<'_, f32>,
        beta: f32,
        c: &mut ArrayViewMut2<'_, f32>,
    ) {
        match self {
            Kernel::Packed => gemm_one(alpha, a, b, beta, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::Dots => crate::gemm_dots::gemm(alpha, a, b, beta, c),
            #[cfg(target_arch = "x86_64")]
            Kernel::Swapped => crate::gemm_swapped::gemm(alpha, a, b, beta, c),
        }
    }
}

/// A column-major `B` whose column stride is a multiple of this many floats (512 bytes) is
/// copied to a padded buffer first.
///
/// Measured (one thread, `X·Wᵀ` with `W` stored `[n_out, n_in]` row-major, so `Wᵀ` is
/// column-major with stride `n_in`): 128×512×256 runs at 61 GFLOP/s in place and at 98
/// with the copy included; 128×256×256 at 84 and 98; strides like 784 or 600 at ~110 either
/// way. Columns 2 KiB apart land on the same cache sets while `gemm` packs them.
const ALIASING_STRIDE: usize = 128;

/// Columns of padding added to such a copy.
const PAD: usize = 16;

thread_local! {
    /// Each thread's reusable buffer for padded copies of `B`.
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `C ← α·A·B + β·C` on the calling thread, for shapes already checked: `a: [m, k]`,
/// `b: [k, n]`, `c: [m, n]`. A column-major `B` with a cache-aliasing stride is first copied
/// with padded columns (see [`ALIASING_STRIDE`]).
pub(crate) fn gemm_one(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    let (k, n) = b.dim();
    let cs = b.strides()[1];
    let aliasing = b.strides()[0] == 1
        && cs > 0
        && (cs as usize).is_multiple_of(ALIASING_STRIDE)
        && a.nrows() >= 16
        && k >= 64;
    if !aliasing {
        return gemm_raw(alpha, a, b, beta, c);
    }
    PADDED.with_borrow_mut(|buf| {
        let kp = k + PAD;
        buf.resize(kp * n, 0.0);
        for (j, col) in b.columns().into_iter().enumerate() {
            let src = col.to_slice().expect("unit row stride");
            buf[j * kp..j * kp + k].copy_from_slice(src);
        }
        let padded = ArrayView2::from_shape((k, n).strides((1, kp)), &buf[..])
            .expect("buffer sized for the padded columns");
        gemm_raw(alpha, a, padded, beta, c);
    });
}

/// `C ← α·A·B + β·C` by plain loops on `wasm32` (see the module docs).
#[cfg(target_arch = "wasm32")]
fn gemm_raw(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    crate::gemm_loops::gemm(alpha, a, b, beta, c);
}

/// `C ← α·A·B + β·C` through the `gemm` crate, for shapes already checked.
#[cfg(not(target_arch = "wasm32"))]
fn gemm_raw(
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
            gemm::Parallelism::None,
        );
    }
}
