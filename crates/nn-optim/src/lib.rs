#![doc = include_str!("../README.md")]
//!
//! ## Contents
//!
//! The derivation's update `w_new = w_old − η·∂E/∂w`, its refinements, and the loop that
//! applies it over mini-batches:
//!
//! - [`Optimizer`] with [`Sgd`] (plain, momentum, Nesterov, L2 weight decay) and [`Adam`]
//!   (Adam and AdamW); state keyed by parameter name and serialisable;
//! - [`clip`]: gradient clipping by global norm;
//! - [`schedule`]: constant, step, exponential and cosine learning rates with warm-up, the
//!   one owner of the learning rate (an optimizer is handed `η` at every step);
//! - [`train`]: the [`Trainer`] (seeded permutations, mini-batches, validation, early
//!   stopping, divergence detection), with its settings in [`TrainConfig`] and its record
//!   in [`History`]; an [`Observer`] sees every step and epoch and can save checkpoints;
//! - [`metrics`]: accuracy, confusion matrix, precision and recall.
//!
//! Optimizers reach parameters only by name through
//! [`Layer::visit`](nn_layers::Layer::visit), so they work on any layer,
//! including layers defined in other crates.

pub mod adam;
pub mod batch;
pub mod clip;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod history;
pub mod legacy;
pub mod metrics;
pub mod observer;
pub mod optimizer;
pub mod schedule;
pub mod sgd;
pub mod train;
mod update;

pub use adam::{Adam, AdamConfig};
pub use batch::{BatchBuffer, Data};
pub use clip::{clip_grad_norm, grad_norm};
pub use config::{EarlyStopping, Monitor, TrainConfig};
pub use error::{Error, Result};
pub use evaluate::evaluate;
pub use history::{EpochRecord, Evaluation, History};
pub use metrics::{ConfusionMatrix, predicted_class};
pub use observer::{EpochEnd, Observer, ObserverError, Silent};
pub use optimizer::{Optimizer, OptimizerState};
pub use schedule::{LrSchedule, Schedule, Warmup};
pub use sgd::{Sgd, SgdConfig};
pub use train::{BestSoFar, Trainer, TrainerState};
