//! Element-wise activations: `y = f(x)` applied to every entry.
//!
//! ```text
//! forward    y = f(x)
//! backward   ∂E/∂x = ∂E/∂y ⊙ f′(x)
//!
//! Identity     f(x) = x                     f′ = 1
//! Sigmoid      f(x) = 1 / (1 + e^{−x})      f′ = y·(1 − y)
//! Tanh         f(x) = tanh x                f′ = 1 − y²
//! ReLU         f(x) = max(0, x)             f′ = 1 if y > 0 else 0
//! LeakyReLU    f(x) = x if x > 0 else α·x   f′ = 1 if y > 0 else α     (α ≥ 0)
//! ```
//!
//! Every derivative is written in terms of the output `y`, which the layer keeps anyway:
//! backward needs no copy of the input. (With `α ≥ 0`, `y > 0` exactly when `x > 0`.) At
//! the kink `x = 0` ReLU and LeakyReLU use the derivative of the left side.

use std::fmt::Debug;

use ndarray::{ArrayViewD, Zip};
use nn_core::parallel::split_runs;
use nn_core::{Buffer, Rng};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output, ensure};
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, check_backward};
use crate::spec::{Attr, LayerSpec};

/// A scalar function and its derivative, written in terms of the output.
pub trait Activation: Clone + Debug + Send + Sync + 'static {
    /// The layer kind in specs and messages (`"relu"`).
    const KIND: &'static str;
    /// `y = f(x)`.
    fn f(&self, x: f32) -> f32;
    /// `f′(x)` expressed through `y = f(x)`.
    fn df(&self, y: f32) -> f32;
    /// Extra spec attributes (LeakyReLU's `α`).
    fn attrs(&self) -> Vec<(String, Attr)> {
        Vec::new()
    }
    /// The function a spec describes (its attributes, validated).
    ///
    /// # Errors
    /// [`Error::Spec`](crate::Error::Spec) or [`Error::Config`](crate::Error::Config).
    fn from_spec(spec: &LayerSpec) -> Result<Self>;
}

/// The parameterless functions: no attribute at all.
macro_rules! no_attributes {
    () => {
        fn from_spec(spec: &LayerSpec) -> Result<Self> {
            spec.only(&[])?;
            Ok(Self)
        }
    };
}

/// `f(x) = x`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdentityFn;
impl Activation for IdentityFn {
    const KIND: &'static str = "identity";
    no_attributes!();
    fn f(&self, x: f32) -> f32 {
        x
    }
    fn df(&self, _y: f32) -> f32 {
        1.0
    }
}

/// `f(x) = 1 / (1 + e^{−x})`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SigmoidFn;
impl Activation for SigmoidFn {
    const KIND: &'static str = "sigmoid";
    no_attributes!();
    fn f(&self, x: f32) -> f32 {
        sigmoid(x)
    }
    fn df(&self, y: f32) -> f32 {
        y * (1.0 - y) // σ′ = σ·(1 − σ)
    }
}

/// `f(x) = tanh x`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TanhFn;
impl Activation for TanhFn {
    const KIND: &'static str = "tanh";
    no_attributes!();
    fn f(&self, x: f32) -> f32 {
        x.tanh()
    }
    fn df(&self, y: f32) -> f32 {
        1.0 - y * y // tanh′ = 1 − tanh²
    }
}

/// `f(x) = max(0, x)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReluFn;
impl Activation for ReluFn {
    const KIND: &'static str = "relu";
    no_attributes!();
    fn f(&self, x: f32) -> f32 {
        x.max(0.0)
    }
    fn df(&self, y: f32) -> f32 {
        if y > 0.0 { 1.0 } else { 0.0 } // 1 where the unit is active
    }
}

/// `f(x) = x` for `x > 0`, `α·x` otherwise.
#[derive(Clone, Copy, Debug)]
pub struct LeakyReluFn {
    alpha: f32,
}

impl LeakyReluFn {
    /// The default slope left of zero.
    pub const ALPHA: f32 = 0.01;

    /// Slope `alpha`, which must be finite and `≥ 0` (the derivative is read from the
    /// output's sign, which needs `α ≥ 0`).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) otherwise.
    pub fn new(alpha: f32) -> Result<Self> {
        ensure(alpha.is_finite() && alpha >= 0.0, Self::KIND, || {
            format!("alpha must be finite and ≥ 0, got {alpha}")
        })?;
        Ok(LeakyReluFn { alpha })
    }
}

impl Activation for LeakyReluFn {
    const KIND: &'static str = "leaky_relu";
    fn f(&self, x: f32) -> f32 {
        if x > 0.0 { x } else { self.alpha * x }
    }
    fn df(&self, y: f32) -> f32 {
        if y > 0.0 { 1.0 } else { self.alpha } // slope α left of the kink
    }
    fn attrs(&self) -> Vec<(String, Attr)> {
        vec![("alpha".into(), Attr::Float(self.alpha as f64))]
    }
    fn from_spec(spec: &LayerSpec) -> Result<Self> {
        spec.only(&["alpha"])?;
        Self::new(spec.float_or("alpha", f64::from(Self::ALPHA))? as f32)
    }
}

/// The logistic function, computed without overflow for large `|x|`.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp()) // 1 / (1 + e^{−x})
    } else {
        let e = x.exp();
        e / (1.0 + e) // same value, e^{x} / (1 + e^{x}), with e^{x} ≤ 1
    }
}

/// A layer applying an [`Activation`] to every entry; see the module doc for the formulas.
#[derive(Clone, Debug)]
pub struct Elementwise<A: Activation> {
    act: A,
}

/// `y = x`.
pub type Identity = Elementwise<IdentityFn>;
/// `y = 1 / (1 + e^{−x})`.
pub type Sigmoid = Elementwise<SigmoidFn>;
/// `y = tanh x`.
pub type Tanh = Elementwise<TanhFn>;
/// `y = max(0, x)`.
pub type Relu = Elementwise<ReluFn>;
/// `y = x` for `x > 0`, `α·x` otherwise.
pub type LeakyRelu = Elementwise<LeakyReluFn>;

impl<A: Activation> Elementwise<A> {
    /// The layer for activation function `act`.
    pub fn with_fn(act: A) -> Self {
        Elementwise { act }
    }
}

impl<A: Activation + Default> Elementwise<A> {
    /// The layer.
    pub fn new() -> Self {
        Self::with_fn(A::default())
    }
}

impl<A: Activation + Default> Default for Elementwise<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl LeakyRelu {
    /// LeakyReLU with slope `alpha` left of zero.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) unless `alpha` is finite and `≥ 0` (the derivative is read from the
    /// output's sign, which needs `α ≥ 0`).
    pub fn leaky(alpha: f32) -> Result<Self> {
        Ok(Self::with_fn(LeakyReluFn::new(alpha)?))
    }
}

/// The configuration of an element-wise activation layer: the function itself.
#[derive(Clone, Debug)]
pub struct ActivationConfig<A: Activation>(pub A);

impl<A: Activation> ActivationConfig<A> {
    /// Reads the function's attributes.
    ///
    /// # Errors
    /// As [`Activation::from_spec`].
    pub fn from_spec(spec: &LayerSpec, _ctx: &Context<'_>) -> Result<Self> {
        Ok(ActivationConfig(A::from_spec(spec)?))
    }
}

impl<A: Activation> LayerConfig for ActivationConfig<A> {
    fn spec(&self) -> LayerSpec {
        LayerSpec {
            kind: A::KIND.into(),
            attrs: self.0.attrs(),
        }
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        Ok(Vec::new())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        checked_output(|| A::KIND.into(), input.to_vec())
    }

    fn build(&self, _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Elementwise::with_fn(self.0.clone())))
    }
}

impl<A: Activation> Layer for Elementwise<A> {
    fn visit<'a>(&'a mut self, _f: &mut dyn FnMut(&str, Slot<'a>)) {}

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, _mode: Mode) -> Result<()> {
        y.resize(x.shape());
        let act = &self.act;
        match x.as_slice() {
            // a large batch is spread over the threads
            Some(xs) => split_runs(xs.len(), (y.as_mut_slice(), 1), xs.len(), &|r, y| {
                for (y, &x) in y.iter_mut().zip(&xs[r]) {
                    *y = act.f(x); // y = f(x)
                }
            }),
            None => Zip::from(y.view_mut())
                .and(&x)
                .for_each(|y, &x| *y = act.f(x)), // y = f(x)
        }
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        check_backward(|| A::KIND.into(), x.shape(), &y, &dy)?;
        let Some(dx) = dx else {
            return Ok(()); // no parameters: nothing else to do
        };
        dx.resize(dy.shape());
        let act = &self.act;
        match (dy.as_slice(), y.as_slice()) {
            (Some(dys), Some(ys)) => {
                split_runs(dys.len(), (dx.as_mut_slice(), 1), dys.len(), &|r, dx| {
                    for ((dx, &dy), &y) in dx.iter_mut().zip(&dys[r.clone()]).zip(&ys[r]) {
                        *dx = dy * act.df(y); // ∂E/∂x = ∂E/∂y ⊙ f′
                    }
                })
            }
            _ => Zip::from(dx.view_mut())
                .and(&dy)
                .and(&y)
                .for_each(|dx, &dy, &y| *dx = dy * act.df(y)), // ∂E/∂x = ∂E/∂y ⊙ f′
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(ActivationConfig(self.act.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::apply_backward;
    use ndarray::array;

    fn run<A: Activation>(mut l: Elementwise<A>, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let x = ndarray::Array1::from(x.to_vec()).into_dyn();
        let dy = ndarray::Array1::from(dy.to_vec()).into_dyn();
        let (y, dx) = apply_backward(&mut l, x.view(), dy.view()).unwrap();
        (
            y.into_raw_vec_and_offset().0,
            dx.into_raw_vec_and_offset().0,
        )
    }

    fn close(a: &[f32], b: &[f32]) {
        for (a, b) in a.iter().zip(b) {
            assert!((a - b).abs() < 1e-6, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn sigmoid_by_hand() {
        // σ(0) = 0.5, σ′ = 0.25; σ(2) = 1/(1+e^-2) = 0.880797, σ′ = 0.880797·0.119203 = 0.104994
        // σ(−2) = 0.119203, σ′ = 0.104994; dy = [1, 2, −1]
        let (y, dx) = run(Sigmoid::new(), &[0.0, 2.0, -2.0], &[1.0, 2.0, -1.0]);
        close(&y, &[0.5, 0.880_797, 0.119_203]);
        close(&dx, &[0.25, 0.209_987, -0.104_994]);
        // no overflow at the extremes
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
    }

    #[test]
    fn tanh_by_hand() {
        // tanh(1) = 0.761594, 1 − tanh² = 0.419974
        let (y, dx) = run(Tanh::new(), &[1.0, 0.0], &[1.0, 3.0]);
        close(&y, &[0.761_594, 0.0]);
        close(&dx, &[0.419_974, 3.0]);
    }

    #[test]
    fn relu_and_leaky_by_hand() {
        let (y, dx) = run(Relu::new(), &[-1.0, 0.0, 2.0], &[5.0, 5.0, 5.0]);
        assert_eq!(y, [0.0, 0.0, 2.0]);
        assert_eq!(dx, [0.0, 0.0, 5.0]);
        // α = 0.1: f(−1) = −0.1, f(2) = 2; f′ = [0.1, 1]
        let (y, dx) = run(LeakyRelu::leaky(0.1).unwrap(), &[-1.0, 2.0], &[2.0, 2.0]);
        close(&y, &[-0.1, 2.0]);
        close(&dx, &[0.2, 2.0]);
        assert!(LeakyRelu::leaky(-0.5).is_err());
        assert!(LeakyRelu::leaky(f32::NAN).is_err());
    }

    #[test]
    fn identity_passes_through_any_shape() {
        let mut l = Identity::new();
        let x = array![[[1.0f32, 2.0]], [[3.0, 4.0]]].into_dyn();
        assert_eq!(
            apply_backward(&mut l, x.view(), x.view()).unwrap(),
            (x.clone(), x)
        );
        assert_eq!(l.output_shape(&[2, 1, 2]).unwrap(), vec![2, 1, 2]);
    }

    #[test]
    fn backward_errors() {
        let mut l = Relu::new();
        let x = array![1.0f32, 2.0].into_dyn();
        let bad = array![1.0f32].into_dyn();
        let mut dx = Buffer::new();
        assert_eq!(
            l.backward(x.view(), x.view(), bad.view(), Some(&mut dx))
                .unwrap_err()
                .to_string(),
            "relu backward: dy: expected shape [2], got [1]"
        );
        // without dx there is nothing to compute, but the shapes are still checked
        assert!(l.backward(x.view(), bad.view(), bad.view(), None).is_err());
    }

    #[test]
    fn strided_inputs_take_the_general_path_with_the_same_values() {
        // transposed views are not contiguous: forward and backward run through `Zip`
        let x = array![[-1.0f32, 0.5, 2.0], [0.0, -0.25, 3.0]];
        let dy_rows = array![[1.0f32, 0.5, 3.0], [-2.0, 4.0, -1.0]];
        let (xt, dyt) = (x.t().into_dyn(), dy_rows.t().into_dyn()); // both [3, 2]
        assert!(xt.as_slice().is_none() && dyt.as_slice().is_none());
        let (y, dx) = apply_backward(&mut Tanh::new(), xt.view(), dyt.view()).unwrap();
        // tanh(x) and (1 − tanh²(x))·dy entry by entry, from the definitions
        for (i, &v) in xt.indexed_iter() {
            let t = v.tanh();
            assert!((y[&i] - t).abs() < 1e-6);
            assert!((dx[&i] - (1.0 - t * t) * dyt[&i]).abs() < 1e-6);
        }
        // the contiguous path gives the same values
        let (x_owned, dy_owned) = (xt.to_owned(), dyt.to_owned());
        let (y2, dx2) = apply_backward(&mut Tanh::new(), x_owned.view(), dy_owned.view()).unwrap();
        assert_eq!((y2, dx2), (y, dx));
    }
}
