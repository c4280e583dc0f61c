//! f32 products on AMX tiles, as sums of exact bfloat16 products.
//!
//! Every f32 splits exactly into three bfloat16 parts (the `split` module; exactly for
//! magnitudes from [`split::EXACT_ABOVE`] = 2⁻¹⁰³ on, to within 2⁻¹²⁴ below):
//!
//! ```text
//! v = v_h + v_m + v_l          |v_m| ≤ 2⁻⁸·|v|,  |v_l| ≤ 2⁻¹⁶·|v|
//! ```
//!
//! so a product of two f32 is a sum of nine products of bfloat16 parts, each exact in f32
//! (8 × 8 significant bits). The six kept here are those at least 2⁻¹⁶ of the whole:
//!
//! ```text
//! x·w ≈ x_h·w_h + x_h·w_m + x_h·w_l + x_m·w_h + x_m·w_m + x_l·w_h
//! dropped: x_m·w_l + x_l·w_m + x_l·w_l, at most ≈ 2·2⁻²⁴·|x·w|
//! ```
//!
//! The dropped terms are about as large as one rounding of an f32 product (2⁻²⁴ of it), and
//! the sums accumulate in f32, so `Y = X·B` agrees with an f32 product to rounding, as two
//! f32 products summed in different orders do; it is not bit for bit the same.
//!
//! An AMX tile multiply-add (`TDPBF16PS`) does 16 × 16 × 32 bfloat16 multiply-adds at once:
//! on the machine measured, 1.49 × 10¹² a second on one core, about 15 times its f32
//! multiply-adds with AVX-512, so even six of them per f32 product leave the product up to
//! 2.5 times faster. `B` (a layer's weight, fixed in inference) is split and laid out once,
//! as [`Packed`]; the rows of `X` are split 32 at a time with AVX-512 BF16 conversions, just
//! before their block is multiplied. Measured there (784 → 128 on Fashion-MNIST images, 2
//! threads): 1,024 rows in 287 µs, against 494 µs skipping zeros and 485 µs dense.
//!
//! Training does not use it: its weights change every step, so `B` would be split and laid
//! out at every product, and at a batch of 64 that costs what the tiles save. Measured for
//! W1's first layer through `matmul_into` (2 threads): `X·Wᵀ` 61–63 µs against 46–47 in f32,
//! `dYᵀ·X` 51–54 against 41–42; with only products like `dYᵀ·X` on the tiles (`B` a batch
//! of rows, `C` read and written by the tiles in place) `dYᵀ·X` took 45 µs against 37–40
//! and a W1 epoch 0.170–0.178 s against 0.151–0.159.
//!
//! Values that cannot be split (NaN, ±∞, magnitudes above [`split::LIMIT`]) are refused by
//! [`Packed::new`]; a block of rows of `X` holding one is computed in f32 arithmetic
//! instead, so the result is still the f32 product's. On CPUs without AMX (or outside
//! x86-64 Linux) [`matmul`] computes in f32 arithmetic throughout, correctly and slowly:
//! callers check [`available`] first.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

use crate::error::{Error, Result};

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod simd;
pub mod split;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod tiles;

use split::Line;

/// Rows of `X` split and multiplied at a time: two tiles of 16.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const BLOCK_ROWS: usize = 32;

/// Whether [`matmul`] runs on AMX tiles here: an x86-64 CPU with AMX-BF16, and Linux
/// granting this process the tile registers.
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    return tiles::available();
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// Rows at and above which [`worth_using`] picks the tiles. A block is 32 rows whatever
/// the batch, and each thread takes its own blocks; measured on a 784 → 128 layer against
/// the zero-skipping and dense f32 products on Fashion-MNIST images, 2 threads: 19.9
/// against 31.0 and 43.1 µs for 64 rows, but 17.8 against 17.3 and 29.3 µs for 32.
pub const MIN_ROWS: usize = 64;

/// Outputs per row below which [`worth_using`] declines: the columns are computed 32 at a
/// time, so a narrower `B` pays for columns of zeros.
pub const MIN_WIDTH: usize = 32;

/// Whether a product of `rows` rows into `n` outputs per row is faster on the tiles: AMX is
/// [`available`], `rows` is at least [`MIN_ROWS`] and `n` at least [`MIN_WIDTH`].
pub fn worth_using(rows: usize, n: usize) -> bool {
    rows >= MIN_ROWS && n >= MIN_WIDTH && available()
}

/// `B: [k, n]` split into bfloat16 parts and laid out as the tiles read it: column pairs of
/// tiles (32 columns), then blocks of 32 depths, then each column tile's `h, m, l` tiles,
/// each tile 16 lines of depth pairs interleaved by column. Depths and columns past `k`
/// and `n` are zeros.
#[derive(Clone, Debug)]
pub struct Packed {
    k: usize,
    n: usize,
    lines: Vec<Line>,
}

impl Packed {
    /// `b` split and laid out, or `None` when one of its values cannot be split (see
    /// [`split::split`]) or the layout's length overflows.
    pub fn new(b: ArrayView2<'_, f32>) -> Option<Packed> {
        let (k, n) = b.dim();
        let (blocks, pairs) = (k.div_ceil(32), n.div_ceil(32));
        let len = pairs.checked_mul(blocks)?.checked_mul(96)?;
        let mut lines = vec![Line::default(); len];
        // 48 lines at a time: one column tile's h, m and l tiles in one block of depths
        for (i, tiles) in lines.chunks_exact_mut(48).enumerate() {
            let (col_tile, blk, pair) = (i % 2, i / 2 % blocks, i / 2 / blocks);
            let (d0, col0) = (blk * 32, (2 * pair + col_tile) * 16);
            for r in 0..16 {
                for slot in 0..32 {
                    // line r holds depths 2r and 2r + 1 side by side, column by column
                    let (depth, col) = (d0 + 2 * r + slot % 2, col0 + slot / 2);
                    let value = if depth < k && col < n {
                        b[(depth, col)]
                    } else {
                        0.0
                    };
                    let parts = split::split(value)?;
                    for (part, &p) in parts.iter().enumerate() {
                        tiles[part * 16 + r].0[slot] = p;
                    }
                }
            }
        }
        Some(Packed { k, n, lines })
    }

    /// `(k, n)`: the shape of `B`.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// `B[depth, col]`, summed back from its parts (exactly the value packed).
    fn value(&self, depth: usize, col: usize) -> f32 {
        let blocks = self.k.div_ceil(32);
        let (pair, col_tile, c) = (col / 32, col / 16 % 2, col % 16);
        let (blk, r, e) = (depth / 32, depth % 32 / 2, depth % 2);
        let tile = ((pair * blocks + blk) * 2 + col_tile) * 3;
        (0..3)
            .map(|part| split::widen(self.lines[(tile + part) * 16 + r].0[2 * c + e]))
            .sum()
    }
}

/// `Y ← X·B + c` (`c`, a bias, added to every row), on AMX tiles where [`available`].
///
/// # Shapes
/// `x: [m, k]`, `b: [k, n]` (packed), `c: [n]`, `y: [m, n]` in standard (row-major) layout.
///
/// # Errors
/// [`Error::Incompatible`] when the shapes do not fit, or when `y` is not row-major.
pub fn matmul(
    x: ArrayView2<'_, f32>,
    b: &Packed,
    c: Option<ArrayView1<'_, f32>>,
    y: &mut ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let (m, k) = x.dim();
    let n = b.n;
    let incompatible = |reason, b_name, b_shape: &[usize]| Error::Incompatible {
        op: "amx::matmul".into(),
        reason,
        a_name: "x",
        a: [m, k][..].into(),
        b_name,
        b: b_shape.into(),
    };
    if b.k != k || y.dim() != (m, n) {
        return Err(incompatible(
            "x: [m, k], b: [k, n] and y: [m, n] do not fit",
            "b",
            &[b.k, n],
        ));
    }
    if let Some(c) = c.filter(|c| c.len() != n) {
        return Err(incompatible(
            "the bias c must have one value per column of b",
            "c",
            &[c.len()],
        ));
    }
    let Some(y) = y.as_slice_mut() else {
        return Err(incompatible("y must be row-major", "y", &[m, n]));
    };
    let c = c.map(|c| c.to_vec()).unwrap_or_else(|| vec![0.0; n]);
    if n == 0 {
        return Ok(());
    }
    let x = x.as_standard_layout(); // rows as slices (a copy only for a strided view)
    let x = x.as_slice().expect("standard layout");
    // one thread below 2^21 multiply-adds (`split_runs` splits from 2^15 units of work on):
    // a few µs on the tiles
    let work = m.saturating_mul(n).saturating_mul(k) / 64;
    crate::parallel::split_runs(m, (y, n), work, &|rows, y_run| {
        let x_run = &x[rows.start * k..rows.end * k];
        rows_product(x_run, b, &c, y_run);
    });
    Ok(())
}

/// `y = x·B + c` for consecutive rows of `x`, a block of 32 at a time.
fn rows_product(x: &[f32], b: &Packed, c: &[f32], y: &mut [f32]) {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if let Some(mut t) = tiles::Tiles::configure().filter(|_| b.k > 0) {
        let (k, n) = (b.k, b.n);
        for (x_blk, y_blk) in x.chunks(BLOCK_ROWS * k).zip(y.chunks_mut(BLOCK_ROWS * n)) {
            if !block_product(&mut t, x_blk, b, c, y_blk) {
                exact_rows(x_blk, b, c, y_blk); // a value that cannot be split
            }
        }
        return;
    }
    exact_rows(x, b, c, y);
}

/// Blocks computed on the tiles, for the tests to see where a product ran.
#[cfg(test)]
static TILED_BLOCKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
thread_local! {
    /// A thread's block of split rows, kept from call to call.
    static SPLIT_ROWS: std::cell::RefCell<Vec<Line>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `y = x·B + c` for at most 32 consecutive rows of `x` on the tiles: the rows split, then
/// multiplied by every column pair of `B`. Returns `false`, having written nothing, when a
/// row holds a value that cannot be split.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn block_product(t: &mut tiles::Tiles, x: &[f32], b: &Packed, c: &[f32], y: &mut [f32]) -> bool {
    let (k, n) = (b.k, b.n);
    let (rows, blocks) = (x.len() / k, k.div_ceil(32));
    SPLIT_ROWS.with_borrow_mut(|lines| {
        lines.resize(BLOCK_ROWS * 3 * blocks, Line::default());
        let split_all = x
            .chunks_exact(k)
            .zip(lines.chunks_exact_mut(3 * blocks))
            .all(|(x_r, l_r)| simd::split_row_on(t, x_r, l_r));
        if !split_all {
            return false;
        }
        lines[rows * 3 * blocks..].fill(Line::default()); // rows past the block's end
        #[cfg(test)]
        TILED_BLOCKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut sums = [0.0f32; 1024]; // 32 × 32, row i at 32·i
        for (pair, b_pair) in b.lines.chunks_exact(96 * blocks).enumerate() {
            t.block(lines, b_pair, blocks, &mut sums);
            let cols = pair * 32..n.min(pair * 32 + 32);
            for (y_i, s_i) in y.chunks_exact_mut(n).zip(sums.chunks_exact(32)) {
                for ((y, s), c) in y_i[cols.clone()].iter_mut().zip(s_i).zip(&c[cols.clone()]) {
                    *y = s + c; // y_ij = Σ_k x_ik·b_kj + c_j
                }
            }
        }
        true
    })
}

/// `y = x·B + c` in f32 arithmetic, from `B`'s exact values.
fn exact_rows(x: &[f32], b: &Packed, c: &[f32], y: &mut [f32]) {
    let (k, n) = (b.k, b.n);
    for (r, y_r) in y.chunks_exact_mut(n).enumerate() {
        for (j, y) in y_r.iter_mut().enumerate() {
            // y_ij = c_j + Σ_k x_ik·b_kj
            *y = c[j] + (0..k).map(|d| x[r * k + d] * b.value(d, j)).sum::<f32>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};

    /// `X·B + c` in f64, and `Σ_k |x_ik·b_kj|`, the scale of each sum's rounding.
    fn reference(x: &Array2<f32>, b: &Array2<f32>, c: &[f32]) -> (Array2<f64>, Array2<f64>) {
        let ((m, k), n) = (x.dim(), b.ncols());
        let prod = |i, t, j| x[[i, t]] as f64 * b[[t, j]] as f64;
        let y = Array2::from_shape_fn((m, n), |(i, j)| {
            c[j] as f64 + (0..k).map(|t| prod(i, t, j)).sum::<f64>()
        });
        let scale = Array2::from_shape_fn((m, n), |(i, j)| {
            c[j].abs() as f64 + (0..k).map(|t| prod(i, t, j).abs()).sum::<f64>()
        });
        (y, scale)
    }

    fn random(shape: (usize, usize), seed: u64) -> Array2<f32> {
        let mut rng = crate::seeded(seed);
        Array2::from_shape_fn(shape, |_| crate::rng::uniform(&mut rng, -1.0, 1.0))
    }

    fn product(x: &Array2<f32>, b: &Array2<f32>, c: &[f32]) -> Array2<f32> {
        let mut y = Array2::from_elem((x.nrows(), b.ncols()), f32::NAN);
        let c = Array1::from(c.to_vec());
        let packed = Packed::new(b.view()).unwrap();
        matmul(x.view(), &packed, Some(c.view()), &mut y.view_mut()).unwrap();
        y
    }

    #[test]
    fn by_hand() {
        // x = [[1, 2], [0, −1]], B = [[3, 4, 5], [6, 7, 8]], c = [1, 0, −1]
        let x = array![[1.0f32, 2.0], [0.0, -1.0]];
        let b = array![[3.0f32, 4.0, 5.0], [6.0, 7.0, 8.0]];
        // row 0: [3 + 12, 4 + 14, 5 + 16] + c = [16, 18, 20]; row 1: −[6, 7, 8] + c
        let want = array![[16.0f32, 18.0, 20.0], [-5.0, -7.0, -9.0]];
        assert_eq!(product(&x, &b, &[1.0, 0.0, -1.0]), want);
    }

    #[test]
    fn the_layout_puts_each_value_in_its_tile_line_and_slot() {
        let b = Array2::from_shape_fn((40, 40), |(d, j)| (d * 100 + j) as f32);
        let p = Packed::new(b.view()).unwrap();
        // 2 blocks of depth × 2 column pairs × 96 lines
        assert_eq!((p.dim(), p.lines.len()), ((40, 40), 2 * 2 * 96));
        // the value at `slot` of `line` in the h, m and l tiles from tile `tile` on
        let at = |tile: usize, line: usize, slot: usize| -> f32 {
            (0..3)
                .map(|part| split::widen(p.lines[(tile + part) * 16 + line].0[slot]))
                .sum()
        };
        // B[33, 17]: pair 0, column tile 1, column 1 in it; block 1, depth pair 0, second
        // of the pair: tiles from ((0·2 + 1)·2 + 1)·3 = 9, line 0, slot 2·1 + 1
        assert_eq!(at(9, 0, 3), 3317.0);
        // B[5, 35]: pair 1, tile 0, column 3; block 0, depth pair 2, second of the pair:
        // tiles from ((1·2 + 0)·2 + 0)·3 = 12, line 2, slot 2·3 + 1; B[4, 35] beside it
        assert_eq!((at(12, 2, 7), at(12, 2, 6)), (535.0, 435.0));
        // B[39, 39]: pair 1, tile 0, column 7; block 1, pair 3, second: tiles from 18
        assert_eq!(at(18, 3, 15), 3939.0);
        // past the end: column 40 (slot 16 there) and depth 40 (line 4) are zeros
        assert_eq!((at(18, 3, 16), at(18, 4, 0)), (0.0, 0.0));
        for ((d, j), &v) in b.indexed_iter() {
            assert_eq!(p.value(d, j), v, "B[{d}, {j}]");
        }
    }

    #[test]
    fn weights_that_cannot_be_split_are_refused() {
        for bad in [f32::NAN, f32::INFINITY, f32::MAX] {
            let mut b = random((5, 40), 1);
            b[[3, 33]] = bad;
            assert!(Packed::new(b.view()).is_none(), "{bad}");
        }
    }

    #[test]
    fn products_agree_with_f64_to_f32_rounding() {
        // whole blocks, a partial block, ragged depths and widths, more than one thread's rows
        for (m, k, n) in [
            (64, 784, 128),
            (1, 1, 1),
            (33, 31, 33),
            (100, 65, 70),
            (7, 32, 32),
        ] {
            let (x, b) = (random((m, k), 2), random((k, n), 3));
            let c: Vec<f32> = (0..n).map(|j| j as f32 / 10.0).collect();
            let (want, scale) = reference(&x, &b, &c);
            let got = product(&x, &b, &c);
            for ((g, w), s) in got.iter().zip(&want).zip(&scale) {
                // an f32 sum of k products is within ~k·2⁻²⁴ of the scale; these are far within
                assert!((*g as f64 - w).abs() <= 4e-7 * s, "{m}×{k}×{n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn an_empty_depth_gives_the_bias_and_no_columns_an_empty_output() {
        let x = Array2::<f32>::zeros((3, 0));
        let p = Packed::new(Array2::<f32>::zeros((0, 2)).view()).unwrap();
        let mut y = Array2::from_elem((3, 2), f32::NAN);
        let c = array![1.5f32, -2.0];
        matmul(x.view(), &p, Some(c.view()), &mut y.view_mut()).unwrap();
        assert_eq!(y, array![[1.5f32, -2.0], [1.5, -2.0], [1.5, -2.0]]);
        let p = Packed::new(Array2::<f32>::zeros((4, 0)).view()).unwrap();
        let mut y = Array2::<f32>::zeros((3, 0));
        matmul(
            Array2::<f32>::ones((3, 4)).view(),
            &p,
            None,
            &mut y.view_mut(),
        )
        .unwrap();
    }

    #[test]
    fn a_block_holding_an_unsplittable_value_is_computed_in_f32() {
        // rows 32–63 form the second block; row 40 holds ∞ and row 50 NaN
        let (mut x, b) = (random((70, 40), 4), random((40, 33), 5));
        x[[40, 7]] = f32::INFINITY;
        x[[50, 0]] = f32::NAN;
        let c = vec![0.25f32; 33];
        let got = product(&x, &b, &c);
        let (want, scale) = reference(&x, &b, &c);
        for ((i, j), g) in got.indexed_iter() {
            // the f32 formula, summed in order: what the fallback promises, bit for bit
            let f32_sum = c[j] + (0..40).map(|t| x[[i, t]] * b[[t, j]]).sum::<f32>();
            if (32..64).contains(&i) {
                assert!(
                    g.to_bits() == f32_sum.to_bits(),
                    "[{i}, {j}]: {g} vs {f32_sum}"
                );
            } else {
                let (w, s) = (want[[i, j]], scale[[i, j]]);
                assert!((*g as f64 - w).abs() <= 4e-7 * s, "[{i}, {j}]: {g} vs {w}");
            }
        }
        assert!(got[[50, 3]].is_nan() && got[[40, 0]].is_infinite());
    }

    #[test]
    fn the_tiles_run_where_amx_is_available() {
        let before = TILED_BLOCKS.load(std::sync::atomic::Ordering::Relaxed);
        let (x, b) = (random((70, 40), 6), random((40, 40), 7));
        let (want, scale) = reference(&x, &b, &[0.0; 40]);
        let got = product(&x, &b, &[0.0; 40]);
        for ((g, w), s) in got.iter().zip(&want).zip(&scale) {
            assert!((*g as f64 - w).abs() <= 4e-7 * s, "{g} vs {w}");
        }
        let blocks = TILED_BLOCKS.load(std::sync::atomic::Ordering::Relaxed) - before;
        if available() {
            assert!(
                blocks >= 3,
                "70 rows are three blocks on the tiles, saw {blocks}"
            );
        } else {
            println!("skipped: no AMX here, so the f32 arithmetic ran (and was checked)");
        }
    }

    /// `available` against the kernel's own list of CPU flags (Linux grants the tiles from
    /// version 5.16 on, which every machine this runs on has).
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    #[test]
    fn available_where_the_cpu_lists_amx_and_avx512_bf16() {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap();
        let flags = info.lines().find(|l| l.starts_with("flags")).unwrap();
        let has = |f: &str| flags.split_whitespace().any(|w| w == f);
        let listed = ["amx_tile", "amx_bf16", "avx512_bf16", "avx512bw"]
            .iter()
            .all(|f| has(f));
        assert_eq!(available(), listed, "flags: {flags}");
    }

    #[test]
    fn worth_using_needs_rows_width_and_amx() {
        assert!(!worth_using(MIN_ROWS - 1, 128));
        assert!(!worth_using(1024, MIN_WIDTH - 1));
        assert_eq!(worth_using(MIN_ROWS, MIN_WIDTH), available());
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let p = Packed::new(Array2::<f32>::zeros((4, 3)).view()).unwrap();
        let mut y = Array2::<f32>::zeros((2, 3));
        let e = matmul(Array2::zeros((2, 5)).view(), &p, None, &mut y.view_mut()).unwrap_err();
        assert!(
            e.to_string().contains("[2, 5]") && e.to_string().contains("[4, 3]"),
            "{e}"
        );
        let c = array![1.0f32, 2.0];
        let x = Array2::<f32>::zeros((2, 4));
        let e = matmul(x.view(), &p, Some(c.view()), &mut y.view_mut()).unwrap_err();
        assert!(e.to_string().contains("bias"), "{e}");
        let mut yt = Array2::<f32>::zeros((3, 2));
        let mut yt = yt.view_mut().reversed_axes();
        let e = matmul(x.view(), &p, None, &mut yt).unwrap_err();
        assert!(e.to_string().contains("row-major"), "{e}");
    }
}
