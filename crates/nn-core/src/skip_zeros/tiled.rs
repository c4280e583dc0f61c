//! The product for a long run of rows (AVX-512): `B` in tiles that stay in L1, each tile
//! used by every row of a group before the next tile is loaded.
//!
//! ```text
//! for each group of GROUP rows of X, taken in pairs (x₀, x₁):
//!     list the pair's positions, tile by tile, in three kinds:
//!         both  = { k : x₀k ≠ 0, x₁k ≠ 0 }   first = { k : x₀k ≠ 0 = x₁k }   second = { k : x₀k = 0 ≠ x₁k }
//!     for each block of BLOCK columns j, for each tile t of TILE_K positions, for each pair:
//!         s₀, s₁ = (t first ? c[j..] : y₀[j..], y₁[j..])
//!         for k in both ∩ t:    w = b[k, j..];   s₀ += x₀k · w;   s₁ += x₁k · w
//!         for k in first ∩ t:   s₀ += x₀k · b[k, j..]
//!         for k in second ∩ t:  s₁ += x₁k · b[k, j..]
//!         y₀[j..], y₁[j..] = s₀, s₁
//! ```
//!
//! The unit kernel (the parent module) reads the rows of `B` its unit needs from L2, about
//! 100 KB per row of `X` for a 784×128 weight, and that read sets its pace. Here a tile
//! (64 positions × 128 columns, 32 KiB) is read from L2 once per group of 64 rows of `X`,
//! and each multiply-add loads its row of `B` from L1; a position where both rows of a pair
//! are non-zero loads it once for both. No zero is multiplied. While a group is multiplied,
//! the next group's rows are asked for ([`crate::prefetch`]), a few lines after each pair,
//! so that listing them does not wait on memory.
//!
//! Within a row the sums run over the positions where both rows are non-zero, then over
//! those where only this row is, each in increasing order, tile after tile; so a row's
//! output depends on the row it is paired with only through that order, as in the unit
//! kernel. NaN counts as non-zero (it reaches the output, as in the dense product); −0
//! counts as zero.

// The kernel loads and stores through raw pointers into `B`, `X` and the lists; each use
// states why it stays in bounds.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m512, __m512i, _CMP_NEQ_UQ, _mm512_add_epi32, _mm512_cmp_ps_mask, _mm512_fmadd_ps,
    _mm512_loadu_ps, _mm512_maskz_compress_epi32, _mm512_set1_epi32, _mm512_set1_ps,
    _mm512_setr_epi32, _mm512_setzero_ps, _mm512_storeu_epi32,
};

use super::Rows;
use crate::avx512;

/// Positions of `B` per tile: 64 rows of 128 columns are 32 KiB, within the 48 KiB of L1
/// that the lists and outputs share with them. Measured on W4's batch of 1024 (one thread):
/// tiles of 32 positions were 20–30 % slower, of 48, 96, 128 or 256 positions 5–13 %.
const TILE_K: usize = 64;

/// Columns per block: 8 registers of 16 sums for each row of a pair (16 of the 32).
const BLOCK: usize = 128;

/// Rows of `X` listed before they are multiplied: their rows and lists stay in L2 while
/// every tile passes over them.
const GROUP: usize = 64;

/// Floats per cache line.
const LINE_FLOATS: usize = crate::prefetch::LINE / 4;

/// Rows of `X` from which a run is worth tiling: fewer rows read each tile for fewer rows.
/// Measured on Fashion-MNIST test images against the unit kernel: runs of 32 rows 3 %
/// faster, of 128 and 256 rows 5–8 %.
pub(super) const MIN_ROWS: usize = 32;

/// Whether this kernel runs here and takes `b`: AVX-512 (with POPCNT), at least one
/// column, `B` in one panel (its rows whole, as `AlignedRows` stores them for AVX-512), and
/// fewer rows than an `i32` counts (positions are listed as 32-bit lanes).
pub(super) fn takes(b: &Rows<'_>) -> bool {
    avx512::available()
        && std::arch::is_x86_feature_detected!("popcnt")
        && b.n > 0
        && b.panel >= b.n
        && i32::try_from(b.b.len()).is_ok()
}

/// Positions of one kind, for every pair of rows of a group and every tile.
#[derive(Default)]
struct List {
    /// The positions `k`, pair after pair, tile after tile.
    at: Vec<u32>,
    /// For pair `q` and tile `t`, where its positions start: `edges[q·tiles + t]`; they end
    /// where the next tile's (or the next pair's) start, the last at `edges[pairs·tiles]`.
    edges: Vec<usize>,
}

/// Each thread's lists, reused from group to group (a row alone, at the end of an odd
/// group, has only `first` positions), and the row that stands in for its missing partner.
#[derive(Default)]
struct Scratch {
    both: List,
    first: List,
    second: List,
    spare: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// `y = x·B + c` for the rows of `x` (`k` values each; `y`: their output rows). The caller
/// checked [`takes`] and that `B` has `k` rows.
pub(super) fn rows_product(x: &[f32], k: usize, b: Rows<'_>, y: &mut [f32]) {
    assert!(
        takes(&b)
            && k > 0
            && b.b.len() >= k * b.panel
            && x.len().is_multiple_of(k)
            && x.len() / k * b.n == y.len(),
        "tiled product: the shapes do not fit"
    );
    SCRATCH.with_borrow_mut(|scratch| {
        scratch.spare.resize(b.n, 0.0);
        for (g, y_g) in y.chunks_mut(GROUP * b.n).enumerate() {
            let x_g = &x[g * GROUP * k..((g + 1) * GROUP * k).min(x.len())];
            let next = x.get((g + 1) * GROUP * k..((g + 2) * GROUP * k).min(x.len()));
            // SAFETY: AVX-512F and POPCNT are present (`takes`, asserted above).
            unsafe { scratch.build(x_g, k) };
            scratch.group(x_g, k, b, y_g, next.unwrap_or_default());
        }
    });
}

impl Scratch {
    /// The group's outputs, block of columns by block, tile by tile, pair of rows by pair;
    /// meanwhile the rows of the next group (`next`) are asked for, a few lines after each
    /// pair, so that they arrive while the multiply-adds run.
    fn group(&mut self, x: &[f32], k: usize, b: Rows<'_>, y: &mut [f32], next: &[f32]) {
        let (n, tiles) = (b.n, k.div_ceil(TILE_K));
        let calls = n.div_ceil(BLOCK) * tiles * y.len().div_ceil(2 * n);
        let share = next
            .len()
            .div_ceil(calls.max(1))
            .next_multiple_of(LINE_FLOATS);
        let mut ahead = next.chunks(share.max(LINE_FLOATS));
        let Scratch {
            both,
            first,
            second,
            spare,
        } = self;
        for j in (0..n).step_by(BLOCK) {
            let width = BLOCK.min(n - j);
            for t in 0..tiles {
                let start = match (t, b.c.is_empty()) {
                    (0, true) => Start::Zero,
                    (0, false) => Start::Bias(&b.c[j..j + width]),
                    _ => Start::Output,
                };
                for (q, (x_q, y_q)) in x.chunks(2 * k).zip(y.chunks_mut(2 * n)).enumerate() {
                    let (x0, x1) = x_q.split_at(k);
                    let (y0, y1) = y_q.split_at_mut(n);
                    let y1 = if y1.is_empty() { &mut spare[..] } else { y1 };
                    let at = q * tiles + t;
                    let pair = Pair {
                        both: both.at(at),
                        first: first.at(at),
                        second: second.at(at),
                        x: [x0, x1],
                    };
                    let out = [&mut y0[j..j + width], &mut y1[j..j + width]];
                    // SAFETY: AVX-512F is present (`takes`); the lists hold positions
                    // below k, the length of x0 (and of x1 where both or second lists one),
                    // and `(k − 1)·panel + j + 16·⌈width/16⌉ ≤ k·panel ≤ b.b.len()` (the panel
                    // is n padded to 16; asserted by `rows_product`).
                    unsafe { tile_dispatch(pair, b.b[j..].as_ptr(), b.panel, start, out) };
                    if let Some(rows) = ahead.next() {
                        crate::prefetch::to_l2(rows);
                    }
                }
            }
        }
    }
}

/// One pair of rows and its positions of each kind in one tile.
#[derive(Clone, Copy)]
struct Pair<'a> {
    both: &'a [u32],
    first: &'a [u32],
    second: &'a [u32],
    /// The two rows of `X` (the second empty for a row alone).
    x: [&'a [f32]; 2],
}

/// Where a row's sums start for a tile.
#[derive(Clone, Copy)]
enum Start<'a> {
    /// At zero (the first tile, no bias).
    Zero,
    /// At the bias (the first tile).
    Bias(&'a [f32]),
    /// At the sums the earlier tiles left in the output.
    Output,
}

/// [`tile`] with as many registers per row as the outputs need (one per 16 columns).
///
/// # Safety
/// As [`tile`]'s, with `C = out[0].len().div_ceil(16)`.
#[target_feature(enable = "avx512f")]
unsafe fn tile_dispatch(
    pair: Pair<'_>,
    b: *const f32,
    stride: usize,
    start: Start<'_>,
    out: [&mut [f32]; 2],
) {
    // SAFETY: the caller's.
    unsafe {
        match out[0].len().div_ceil(16) {
            8 => tile::<8>(pair, b, stride, start, out),
            7 => tile::<7>(pair, b, stride, start, out),
            6 => tile::<6>(pair, b, stride, start, out),
            5 => tile::<5>(pair, b, stride, start, out),
            4 => tile::<4>(pair, b, stride, start, out),
            3 => tile::<3>(pair, b, stride, start, out),
            2 => tile::<2>(pair, b, stride, start, out),
            _ => tile::<1>(pair, b, stride, start, out),
        }
    }
}

/// A pair's sums over one tile, `C` registers of 16 columns per row (see the module docs).
///
/// # Safety
/// AVX-512F; every listed position `k` is below the length of the rows it is listed for
/// (`both`: both rows; `first`: the first; `second`: the second), and `b.add(k·stride)`
/// points at `16·C` readable floats; both outputs hold at most `16·C` floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const C: usize>(
    pair: Pair<'_>,
    b: *const f32,
    stride: usize,
    start: Start<'_>,
    out: [&mut [f32]; 2],
) {
    let [out0, out1] = out;
    let [x0, x1] = pair.x;
    let (mut s0, mut s1) = ([_mm512_setzero_ps(); C], [_mm512_setzero_ps(); C]);
    for c in 0..C {
        let cols = 16 * c..(16 * c + 16).min(out0.len());
        match start {
            Start::Zero => {}
            Start::Bias(c0) => {
                s0[c] = avx512::load(&c0[cols]);
                s1[c] = s0[c];
            }
            Start::Output => {
                (s0[c], s1[c]) = (avx512::load(&out0[cols.clone()]), avx512::load(&out1[cols]))
            }
        }
    }
    for &k in pair.both {
        let k = k as usize;
        // SAFETY: the caller's: k is below both rows' lengths, and 16·C floats are
        // readable at b + k·stride.
        let (v0, v1, row) = unsafe {
            (
                *x0.get_unchecked(k),
                *x1.get_unchecked(k),
                b.add(k * stride),
            )
        };
        let (v0, v1) = (_mm512_set1_ps(v0), _mm512_set1_ps(v1));
        for c in 0..C {
            // SAFETY: c < C, so the 16 floats at row + 16c are among the 16·C readable.
            let w = unsafe { _mm512_loadu_ps(row.add(16 * c)) }; // once for both rows
            s0[c] = _mm512_fmadd_ps(v0, w, s0[c]); // s₀ += x₀k · b[k, ..]
            s1[c] = _mm512_fmadd_ps(v1, w, s1[c]); // s₁ += x₁k · b[k, ..]
        }
    }
    // SAFETY: the caller's, for each row's own positions.
    unsafe {
        one_row(pair.first, x0, b, stride, &mut s0);
        one_row(pair.second, x1, b, stride, &mut s1);
    }
    for (out, s) in [(out0, s0), (out1, s1)] {
        for (c, s) in s.iter().enumerate().take(out.len().div_ceil(16)) {
            let (lo, hi) = (16 * c, (16 * c + 16).min(out.len()));
            avx512::store(&mut out[lo..hi], *s);
        }
    }
}

/// `s += x_k · b[k, ..]` for the positions `k` listed for one row `x`.
///
/// # Safety
/// As [`tile`]'s: every `k` is below `x.len()` and `b.add(k·stride)` points at `16·C`
/// readable floats.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn one_row<const C: usize>(
    at: &[u32],
    x: &[f32],
    b: *const f32,
    stride: usize,
    s: &mut [__m512; C],
) {
    for &k in at {
        let k = k as usize;
        // SAFETY: the caller's.
        let (v, row) = unsafe { (_mm512_set1_ps(*x.get_unchecked(k)), b.add(k * stride)) };
        for (c, s) in s.iter_mut().enumerate() {
            // SAFETY: c < C, so the 16 floats at row + 16c are among the 16·C readable.
            *s = _mm512_fmadd_ps(v, unsafe { _mm512_loadu_ps(row.add(16 * c)) }, *s);
        }
    }
}

impl List {
    /// Empties the list, with room for `len` positions and a whole register's store past
    /// them.
    fn reset(&mut self, len: usize) {
        self.at.resize(len + 16, 0);
        self.edges.clear();
    }

    /// The positions of pair-and-tile `at`.
    fn at(&self, at: usize) -> &[u32] {
        &self.at[self.edges[at]..self.edges[at + 1]]
    }

    /// Appends the lanes of `p` that `m` selects; returns the new length.
    ///
    /// # Safety
    /// AVX-512F and POPCNT; `len + 16` ≤ the room `reset` made.
    #[inline]
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn push(&mut self, len: usize, m: u16, p: __m512i) -> usize {
        // SAFETY: len + 16 positions fit (the caller's): a whole register's store.
        unsafe {
            _mm512_storeu_epi32(
                self.at.as_mut_ptr().add(len).cast(),
                _mm512_maskz_compress_epi32(m, p),
            )
        };
        len + m.count_ones() as usize
    }
}

impl Scratch {
    /// Lists, for each pair of rows of `x` (`k` positions each; the last row alone when
    /// their number is odd), the positions of each kind, tile by tile.
    ///
    /// # Safety
    /// AVX-512F and POPCNT.
    #[target_feature(enable = "avx512f,popcnt")]
    unsafe fn build(&mut self, x: &[f32], k: usize) {
        let tiles = k.div_ceil(TILE_K);
        let lists = [&mut self.both, &mut self.first, &mut self.second];
        for list in lists {
            list.reset(x.len()); // every position could be listed
        }
        let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let mut len = [0; 3];
        for pair in x.chunks(2 * k) {
            let (row0, row1) = pair.split_at(k);
            for t in 0..tiles {
                self.mark(len);
                for p in (t * TILE_K..((t + 1) * TILE_K).min(k)).step_by(16) {
                    let end = (p + 16).min(k);
                    let v0 = avx512::load(&row0[p..end]); // lanes past k read 0
                    let v1 = avx512::load(row1.get(p..end).unwrap_or_default()); // 0 alone
                    let m0 = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v0, _mm512_setzero_ps());
                    let m1 = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v1, _mm512_setzero_ps());
                    let at = _mm512_add_epi32(lanes, _mm512_set1_epi32(p as i32)); // p + i
                    // SAFETY: each list holds at most the positions passed so far, fewer
                    // than x.len(), and `reset` made room for x.len() + 16.
                    unsafe {
                        len[0] = self.both.push(len[0], m0 & m1, at);
                        len[1] = self.first.push(len[1], m0 & !m1, at);
                        len[2] = self.second.push(len[2], !m0 & m1, at);
                    }
                }
            }
        }
        self.mark(len);
    }

    /// Records where the next pair-and-tile's positions start in each list (`len`: both,
    /// first, second), or where the last one's end.
    fn mark(&mut self, len: [usize; 3]) {
        for (list, len) in [&mut self.both, &mut self.first, &mut self.second]
            .into_iter()
            .zip(len)
        {
            list.edges.push(len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::close;
    use super::super::{AlignedRows, Rows};
    use super::*;
    use ndarray::Array2;

    /// `X·B + c` by three loops in f64 (the parent module's), `c` added to every row
    /// unless empty.
    fn reference(x: &Array2<f32>, b: &Array2<f32>, c: &[f32]) -> Array2<f32> {
        let mut y = super::super::tests::reference(x, b);
        if !c.is_empty() {
            y += &ndarray::ArrayView1::from(c);
        }
        y
    }

    /// The tiled product of `x` and `b` (with bias `c`, or none when empty).
    fn tiled(x: &Array2<f32>, b: &Array2<f32>, c: &[f32]) -> Option<Array2<f32>> {
        let rows = AlignedRows::transposed(b.t()).unwrap();
        let b_rows = Rows::new(&rows, c);
        if !takes(&b_rows) {
            eprintln!("skipped: this CPU has no AVX-512, which the tiled product needs");
            return None;
        }
        let mut y = Array2::from_elem((x.nrows(), b.ncols()), f32::NAN);
        let x_s = x.as_standard_layout();
        rows_product(
            x_s.as_slice().unwrap(),
            x.ncols(),
            b_rows,
            y.as_slice_mut().unwrap(),
        );
        Some(y)
    }

    #[test]
    fn by_hand_across_tiles_and_kinds() {
        // k = 70 positions (two tiles: 0..64, 64..70), n = 2 columns, b[k] = [k, 1], c = [10, 20]
        // row 0: 2 at 3, −1 at 65, 0.5 at 69   → [2·3 − 65 + 0.5·69, 2 − 1 + 0.5] + c = [−14.5, 21.5]
        // row 1: 1 at 3 (both rows), 4 at 66   → [3 + 4·66, 1 + 4] + c = [277, 25]
        // row 2: zeros, a row alone             → c = [10, 20]
        let b = Array2::from_shape_fn((70, 2), |(k, j)| if j == 0 { k as f32 } else { 1.0 });
        let mut x = Array2::zeros((3, 70));
        for (r, k, v) in [
            (0, 3, 2.0),
            (0, 65, -1.0),
            (0, 69, 0.5),
            (1, 3, 1.0),
            (1, 66, 4.0),
        ] {
            x[[r, k]] = v;
        }
        let Some(y) = tiled(&x, &b, &[10.0, 20.0]) else {
            return;
        };
        assert_eq!(
            y,
            ndarray::array![[-14.5f32, 21.5], [277.0, 25.0], [10.0, 20.0]]
        );
    }

    #[test]
    fn agrees_with_three_loops_for_many_shapes() {
        let mut r = crate::rng::seeded(5);
        // widths below, at and above one block of 128; positions within, at and across tiles;
        // row counts within a group and across groups
        for (m, k, n) in [
            (3, 20, 16),
            (70, 784, 128),
            (65, 130, 200),
            (33, 64, 7),
            (1, 1, 300),
        ] {
            let x = Array2::from_shape_fn((m, k), |_| {
                let v = crate::rng::uniform(&mut r, -1.0, 1.0);
                if v.abs() < 0.5 { 0.0 } else { v }
            });
            let b = Array2::from_shape_fn((k, n), |_| crate::rng::uniform(&mut r, -1.0, 1.0));
            let c: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
            for bias in [&c[..], &[]] {
                let Some(y) = tiled(&x, &b, bias) else {
                    return;
                };
                close(&y, &reference(&x, &b, bias));
            }
        }
    }

    #[test]
    fn takes_whole_rows_of_b_on_avx512_only() {
        let here = avx512::available() && std::arch::is_x86_feature_detected!("popcnt");
        let b = Array2::from_shape_fn((20, 64), |(k, j)| (k + j) as f32);
        let whole = AlignedRows::transposed(b.t()).unwrap();
        assert_eq!(
            takes(&Rows::new(&whole, &[])),
            here,
            "B stored for AVX-512, whole rows"
        );
        // panels narrower than B (the AVX2 layout): a row of B is not one run of floats
        let panels = AlignedRows::with_panel(b.t(), 16).unwrap();
        assert!(!takes(&Rows::new(&panels, &[])));
        // no columns: nothing to tile
        let none = AlignedRows::transposed(Array2::<f32>::zeros((0, 20)).view()).unwrap();
        assert!(!takes(&Rows::new(&none, &[])));
    }

    #[test]
    fn long_runs_match_the_definition_and_no_columns_stay_empty() {
        // 80 rows: runs of 40 on two threads (or one of 80), long enough to be tiled here
        let (m, k, n) = (80, 100, 64);
        let x = Array2::from_shape_fn((m, k), |(i, j)| match (i * 7 + j * 3) % 5 {
            0 | 1 => 0.0,
            v => v as f32 - 3.5 + i as f32 * 0.1,
        });
        let b = Array2::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 17) as f32 - 8.0);
        let c: Vec<f32> = (0..n).map(|j| j as f32 * 0.25).collect();
        let want = reference(&x, &b, &c);
        let rows = AlignedRows::transposed(b.t()).unwrap();
        let bias = ndarray::ArrayView1::from(&c[..]);
        let mut y = Array2::from_elem((m, n), f32::NAN);
        super::super::matmul_skip_zeros(x.view(), &rows, Some(bias), &mut y.view_mut()).unwrap();
        close(&y, &want);
        // no columns: an empty output, and no tiling of nothing
        let none = AlignedRows::transposed(Array2::<f32>::zeros((0, k)).view()).unwrap();
        let mut y0 = Array2::<f32>::zeros((m, 0));
        super::super::matmul_skip_zeros(x.view(), &none, None, &mut y0.view_mut()).unwrap();
    }

    #[test]
    fn nan_reaches_the_output_and_minus_zero_is_skipped() {
        // b[k] = [1, 2]; x = [−0, NaN, 3]: y_0 = NaN; x = [−0, 0, 3]: y = [3, 6] exactly
        let b = Array2::from_shape_fn((3, 2), |(_, j)| (j + 1) as f32);
        let x = ndarray::array![[-0.0f32, f32::NAN, 3.0], [-0.0, 0.0, 3.0]];
        let Some(y) = tiled(&x, &b, &[]) else {
            return;
        };
        assert!(y.row(0).iter().all(|v| v.is_nan()));
        assert_eq!(y.row(1).to_vec(), [3.0, 6.0]);
    }
}
