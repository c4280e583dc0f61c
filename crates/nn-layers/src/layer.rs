//! The [`Layer`] trait: forward propagation, backward propagation and named parameters.
//!
//! The derivation's network keeps every activation `a⁰ … aᴸ`; so does this one. A
//! [`Sequential`](crate::Sequential) owns the activations and their gradients and hands each
//! layer exactly what the chain rule gives it:
//!
//! ```text
//! forward    x = aˡ⁻¹                          →  writes y = aˡ = f(x; θ)
//! backward   x = aˡ⁻¹,  y = aˡ,  dy = ∂E/∂aˡ    →  adds ∂E/∂θ into each parameter's grad,
//!                                                  writes dx = ∂E/∂aˡ⁻¹ when asked
//! ```
//!
//! `x`, `y` and `dy` are shared views, `y` and `dx` the only buffers a layer writes, so a
//! layer cannot overwrite what another still needs: borrowing rules it out. A layer keeps
//! nothing but its parameters and its own working memory (a dropout mask, batch statistics,
//! pooling indices); it never copies its input or its output. Buffers keep their allocation
//! from batch to batch, so a training step allocates nothing once they have grown.
//!
//! Parameters are reached only through [`Layer::visit`], by name: optimizers, model
//! files and the gradient checker never need to know a layer's type, and a layer defined in
//! another crate trains, saves and loads like a built-in one.

use std::any::Any;
use std::fmt::Debug;

use ndarray::ArrayViewD;
use nn_core::{Buffer, Param, Tensor};

use crate::config::LayerConfig;
use crate::error::{Error, Result};

/// A layer shows as its name (`dense(784 → 128)`), so that a layer type need not derive
/// `Debug` to be held in a network.
impl Debug for dyn Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether a forward pass is part of training or of inference.
///
/// `Train` keeps the working memory `backward` needs (and makes dropout drop, batch norm use
/// batch statistics); `Eval` computes the inference function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Training: keep what backward needs, use batch statistics, drop units.
    Train,
    /// Inference: running statistics, no dropout.
    Eval,
}

/// One named tensor of a layer, as handed to a visitor.
#[derive(Debug)]
pub enum Slot<'a> {
    /// A trainable parameter: optimizers update it, files save it.
    Param(&'a mut Param),
    /// A tensor that is saved but not trained (e.g. batch norm's running mean).
    Buffer(&'a mut Tensor),
}

/// A differentiable building block of a network.
///
/// # Contract
/// - `forward` checks the input shape and returns [`Error`] (never panics) on a mismatch;
///   it resizes `y` to the output shape and overwrites all of it.
/// - In [`Mode::Train`], `forward` keeps the working memory `backward` needs; in
///   [`Mode::Eval`] it computes the inference function.
/// - `backward` receives the `x` and `y` of the last train-mode forward and `dy = ∂E/∂y`; it
///   *adds* `∂E/∂θ` into every parameter's `grad` and, when `dx` is given, resizes it to
///   `x`'s shape and writes `∂E/∂x`. A layer whose backward needs working memory from the
///   forward pass returns [`Error::NoForward`] without it.
///
/// # Example: a minimal layer
///
/// `y = 2x`, so `∂E/∂x = 2·∂E/∂y`; no parameters, so `visit` shows nothing. The
/// configuration is what model files store and what rebuilds the layer.
///
/// ```
/// use nn_core::{Buffer, Rng, ndarray::{ArrayViewD, array}};
/// use nn_layers::{
///     GradCheckConfig, Layer, LayerConfig, LayerSpec, Mode, Result, Slot, TensorSpec,
///     check_layer, layer::apply_backward,
/// };
///
/// struct Double;
///
/// impl Layer for Double {
///     fn visit<'a>(&'a mut self, _: &mut dyn FnMut(&str, Slot<'a>)) {}
///     fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, _: Mode) -> Result<()> {
///         y.assign(x);
///         y.as_mut_slice().iter_mut().for_each(|v| *v *= 2.0); // y = 2x
///         Ok(())
///     }
///     fn backward(
///         &mut self,
///         _x: ArrayViewD<'_, f32>,
///         _y: ArrayViewD<'_, f32>,
///         dy: ArrayViewD<'_, f32>,
///         dx: Option<&mut Buffer>,
///     ) -> Result<()> {
///         if let Some(dx) = dx {
///             dx.assign(dy);
///             dx.as_mut_slice().iter_mut().for_each(|v| *v *= 2.0); // ∂E/∂x = 2·∂E/∂y
///         }
///         Ok(())
///     }
///     fn config(&self) -> Box<dyn LayerConfig> {
///         Box::new(DoubleConfig)
///     }
/// }
///
/// struct DoubleConfig;
///
/// impl LayerConfig for DoubleConfig {
///     fn spec(&self) -> LayerSpec {
///         LayerSpec::new("double")
///     }
///     fn tensors(&self) -> Result<Vec<TensorSpec>> {
///         Ok(Vec::new())
///     }
///     fn build(&self, _: &mut Rng) -> Result<Box<dyn Layer>> {
///         Ok(Box::new(Double))
///     }
/// }
///
/// let x = array![[1.0f32, -2.0]].into_dyn();
/// let (y, dx) = apply_backward(&mut Double, x.view(), array![[1.0f32, 0.5]].into_dyn().view())?;
/// assert_eq!((y, dx), (array![[2.0f32, -4.0]].into_dyn(), array![[2.0f32, 1.0]].into_dyn()));
/// assert!(check_layer(&mut Double, x.view(), &GradCheckConfig::default())?.passed());
/// assert_eq!(Double.output_shape(&[5, 2])?, [5, 2]);
/// # Ok::<(), nn_layers::Error>(())
/// ```
///
/// `Any` (any `'static` type has it; nothing to implement) lets a container recognise a
/// built-in layer by its type, as [`Sequential`](crate::Sequential) does to run a ReLU
/// after the max pooling that follows it.
pub trait Layer: Send + Any {
    /// Calls `f` once for every parameter and buffer with a name unique within the layer
    /// (`"weight"`, `"bias"`); containers prefix their children's names (`"0.weight"`).
    /// Optimizers, model files and the gradient checker reach the tensors only this way.
    ///
    /// There is deliberately no default body: a layer that forgot to list its parameters
    /// would silently never train.
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>));

    /// `y = f(x; θ)` for a batch `x`.
    ///
    /// # Errors
    /// [`Error::Core`] with both shapes when `x` does not fit the layer.
    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()>;

    /// Adds `∂E/∂θ` into the parameter gradients and, if `dx` is given, writes `∂E/∂x`.
    ///
    /// # Errors
    /// [`Error::NoForward`] where the layer needs a preceding train-mode forward;
    /// [`Error::Core`] when `dy` does not have `y`'s shape or `x` does not fit.
    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()>;

    /// What the layer is: its kind's configuration, which model files store and from which
    /// a registry builds the layer again.
    fn config(&self) -> Box<dyn LayerConfig>;

    /// The output shape for an input of shape `input` (batch axis included); the default
    /// asks [`Layer::config`].
    ///
    /// # Errors
    /// As `forward` would for that shape, or a limit error for an output too large.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.config().output_shape(input)
    }

    /// A short human-readable name, e.g. `dense(784 → 128)`; the default asks
    /// [`Layer::config`].
    fn name(&self) -> String {
        self.config().name()
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        self.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.zero_grad();
            }
        });
    }

    /// Number of trainable scalars.
    fn num_params(&mut self) -> usize {
        let mut n = 0;
        self.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                n += p.len();
            }
        });
        n
    }
}

/// Runs `layer` forward on `x` and returns a copy of its output: a convenience for tests,
/// examples and one-off inference (a training loop reuses its buffers instead).
///
/// # Errors
/// As [`Layer::forward`].
pub fn apply(layer: &mut dyn Layer, x: ArrayViewD<'_, f32>, mode: Mode) -> Result<Tensor> {
    let mut y = Buffer::new();
    layer.forward(x, &mut y, mode)?;
    Ok(y.to_tensor())
}

/// Runs `layer` forward in train mode and backward with `dy`; returns `y` and `∂E/∂x` (the
/// parameter gradients accumulate in the layer). A convenience for tests and examples.
///
/// # Errors
/// As [`Layer::forward`] and [`Layer::backward`].
pub fn apply_backward(
    layer: &mut dyn Layer,
    x: ArrayViewD<'_, f32>,
    dy: ArrayViewD<'_, f32>,
) -> Result<(Tensor, Tensor)> {
    let (mut y, mut dx) = (Buffer::new(), Buffer::new());
    layer.forward(x.view(), &mut y, Mode::Train)?;
    layer.backward(x, y.view(), dy, Some(&mut dx))?;
    Ok((y.to_tensor(), dx.to_tensor()))
}

/// The check a layer with working memory makes at the top of `backward`.
///
/// # Errors
/// [`Error::NoForward`] naming `layer` when `ready` is false.
pub fn require_forward(ready: bool, layer: impl FnOnce() -> String) -> Result<()> {
    if ready {
        Ok(())
    } else {
        Err(Error::NoForward { layer: layer() })
    }
}

/// The check that a tensor has the shape it must have (`dy` that of `y`).
///
/// # Errors
/// [`Error::Core`] naming `op` and both shapes.
pub fn require_shape(op: impl FnOnce() -> String, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(nn_core::Error::shape(op(), nn_core::Shape(expected.to_vec()).to_string(), got).into())
    }
}

/// The common checks of `backward` for a layer that maps `x` to `y` of `y_shape`: `dy` has
/// `y`'s shape and `y` is what `x` gives.
///
/// # Errors
/// [`Error::Core`] naming `layer` and both shapes.
pub fn check_backward(
    layer: impl Fn() -> String,
    y_shape: &[usize],
    y: &ArrayViewD<'_, f32>,
    dy: &ArrayViewD<'_, f32>,
) -> Result<()> {
    require_shape(|| format!("{} backward: y", layer()), y_shape, y.shape())?;
    require_shape(
        || format!("{} backward: dy", layer()),
        y.shape(),
        dy.shape(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dense, DenseConfig, Relu, Sequential};

    #[test]
    fn a_layer_shows_as_its_name() {
        let mut rng = nn_core::seeded(0);
        let net = Sequential::new()
            .with(Dense::new(&DenseConfig::new(3, 2), &mut rng).unwrap())
            .with(Relu::new());
        let boxed: Box<dyn Layer> = Box::new(net);
        assert_eq!(format!("{boxed:?}"), "sequential[dense(3 → 2), relu]");
    }
}
