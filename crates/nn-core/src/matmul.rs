//! Matrix multiplication into a preallocated output.
//!
//! ```text
//! C ← α·A·B + β·C        A: [m, k], B: [k, n], C: [m, n]
//! ```
//!
//! Transposes are free: pass `a.t()` to multiply by `Aᵀ`. [`matmul_into`] checks the shapes
//! first and returns an [`Error`] naming all three, then runs the product through the GEMM
//! kernel of [`gemm_kernel`](crate::gemm_kernel).

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use crate::error::{Error, Result};

/// `C ← α·A·B + β·C`, with shapes checked. With `beta = 0` the old contents of `c` are
/// ignored (even NaN); with `beta = 1` the product is accumulated into `c`.
///
/// # Shapes
/// `a: [m, k]`, `b: [k, n]`, `c: [m, n]`.
///
/// # Errors
/// [`Error::Incompatible`] when the inner dimensions differ or `c` has the wrong shape.
///
/// # Example
///
/// A gradient step accumulates: `∂E/∂W += dYᵀ·X` is `beta = 1` with a transposed view.
///
/// ```
/// use nn_core::matmul_into;
/// use nn_core::ndarray::array;
///
/// let (x, dy) = (array![[1.0f32, 2.0], [3.0, 4.0]], array![[1.0f32], [-1.0]]);
/// let mut dw = array![[10.0f32, 10.0]]; // [n_out, n_in], holding an earlier gradient
/// matmul_into(1.0, dy.t(), x.view(), 1.0, &mut dw.view_mut())?;
/// assert_eq!(dw, array![[10.0 + 1.0 - 3.0, 10.0 + 2.0 - 4.0]]);
///
/// // shapes are checked before anything is written
/// let err = matmul_into(1.0, x.view(), dy.t(), 0.0, &mut dw.view_mut()).unwrap_err();
/// assert!(err.to_string().contains("inner dimensions differ"));
/// # Ok::<(), nn_core::Error>(())
/// ```
pub fn matmul_into(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) -> Result<()> {
    check_shapes(&a, &b, c)?;
    if beta == 0.0 && a.ncols() == 0 {
        c.fill(0.0);
        return Ok(());
    }
    crate::gemm_kernel::gemm(alpha, a, b, beta, c.view_mut());
    Ok(())
}

/// `a: [m, k]`, `b: [k, n]` and `c: [m, n]`, or the error naming all three.
fn check_shapes(
    a: &ArrayView2<'_, f32>,
    b: &ArrayView2<'_, f32>,
    c: &ArrayViewMut2<'_, f32>,
) -> Result<()> {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    if k != k2 {
        return Err(Error::Incompatible {
            op: "matmul".into(),
            reason: "inner dimensions differ",
            a_name: "a",
            a: a.shape().into(),
            b_name: "b",
            b: b.shape().into(),
        });
    }
    if c.dim() != (m, n) {
        return Err(Error::Incompatible {
            op: "matmul".into(),
            reason: "output has the wrong shape for a·b",
            a_name: "a·b",
            a: vec![m, n].as_slice().into(),
            b_name: "c",
            b: c.shape().into(),
        });
    }
    Ok(())
}

/// `A·B` into a new matrix; a convenience for tests and one-off use (the hot path uses
/// [`matmul_into`] with a reused output).
///
/// # Errors
/// As [`matmul_into`].
pub fn matmul(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
    let mut c = Array2::zeros((a.nrows(), b.ncols()));
    matmul_into(1.0, a, b, 0.0, &mut c.view_mut())?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn small_product_by_hand() {
        // [1 2; 3 4]·[5 6; 7 8] = [1·5+2·7, 1·6+2·8; 3·5+4·7, 3·6+4·8] = [19 22; 43 50]
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        let b = array![[5.0f32, 6.0], [7.0, 8.0]];
        assert_eq!(
            matmul(a.view(), b.view()).unwrap(),
            array![[19.0, 22.0], [43.0, 50.0]]
        );
    }

    #[test]
    fn transposed_view_and_accumulate() {
        // C = 1 + 2·Aᵀ·B with A = [1 2; 3 4], B = I: Aᵀ = [1 3; 2 4] → C = [3 7; 5 9]
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        let b = array![[1.0f32, 0.0], [0.0, 1.0]];
        let mut c = Array2::<f32>::ones((2, 2));
        matmul_into(2.0, a.t(), b.view(), 1.0, &mut c.view_mut()).unwrap();
        assert_eq!(c, array![[3.0, 7.0], [5.0, 9.0]]);
    }

    #[test]
    fn large_threaded_product_matches_a_naive_one() {
        // 70×300 · 300×90 = 3.8 MFLOP: above the threading threshold; transposed A
        let a = Array2::from_shape_fn((300, 70), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let b = Array2::from_shape_fn((300, 90), |(i, j)| ((i * 5 + j) % 13) as f32 * 0.5 - 3.0);
        let mut c = Array2::<f32>::from_elem((70, 90), 1.0);
        matmul_into(2.0, a.t(), b.view(), 0.5, &mut c.view_mut()).unwrap();
        for i in (0..70).step_by(7) {
            for j in (0..90).step_by(9) {
                let dot: f32 = (0..300).map(|k| a[[k, i]] * b[[k, j]]).sum();
                assert_eq!(c[[i, j]], 0.5 + 2.0 * dot, "({i}, {j})"); // small integers: exact
            }
        }
    }

    #[test]
    fn one_or_two_rows_times_a_transposed_matrix() {
        // batch-1 inference: x·Wᵀ with W [n_out, n_in] row-major, also split over
        // threads (n·k = 300·400 ≥ 2¹⁶)
        for (rows, n, k) in [(1, 10, 37), (2, 300, 400), (1, 300, 400)] {
            let x = Array2::from_shape_fn((rows, k), |(i, j)| ((i * 3 + j * 7) % 5) as f32 - 2.0);
            let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 11 + j) % 9) as f32 - 4.0);
            let mut y = Array2::<f32>::from_elem((rows, n), 3.0);
            matmul_into(1.0, x.view(), w.t(), 1.0, &mut y.view_mut()).unwrap();
            for i in 0..rows {
                for j in 0..n {
                    let dot: f32 = (0..k).map(|t| x[[i, t]] * w[[j, t]]).sum();
                    assert_eq!(y[[i, j]], 3.0 + dot, "rows {rows} ({i}, {j})"); // integers: exact
                }
            }
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_output() {
        let a = array![[1.0f32]];
        let mut c = array![[f32::NAN]];
        matmul_into(1.0, a.view(), a.view(), 0.0, &mut c.view_mut()).unwrap();
        assert_eq!(c[[0, 0]], 1.0);
    }

    #[test]
    fn shape_errors_name_the_shapes() {
        let a = Array2::<f32>::zeros((4, 3));
        let b = Array2::<f32>::zeros((5, 2));
        let e = matmul(a.view(), b.view()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "matmul: inner dimensions differ, a is [4, 3] and b is [5, 2]"
        );
        let b = Array2::<f32>::zeros((3, 2));
        let mut c = Array2::<f32>::zeros((4, 3));
        let e = matmul_into(1.0, a.view(), b.view(), 0.0, &mut c.view_mut()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "matmul: output has the wrong shape for a·b, a·b is [4, 2] and c is [4, 3]"
        );
    }

    /// Exact reference for products of small integers.
    fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
        Array2::from_shape_fn((a.nrows(), b.ncols()), |(i, j)| {
            (0..a.ncols()).map(|k| a[[i, k]] * b[[k, j]]).sum()
        })
    }

    #[test]
    fn every_way_of_cutting_a_product_gives_the_same_result() {
        // C largest and row-major → blocks of rows (a weight gradient dW += dYᵀ·X);
        // B largest → blocks of columns (a forward X·Wᵀ); a column-major B whose stride is
        // a multiple of 128 → the padded copy (W stored [40, 256], so Wᵀ has stride 256)
        let dy = Array2::from_shape_fn((64, 200), |(i, j)| ((i * 3 + j) % 7) as f32 - 3.0);
        let x = Array2::from_shape_fn((64, 300), |(i, j)| ((i + j * 5) % 9) as f32 - 4.0);
        let mut dw = Array2::<f32>::from_elem((200, 300), 1.0);
        matmul_into(1.0, dy.t(), x.view(), 1.0, &mut dw.view_mut()).unwrap();
        assert_eq!(dw, naive(dy.t(), x.view()) + 1.0);

        let w = Array2::from_shape_fn((400, 300), |(i, j)| ((i * 7 + j) % 5) as f32 - 2.0);
        let mut y = Array2::<f32>::zeros((64, 400));
        matmul_into(1.0, x.view(), w.t(), 0.0, &mut y.view_mut()).unwrap();
        assert_eq!(y, naive(x.view(), w.t()));

        let x2 = Array2::from_shape_fn((32, 256), |(i, j)| ((i * 3 + j * 2) % 7) as f32 - 3.0);
        let w2 = Array2::from_shape_fn((40, 256), |(i, j)| ((i + j * 3) % 11) as f32 - 5.0);
        let mut y2 = Array2::<f32>::from_elem((32, 40), f32::NAN); // β = 0 ignores NaN
        matmul_into(1.0, x2.view(), w2.t(), 0.0, &mut y2.view_mut()).unwrap();
        assert_eq!(y2, naive(x2.view(), w2.t()));
    }
}
