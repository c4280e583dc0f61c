//! # nn: a small, readable neural-network toolkit for the CPU
//!
//! This facade re-exports the toolkit's crates, so that one dependency gives all of them:
//!
//! - [`core`] (`nn-core`): tensors, matrix products, stable softmax, initialisers, seeded RNG;
//! - [`layers`] (`nn-layers`): the `Layer` trait, dense layers, activations, losses,
//!   `Sequential` and the numerical gradient checker;
//! - [`optim`] (`nn-optim`): optimizers, learning-rate schedules, the training loop, metrics;
//! - [`io`] (`nn-io`): data sets (CSV, IDX), normalisation and splits.
//!
//! Depend on the individual crates instead when you need only part of the toolkit.

pub use nn_core as core;
pub use nn_io as io;
pub use nn_layers as layers;
pub use nn_optim as optim;
