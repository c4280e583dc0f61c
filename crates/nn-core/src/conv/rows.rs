//! The inner steps of [`im2col`](super::im2col) and [`col2im`](super::col2im) without
//! padding or stride, by AVX-512 masked loads and stores.
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
//! 3.2 µs. Rows of at most 8 floats go two to a store (the segments of output rows `y` and
//! `y + 1` are neighbours in `cols`; one permute puts input rows `y + u` and `y + u + 1`
//! side by side): W3's second layer (rows of 8), forward of a batch 239–270 → 210–225 µs.

// The masked loads and stores take raw pointers; each use states why it stays inside its
// slice.
#![allow(unsafe_code)]

use std::arch::x86_64::{
    _mm512_add_ps, _mm512_loadu_si512, _mm512_maskz_loadu_ps, _mm512_permutex2var_ps,
    _mm512_setzero_ps,
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
    let unpadded = g.s == (1, 1) && g.p == (0, 0);
    // the sizes agree: every input row and column is read (h = oh + kh − 1, w = ow + kw − 1)
    let fits = unpadded && g.w <= 16 && g.ow + g.k.1 == g.w + 1 && g.oh + g.k.0 == g.h + 1;
    let fits = fits && g.plane() > 0 && g.kdim() > 0;
    if !fits || !available() {
        return false;
    }
    // SAFETY: the CPU has AVX-512 (checked above).
    unsafe { col2im(cols, g, dx, ld) };
    true
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
    // lane i < ow: lane i of the first register; lane i ≥ ow: lane i − ow of the second
    // (index 16 + i − ow); lanes past 2·ow are not stored
    let pair_lanes: [i32; 16] =
        std::array::from_fn(|i| if i < ow { i } else { 16 + i - ow } as i32);
    // SAFETY: an unaligned load of the 16 values of a local array
    let pair_lanes = unsafe { _mm512_loadu_si512(pair_lanes.as_ptr().cast()) };
    // one row of columns at a time, written front to back
    for ci in 0..c {
        for u in 0..k.0 {
            for v in 0..k.1 {
                let r = (ci * k.0 + u) * k.1 + v;
                let mut y = 0;
                if 2 * ow <= 16 {
                    // two output rows per store: their segments sit side by side in `cols`
                    while y + 2 <= oh {
                        let at = (ci * h + y + u) * w + v;
                        let to = r * ld + y * ow;
                        let (top, next) = (load(&x[at..at + ow]), load(&x[at + w..at + w + ow]));
                        let pair = _mm512_permutex2var_ps(top, pair_lanes, next); // [top | next]
                        store(&mut cols[to..to + 2 * ow], pair);
                        y += 2;
                    }
                }
                for y in y..oh {
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

#[cfg(test)]
mod tests {
    use super::super::tests::geometry;
    use super::*;

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
}
