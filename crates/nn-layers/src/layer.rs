//! The [`Layer`] trait: forward propagation, backward propagation and named parameters.
//!
//! ```text
//! forward:   y = f(x; θ)                      (Train mode keeps what backward needs)
//! backward:  given ∂E/∂y, add ∂E/∂θ into each parameter's grad and return ∂E/∂x
//! ```
//!
//! A layer owns its output and gradient buffers and returns *views* of them, so a training
//! step allocates nothing once the buffers have grown to the batch size. The view stays
//! valid until the layer is next called.
//!
//! Parameters are reached only through [`Parameterized::visit`], by name: optimizers, model
//! files and the gradient checker never need to know a layer's type, and a layer defined in
//! another crate trains, saves and loads like a built-in one.

use std::fmt::Debug;

use ndarray::ArrayViewD;
use nn_core::{Param, Tensor};

use crate::config::LayerConfig;
use crate::error::{Error, Result};

/// Whether a forward pass is part of training or of inference.
///
/// `Train` keeps the caches `backward` needs (and makes dropout drop, batch norm use batch
/// statistics); `Eval` keeps nothing and computes the inference function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Training: cache for backward, use batch statistics, drop units.
    Train,
    /// Inference: no caches, running statistics, no dropout.
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

/// Access to a layer's named tensors.
///
/// There is deliberately no default body: a layer that forgot to list its parameters would
/// silently never train.
pub trait Parameterized {
    /// Calls `f` once for every parameter and buffer with a name unique within the layer
    /// (`"weight"`, `"bias"`). Containers prefix their children's names (`"0.weight"`).
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>));
}

/// A differentiable building block of a network.
///
/// # Contract
/// - `forward` checks the input shape and returns [`Error`] (never panics) on a mismatch.
/// - In [`Mode::Train`], `forward` keeps what `backward` needs; in [`Mode::Eval`] it keeps
///   nothing, and a following `backward` returns [`Error::NoForward`].
/// - `backward(dy)` receives `∂E/∂y` for the last train-mode forward, *adds* `∂E/∂θ` into
///   every parameter's `grad` and returns `∂E/∂x` (same shape as that forward's input).
/// - A caller that keeps the input alive until the backward pass (a
///   [`Sequential`](crate::Sequential) for every layer after the first, the trainer for the
///   batch) may use [`Layer::forward_input_kept`] and give the input back to
///   [`Layer::backward_with_input`]; a layer that needs its input for the gradients then
///   skips its copy. Layers that do not care need not implement any of this.
/// - `backward` never changes what [`Layer::output`] shows.
pub trait Layer: Parameterized + Debug + Send {
    /// Computes the layer's output for a batch `x`.
    ///
    /// # Errors
    /// [`Error::Core`] with both shapes when `x` does not fit the layer.
    fn forward<'s>(&'s mut self, x: ArrayViewD<'_, f32>, mode: Mode)
    -> Result<ArrayViewD<'s, f32>>;

    /// Propagates `dy = ∂E/∂y` back: accumulates parameter gradients, returns `∂E/∂x`.
    ///
    /// # Errors
    /// [`Error::NoForward`] without a preceding train-mode forward; [`Error::Core`] when `dy`
    /// does not have the shape of the last output.
    fn backward<'s>(&'s mut self, dy: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>>;

    /// As [`Layer::backward`] for a layer whose input gradient nobody needs (the first layer
    /// of a network): accumulates the parameter gradients and may skip computing `∂E/∂x`.
    /// The default calls `backward`; layers where `∂E/∂x` is costly override it.
    ///
    /// # Errors
    /// As [`Layer::backward`].
    fn backward_params(&mut self, dy: ArrayViewD<'_, f32>) -> Result<()> {
        self.backward(dy).map(|_| ())
    }

    /// The output of the last forward pass, for a layer that keeps it in a buffer of its
    /// own, unchanged until its next forward (empty before the first); `None` (the default)
    /// for a layer that does not. [`Sequential`](crate::Sequential) hands it back to the
    /// next layer at backward time, so that layer need not keep a copy of its input.
    fn output(&self) -> Option<ArrayViewD<'_, f32>> {
        None
    }

    /// A train-mode forward for a caller that will pass the same `x`, unchanged, to
    /// [`Layer::backward_with_input`] or [`Layer::backward_params_with_input`]: a layer that
    /// needs its input for the backward pass may then skip copying it. The default is
    /// `forward(x, Mode::Train)`.
    ///
    /// # Errors
    /// As [`Layer::forward`].
    fn forward_input_kept<'s>(&'s mut self, x: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        self.forward(x, Mode::Train)
    }

    /// [`Layer::backward`] after [`Layer::forward_input_kept`], given that input `x` again.
    /// The default ignores `x` and calls `backward`.
    ///
    /// # Errors
    /// As [`Layer::backward`], and [`Error::Core`] if `x` is not the shape the forward pass saw.
    fn backward_with_input<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<ArrayViewD<'s, f32>> {
        let _ = x;
        self.backward(dy)
    }

    /// [`Layer::backward_params`] after [`Layer::forward_input_kept`], given that input again.
    /// The default ignores `x` and calls `backward_params`.
    ///
    /// # Errors
    /// As [`Layer::backward_with_input`].
    fn backward_params_with_input(
        &mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<()> {
        let _ = x;
        self.backward_params(dy)
    }

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

/// The check every layer makes at the top of `backward`.
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

/// The input a backward pass works from, for a layer that supports
/// [`Layer::forward_input_kept`]: the caller's `given` input (checked against `expected`,
/// the shape the forward pass saw) when the last train-mode forward left its input with the
/// caller (`kept`), or `None` when the layer kept its own copy.
///
/// # Errors
/// [`Error::InputNeeded`] when the input was kept by the caller but not given back;
/// [`Error::Core`] when it has another shape.
pub fn kept_input<'a>(
    layer: impl Fn() -> String,
    kept: bool,
    given: Option<ArrayViewD<'a, f32>>,
    expected: &[usize],
) -> Result<Option<ArrayViewD<'a, f32>>> {
    match (given, kept) {
        (_, false) => Ok(None),
        (None, true) => Err(Error::InputNeeded { layer: layer() }),
        (Some(x), true) => {
            require_shape(
                || format!("{} backward (its forward input)", layer()),
                expected,
                x.shape(),
            )?;
            Ok(Some(x))
        }
    }
}

/// The check that `dy` has the shape of the layer's last output.
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
