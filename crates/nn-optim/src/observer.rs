//! Watching a training run: progress lines, recorded runs, checkpoints.

use nn_layers::Layer;

use crate::history::EpochRecord;
use crate::optimizer::{Optimizer, OptimizerState};
use crate::train::{Trainer, TrainerState};

/// What an observer may fail with; the run stops and returns it as
/// [`Error::Observer`](crate::Error::Observer).
pub type ObserverError = Box<dyn std::error::Error + Send + Sync>;

/// Callbacks through which a command line draws progress, saves checkpoints, or a test
/// records a run. Every method has a default that does nothing.
pub trait Observer {
    /// Training is about to run epochs `first..=last`, each of `steps` batches.
    fn on_start(&mut self, first: usize, last: usize, steps: usize) {
        let _ = (first, last, steps);
    }

    /// A batch finished with loss `loss`.
    fn on_step(&mut self, epoch: usize, step: usize, loss: f32) {
        let _ = (epoch, step, loss);
    }

    /// An epoch finished (after validation). `end` holds its record and reaches the model
    /// and the state a checkpoint needs.
    ///
    /// # Errors
    /// Whatever the observer could not do (a checkpoint it could not write); training stops.
    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        let _ = end;
        Ok(())
    }
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// The end of an epoch as an observer sees it: the record, the model as the epoch left it,
/// and the trainer's and optimizer's states for a checkpoint (from which a resumed run
/// continues bit-identically).
pub struct EpochEnd<'a> {
    /// What happened in the epoch.
    pub record: &'a EpochRecord,
    /// The model after the epoch's last step (before early stopping restores any weights).
    pub model: &'a mut dyn Layer,
    pub(crate) trainer: &'a Trainer,
    pub(crate) optimizer: &'a dyn Optimizer,
}

impl EpochEnd<'_> {
    /// The trainer's state after this epoch.
    pub fn trainer_state(&self) -> TrainerState {
        self.trainer.state()
    }

    /// The optimizer's state after this epoch.
    pub fn optimizer_state(&self) -> OptimizerState {
        self.optimizer.state()
    }

    /// Whether the run ends after this epoch (the last one, or early stopping).
    pub fn is_last(&self) -> bool {
        self.trainer.is_done()
    }
}
