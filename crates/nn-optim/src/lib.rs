//! # nn-optim: gradient descent and the training loop
//!
//! The derivation's update `w_new = w_old − η·∂E/∂w`, its refinements, and the loop that
//! applies it over mini-batches:
//!
//! - [`Optimizer`] with [`Sgd`] (plain, momentum, Nesterov, L2 weight decay) and [`Adam`]
//!   (Adam and AdamW); state keyed by parameter name and serialisable;
//! - [`clip`]: gradient clipping by global norm;
//! - [`schedule`]: constant, step, exponential and cosine learning rates with warm-up;
//! - [`train`]: the [`Trainer`] (seeded permutations, mini-batches, validation, early
//!   stopping, divergence detection, an [`Observer`] for progress);
//! - [`metrics`]: accuracy, confusion matrix, precision and recall.
//!
//! Optimizers reach parameters only by name through
//! [`Parameterized::visit`](nn_layers::Parameterized::visit), so they work on any layer,
//! including layers defined in other crates.

pub mod adam;
pub mod batch;
pub mod clip;
pub mod error;
pub mod legacy;
pub mod metrics;
pub mod optimizer;
pub mod schedule;
pub mod sgd;
pub mod train;

pub use adam::{Adam, AdamConfig};
pub use batch::{BatchBuffer, Data};
pub use clip::{clip_grad_norm, grad_norm};
pub use error::{Error, Result};
pub use metrics::{ConfusionMatrix, predicted_class};
pub use optimizer::{Optimizer, OptimizerState};
pub use schedule::{LrSchedule, Schedule, Warmup};
pub use sgd::{Sgd, SgdConfig};
pub use train::{
    BestSoFar, EarlyStopping, EpochRecord, Evaluation, History, Monitor, Observer, Silent,
    TrainConfig, Trainer, TrainerState, check_snapshot, evaluate, restore, snapshot,
};
