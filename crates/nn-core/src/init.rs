//! Weight initialisers: Xavier/Glorot and He/Kaiming, uniform and normal.
//!
//! ```text
//! dense weight [n_out, n_in]:           fan_in = n_in,          fan_out = n_out
//! conv weight  [c_out, c_in, kh, kw]:   fan_in = c_in·kh·kw,    fan_out = c_out·kh·kw
//!
//! Xavier uniform   W ~ U(−a, a),  a = √(6 / (fan_in + fan_out))
//! Xavier normal    W ~ N(0, σ²),  σ = √(2 / (fan_in + fan_out))
//! He uniform       W ~ U(−a, a),  a = √(6 / fan_in)
//! He normal        W ~ N(0, σ²),  σ = √(2 / fan_in)
//! ```
//!
//! Xavier keeps the variance of activations and gradients equal across a layer for
//! symmetric activations (tanh, sigmoid near 0); He doubles it to make up for ReLU
//! zeroing half of its inputs.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::{Rng, standard_normal, uniform};
use crate::tensor::Tensor;

/// How to fill a new weight tensor.
///
/// # Example
///
/// He-uniform draws from `U(−a, a)` with `a = √(6 / fan_in)`; the same seed gives the same
/// weights.
///
/// ```
/// use nn_core::{Init, seeded};
///
/// let w = Init::HeUniform.tensor(&[128, 784], &mut seeded(1))?; // dense [n_out, n_in]
/// let a = (6.0f32 / 784.0).sqrt();
/// assert!(w.iter().all(|v| v.abs() <= a));
/// let mean = w.mean().unwrap_or(f32::NAN);
/// assert!(mean.abs() < 0.01 * a); // 100,352 draws centred on 0
/// assert_eq!(w, Init::HeUniform.tensor(&[128, 784], &mut seeded(1))?);
/// assert_eq!(Init::Constant(0.5).tensor(&[2, 2], &mut seeded(1))?.sum(), 2.0);
/// # Ok::<(), nn_core::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum Init {
    /// All zeros (the usual bias initialiser).
    Zeros,
    /// Every entry the same value.
    Constant(f32),
    /// `U(−a, a)`, `a = √(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// `N(0, σ²)`, `σ = √(2 / (fan_in + fan_out))`.
    XavierNormal,
    /// `U(−a, a)`, `a = √(6 / fan_in)`; the default, suited to ReLU networks.
    #[default]
    HeUniform,
    /// `N(0, σ²)`, `σ = √(2 / fan_in)`.
    HeNormal,
}

/// `(fan_in, fan_out)` of a weight shape: `[n_out, n_in]` for dense layers or
/// `[c_out, c_in, kh, kw, …]` for convolutions (trailing axes are the receptive field).
///
/// # Errors
/// [`Error::InvalidArgument`] for fewer than two axes or a zero-sized axis.
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 || shape.contains(&0) {
        return Err(Error::invalid(
            "init",
            format!(
                "fan-in needs a weight shape [n_out, n_in, …] with no zero axis, got {}",
                crate::error::Shape(shape.to_vec())
            ),
        ));
    }
    let receptive: usize = shape[2..].iter().product(); // kh·kw (1 for dense)
    Ok((shape[1] * receptive, shape[0] * receptive))
}

impl Init {
    /// A new tensor of `shape` filled by this initialiser, drawing from `rng`.
    ///
    /// # Errors
    /// From [`fans`] for the Xavier and He variants.
    pub fn tensor(self, shape: &[usize], rng: &mut Rng) -> Result<Tensor> {
        let mut t = Tensor::zeros(shape);
        match self {
            Init::Zeros => {}
            Init::Constant(c) => t.fill(c),
            Init::XavierUniform => {
                let (fi, fo) = fans(shape)?;
                let a = (6.0 / (fi + fo) as f32).sqrt(); // a = √(6/(fan_in+fan_out))
                t.mapv_inplace(|_| uniform(rng, -a, a));
            }
            Init::XavierNormal => {
                let (fi, fo) = fans(shape)?;
                let s = (2.0 / (fi + fo) as f32).sqrt(); // σ = √(2/(fan_in+fan_out))
                t.mapv_inplace(|_| s * standard_normal(rng));
            }
            Init::HeUniform => {
                let (fi, _) = fans(shape)?;
                let a = (6.0 / fi as f32).sqrt(); // a = √(6/fan_in)
                t.mapv_inplace(|_| uniform(rng, -a, a));
            }
            Init::HeNormal => {
                let (fi, _) = fans(shape)?;
                let s = (2.0 / fi as f32).sqrt(); // σ = √(2/fan_in)
                t.mapv_inplace(|_| s * standard_normal(rng));
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    #[test]
    fn fans_of_dense_and_conv_shapes() {
        assert_eq!(fans(&[128, 784]).unwrap(), (784, 128));
        // conv 8 → 16 channels, 5×5: fan_in = 8·25 = 200, fan_out = 16·25 = 400
        assert_eq!(fans(&[16, 8, 5, 5]).unwrap(), (200, 400));
        assert!(fans(&[10]).is_err());
        assert!(fans(&[0, 3]).is_err());
    }

    fn moments(t: &Tensor) -> (f64, f64, f32) {
        let n = t.len() as f64;
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = t.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var, t.iter().fold(0.0f32, |m, v| m.max(v.abs())))
    }

    #[test]
    fn he_uniform_bound_and_variance() {
        // fan_in 200: a = √(6/200) = 0.173205; var of U(−a, a) = a²/3 = 0.01 = 2/fan_in
        let t = Init::HeUniform
            .tensor(&[64, 8, 5, 5], &mut seeded(0))
            .unwrap();
        let (mean, var, max) = moments(&t);
        assert!(max <= 0.173_205_1);
        assert!(mean.abs() < 0.005);
        assert!((var - 0.01).abs() < 0.0005, "var {var}");
    }

    #[test]
    fn xavier_and_he_normal_variances() {
        // Xavier normal [200, 300]: σ² = 2/500 = 0.004; He normal: σ² = 2/300
        let x = Init::XavierNormal
            .tensor(&[200, 300], &mut seeded(1))
            .unwrap();
        assert!((moments(&x).1 - 0.004).abs() < 0.0002);
        let h = Init::HeNormal.tensor(&[200, 300], &mut seeded(1)).unwrap();
        assert!((moments(&h).1 - 2.0 / 300.0).abs() < 0.0003);
        // Xavier uniform: a = √(6/500) = 0.109545, var a²/3 = 0.004
        let u = Init::XavierUniform
            .tensor(&[200, 300], &mut seeded(1))
            .unwrap();
        let (_, var, max) = moments(&u);
        assert!(max <= 0.109_545);
        assert!((var - 0.004).abs() < 0.0002);
    }

    #[test]
    fn same_seed_same_weights() {
        let a = Init::HeUniform.tensor(&[4, 3], &mut seeded(9)).unwrap();
        let b = Init::HeUniform.tensor(&[4, 3], &mut seeded(9)).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            Init::Constant(0.5).tensor(&[2], &mut seeded(0)).unwrap()[[1]],
            0.5
        );
    }
}
