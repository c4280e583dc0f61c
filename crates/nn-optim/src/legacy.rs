//! The training state as format version 1 stored it, read so that checkpoints written by
//! earlier builds still resume.
//!
//! Version 1 kept each epoch's validation confusion matrix, dense (`classes²` counts), in
//! the history. Version 2 keeps no confusion matrix in the history (a checkpoint no longer
//! grows with the square of the classes at every epoch). Reading a version-1 state drops
//! those matrices; everything a resumed run uses (epoch, step, generator, best weights,
//! losses and accuracies) is carried over unchanged.
//!
//! Version 1 also kept a learning rate in the optimizer's state. From version 2 the
//! schedule alone owns the rate, and the epoch count says where it stands, so that copy is
//! dropped.

use nn_core::RngState;
use serde::Deserialize;

use std::collections::BTreeMap;

use nn_core::TensorData;

use crate::history::{EpochRecord, Evaluation, History};
use crate::optimizer::OptimizerState;
use crate::train::{BestSoFar, TrainerState};

/// A version-1 confusion matrix: `classes` and `classes²` dense counts.
#[derive(Deserialize)]
struct ConfusionV1 {
    #[allow(dead_code)]
    classes: usize,
    #[allow(dead_code)]
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, { 1 << 24 }>")]
    counts: Vec<u64>,
}

#[derive(Deserialize)]
struct EvaluationV1 {
    loss: f32,
    accuracy: Option<f32>,
    #[allow(dead_code)]
    confusion: Option<ConfusionV1>,
}

#[derive(Deserialize)]
struct EpochRecordV1 {
    epoch: usize,
    lr: f32,
    train_loss: f32,
    train_accuracy: Option<f32>,
    val: Option<EvaluationV1>,
    seconds: f64,
}

#[derive(Deserialize)]
struct HistoryV1 {
    #[serde(
        deserialize_with = "nn_core::bounded::vec::<_, _, { crate::history::MAX_SAVED_EPOCHS }>"
    )]
    epochs: Vec<EpochRecordV1>,
    best_epoch: Option<usize>,
    stopped_early: bool,
}

/// A [`TrainerState`] as format version 1 stored it.
#[derive(Deserialize)]
pub struct TrainerStateV1 {
    epoch: usize,
    step: u64,
    rng: RngState,
    best: Option<BestSoFar>,
    history: HistoryV1,
}

impl From<TrainerStateV1> for TrainerState {
    fn from(v1: TrainerStateV1) -> Self {
        let epochs = v1
            .history
            .epochs
            .into_iter()
            .map(|e| EpochRecord {
                epoch: e.epoch,
                lr: e.lr,
                train_loss: e.train_loss,
                train_accuracy: e.train_accuracy,
                val: e.val.map(|v| Evaluation {
                    loss: v.loss,
                    accuracy: v.accuracy,
                    confusion: None,
                }),
                seconds: e.seconds,
            })
            .collect();
        TrainerState {
            epoch: v1.epoch,
            step: v1.step,
            rng: v1.rng,
            best: v1.best,
            history: History {
                epochs,
                best_epoch: v1.history.best_epoch,
                stopped_early: v1.history.stopped_early,
            },
        }
    }
}

/// An [`OptimizerState`] as format version 1 stored it (with a learning rate).
#[derive(Deserialize)]
pub struct OptimizerStateV1 {
    kind: String,
    steps: u64,
    #[allow(dead_code)]
    lr: f32,
    #[serde(
        deserialize_with = "nn_core::bounded::map::<_, _, _, { crate::train::MAX_SAVED_TENSORS }>"
    )]
    slots: BTreeMap<String, Vec<TensorData>>,
}

impl From<OptimizerStateV1> for OptimizerState {
    fn from(v1: OptimizerStateV1) -> Self {
        OptimizerState {
            kind: v1.kind,
            steps: v1.steps,
            slots: v1.slots,
        }
    }
}
