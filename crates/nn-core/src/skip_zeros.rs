//! Products whose left factor is mostly zeros: `Y = X·B` with the zeros of `X` skipped.
//!
//! ```text
//! y_i = Σ_k x_ik · b_k  =  Σ_{k : x_ik ≠ 0} x_ik · b_k        (b_k: row k of B, length n)
//! ```
//!
//! A zero of `x` contributes nothing, so leaving it out gives the same sum with fewer
//! multiply-adds and fewer rows of `B` read. Inputs like this are common where small
//! networks are used: images on a blank background (half of all Fashion-MNIST pixels are
//! exactly 0; its first test image has 267 non-zero pixels of 784), one-hot and
//! bag-of-words features, and the outputs of a ReLU.
//!
//! Rows of `X` are taken three at a time (the last one or two of a batch as a pair or
//! alone). One pass over such a unit sorts its positions by which of its rows are non-zero
//! there (the `entries` module; all-zero positions are dropped), then the output rows are
//! accumulated in registers, list by list: a position where several rows are non-zero
//! reads its row of `B` once, into registers, for all of them. The rows of `B` come from
//! L2 for a 784×128 weight, and on the machine measured (32 bytes per cycle from L2) that
//! read, not the arithmetic, sets the pace; a dense product of the same shape (the `gemm`
//! crate) does more arithmetic per value loaded, so skipping pays off only when enough of
//! `X` is zero and `B` is wide enough: [`worth_skipping`] decides from the first row of `X`
//! ([`DENSITY_LIMIT`]) and the width ([`MIN_WIDTH`]). `B` is stored for the kernel as
//! [`AlignedRows`].
//!
//! A thread's run of at least 32 rows goes, on AVX-512, to the tiled kernel
//! instead (the `tiled` module): it keeps tiles of `B` in L1 while a group of rows passes
//! over each, and reads a row of `B` from L1 once for a pair of rows.
//!
//! The kernel is compiled for AVX-512 (128 columns per pass for one or two rows, 64 for
//! three, so that the sums and a row of `B` fit in the 32 registers), AVX2 + FMA (16) and
//! the baseline (16, no fused multiply-add), chosen at run time through `pulp`; rows are
//! spread over the toolkit's threads. Summation order differs from the dense product's, so
//! the two agree to rounding, not bit for bit.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod avx2;
mod entries;
#[cfg(target_arch = "x86_64")]
mod tiled;
use entries::{Entries, ROWS};

/// Skipping zeros pays off when at most this share of a row's entries is non-zero.
/// Measured against the dense product (784×128, 2 threads), on discs of non-zero pixels
/// whose rows overlap well: faster at every density up to 0.7 for batches of 1 and 64
/// (1.46× and 1.32× there), even at 0.7 for a batch of 1024; on Fashion-MNIST's first 1024
/// test images (density 0.50, rows overlapping less) 1.11× at batch 1024. Half is where it
/// still pays for real images with margin.
pub const DENSITY_LIMIT: f32 = 0.5;

/// Outputs per row at or below which the dense product is used whatever the zeros: with
/// one vector of outputs, each skipped-to position costs more bookkeeping than its one
/// multiply-add. Measured on W4's second layer (128 → 10): its batch of 1024 took 41 µs
/// skipping zeros against 25 µs dense, and batch-1 latency (the whole network) went from
/// 1.87–1.97 to 1.85–1.87 µs.
pub const MIN_WIDTH: usize = 16;

/// Whether the zeros of `x` are worth skipping in a product with `n` outputs per row: `n`
/// exceeds [`MIN_WIDTH`] and the share of non-zero entries in the first row of `x` is at
/// most [`DENSITY_LIMIT`]. One row decides so that the test costs nothing next to the
/// product; a batch whose later rows are denser is still computed exactly, only slower.
pub fn worth_skipping(x: ArrayView2<'_, f32>, n: usize) -> bool {
    let Some(first) = x.rows().into_iter().next().filter(|_| n > MIN_WIDTH) else {
        return false;
    };
    let k = first.len();
    let nonzero = match first.as_slice() {
        #[cfg(not(target_arch = "wasm32"))]
        Some(row) => pulp::Arch::new().dispatch(Nonzero(row)),
        #[cfg(target_arch = "wasm32")]
        Some(row) => row.iter().filter(|&&v| v != 0.0).count(), // (no pulp on wasm32)
        None => first.iter().filter(|&&v| v != 0.0).count(),
    };
    k > 0 && nonzero as f32 <= DENSITY_LIMIT * k as f32
}

/// The number of non-zero values of a row, as a `pulp` operation: compiled for each
/// instruction set, so that the count takes the widest vectors (with AVX-512 a 784-value
/// row costs ~15 ns instead of ~50; it is paid on every batch-1 call).
#[cfg(not(target_arch = "wasm32"))]
struct Nonzero<'a>(&'a [f32]);

#[cfg(not(target_arch = "wasm32"))]
impl pulp::WithSimd for Nonzero<'_> {
    type Output = usize;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> usize {
        self.0.iter().map(|&v| u32::from(v != 0.0)).sum::<u32>() as usize // vectorised
    }
}

/// The right factor `B: [k, n]` of [`matmul_skip_zeros`], stored for it: in panels of
/// columns, each panel holding its columns of every row of `B`, one row after another, each
/// row of a panel starting on a 64-byte boundary (a cache line), so that no vector load of
/// a row straddles two lines (measured: a row shifted by one float makes the product
/// 1.3–1.4× slower). With AVX-512 a panel is as wide as `B` (plain rows, padded to 16
/// columns); with AVX2 it is 32 columns (one pass of the kernel), so that a pass reads
/// consecutive memory rather than 128 bytes of every 512.
#[derive(Debug, Default)]
pub struct AlignedRows {
    buf: Vec<f32>,
    offset: usize,
    k: usize,
    n: usize,
    /// Floats per row of `B`: `n` padded to the panel width.
    stride: usize,
    /// Columns per panel: a multiple of 16 dividing `stride`.
    panel: usize,
}

/// Floats per cache line.
const LINE: usize = 16;

/// The width of [`AlignedRows`]' panels for `n` columns on this CPU: 32 where the AVX2
/// kernel runs, `n` padded to a cache line elsewhere.
fn panel_width(n: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx512f") && avx2::available() {
        return avx2::PANEL;
    }
    n.next_multiple_of(LINE).max(LINE)
}

impl AlignedRows {
    /// `B = Wᵀ` for a weight `w: [n, k]` stored destination-first (a dense layer's).
    ///
    /// # Errors
    /// [`Error::Limit`] when the padded copy would exceed the tensor size limit.
    pub fn transposed(w: ArrayView2<'_, f32>) -> Result<Self> {
        Self::with_panel(w, panel_width(w.nrows()))
    }

    /// As [`AlignedRows::transposed`] with panels of `panel` columns (a multiple of 16).
    fn with_panel(w: ArrayView2<'_, f32>, panel: usize) -> Result<Self> {
        let (n, k) = w.dim();
        let stride = n.next_multiple_of(panel);
        let len = crate::limits::elements(|| "transposed weight".into(), &[k, stride])?;
        let (mut buf, offset) = Self::aligned_buffer(len);
        // (no panels to fill when B has no rows: chunks of zero floats do not exist)
        let panels = buf[offset..offset + len].chunks_exact_mut((k * panel).max(1));
        for (p, panel_buf) in panels.enumerate() {
            let cols = p * panel..n.min((p + 1) * panel);
            for (i, row) in panel_buf.chunks_exact_mut(panel).enumerate() {
                for (r, &v) in row.iter_mut().zip(w.slice(ndarray::s![cols.clone(), i])) {
                    *r = v; // B[i, j] = W[j, i]
                }
            }
        }
        Ok(AlignedRows {
            buf,
            offset,
            k,
            n,
            stride,
            panel,
        })
    }

    /// A buffer of `len` floats plus room to start on a cache line, and that start.
    fn aligned_buffer(len: usize) -> (Vec<f32>, usize) {
        let buf = vec![0.0f32; len + LINE];
        // floats to skip so that the first row starts on a line (f32 needs 4-byte alignment,
        // so the address is a multiple of 4 and the skip a whole number of floats)
        let offset = ((buf.as_ptr() as usize).next_multiple_of(64) - buf.as_ptr() as usize) / 4;
        (buf, offset)
    }

    /// `[k, n]`.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    fn rows(&self) -> &[f32] {
        &self.buf[self.offset..self.offset + self.k * self.stride]
    }
}

/// A clone is aligned anew: a copied `Vec` may start anywhere.
impl Clone for AlignedRows {
    fn clone(&self) -> Self {
        let (mut buf, offset) = Self::aligned_buffer(self.k * self.stride);
        buf[offset..offset + self.k * self.stride].copy_from_slice(self.rows());
        AlignedRows {
            buf,
            offset,
            ..*self
        }
    }
}

/// `Y ← X·B + c`, skipping the zero entries of `X` (see the module docs); `c` (a bias, one
/// value per column, added to every row) is where each row's sums start, so adding it
/// costs no pass of its own.
///
/// # Shapes
/// `x: [m, k]`, `b: [k, n]`, `c: [n]`, `y: [m, n]` in standard (row-major) layout.
///
/// # Errors
/// [`Error::Incompatible`] when the shapes do not fit, or when `y` is not row-major.
pub fn matmul_skip_zeros(
    x: ArrayView2<'_, f32>,
    b: &AlignedRows,
    c: Option<ArrayView1<'_, f32>>,
    y: &mut ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let (m, k) = x.dim();
    let n = b.n;
    if let Some(c) = c.filter(|c| c.len() != n) {
        return Err(Error::Incompatible {
            op: "matmul_skip_zeros".into(),
            reason: "the bias c must have one value per column of b",
            a_name: "b",
            a: [b.k, n][..].into(),
            b_name: "c",
            b: [c.len()][..].into(),
        });
    }
    if b.k != k || y.dim() != (m, n) {
        return Err(Error::Incompatible {
            op: "matmul_skip_zeros".into(),
            reason: "x: [m, k], b: [k, n] and y: [m, n] do not fit",
            a_name: "x",
            a: [m, k][..].into(),
            b_name: "b",
            b: [b.k, n][..].into(),
        });
    }
    let Some(y) = y.as_slice_mut() else {
        return Err(Error::Incompatible {
            op: "matmul_skip_zeros".into(),
            reason: "y must be row-major",
            a_name: "x",
            a: [m, k][..].into(),
            b_name: "y",
            b: [m, n][..].into(),
        });
    };
    let strided: Vec<f32>; // a copy only for a strided view
    let c = match c.map(|c| (c.to_slice(), c)) {
        None => &[][..],
        Some((Some(c), _)) => c,
        Some((None, c)) => {
            strided = c.to_vec();
            &strided[..]
        }
    };
    if n == 0 {
        return Ok(()); // no columns: the output is empty
    }
    if k == 0 {
        // empty sums (and no rows to cut the input into)
        for y_r in y.chunks_exact_mut(n) {
            match c.is_empty() {
                true => y_r.fill(0.0),
                false => y_r.copy_from_slice(c),
            }
        }
        return Ok(());
    }
    let x = x.as_standard_layout(); // rows as slices (a copy only for a strided view)
    let x = x.as_slice().expect("standard layout");
    let b = Rows::new(b, c);
    // about 2^20 multiply-adds at half density before a second thread pays off
    let work = m.saturating_mul(n).saturating_mul(k) / 32;
    crate::parallel::split_runs(m, (y, n), work, &|rows, y_run| {
        let x_run = &x[rows.start * k..rows.end * k];
        #[cfg(target_arch = "x86_64")]
        if rows.len() >= tiled::MIN_ROWS && tiled::takes(&b) {
            return tiled::rows_product(x_run, k, b, y_run);
        }
        rows_product(x_run, k, b, y_run);
    });
    Ok(())
}

/// `y = x·B + c` for consecutive rows of `x` (`k` values each), three at a time, the last
/// one or two as a pair, then alone.
fn rows_product(x: &[f32], k: usize, b: Rows<'_>, y: &mut [f32]) {
    let n = b.n;
    SCRATCH.with_borrow_mut(|e| {
        let mut units = y.chunks_exact_mut(ROWS * n);
        for (x_u, y_u) in x.chunks_exact(ROWS * k).zip(&mut units) {
            let x_u: [&[f32]; ROWS] = std::array::from_fn(|r| &x_u[r * k..(r + 1) * k]);
            e.gather(x_u);
            product(e, x_u, b, y_u);
        }
        let x_rest = &x[x.len() / (ROWS * k) * (ROWS * k)..];
        let mut pairs = units.into_remainder().chunks_exact_mut(2 * n);
        for (x_u, y_u) in x_rest.chunks_exact(2 * k).zip(&mut pairs) {
            let x_u = [&x_u[..k], &x_u[k..]];
            e.gather(x_u);
            product(e, x_u, b, y_u);
        }
        if let Some(y_one) = Some(pairs.into_remainder()).filter(|y| !y.is_empty()) {
            let x_one = &x[x.len() - k..]; // the last row
            e.gather([x_one]);
            product(e, [x_one], b, y_one);
        }
    });
}

/// The right factor's panels (`panel` columns of all its rows, a row every `panel` floats,
/// the columns past `n` zeros), its width `n`, and the bias added to every output row (`n`
/// values, or none).
#[derive(Clone, Copy)]
struct Rows<'a> {
    b: &'a [f32],
    panel: usize,
    /// Floats per panel: `panel` times the rows of `B`.
    panel_len: usize,
    n: usize,
    c: &'a [f32],
}

impl<'a> Rows<'a> {
    fn new(b: &'a AlignedRows, c: &'a [f32]) -> Self {
        Rows {
            b: b.rows(),
            panel: b.panel,
            panel_len: b.k * b.panel,
            n: b.n,
            c,
        }
    }

    /// Where row 0's columns `j..` start (a block of columns never crosses a panel).
    #[inline]
    fn start(&self, j: usize) -> usize {
        match j < self.panel {
            true => j, // the first panel (the only one where rows are whole): no division
            false => j / self.panel * self.panel_len + j % self.panel,
        }
    }
}

thread_local! {
    /// Each thread's lists of non-zero entries, reused from unit to unit.
    static SCRATCH: std::cell::RefCell<Entries> = std::cell::RefCell::new(Entries::default());
}

/// `y_r = c + Σ_k x_rk · b_k` for the `R` rows of a unit (`y`: their output rows, one
/// after another) over its sorted entries, with the widest kernel this CPU runs: AVX-512
/// takes 128 columns at a time for one or two rows (16 sums in registers for two, and the
/// row of `B` in 8 more), 64 for three (12 sums, 4 for the row); AVX2 16.
fn product<const R: usize>(e: &Entries, x: [&[f32]; R], b: Rows<'_>, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(simd) = pulp::x86::V4::try_new() {
            if R > 2 {
                return pulp::Simd::vectorize(simd, Product::<'_, 64, R, true> { e, x, b, y });
            }
            return pulp::Simd::vectorize(simd, Product::<'_, 128, R, true> { e, x, b, y });
        }
        if avx2::available() {
            // SAFETY: the CPU has AVX2 and FMA; the lists hold positions below k, the length
            // of each row of x and B's row count (checked by `matmul_skip_zeros`); y holds
            // R rows of n; without AVX-512, `B` is stored in panels of `avx2::PANEL`.
            #[allow(unsafe_code)]
            return unsafe { avx2::product(e, x, b, y) };
        }
        columns::<16, R, false>(e, x, b, y)
    }
    #[cfg(not(target_arch = "x86_64"))]
    columns::<16, R, { cfg!(target_arch = "aarch64") }>(e, x, b, y)
}

/// One unit's product as a `pulp` operation: `with_simd` is inlined into the function
/// compiled for the instruction set, and the loops below it with it (a closure is not
/// always inlined, and its loops then lose the wider vectors and the fused multiply-add).
#[cfg(target_arch = "x86_64")]
struct Product<'a, const W: usize, const R: usize, const FUSED: bool> {
    e: &'a Entries,
    x: [&'a [f32]; R],
    b: Rows<'a>,
    y: &'a mut [f32],
}

#[cfg(target_arch = "x86_64")]
impl<const W: usize, const R: usize, const FUSED: bool> pulp::WithSimd
    for Product<'_, W, R, FUSED>
{
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        columns::<W, R, FUSED>(self.e, self.x, self.b, self.y)
    }
}

/// The outputs in blocks of `W` columns, then of 16 (the last one reading the zeros that
/// pad each row of `B` to its stride, and storing only the real columns). `FUSED`: the CPU
/// has a fused multiply-add instruction (otherwise `mul_add` would be a library call).
#[inline(always)]
fn columns<const W: usize, const R: usize, const FUSED: bool>(
    e: &Entries,
    x: [&[f32]; R],
    b: Rows<'_>,
    y: &mut [f32],
) {
    let mut j = 0;
    while j + W <= b.n {
        block::<W, R, FUSED>(e, x, b, j, y);
        j += W;
    }
    while W > 64 && j + 64 <= b.n {
        block::<64, R, FUSED>(e, x, b, j, y);
        j += 64;
    }
    while j < b.n {
        block::<16, R, FUSED>(e, x, b, j, y);
        j += 16;
    }
}

/// Columns `j..j + W` of the unit's outputs (those below `n`), the `R·W` sums held in
/// registers, each pattern's positions in their own loop:
///
/// ```text
/// y_r[j..j+W] = c[j..j+W]                                                (or 0)
/// for p in patterns, for k in list p:   y_r[j..j+W] += x_rk · b[k, j..j+W]   for r in p
/// ```
#[inline(always)]
fn block<const W: usize, const R: usize, const FUSED: bool>(
    e: &Entries,
    x: [&[f32]; R],
    b: Rows<'_>,
    j: usize,
    y: &mut [f32],
) {
    let len = W.min(b.n - j);
    let mut acc = [[0.0f32; W]; R];
    if !b.c.is_empty() {
        for acc in &mut acc {
            acc[..len].copy_from_slice(&b.c[j..j + len]); // the sums start at the bias
        }
    }
    macro_rules! patterns {
        ($($p:literal)*) => {$(
            if $p < 1 << R {
                pattern::<W, R, $p, FUSED>(e.list($p), x, b, j, &mut acc);
            }
        )*};
    }
    patterns!(1 2 3 4 5 6 7);
    for (y_r, acc) in y.chunks_exact_mut(b.n).zip(&acc) {
        y_r[j..j + len].copy_from_slice(&acc[..len]);
    }
}

/// The positions of pattern `P`: `acc_r += x_rk · b[k, j..j + W]` for each row `r` in `P`,
/// the row of `B` read once for all of them.
#[inline(always)]
fn pattern<const W: usize, const R: usize, const P: usize, const FUSED: bool>(
    at: &[u32],
    x: [&[f32]; R],
    b: Rows<'_>,
    j: usize,
    acc: &mut [[f32; W]; R],
) {
    // The largest position bounds every access below: checked once here rather than at
    // each position (measured on W4's batch of 1024, two threads: the per-position checks
    // and the registers they held made the product 5–8 % slower). The maximum, not the
    // last entry, so that the reads stay in bounds whatever order a list is in; the end of
    // its row of B in checked arithmetic, so that no wrap-around (on 32-bit targets) can
    // pass the check.
    let Some(last) = at.iter().copied().max().map(|k| k as usize) else {
        return;
    };
    let start = b.start(j);
    let row_end = last
        .checked_mul(b.panel)
        .and_then(|o| o.checked_add(start))
        .and_then(|o| o.checked_add(W));
    assert!(
        x.iter().all(|x_r| last < x_r.len()) && row_end.is_some_and(|e| e <= b.b.len()),
        "a listed position lies outside x or B"
    );
    let mut sums = *acc; // a local copy, kept in registers through the loop
    for &k in at {
        let k = k as usize;
        // the row copied into registers: a pattern of several rows then loads each value
        // once for all of them (reading it from memory at each use measured ~10 % slower)
        // SAFETY: k ≤ last, so `start + k·panel + W ≤ b.b.len()` (asserted above); an
        // `[f32; W]` has the alignment of `f32`.
        #[allow(unsafe_code)]
        let row: [f32; W] = unsafe { *b.b.as_ptr().add(start + k * b.panel).cast::<[f32; W]>() };
        for (r, sums) in sums.iter_mut().enumerate() {
            if P >> r & 1 == 1 {
                // SAFETY: k ≤ last < x[r].len() (asserted above).
                #[allow(unsafe_code)]
                let v = unsafe { *x[r].get_unchecked(k) };
                for (a, &w) in sums.iter_mut().zip(&row) {
                    *a = if FUSED { v.mul_add(w, *a) } else { *a + v * w }; // y += x_rk · b_kj
                }
            }
        }
    }
    *acc = sums;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};

    /// `B` stored for the product, through the transpose a dense layer starts from.
    fn aligned(b: &Array2<f32>) -> AlignedRows {
        let rows = AlignedRows::transposed(b.t()).unwrap();
        assert_eq!(rows.dim(), b.dim());
        assert_eq!(rows.rows().as_ptr() as usize % 64, 0);
        let copy = rows.clone();
        assert_eq!(copy.rows().as_ptr() as usize % 64, 0);
        let bits = |r: &AlignedRows| r.rows().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&copy), bits(&rows));
        copy
    }

    /// `X·B` by three loops in f64, zeros included.
    pub(super) fn reference(x: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let (m, k, n) = (x.nrows(), x.ncols(), b.ncols());
        Array2::from_shape_fn((m, n), |(i, j)| {
            (0..k)
                .map(|t| x[[i, t]] as f64 * b[[t, j]] as f64)
                .sum::<f64>() as f32
        })
    }

    #[test]
    fn by_hand() {
        // x = [0, 2, 0, -1]: y = 2·b_1 − b_3
        let x = array![[0.0f32, 2.0, 0.0, -1.0]];
        let b = array![[9.0f32, 9.0], [1.0, 2.0], [9.0, 9.0], [3.0, -4.0]];
        let mut y = Array2::from_elem((1, 2), f32::NAN);
        matmul_skip_zeros(x.view(), &aligned(&b), None, &mut y.view_mut()).unwrap();
        assert_eq!(y, array![[2.0 * 1.0 - 3.0, 2.0 * 2.0 + 4.0]]);
        // with a bias c = [10, −20]: y = 2·b_1 − b_3 + c
        let c = array![10.0f32, -20.0];
        matmul_skip_zeros(x.view(), &aligned(&b), Some(c.view()), &mut y.view_mut()).unwrap();
        assert_eq!(y, array![[-1.0 + 10.0, 8.0 - 20.0]]);
        // a strided bias (every other value of a longer vector) is the same bias
        let every_other = array![10.0f32, 99.0, -20.0, 99.0];
        let c = every_other.slice(ndarray::s![..;2]);
        matmul_skip_zeros(x.view(), &aligned(&b), Some(c), &mut y.view_mut()).unwrap();
        assert_eq!(y, array![[-1.0 + 10.0, 8.0 - 20.0]]);
    }

    #[test]
    fn zeros_of_x_skip_even_nan_rows_of_b() {
        // a NaN in a row of B that only zeros of X meet never reaches Y
        let x = array![[0.0f32, 1.0], [0.0, 0.0]];
        let b = array![[f32::NAN, f32::NAN], [5.0, 6.0]];
        let mut y = Array2::from_elem((2, 2), 7.0);
        matmul_skip_zeros(x.view(), &aligned(&b), None, &mut y.view_mut()).unwrap();
        assert_eq!(y, array![[5.0, 6.0], [0.0, 0.0]]);
    }

    #[test]
    fn every_block_width_matches_the_definition() {
        // n = 128 + 64 + 16 + 3 passes through every block width and the tails, 144 and 128
        // end on a block's edge, 10 is one part-used block; rows of every density, on one
        // thread and on the pool's; the last input column non-zero (the last row of B read)
        let k = 50;
        for n in [211, 144, 128, 10] {
            for m in [1, 2, 3, 4, 5, 6, 200, 201] {
                let x = Array2::from_shape_fn((m, k), |(i, j)| {
                    let v = ((i * 31 + j * 17) % 23) as f32 - 11.0;
                    if (i + j) % (i % 4 + 1) == 0 || j == k - 1 {
                        v * 0.25 + 0.1
                    } else {
                        0.0
                    }
                });
                let b = Array2::from_shape_fn((k, n), |(i, j)| {
                    ((i * 7 + j * 13) % 19) as f32 * 0.1 - 0.9
                });
                let want = reference(&x, &b);
                let mut y = Array2::zeros((m, n));
                matmul_skip_zeros(x.view(), &aligned(&b), None, &mut y.view_mut()).unwrap();
                close(&y, &want);
                close(&portable(&x, &aligned(&b), &[]), &want);
                // with a bias: every row of the reference plus c
                let c = Array1::from_shape_fn(n, |j| j as f32 * 0.5 - 3.0);
                let want = &want + &c;
                matmul_skip_zeros(x.view(), &aligned(&b), Some(c.view()), &mut y.view_mut())
                    .unwrap();
                close(&y, &want);
                close(&portable(&x, &aligned(&b), c.as_slice().unwrap()), &want);
            }
        }
    }

    pub(super) fn close(got: &Array2<f32>, want: &Array2<f32>) {
        for (got, want) in got.iter().zip(want) {
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }

    /// `X·B + c` by the kernel for CPUs without fused multiply-add, whatever this CPU has.
    fn portable(x: &Array2<f32>, b: &AlignedRows, c: &[f32]) -> Array2<f32> {
        by_units(x, b, c, false)
    }

    /// `X·B + c` unit by unit, by the portable kernel or (`avx2`) the AVX2 one.
    fn by_units(x: &Array2<f32>, b: &AlignedRows, c: &[f32], avx2: bool) -> Array2<f32> {
        let ((m, k), n) = (x.dim(), b.n);
        let rows = Rows::new(b, c);
        let mut y = Array2::zeros((m, n));
        let mut e = Entries::default();
        let (xs, ys) = (x.as_slice().unwrap(), y.as_slice_mut().unwrap());
        // units of three rows, then of what is left (two or one), as the product takes them
        for (x_u, y_u) in xs.chunks(3 * k).zip(ys.chunks_mut(3 * n)) {
            let r = |i: usize| &x_u[i * k..(i + 1) * k];
            macro_rules! unit {
                ($($i:literal)*) => {{
                    let x_u = [$(r($i)),*];
                    e.gather(x_u);
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        assert!(avx2::available() && b.panel == avx2::PANEL);
                        // SAFETY: checked just above; positions below k; y_u holds the rows.
                        #[allow(unsafe_code)]
                        unsafe { avx2::product(&e, x_u, rows, y_u) };
                        continue;
                    }
                    assert!(!avx2);
                    columns::<16, { [$($i),*].len() }, false>(&e, x_u, rows, y_u);
                }};
            }
            match x_u.len() / k {
                3 => unit!(0 1 2),
                2 => unit!(0 1),
                _ => unit!(0),
            }
        }
        y
    }

    #[test]
    fn panels_hold_each_rows_columns() {
        // B: [2, 20], b_kj = 100k + j, in panels of 16 columns: panel 0 holds columns 0..16
        // of row 0 then of row 1, panel 1 columns 16..20 and 12 zeros of padding, per row
        let b = Array2::from_shape_fn((2, 20), |(k, j)| (100 * k + j) as f32);
        let p = AlignedRows::with_panel(b.t(), 16).unwrap();
        assert_eq!((p.dim(), p.stride, p.panel), ((2, 20), 32, 16));
        let v = p.rows();
        assert_eq!(v.len(), 64);
        assert_eq!((v[0], v[15], v[16], v[31]), (0.0, 15.0, 100.0, 115.0));
        assert_eq!(&v[32..36], [16.0, 17.0, 18.0, 19.0]);
        assert!(v[36..48].iter().all(|&z| z == 0.0));
        assert_eq!(&v[48..52], [116.0, 117.0, 118.0, 119.0]);
        let rows = Rows::new(&p, &[]);
        assert_eq!((rows.start(0), rows.start(16), rows.start(18)), (0, 32, 34));
        assert_eq!(v[rows.start(18) + rows.panel], 118.0); // b_1,18
        assert_eq!(v.as_ptr() as usize % 64, 0);
    }

    #[test]
    fn each_kernel_matches_the_definition_on_panels() {
        // the portable kernel on panels of 32 whatever this CPU uses, and the AVX2 kernel
        // where the CPU has it (even when the product would take AVX-512)
        let k = 40;
        for n in [211, 128, 10] {
            for m in [1, 2, 3, 7] {
                let x = Array2::from_shape_fn((m, k), |(i, j)| match (i * 7 + j * 3) % 5 {
                    0 | 1 => 0.0,
                    v => v as f32 - 3.5 + i as f32 * 0.1,
                });
                let b =
                    Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 17) as f32 - 8.0);
                let c = Array1::from_shape_fn(n, |j| j as f32 * 0.25);
                let want = &reference(&x, &b) + &c;
                let p = AlignedRows::with_panel(b.t(), 32).unwrap();
                close(&by_units(&x, &p, c.as_slice().unwrap(), false), &want);
                #[cfg(target_arch = "x86_64")]
                if avx2::available() {
                    close(&by_units(&x, &p, c.as_slice().unwrap(), true), &want);
                }
            }
        }
    }

    /// `pattern` for one row `x` over positions `at`, 16 columns of a `B` with `b_rows` rows
    /// (`b_kj = 16k + j`), sums starting at 1.
    fn one_row_pattern(x: &[f32], b_rows: usize, at: &[u32]) -> [f32; 16] {
        let b = aligned(&Array2::from_shape_fn((b_rows, 16), |(i, j)| {
            (i * 16 + j) as f32
        }));
        let mut acc = [[1.0f32; 16]; 1];
        pattern::<16, 1, 1, false>(at, [x], Rows::new(&b, &[]), 0, &mut acc);
        acc[0]
    }

    #[test]
    #[should_panic(expected = "outside x or B")]
    fn a_position_past_the_rows_of_x_is_refused_before_any_read() {
        // the kernel reads without per-position checks; one check of the largest position
        // guards them: position 4 of rows with 4 values must stop it (B has 8 rows, so
        // only the check on x can)
        one_row_pattern(&[1.0; 4], 8, &[4, 0]);
    }

    #[test]
    #[should_panic(expected = "outside x or B")]
    fn a_position_past_the_rows_of_b_is_refused_before_any_read() {
        // x has 8 values but B only 4 rows: position 5 must stop it (only the check on B can)
        one_row_pattern(&[1.0; 8], 4, &[0, 5]);
    }

    #[test]
    #[should_panic(expected = "outside x or B")]
    fn a_position_whose_row_end_overflows_is_refused() {
        // a position so large that its row's end wraps around must not pass the check
        let x = [1.0f32; 4];
        let b = aligned(&Array2::<f32>::ones((4, 16)));
        let rows = Rows {
            panel: usize::MAX / 2,
            ..Rows::new(&b, &[])
        };
        let mut acc = [[0.0f32; 16]; 1];
        pattern::<16, 1, 1, false>(&[3], [&x[..]], rows, 0, &mut acc);
    }

    #[test]
    fn the_last_row_of_b_and_of_x_is_read() {
        // the largest position allowed, k − 1, passes the check and is summed: 1 + 2·b_3j
        let got = one_row_pattern(&[0.0, 0.0, 0.0, 2.0], 4, &[3]);
        let want: Vec<f32> = (0..16).map(|j| 1.0 + 2.0 * (48 + j) as f32).collect();
        assert_eq!(got.to_vec(), want);
    }

    #[test]
    fn no_inputs_give_zeros() {
        // k = 0: every output is an empty sum
        let x = Array2::<f32>::zeros((3, 0));
        let b = aligned(&Array2::<f32>::zeros((0, 5)));
        let mut y = Array2::from_elem((3, 5), f32::NAN);
        matmul_skip_zeros(x.view(), &b, None, &mut y.view_mut()).unwrap();
        assert_eq!(y, Array2::<f32>::zeros((3, 5)));
        // with a bias, every row is the bias
        let c = array![1.0f32, 2.0, 3.0, 4.0, 5.0];
        matmul_skip_zeros(x.view(), &b, Some(c.view()), &mut y.view_mut()).unwrap();
        assert_eq!(y, Array2::from_shape_fn((3, 5), |(_, j)| j as f32 + 1.0));
    }

    #[test]
    fn shapes_and_layouts_are_checked() {
        let x = Array2::<f32>::zeros((2, 3));
        let b = aligned(&Array2::<f32>::zeros((4, 5)));
        let mut y = Array2::<f32>::zeros((2, 5));
        let err = matmul_skip_zeros(x.view(), &b, None, &mut y.view_mut()).unwrap_err();
        assert!(
            err.to_string().contains("[2, 3]") && err.to_string().contains("[4, 5]"),
            "{err}"
        );
        // a bias of the wrong length is named with its shape
        let b = aligned(&Array2::<f32>::zeros((3, 5)));
        let c = Array1::<f32>::zeros(4);
        let err = matmul_skip_zeros(x.view(), &b, Some(c.view()), &mut y.view_mut()).unwrap_err();
        assert!(
            err.to_string().contains("bias") && err.to_string().contains("[4]"),
            "{err}"
        );
        let b = aligned(&Array2::<f32>::zeros((3, 2)));
        let mut y = Array2::<f32>::zeros((2, 2));
        let mut yt = y.view_mut();
        yt.swap_axes(0, 1);
        let err = matmul_skip_zeros(x.view(), &b, None, &mut yt).unwrap_err();
        assert!(err.to_string().contains("row-major"), "{err}");
    }

    #[test]
    fn the_first_row_and_the_width_decide() {
        let w = MIN_WIDTH + 1;
        // 2 of 4 non-zero: at the limit; 3 of 4: dense
        let half = array![[0.0f32, 1.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]];
        assert!(worth_skipping(half.view(), w));
        assert!(!worth_skipping(array![[0.0f32, 1.0, 3.0, 2.0]].view(), w));
        // a strided first row (a transposed view) counts the same way
        let a = array![[0.0f32, 5.0], [1.0, 5.0], [0.0, 5.0], [2.0, 5.0]];
        assert!(worth_skipping(a.t(), w));
        let a = array![[0.0f32, 5.0], [1.0, 5.0], [3.0, 5.0], [2.0, 5.0]];
        assert!(!worth_skipping(a.t(), w));
        assert!(!worth_skipping(Array2::<f32>::zeros((0, 4)).view(), w));
        assert!(!worth_skipping(Array2::<f32>::zeros((2, 0)).view(), w));
        // a narrow product is dense however many zeros
        assert!(!worth_skipping(half.view(), MIN_WIDTH));
        assert!(!worth_skipping(
            Array2::<f32>::zeros((2, 4)).view(),
            MIN_WIDTH
        ));
    }
}
