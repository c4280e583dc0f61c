#![doc = include_str!("../README.md")]
//!
//! ## Contents
//!
//! The training story as code. A neuron computes `y = f(w·x + b)`; a layer of them over a
//! batch computes `Y = f(X·Wᵀ + b)`. Here the affine part is [`Dense`] and `f` is its own
//! layer ([`Sigmoid`], [`Tanh`], [`Relu`], …), so each has one forward and one backward
//! formula, stated in its module doc and beside the line that computes it.
//!
//! - [`Layer`]: `forward(x, y, mode)` / `backward(x, y, dy, dx)`, explicit [`Mode`], named
//!   parameters through [`Layer::visit`] — optimizers and files never need a layer's
//!   type;
//! - [`Dense`], the activations in [`activation`], [`Softmax`];
//! - [`Conv2d`] (im2col + GEMM), [`MaxPool2d`]/[`AvgPool2d`], [`Flatten`], [`BatchNorm`],
//!   [`Dropout`];
//! - [`loss`]: [`Mse`], [`BceWithLogits`], [`SoftmaxCrossEntropy`] (fused, gradient
//!   `(p − y)/N`);
//! - [`Sequential`]: owns the activations; forward through every layer, backward in reverse
//!   order;
//! - [`gradcheck`]: the numerical gradient checker, public so that layers written in other
//!   crates can be checked the same way;
//! - [`LayerConfig`]: the one description of each layer kind (`DenseConfig`,
//!   `Conv2dConfig`, …) that validates itself and knows its tensors and output shapes before
//!   anything is allocated; [`LayerSpec`], its kind and attributes as files store them; and
//!   [`Registry`], which reads a spec back into a configuration (user-defined kinds
//!   included, once registered).

pub mod activation;
pub mod batchnorm;
pub mod config;
pub mod conv;
pub mod dense;
pub mod dropout;
pub mod error;
pub mod flatten;
pub mod gradcheck;
pub mod layer;
pub mod loss;
pub mod pool;
pub mod registry;
pub mod sequential;
pub mod softmax;
pub mod spec;
pub mod weights;

pub use activation::{ActivationConfig, Identity, LeakyRelu, Relu, Sigmoid, Tanh};
pub use batchnorm::{BatchNorm, BatchNormConfig};
pub use config::{Context, Domain, LayerConfig, TensorSpec};
pub use conv::{Conv2d, Conv2dConfig};
pub use dense::{Dense, DenseConfig};
pub use dropout::{Dropout, DropoutConfig};
pub use error::{Error, Result};
pub use flatten::{Flatten, FlattenConfig};
pub use gradcheck::{GradCheckConfig, GradCheckReport, check_layer, check_loss};
pub use layer::{Layer, Mode, Slot};
pub use loss::{BceWithLogits, Loss, Mse, SoftmaxCrossEntropy, Target};
pub use pool::{AvgPool2d, MaxPool2d, Pool2d, Pool2dConfig, Reduce};
pub use registry::{Parser, Registry};
pub use sequential::{Sequential, SequentialConfig};
pub use softmax::{Softmax, SoftmaxConfig};
pub use spec::{Attr, LayerSpec};
pub use weights::Weights;
