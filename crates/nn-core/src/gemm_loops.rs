//! `C ← α·A·B + β·C` written as the formula, row by row:
//!
//! ```text
//! c_i ← β·c_i + α · Σ_p a_ip · b_p        (c_i, b_p: rows of C and B)
//! ```
//!
//! The kernel of the `wasm32` build, where size matters more than speed (see
//! [`gemm_kernel`](crate::gemm_kernel)); natively it is compiled and tested against the
//! `gemm` crate on every layout, so the browser computes what the native build computes.

use ndarray::{ArrayView2, ArrayViewMut2, Zip};

/// `C ← α·A·B + β·C` for `a: [m, k]`, `b: [k, n]`, `c: [m, n]` (checked by the caller). With
/// `β = 0`, `C` is overwritten without being read.
pub fn gemm(
    alpha: f32,
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    beta: f32,
    c: &mut ArrayViewMut2<'_, f32>,
) {
    for (mut ci, ai) in c.rows_mut().into_iter().zip(a.rows()) {
        if beta == 0.0 {
            ci.fill(0.0);
        } else if beta != 1.0 {
            ci.map_inplace(|v| *v *= beta); // β·c_i
        }
        for (bp, &aip) in b.rows().into_iter().zip(&ai) {
            let s = alpha * aip;
            Zip::from(&mut ci).and(&bp).for_each(|c, &b| *c += s * b); // + α·a_ip·b_p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, ShapeBuilder, array};

    #[test]
    fn a_product_by_hand() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        let b = array![[5.0f32, 6.0, 7.0], [8.0, 9.0, 10.0]];
        let mut c = array![[1.0f32, 1.0, 1.0], [f32::NAN, 0.0, 0.0]];
        // row 0: 2·[1·5 + 2·8, 1·6 + 2·9, 1·7 + 2·10] + 0.5·1 = [42.5, 48.5, 54.5]
        gemm(
            2.0,
            a.view(),
            b.view(),
            0.5,
            &mut c.view_mut().slice_mut(ndarray::s![..1, ..]),
        );
        assert_eq!(c.row(0).to_vec(), vec![42.5, 48.5, 54.5]);
        // β = 0 ignores what C held, NaN included: [3·5 + 4·8, …] = [47, 54, 61]
        gemm(1.0, a.view(), b.view(), 0.0, &mut c.view_mut());
        assert_eq!(c, array![[21.0, 24.0, 27.0], [47.0, 54.0, 61.0]]);
    }

    /// The loops against the native kernel on row- and column-major operands.
    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn agrees_with_the_native_kernel_on_every_layout() {
        let mut rng = crate::seeded(5);
        for (m, k, n) in [(1, 1, 1), (3, 7, 5), (17, 64, 10), (40, 9, 33)] {
            let mut r = |shape: (usize, usize), f: bool| {
                let v = (0..shape.0 * shape.1)
                    .map(|_| crate::rng::uniform(&mut rng, -1.0, 1.0))
                    .collect();
                Array2::from_shape_vec(shape.set_f(f), v).unwrap()
            };
            for (fa, fb, fc) in [
                (false, false, false),
                (true, false, true),
                (false, true, false),
            ] {
                let (a, b, c0) = (r((m, k), fa), r((k, n), fb), r((m, n), fc));
                let (mut mine, mut native) = (c0.clone(), c0);
                gemm(0.7, a.view(), b.view(), 1.3, &mut mine.view_mut());
                crate::matmul::matmul_into(0.7, a.view(), b.view(), 1.3, &mut native.view_mut())
                    .unwrap();
                for (x, y) in mine.iter().zip(&native) {
                    assert!(
                        (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                        "{m}×{k}×{n}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
