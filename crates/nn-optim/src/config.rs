//! The settings of a training run.

use serde::{Deserialize, Serialize};

use crate::error::{Result, config};
use crate::schedule::LrSchedule;

/// The metric early stopping watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Monitor {
    /// Validation loss; lower is better.
    ValLoss,
    /// Validation accuracy; higher is better.
    ValAccuracy,
}

/// Stop when the monitored metric has not improved for `patience` epochs, and restore the
/// weights of the best epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// What to watch.
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f32,
}

/// Settings of a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Number of epochs (passes over the training rows).
    pub epochs: usize,
    /// Rows per mini-batch.
    pub batch_size: usize,
    /// Seed of the per-epoch permutations.
    pub seed: u64,
    /// The learning rate of every epoch: the one owner of `η`.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f32>,
    /// Early stopping on a validation metric.
    pub early_stopping: Option<EarlyStopping>,
    /// Rows per forward pass when evaluating.
    pub eval_batch_size: usize,
}

impl TrainConfig {
    /// `epochs` epochs of batches of `batch_size` with learning rate `lr` (a constant rate
    /// `η` given as an `f32`, or an [`LrSchedule`]); seed 0, no clipping or early stop.
    pub fn new(epochs: usize, batch_size: usize, lr: impl Into<LrSchedule>) -> Self {
        TrainConfig {
            epochs,
            batch_size,
            seed: 0,
            schedule: lr.into(),
            clip_grad_norm: None,
            early_stopping: None,
            eval_batch_size: 1024,
        }
    }

    /// With seed `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// With early stopping.
    pub fn early_stopping(mut self, monitor: Monitor, patience: usize) -> Self {
        self.early_stopping = Some(EarlyStopping {
            monitor,
            patience,
            min_delta: 0.0,
        });
        self
    }

    /// With gradient clipping.
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Self {
        self.clip_grad_norm = Some(max_norm);
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            return Err(config("batch size", "must be at least 1"));
        }
        if let Some(c) = self.clip_grad_norm
            && !(c.is_finite() && c > 0.0)
        {
            return Err(config(
                "gradient clipping",
                format!("max norm must be > 0, got {c}"),
            ));
        }
        self.schedule.validate()
    }
}
