//! What a training run records: each epoch's losses, accuracies and learning rate.

use serde::{Deserialize, Serialize};

use crate::metrics::ConfusionMatrix;

/// Loss and accuracy of a model on a data set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean loss per row.
    pub loss: f32,
    /// Fraction of rows classified right (class targets only).
    pub accuracy: Option<f32>,
    /// Confusion matrix (class targets only).
    pub confusion: Option<ConfusionMatrix>,
}

/// What happened in one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f32,
    /// Mean training loss per row (over the epoch's batches, as the weights changed).
    pub train_loss: f32,
    /// Training accuracy over the epoch's batches (class targets only).
    pub train_accuracy: Option<f32>,
    /// Validation results, when validation rows were given.
    pub val: Option<Evaluation>,
    /// Wall-clock seconds of the training part of the epoch.
    pub seconds: f64,
}

/// The most epoch records a saved history may hold.
pub const MAX_SAVED_EPOCHS: usize = 1 << 21;

/// The record of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// One record per epoch run.
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, MAX_SAVED_EPOCHS>")]
    pub epochs: Vec<EpochRecord>,
    /// The epoch whose weights the model holds after early stopping restored them.
    pub best_epoch: Option<usize>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
}
