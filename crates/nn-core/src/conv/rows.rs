//! The inner steps of [`im2col`](super::im2col) and [`col2im`](super::col2im) without
//! padding or stride, by AVX-512 (or AVX2) masked loads and stores.
//!
//! ```text
//! cols[(c, u, v), y·ow + x] = X[c, y + u, x + v]          (im2col, x = 0 … ow − 1)
//! ∂E/∂X[c, y + u, x + v]  += ∂E/∂cols[(c, u, v), y·ow + x]  (col2im)
//! ```
//!
//! Each step moves one output row of `ow` floats. Images of convolutional networks are
//! small (W6's second layer: rows of 10), and the portable loops move such a row in four
//! 16-byte pieces plus bounds checks. Here a row of up to 16 floats is one masked load and
//! one masked store, and col2im sums each input row in a register. Measured on W6's second
//! layer (one sample, 120 KB of columns, one thread): im2col 8.8 → 6.3 µs, col2im 9.0 →
//! 3.2 µs. Rows shorter than 16 floats are moved 16 columns' worth at a time (`Chunks`:
//! the segments of consecutive output rows are neighbours in `cols`, and a permute of two
//! loads gathers them from the input): W3's second layer (rows of 8), forward of a batch
//! 239–270 → 210–225 µs; W6's (rows of 10) forward 859–882 → 820–831 µs and backward
//! 1,535–1,609 → 1,496–1,517 µs.
//!
//! A CPU with AVX2 but not AVX-512 has kernels of its own for stride 1 (registers of 8, and
//! `vmaskmovps` for masked loads): im2col moves output rows of 8 floats or more in blocks
//! of 8, the last one ending at the row's end, and takes a padded sample by copying it with
//! its zero border first; col2im sums each input row of up to 16 floats in two registers.
//! Measured on an AMD EPYC (Zen 3, no AVX-512), one sample, one thread, against the portable
//! loops built for AVX2: W6's second layer im2col 17–19 → 5.2–5.7 µs and col2im 35–38 →
//! 6.1–7.3 µs; its padded first layer im2col 11–13 → 3.9–4.4 µs; W6 epochs 13–27 % faster
//! (three alternating pairs), W3's 15–23 % (two). Other geometries take the portable loops
//! built for AVX2 (on a CPU with AVX-512 too, where its kernels do not apply): W3 on one
//! thread, first layer backward 633 → 596 µs per batch and second layer backward 1,310 →
//! 1,257 (medians of six alternating runs, against the baseline build).

// The masked loads and stores take raw pointers; each use states why it stays inside its
// slice.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    __m256i, __m512i, _mm256_add_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_maskload_ps,
    _mm256_setzero_ps, _mm256_storeu_ps, _mm512_add_ps, _mm512_loadu_si512, _mm512_maskz_loadu_ps,
    _mm512_permutex2var_ps, _mm512_setzero_ps,
};

use super::Geometry;
use crate::avx512::{available, load, mask, store};

/// [`im2col`] for stride 1 and no padding when this CPU has AVX-512 (returns whether it
/// ran).
pub(super) fn try_im2col(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) -> bool {
    if g.s != (1, 1) || g.p != (0, 0) || !available() {
        return false;
    }
    // SAFETY: the CPU has AVX-512 (checked above).
    unsafe { im2col(x, g, cols, ld) };
    true
}

/// [`col2im`] for stride 1, no padding and input rows of at most 16 floats, when this CPU
/// has AVX-512 (returns whether it ran).
pub(super) fn try_col2im(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) -> bool {
    if !sums_fit(g) || !available() {
        return false;
    }
    // SAFETY: the CPU has AVX-512 (checked above).
    unsafe { col2im(cols, g, dx, ld) };
    true
}

/// The portable loops of [`im2col`](super::im2col) built for AVX2, when this CPU has it but
/// not AVX-512 or the geometry is not [`try_im2col`]'s (returns whether it ran): the
/// compiler moves each 8-float block in one instruction instead of two 16-byte halves.
pub(super) fn try_im2col_avx2(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) -> bool {
    if !avx2() {
        return false;
    }
    // SAFETY (all three): the CPU has AVX2 (checked above).
    match Avx2Im2col::for_geometry(g) {
        Avx2Im2col::Rows => unsafe { im2col_avx2_rows(x, g, cols, ld) },
        Avx2Im2col::Padded => unsafe { padded_first(x, g, cols, ld) },
        Avx2Im2col::Portable => unsafe { im2col_avx2(x, g, cols, ld) },
    }
    true
}

/// Which AVX2 im2col takes a geometry.
#[derive(Debug, PartialEq)]
enum Avx2Im2col {
    /// [`im2col_avx2_rows`]: stride 1, no padding, rows of at least 8 floats.
    Rows,
    /// [`padded_first`]: the same with padding.
    Padded,
    /// The portable loops built for AVX2 (`im2col_avx2`).
    Portable,
}

impl Avx2Im2col {
    fn for_geometry(g: &Geometry) -> Self {
        let rows = g.s == (1, 1) && g.ow >= 8 && g.kdim() > 0;
        match g.p {
            (0, 0) if rows => Avx2Im2col::Rows,
            _ if rows => Avx2Im2col::Padded,
            _ => Avx2Im2col::Portable,
        }
    }
}

thread_local! {
    /// Each thread's copy of a sample with its zero padding, for [`padded_first`].
    static PADDED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`im2col_avx2_rows`] for a padded geometry (stride 1, rows of at least 8): the sample is
/// first copied with its zero border (`[c, h + 2·ph, w + 2·pw]`), whose columns are then
/// those of the unpadded geometry. Measured on W6's first layer (28×28, padding 2, one
/// sample, one thread, an AMD EPYC without AVX-512): 11–13 µs through the portable loops,
/// which fill and copy each output row's pieces in turn.
///
/// # Panics
/// If `x` or `cols` is shorter than the geometry says.
#[target_feature(enable = "avx2")]
fn padded_first(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) {
    let (hp, wp) = (g.h + 2 * g.p.0, g.w + 2 * g.p.1);
    let unpadded = Geometry {
        h: hp,
        w: wp,
        p: (0, 0),
        ..*g
    };
    PADDED.with_borrow_mut(|buf| {
        super::pad_sample(g, x, wp, buf);
        im2col_avx2_rows(buf, &unpadded, cols, ld); // (compiled for AVX2, as this function)
    });
}

/// [`col2im`](super::col2im) when this CPU has AVX2 (returns whether it ran): for the
/// geometries [`try_col2im`] takes, each input row summed in two registers
/// ([`col2im_avx2_sums`]); for the rest, the portable loops built for AVX2.
pub(super) fn try_col2im_avx2(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) -> bool {
    if !avx2() {
        return false;
    }
    // SAFETY: the CPU has AVX2 (checked above).
    unsafe {
        match sums_fit(g) {
            true => col2im_avx2_sums(cols, g, dx, ld),
            false => col2im_avx2(cols, g, dx, ld),
        }
    };
    true
}

/// Whether [`col2im`] (or [`col2im_avx2_sums`]) takes `g`: stride 1, no padding, input rows
/// of at most 16 floats, at least one output and one tap.
fn sums_fit(g: &Geometry) -> bool {
    let unpadded = g.s == (1, 1) && g.p == (0, 0);
    // the sizes agree: every input row and column is read (h = oh + kh − 1, w = ow + kw − 1)
    let fits = unpadded && g.w <= 16 && g.ow + g.k.1 == g.w + 1 && g.oh + g.k.0 == g.h + 1;
    fits && g.plane() > 0 && g.kdim() > 0
}

/// Whether this CPU has AVX2.
fn avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

#[target_feature(enable = "avx2")]
fn im2col_avx2(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) {
    super::im2col_portable(x, g, cols, ld);
}

#[target_feature(enable = "avx2")]
fn col2im_avx2(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) {
    super::col2im_portable(cols, g, dx, ld);
}

/// `im2col` of one sample `x` (`[c, h, w]`) for stride 1 and no padding, into rows `ld`
/// floats apart.
///
/// # Panics
/// If `x` or `cols` is shorter than the geometry says.
#[target_feature(enable = "avx512f")]
fn im2col(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) {
    let Geometry {
        c, h, w, k, oh, ow, ..
    } = *g;
    if let Some(plan) = Chunks::plan(oh, ow, w) {
        return im2col_chunks(x, g, cols, ld, &plan);
    }
    // one row of columns at a time, written front to back
    for ci in 0..c {
        for u in 0..k.0 {
            for v in 0..k.1 {
                let r = (ci * k.0 + u) * k.1 + v;
                for y in 0..oh {
                    let at = (ci * h + y + u) * w + v; // input row y + u of channel ci, from v
                    let to = r * ld + y * ow;
                    for x0 in (0..ow).step_by(16) {
                        let n = (ow - x0).min(16);
                        let src = &x[at + x0..at + x0 + n];
                        store(&mut cols[to + x0..to + x0 + n], load(src)); // cols[(c, u, v), y·ow + x] = X[c, y + u, x + v]
                    }
                }
            }
        }
    }
}

/// The most 16-float chunks a row of columns ([`Chunks`]) may have.
const MAX_CHUNKS: usize = 32;

/// A row of columns (`oh·ow` floats: tap `(c, u, v)`'s value at every output position) cut
/// into chunks of 16. Output position `t = y·ow + x` reads input `(y + u)·w + x + v` of its
/// channel: `y·w + x` from the tap's first value. Within 16 consecutive positions the
/// offsets rise by 1, and by `w − ow + 1` where a row ends, so when the rows are short a
/// chunk reads at most 32 consecutive input floats: two loads and one permute make the
/// chunk, one store writes it. Each chunk's first offset, the floats it spans and its
/// permute indices depend only on `oh`, `ow` and `w`.
struct Chunks {
    start: [usize; MAX_CHUNKS],
    span: [usize; MAX_CHUNKS],
    lanes: [[i32; 16]; MAX_CHUNKS],
}

impl Chunks {
    /// The chunks of rows `ow < 16` floats wide, when there are at most [`MAX_CHUNKS`] and
    /// each spans at most 32 input floats (none otherwise).
    fn plan(oh: usize, ow: usize, w: usize) -> Option<Chunks> {
        if ow == 0 || ow >= 16 || (oh * ow).div_ceil(16) > MAX_CHUNKS {
            return None;
        }
        let mut plan = Chunks {
            start: [0; MAX_CHUNKS],
            span: [0; MAX_CHUNKS],
            lanes: [[0; 16]; MAX_CHUNKS],
        };
        // output positions t = y·ow + x in order; their input offsets y·w + x only rise
        let positions = (0..oh).flat_map(|y| (0..ow).map(move |x| y * w + x));
        for (t, offset) in positions.enumerate() {
            let (ch, lane) = (t / 16, t % 16);
            if lane == 0 {
                plan.start[ch] = offset;
            }
            let from_start = offset - plan.start[ch];
            if from_start >= 32 {
                return None; // the chunk spans more than two registers
            }
            plan.lanes[ch][lane] = from_start as i32; // lane of the register pair
            plan.span[ch] = from_start + 1;
        }
        Some(plan)
    }
}

/// [`im2col`] by [`Chunks`]: each row of columns in `⌈oh·ow / 16⌉` stores.
///
/// # Panics
/// If `x` or `cols` is shorter than the geometry says.
#[target_feature(enable = "avx512f")]
fn im2col_chunks(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize, plan: &Chunks) {
    let plane = g.plane();
    // SAFETY: unaligned loads of the 16 values of local arrays
    let lanes: [__m512i; MAX_CHUNKS] =
        std::array::from_fn(|ch| unsafe { _mm512_loadu_si512(plan.lanes[ch].as_ptr().cast()) });
    for ci in 0..g.c {
        for u in 0..g.k.0 {
            for v in 0..g.k.1 {
                let tap = (ci * g.h + u) * g.w + v; // input of output position 0
                let row = &mut cols[((ci * g.k.0 + u) * g.k.1 + v) * ld..][..plane];
                for (ch, out) in row.chunks_mut(16).enumerate() {
                    let src = &x[tap + plan.start[ch]..][..plan.span[ch]];
                    let (lo, hi) = src.split_at(src.len().min(16));
                    let chunk = _mm512_permutex2var_ps(load(lo), lanes[ch], load(hi));
                    store(out, chunk); // cols[(c, u, v), t] = X[c, y + u, x + v], t = y·ow + x
                }
            }
        }
    }
}

/// `col2im` of one sample (its columns in rows `ld` floats apart) for stride 1, no
/// padding and input rows of at most 16 floats: writes `dx` (`[c, h, w]`) whole.
///
/// Each input row is summed in one register from the `kh·kw` column segments that land on
/// it (tap `v` shifts its segment `v` lanes to the right, by loading from `v` floats
/// before it with the lanes `v … v + ow − 1` selected) and stored once. Adding into `dx`
/// in memory instead makes each load wait for the previous, overlapping masked store
/// (measured 2.5× slower than the portable loop).
///
/// # Panics
/// If `cols` or `dx` is shorter than the geometry says.
#[target_feature(enable = "avx512f")]
fn col2im(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) {
    let Geometry {
        c, h, w, k, oh, ow, ..
    } = *g;
    assert!(cols.len() >= (g.kdim() - 1) * ld + g.plane() && dx.len() >= c * h * w);
    let lanes = mask(ow);
    for ci in 0..c {
        for r in 0..h {
            let mut sum = _mm512_setzero_ps();
            // the taps (u, y = r − u) that read input row r
            for u in r.saturating_sub(oh - 1)..=r.min(k.0 - 1) {
                let y = r - u;
                for v in 0..k.1 {
                    let from = ((ci * k.0 + u) * k.1 + v) * ld + y * ow; // segment of ow floats
                    // SAFETY: lanes v … v + ow − 1 read cols[from .. from + ow], inside `cols`
                    // (asserted above); the pointer v floats before `from` is only an
                    // address, and the masked-out lanes below it are not read.
                    let seg = unsafe {
                        _mm512_maskz_loadu_ps(
                            lanes << v,
                            cols.as_ptr().wrapping_add(from).wrapping_sub(v),
                        )
                    };
                    sum = _mm512_add_ps(sum, seg); // ∂E/∂X[c, r, v + x] += ∂E/∂cols[(c, u, v), y·ow + x]
                }
            }
            let at = (ci * h + r) * w;
            store(&mut dx[at..at + w], sum);
        }
    }
}

/// `im2col` of one sample for stride 1, no padding and output rows of at least 8 floats,
/// with AVX2: each output row's `ow` floats moved in blocks of 8, the last one ending at
/// the row's end (floats `ow − 8 … ow − 1`, overlapping the one before), so nothing outside
/// the row is read or written.
/// Measured on W6's second layer (rows of 10; one sample, one thread, an AMD EPYC
/// without AVX-512): 17–19 µs through the portable loops built for AVX2.
///
/// # Panics
/// If the geometry is strided or padded, `ow` is below 8, or `x` or `cols` is shorter than
/// the geometry says.
#[target_feature(enable = "avx2")]
fn im2col_avx2_rows(x: &[f32], g: &Geometry, cols: &mut [f32], ld: usize) {
    let Geometry {
        c, h, w, k, oh, ow, ..
    } = *g;
    let plane = oh * ow;
    assert!(
        g.s == (1, 1) && g.p == (0, 0),
        "im2col_avx2_rows: stride 1, no padding only"
    );
    assert!(ow >= 8 && ow + k.1 <= w + 1 && oh + k.0 <= h + 1);
    assert!(x.len() >= c * h * w && cols.len() >= (g.kdim() - 1) * ld + plane && ld >= plane);
    let (src, dst) = (x.as_ptr(), cols.as_mut_ptr());
    for ci in 0..c {
        for u in 0..k.0 {
            for y in 0..oh {
                let at = (ci * h + y + u) * w; // input row y + u of channel ci
                for v in 0..k.1 {
                    let (from, to) = (at + v, ((ci * k.0 + u) * k.1 + v) * ld + y * ow);
                    // SAFETY: from + ow ≤ (ci·h + y + u)·w + v + ow ≤ (ci·h + y + u + 1)·w
                    // ≤ c·h·w ≤ x.len() (y + u < h, v + ow ≤ w); to + ow ≤ r·ld + plane ≤
                    // cols.len() for the tap's row r < kdim (asserted above); ow ≥ 8, so
                    // both blocks lie within the ow floats from `from` and from `to`.
                    unsafe {
                        // (rows of at most 16 as two loads before two stores: a loop of
                        // load-store pairs there measured 3× slower on W6's second layer)
                        let head = _mm256_loadu_ps(src.add(from));
                        let tail = _mm256_loadu_ps(src.add(from + ow - 8));
                        for x0 in (8..ow.saturating_sub(8)).step_by(8) {
                            let block = _mm256_loadu_ps(src.add(from + x0));
                            _mm256_storeu_ps(dst.add(to + x0), block);
                        }
                        _mm256_storeu_ps(dst.add(to), head); // cols[(c, u, v), y·ow + x] = X[c, y + u, x + v]
                        _mm256_storeu_ps(dst.add(to + ow - 8), tail);
                    }
                }
            }
        }
    }
}

/// [`col2im`] with AVX2, for the same geometries ([`sums_fit`]): each input row (at most
/// 16 floats) summed in two registers of 8 from the `kh·kw` column segments that land on
/// it, then stored once. Tap `v`'s segment is loaded from `v` floats before it with lanes
/// `v … v + ow − 1` selected (`vmaskmovps`, which reads only the selected lanes).
/// Measured on W6's second layer (one sample, one thread, an AMD EPYC without AVX-512):
/// 35–38 µs through the portable loops, whose additions into `dx` wait on the overlapping
/// stores before them.
///
/// # Panics
/// If `g` is not one [`sums_fit`] takes, or `cols` or `dx` is shorter than it says.
#[target_feature(enable = "avx2")]
fn col2im_avx2_sums(cols: &[f32], g: &Geometry, dx: &mut [f32], ld: usize) {
    let Geometry {
        c, h, w, k, oh, ow, ..
    } = *g;
    assert!(
        sums_fit(g),
        "col2im_avx2_sums: the geometry is not one it takes"
    );
    assert!(cols.len() >= (g.kdim() - 1) * ld + g.plane() && dx.len() >= c * h * w);
    // for tap v, the lanes v … v + ow − 1 of the row's 16 (v + ow ≤ w ≤ 16: `sums_fit`),
    // as the masks of its two halves
    let masks: [[__m256i; 2]; 16] = std::array::from_fn(|v| {
        std::array::from_fn(|half| {
            let lanes: [i32; 8] = std::array::from_fn(|i| {
                let lane = 8 * half + i;
                -i32::from(lane >= v && lane < v + ow) // all bits set: selected
            });
            // SAFETY: an unaligned load of a local array of 8 lanes
            unsafe { _mm256_loadu_si256(lanes.as_ptr().cast()) }
        })
    });
    for ci in 0..c {
        for r in 0..h {
            let mut sum = [_mm256_setzero_ps(); 2];
            // the taps (u, y = r − u) that read input row r
            for u in r.saturating_sub(oh - 1)..=r.min(k.0 - 1) {
                let y = r - u;
                for (v, m) in masks.iter().enumerate().take(k.1) {
                    let from = ((ci * k.0 + u) * k.1 + v) * ld + y * ow; // segment of ow floats
                    let at = cols.as_ptr().wrapping_add(from).wrapping_sub(v);
                    for (half, s) in sum.iter_mut().enumerate() {
                        // SAFETY: the selected lanes v … v + ow − 1 read cols[from ..
                        // from + ow], inside `cols` (asserted above); `at` is only an
                        // address, and the lanes outside the mask are not read.
                        let seg = unsafe { _mm256_maskload_ps(at.wrapping_add(8 * half), m[half]) };
                        *s = _mm256_add_ps(*s, seg); // ∂E/∂X[c, r, v + x] += ∂E/∂cols[(c, u, v), y·ow + x]
                    }
                }
            }
            let at = (ci * h + r) * w;
            let mut row = [0.0f32; 16];
            // SAFETY: two unaligned stores into a local array of 16 floats
            unsafe {
                _mm256_storeu_ps(row.as_mut_ptr(), sum[0]);
                _mm256_storeu_ps(row.as_mut_ptr().add(8), sum[1]);
            }
            dx[at..at + w].copy_from_slice(&row[..w]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::geometry;
    use super::*;

    #[test]
    fn chunks_by_hand() {
        // rows of 10 in an input 14 wide, 10 rows (W6's second layer): position t reads
        // offset t/10·14 + t%10. Chunk 0: t = 0…15 → 0…9, 14…19: starts at 0, spans 20;
        // chunk 1: t = 16…31 → 20…23, 28…37, 42, 43: starts at 20, spans 24; the last,
        // chunk 6, t = 96…99 → 132…135: spans 4
        let plan = Chunks::plan(10, 10, 14).unwrap();
        assert_eq!((plan.start[0], plan.span[0]), (0, 20));
        assert_eq!(
            plan.lanes[0],
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15, 16, 17, 18, 19]
        );
        assert_eq!((plan.start[1], plan.span[1]), (20, 24));
        assert_eq!(
            plan.lanes[1],
            [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 22, 23]
        );
        assert_eq!((plan.start[6], plan.span[6]), (132, 4));
        assert_eq!(&plan.lanes[6][..5], [0, 1, 2, 3, 0]); // lanes past the plane: not stored
        // no plan: rows of 16 or more, a chunk over more than 32 input floats (rows of 2,
        // 20 apart: 8 rows per chunk), more than MAX_CHUNKS chunks, no columns
        assert!(Chunks::plan(4, 16, 20).is_none());
        assert!(Chunks::plan(8, 2, 20).is_none());
        assert!(Chunks::plan(64, 9, 12).is_none());
        assert!(Chunks::plan(4, 0, 4).is_none());
        // at the limits: exactly MAX_CHUNKS chunks; chunks of exactly 32 input floats (two
        // rows of 8, 24 apart) but not 33
        assert!(Chunks::plan(64, 8, 12).is_some() && Chunks::plan(65, 8, 12).is_none());
        assert_eq!(Chunks::plan(2, 8, 24).map(|p| p.span[0]), Some(32));
        assert!(Chunks::plan(2, 8, 25).is_none());
    }

    /// The kernels run exactly where they apply, on a CPU with AVX-512 (their values are
    /// checked against the definition in `conv`'s tests).
    #[test]
    fn where_the_kernels_run() {
        let simd = std::arch::is_x86_feature_detected!("avx512f");
        let ran = |g: Geometry| {
            let mut cols = vec![0.0; g.kdim() * g.plane()];
            let mut x = vec![0.0; g.c * g.h * g.w];
            let im2col = try_im2col(&x, &g, &mut cols, g.plane());
            let col2im = try_col2im(&cols, &g, &mut x, g.plane());
            (im2col, col2im)
        };
        assert_eq!(ran(geometry(12, (14, 14), 5, 1, 0)), (simd, simd)); // W6's second layer
        assert_eq!(ran(geometry(2, (16, 16), 1, 1, 0)), (simd, simd)); // rows of 16
        assert_eq!(ran(geometry(8, (12, 12), 5, 1, 0)), (simd, simd)); // W3's second layer
        assert_eq!(ran(geometry(2, (20, 30), 3, 1, 0)), (simd, false)); // input rows of 30
        assert_eq!(ran(geometry(1, (28, 28), 5, 1, 2)), (false, false)); // padded
        assert_eq!(ran(geometry(2, (9, 9), 3, 2, 0)), (false, false)); // strided
        let tall = Geometry {
            s: (2, 1),
            oh: 4,
            ..geometry(2, (9, 9), 3, 1, 0)
        };
        assert_eq!(ran(tall), (false, false)); // strided down the rows only
        // padded and strided so that the sizes agree as if neither (a case proptest found)
        let odd = Geometry {
            n: 1,
            c: 1,
            h: 3,
            w: 2,
            c_out: 1,
            oh: 2,
            ow: 2,
            k: (2, 1),
            s: (3, 3),
            p: (2, 2),
        };
        assert_eq!(ran(odd), (false, false));
        // no input channels: nothing to add up (and no `kdim − 1` to take)
        let empty = Geometry {
            c: 0,
            ..geometry(1, (6, 6), 3, 1, 0)
        };
        assert_eq!(ran(empty), (simd, false));
    }

    /// The AVX2 kernels' geometries (their values are checked against the definition in
    /// `conv`'s tests, on every geometry there).
    #[test]
    fn where_the_avx2_kernels_apply() {
        use Avx2Im2col::{Padded, Portable, Rows};
        let kind = |g: Geometry| (Avx2Im2col::for_geometry(&g), sums_fit(&g));
        assert_eq!(kind(geometry(12, (14, 14), 5, 1, 0)), (Rows, true)); // W6's second layer
        assert_eq!(kind(geometry(8, (12, 12), 5, 1, 0)), (Rows, true)); // rows of exactly 8
        assert_eq!(kind(geometry(2, (16, 16), 1, 1, 0)), (Rows, true)); // input rows of 16
        assert_eq!(kind(geometry(2, (20, 30), 3, 1, 0)), (Rows, false)); // input rows of 30
        assert_eq!(kind(geometry(1, (28, 28), 5, 1, 2)), (Padded, false)); // W6's first layer
        assert_eq!(kind(geometry(2, (16, 9), 3, 1, 0)), (Portable, true)); // rows of 7
        assert_eq!(kind(geometry(2, (9, 9), 3, 2, 0)), (Portable, false)); // strided
        let empty = Geometry {
            c: 0,
            ..geometry(1, (10, 10), 3, 1, 0)
        };
        assert_eq!(kind(empty), (Portable, false)); // no taps
        // padding alone: the bordered copy is all zeros, and so are the columns
        assert_eq!(kind(geometry(1, (0, 0), 1, 1, 4)), (Padded, false));
        // strided down the rows with one output row: the sizes agree, but not col2im's
        let one_row = Geometry {
            s: (2, 1),
            ..geometry(1, (3, 10), 3, 1, 0)
        };
        assert_eq!((one_row.oh, kind(one_row).1), (1, false));
        // no output columns (w = kw − 1): nothing to sum
        let no_columns = Geometry {
            w: 2,
            ow: 0,
            ..geometry(1, (5, 5), 3, 1, 0)
        };
        assert_eq!(kind(no_columns), (Portable, false));
    }

    /// The AVX2 im2col refuses columns too short for the geometry, before writing past them.
    #[test]
    fn short_columns_are_refused() {
        if !avx2() {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        let g = geometry(12, (14, 14), 5, 1, 0); // W6's second layer: 300 rows of 100
        let x = vec![1.0f32; g.c * g.h * g.w];
        let ld = g.plane();
        let mut cols = vec![0.0f32; (g.kdim() - 1) * ld + g.plane() - 1]; // one float short
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { im2col_avx2_rows(&x, &g, &mut cols, ld) }
        }));
        assert!(outcome.is_err());
    }
}
