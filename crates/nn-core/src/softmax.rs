//! Numerically stable softmax and log-softmax over the last axis of a batch of rows.
//!
//! ```text
//! softmax(z)_j     = e^{z_j − m} / Σ_k e^{z_k − m}        m = max_k z_k
//! log_softmax(z)_j = z_j − m − ln Σ_k e^{z_k − m}
//! ```
//!
//! Subtracting the row maximum `m` changes nothing mathematically (it cancels) but keeps
//! every exponent ≤ 0, so `e^{…}` never overflows and the largest term is exactly 1: the
//! results are finite and correct even for logits of ±1000.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Zip};

use crate::error::{Error, Result};

fn check(op: &str, z: &ArrayView2<'_, f32>, out: &ArrayViewMut2<'_, f32>) -> Result<()> {
    if z.dim() != out.dim() {
        return Err(Error::Incompatible {
            op: op.into(),
            reason: "output shape differs from input",
            a_name: "z",
            a: z.shape().into(),
            b_name: "out",
            b: out.shape().into(),
        });
    }
    Ok(())
}

/// The maximum of a row (`-inf` for an empty row).
pub fn row_max(z: ArrayView1<'_, f32>) -> f32 {
    z.fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// `(m, ln Σ_k e^{z_k − m})` with `m = max_k z_k`: the two parts of a stable log-sum-exp,
/// kept apart so that `z_j − m` can be formed exactly before subtracting the log term.
fn shifted_log_sum_exp(z: ArrayView1<'_, f32>) -> (f32, f32) {
    let m = row_max(z);
    if !m.is_finite() {
        return (m, 0.0);
    }
    let s: f32 = z.fold(0.0, |s, &v| s + (v - m).exp()); // Σ e^{z_k − m}
    (m, s.ln())
}

/// `ln Σ_k e^{z_k}` computed stably as `m + ln Σ_k e^{z_k − m}`.
pub fn log_sum_exp(z: ArrayView1<'_, f32>) -> f32 {
    let (m, ln_s) = shifted_log_sum_exp(z);
    m + ln_s
}

/// Softmax of one row into `p`; returns `(m, ln Σ_k e^{z_k − m})`, from which
/// `log p_j = (z_j − m) − ln Σ_k e^{z_k − m}` follows without a second pass of `exp`.
pub fn softmax_row(z: ArrayView1<'_, f32>, mut p: ArrayViewMut1<'_, f32>) -> (f32, f32) {
    let m = row_max(z);
    let mut s = 0.0f32;
    Zip::from(&mut p).and(&z).for_each(|p, &z| {
        *p = (z - m).exp(); // e^{z_j − m}
        s += *p;
    });
    let inv = 1.0 / s;
    p.mapv_inplace(|v| v * inv); // / Σ_k e^{z_k − m}
    (m, s.ln())
}

/// Row-wise softmax of `z` into `p`.
///
/// # Errors
/// [`Error::Incompatible`] when `p` and `z` differ in shape.
pub fn softmax_rows_into(z: ArrayView2<'_, f32>, p: &mut ArrayViewMut2<'_, f32>) -> Result<()> {
    check("softmax", &z, p)?;
    for (z, p) in z.rows().into_iter().zip(p.rows_mut()) {
        softmax_row(z, p);
    }
    Ok(())
}

/// Row-wise log-softmax of `z` into `out`.
///
/// # Errors
/// [`Error::Incompatible`] when `out` and `z` differ in shape.
pub fn log_softmax_rows_into(
    z: ArrayView2<'_, f32>,
    out: &mut ArrayViewMut2<'_, f32>,
) -> Result<()> {
    check("log_softmax", &z, out)?;
    for (z, mut o) in z.rows().into_iter().zip(out.rows_mut()) {
        let (m, ln_s) = shifted_log_sum_exp(z);
        Zip::from(&mut o)
            .and(&z)
            .for_each(|o, &z| *o = (z - m) - ln_s); // z_j − m − ln Σ e^{z_k − m}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    #[test]
    fn softmax_of_known_logits() {
        // z = [1, 2, 3]: e^{z−3} = [e^-2, e^-1, 1] = [0.135335, 0.367879, 1], sum 1.503214
        // p = [0.090031, 0.244728, 0.665241]
        let z = array![[1.0f32, 2.0, 3.0]];
        let mut p = Array2::zeros((1, 3));
        softmax_rows_into(z.view(), &mut p.view_mut()).unwrap();
        for (a, e) in p.iter().zip([0.090031f32, 0.244728, 0.665241]) {
            assert!((a - e).abs() < 1e-6, "{a} vs {e}");
        }
    }

    #[test]
    fn extreme_logits_stay_finite() {
        // z = [1000, -1000, 0]: m = 1000, exponents [0, -2000, -1000] → p = [1, 0, 0];
        // log p = z − 1000 − ln(1 + e^-2000 + e^-1000) = [0, -2000, -1000]
        let z = array![[1000.0f32, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]];
        let mut p = Array2::zeros((2, 3));
        softmax_rows_into(z.view(), &mut p.view_mut()).unwrap();
        assert_eq!(p.row(0).to_vec(), vec![1.0, 0.0, 0.0]);
        for v in p.row(1) {
            assert!((v - 1.0 / 3.0).abs() < 1e-7);
        }
        let mut lp = Array2::zeros((2, 3));
        log_softmax_rows_into(z.view(), &mut lp.view_mut()).unwrap();
        assert_eq!(lp.row(0).to_vec(), vec![0.0, -2000.0, -1000.0]);
        // equal logits: log(1/3) = -1.0986123
        for v in lp.row(1) {
            assert!((v + 1.098_612_3).abs() < 1e-5, "{v}");
        }
        assert!(lp.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn log_sum_exp_matches_formula() {
        // ln(e^1 + e^2) = 2 + ln(1 + e^-1) = 2.3132617
        assert!((log_sum_exp(array![1.0f32, 2.0].view()) - 2.313_261_7).abs() < 1e-6);
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let z = Array2::<f32>::zeros((2, 3));
        let mut p = Array2::<f32>::zeros((3, 2));
        assert!(softmax_rows_into(z.view(), &mut p.view_mut()).is_err());
    }
}
