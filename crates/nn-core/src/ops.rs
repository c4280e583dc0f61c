//! Row-wise helpers for batches of feature rows: bias broadcast and column sums.
//!
//! ```text
//! broadcast:   Y[i, j] += b[j]            for every row i of the batch
//! column sums: s[j]    += Σ_i dY[i, j]    (the bias gradient of a dense layer)
//! sum:         Σ_i x[i]                   (the bias gradient of a convolution channel)
//! squares:     Σ_i x[i]²                  (a gradient's squared norm)
//! ```

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Zip};

use crate::error::{Error, Result};

/// Adds `b` to every row of `y`: `Y[i, j] += b[j]`.
///
/// # Errors
/// [`Error::Incompatible`] when `b` does not have one entry per column of `y`.
pub fn add_row_broadcast(y: &mut ArrayViewMut2<'_, f32>, b: ArrayView1<'_, f32>) -> Result<()> {
    if y.ncols() != b.len() {
        return Err(Error::Incompatible {
            op: "bias broadcast".into(),
            reason: "one bias per column needed",
            a_name: "y",
            a: y.shape().into(),
            b_name: "b",
            b: b.shape().into(),
        });
    }
    if let (Some(ys), Some(bs)) = (y.as_slice_mut(), b.as_slice()) {
        for row in ys.chunks_exact_mut(bs.len().max(1)) {
            for (v, &bj) in row.iter_mut().zip(bs) {
                *v += bj; // Y[i, j] += b[j]
            }
        }
        return Ok(());
    }
    for mut row in y.rows_mut() {
        row += &b; // Y[i, :] += b
    }
    Ok(())
}

/// Accumulates the column sums of `x` into `s`: `s[j] += Σ_i x[i, j]`.
///
/// # Errors
/// [`Error::Incompatible`] when `s` does not have one entry per column of `x`.
pub fn add_column_sums(x: ArrayView2<'_, f32>, s: &mut ArrayViewMut1<'_, f32>) -> Result<()> {
    if x.ncols() != s.len() {
        return Err(Error::Incompatible {
            op: "column sums".into(),
            reason: "one sum per column needed",
            a_name: "x",
            a: x.shape().into(),
            b_name: "s",
            b: s.shape().into(),
        });
    }
    for row in x.rows() {
        Zip::from(&mut *s).and(&row).for_each(|s, &v| *s += v); // s[j] += x[i, j]
    }
    Ok(())
}

/// `Σ x` of a slice, in 16 independent lanes so the compiler vectorises it (a plain
/// `iter().sum()` adds one number at a time, each waiting for the previous addition).
pub fn sum(xs: &[f32]) -> f32 {
    lanes_sum(xs, |x| x)
}

/// `Σ g(x)` in 16 f32 lanes (lane `l` adds the values at `l`, `l + 16`, …), then the lanes
/// and the tail in order. Always inlined, so that a caller compiled for wider vectors (the
/// batch-norm passes of [`norm`](crate::norm)) gets them here too.
#[inline(always)]
pub(crate) fn lanes_sum(xs: &[f32], g: impl Fn(f32) -> f32) -> f32 {
    let (blocks, rest) = xs.as_chunks::<16>();
    let mut lanes = [0.0f32; 16];
    for b in blocks {
        for (l, &v) in lanes.iter_mut().zip(b) {
            *l += g(v);
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().map(|&v| g(v)).sum::<f32>()
}

/// `Σ x²` of one run: 16 f32 lanes over blocks of 4096 entries (so the compiler vectorises
/// it), the blocks added in f64. NaN and ±inf propagate.
fn sum_squares_run(xs: &[f32]) -> f64 {
    let mut total = 0.0f64;
    for block in xs.chunks(4096) {
        let (rows, rest) = block.as_chunks::<16>();
        let mut lanes = [0.0f32; 16];
        for r in rows {
            for (l, &v) in lanes.iter_mut().zip(r) {
                *l += v * v;
            }
        }
        let rest: f32 = rest.iter().map(|v| v * v).sum();
        total += lanes.iter().map(|&l| l as f64).sum::<f64>() + rest as f64;
    }
    total
}

/// `Σ x²`, in f64; a long slice is cut at 4096-entry blocks into one run per thread.
pub fn sum_squares(xs: &[f32]) -> f64 {
    const MAX: usize = 16;
    let blocks = xs.len().div_ceil(4096);
    let parts = if xs.len() < crate::parallel::SPLIT_MIN {
        1
    } else {
        crate::parallel::parallelism().min(blocks).clamp(1, MAX)
    };
    if parts == 1 {
        return sum_squares_run(xs);
    }
    let mut runs: [(&[f32], f64); MAX] = [(&[], 0.0); MAX];
    for (p, run) in runs.iter_mut().take(parts).enumerate() {
        let (lo, hi) = (
            p * blocks / parts * 4096,
            ((p + 1) * blocks / parts * 4096).min(xs.len()),
        );
        run.0 = &xs[lo..hi];
    }
    crate::parallel::for_each_mut(&mut runs[..parts], &|_, (run, total)| {
        *total = sum_squares_run(run);
    });
    runs[..parts].iter().map(|r| r.1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn broadcast_adds_bias_to_each_row() {
        let mut y = array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]];
        add_row_broadcast(&mut y.view_mut(), array![10.0f32, 20.0, 30.0].view()).unwrap();
        assert_eq!(y, array![[11.0, 22.0, 33.0], [14.0, 25.0, 36.0]]);
    }

    #[test]
    fn column_sums_accumulate() {
        let x = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let mut s = array![100.0f32, 0.0];
        add_column_sums(x.view(), &mut s.view_mut()).unwrap();
        // 100 + 1 + 3 + 5 = 109, 0 + 2 + 4 + 6 = 12
        assert_eq!(s, array![109.0, 12.0]);
    }

    #[test]
    fn mismatched_lengths_are_errors() {
        let mut y = array![[1.0f32, 2.0]];
        let e = add_row_broadcast(&mut y.view_mut(), array![1.0f32].view()).unwrap_err();
        assert!(e.to_string().contains("[1, 2]") && e.to_string().contains("[1]"));
        let mut s = ndarray::Array1::<f32>::zeros(3);
        assert!(add_column_sums(y.view(), &mut s.view_mut()).is_err());
    }

    #[test]
    fn sum_of_a_slice() {
        // 1 + 2 + … + 37 = 37·38/2 = 703: two full blocks of 16 and a rest of 5
        let xs: Vec<f32> = (1..=37).map(|v| v as f32).collect();
        assert_eq!(sum(&xs), 703.0);
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[2.5]), 2.5);
    }

    #[test]
    fn sum_of_squares_short_and_long() {
        // Σ_{i=1}^{n} i² = n(n+1)(2n+1)/6; for n = 100: 338350
        let xs: Vec<f32> = (1..=100).map(|v| v as f32).collect();
        assert_eq!(sum_squares(&xs), 338_350.0);
        // a long slice, cut across threads: 100,000 entries of 0.5 → 25,000 exactly
        let long = vec![0.5f32; 100_000];
        assert_eq!(sum_squares(&long), 25_000.0);
        assert!(sum_squares(&[1.0, f32::NAN]).is_nan());
        assert!(sum_squares(&[f32::INFINITY]).is_infinite());
    }
}
