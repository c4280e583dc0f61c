//! The mini-batch training loop.
//!
//! ```text
//! for epoch t = 1 … T:
//!     η ← schedule(t − 1)                       the schedule alone owns the learning rate
//!     perm ← a fresh seeded permutation of the N training rows
//!     zero every ∂E/∂w
//!     for each batch B = perm[k·b .. (k+1)·b]  (the last, shorter batch is kept):
//!         y ← forward(X_B)                      forward propagation, Train mode
//!         E ← loss(y, T_B)                      stop with an error if E is not finite
//!         backward(X_B, y, ∂E/∂y)                backward propagation, last layer first
//!         clip ‖∂E/∂w‖ (optional); stop with an error if it is not finite
//!         w ← optimizer(w, ∂E/∂w, η)            e.g. w − η·∂E/∂w
//!         zero every ∂E/∂w                      for the next batch
//!     evaluate on the validation rows (Eval mode); early stopping keeps the best weights
//!     the observer sees the epoch (and may save a checkpoint)
//! ```
//!
//! The update and the zeroing after it are one call, [`Optimizer::step_and_zero_grad`]: the
//! built-in optimizers clear each gradient in the same pass over memory that reads it.
//!
//! Because a step is applied only after its loss and gradients were found finite, a run
//! that diverges stops with [`Error::NonFinite`] naming the epoch
//! and step, and leaves the weights of the last good step in the model.
//!
//! A checkpoint holds the epoch count, from which the schedule gives the next rate, the
//! permutation generator, the optimizer's state and the early-stopping record: a run
//! resumed from it continues bit-identically.
//!
//! Batches are gathered into one reused buffer and the model writes its output into another;
//! the data set itself is never copied.

use std::time::Instant;

use nn_core::{Buffer, Rng, RngState, TensorData, rng};
use nn_layers::{Layer, Loss, Mode, Target, weights};
use serde::{Deserialize, Serialize};

use crate::batch::{BatchBuffer, Data};
use crate::clip::{clip_grad_norm, grad_norm};
use crate::config::{Monitor, TrainConfig};
use crate::error::{Error, Result, config};
use crate::evaluate::{correct, evaluate};
use crate::history::{EpochRecord, Evaluation, History};
use crate::observer::{EpochEnd, Observer, ObserverError};
use crate::optimizer::Optimizer;

/// The most named tensors a saved snapshot or optimizer state may hold.
pub const MAX_SAVED_TENSORS: usize = 1 << 16;

/// Where a run stands, for checkpoints: resuming from it continues bit-identically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// The permutation generator.
    pub rng: RngState,
    /// Early stopping bookkeeping.
    pub best: Option<BestSoFar>,
    /// Records of the epochs completed.
    pub history: History,
}

impl TrainerState {
    /// Checks a state read from a checkpoint against the model it goes with: the best
    /// weights (if any) are a finite snapshot of `model`, and the history is no longer than
    /// the epochs completed.
    ///
    /// # Errors
    /// [`Error::Snapshot`] naming what does not fit.
    pub fn validate(&self, model: &mut dyn Layer) -> Result<()> {
        if self.history.epochs.len() > self.epoch {
            return Err(Error::Snapshot(format!(
                "{} epochs of history after {} epochs",
                self.history.epochs.len(),
                self.epoch
            )));
        }
        match &self.best {
            Some(b) => weights::check(model, &b.weights).map_err(|e| {
                let why = match e {
                    nn_layers::Error::Weights(why) => why,
                    e => e.to_string(),
                };
                Error::Snapshot(format!("best weights: {why}"))
            }),
            None => Ok(()),
        }
    }
}

/// The best epoch so far and its weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestSoFar {
    /// Epoch number.
    pub epoch: usize,
    /// Its monitored value.
    pub value: f32,
    /// Epochs since.
    pub wait: usize,
    /// Its parameters and buffers, in visit order.
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, MAX_SAVED_TENSORS>")]
    pub weights: Vec<(String, TensorData)>,
}

/// Runs training epochs; holds the permutation generator and the batch buffer.
///
/// # Example
///
/// Fitting `y = 3x − 1` with one neuron, plain SGD, mini-batches of 4, and the same seed
/// giving the same weights twice:
///
/// ```
/// use nn_core::ndarray::Array2;
/// use nn_layers::{Dense, DenseConfig, Mse, Target};
/// use nn_optim::{Data, Sgd, SgdConfig, Silent, TrainConfig, Trainer};
///
/// let x = Array2::from_shape_fn((16, 1), |(i, _)| i as f32 / 8.0 - 1.0).into_dyn();
/// let t = x.mapv(|v| 3.0 * v - 1.0);
/// let data = Data::new(x.view(), Target::Values(t.view()))?;
/// let fit = || -> Result<Dense, Box<dyn std::error::Error>> {
///     let mut neuron = Dense::new(&DenseConfig::new(1, 1), &mut nn_core::seeded(5))?;
///     let mut sgd = Sgd::new(SgdConfig::plain())?;
///     let mut trainer = Trainer::new(TrainConfig::new(200, 4, 0.1).seed(5))?;
///     let history = trainer.fit(&mut neuron, &mut Mse::new(), &mut sgd, &data, None, &mut Silent)?;
///     assert_eq!(history.epochs.len(), 200);
///     Ok(neuron)
/// };
/// let neuron = fit()?;
/// let w = neuron.weight().value[[0, 0]];
/// assert!((w - 3.0).abs() < 1e-3, "w = {w}");
/// assert_eq!(fit()?.weight().value, neuron.weight().value); // deterministic
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Trainer {
    cfg: TrainConfig,
    rng: Rng,
    epoch: usize,
    step: u64,
    perm: Vec<usize>,
    batch: BatchBuffer,
    /// The model's output for the current batch.
    out: Buffer,
    best: Option<BestSoFar>,
    history: History,
}

/// What a training step works on.
struct Parts<'a> {
    model: &'a mut dyn Layer,
    loss: &'a mut dyn Loss,
    opt: &'a mut dyn Optimizer,
}

impl Trainer {
    /// A trainer at epoch 0.
    ///
    /// # Errors
    /// [`Error::Config`] for a zero batch size or a bad schedule.
    pub fn new(cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Trainer {
            rng: nn_core::seeded(cfg.seed),
            cfg,
            epoch: 0,
            step: 0,
            perm: Vec::new(),
            batch: BatchBuffer::new(),
            out: Buffer::new(),
            best: None,
            history: History::default(),
        })
    }

    /// A trainer continuing from a saved state (a checkpoint): the schedule resumes at the
    /// saved epoch.
    ///
    /// # Errors
    /// As [`Trainer::new`].
    pub fn resume(cfg: TrainConfig, state: TrainerState) -> Result<Self> {
        let mut t = Self::new(cfg)?;
        t.rng = state.rng.restore();
        t.epoch = state.epoch;
        t.step = state.step;
        t.best = state.best;
        t.history = state.history;
        Ok(t)
    }

    /// The state to save in a checkpoint.
    pub fn state(&self) -> TrainerState {
        TrainerState {
            epoch: self.epoch,
            step: self.step,
            rng: RngState::capture(&self.rng),
            best: self.best.clone(),
            history: self.history.clone(),
        }
    }

    /// Epochs completed so far.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The learning rate the next epoch will use: the schedule's value at the epochs
    /// completed.
    pub fn lr(&self) -> f32 {
        self.cfg.schedule.lr_at(self.epoch)
    }

    /// Whether the run is over: every epoch done, or early stopping ended it.
    pub fn is_done(&self) -> bool {
        self.epoch >= self.cfg.epochs || self.history.stopped_early
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Trains until `config().epochs` epochs are complete (or early stopping ends the run),
    /// validating after each epoch when `val` is given, and telling `observer` about every
    /// step and epoch. At the end, early stopping's best weights are put back.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss or the gradients stop being finite; errors of the
    /// layers and loss (shapes); [`Error::Config`] for early stopping without validation
    /// rows; [`Error::Observer`] when the observer fails.
    pub fn fit(
        &mut self,
        model: &mut dyn Layer,
        loss: &mut dyn Loss,
        opt: &mut dyn Optimizer,
        train: &Data<'_>,
        val: Option<&Data<'_>>,
        observer: &mut dyn Observer,
    ) -> Result<History> {
        if self.cfg.early_stopping.is_some() && val.is_none() {
            return Err(config("early stopping", "needs validation rows to monitor"));
        }
        if train.is_empty() {
            return Err(Error::Data("no training rows".into()));
        }
        let steps = train.len().div_ceil(self.cfg.batch_size);
        observer.on_start(self.epoch + 1, self.cfg.epochs, steps);
        let mut parts = Parts { model, loss, opt };
        while !self.is_done() {
            let record = self.run_epoch(&mut parts, train, val, observer)?;
            self.track_best(parts.model, &record)?;
            self.history.epochs.push(record);
            if let Some(record) = self.history.epochs.last() {
                let mut end = EpochEnd {
                    record,
                    model: &mut *parts.model,
                    trainer: self,
                    optimizer: &*parts.opt,
                };
                observer
                    .on_epoch_end(&mut end)
                    .map_err(|e| observer_error(self.epoch, e))?;
            }
        }
        self.restore_best(parts.model)?;
        Ok(self.history.clone())
    }

    /// One epoch: the training pass at the schedule's rate, then validation.
    fn run_epoch(
        &mut self,
        parts: &mut Parts<'_>,
        train: &Data<'_>,
        val: Option<&Data<'_>>,
        observer: &mut dyn Observer,
    ) -> Result<EpochRecord> {
        let epoch = self.epoch + 1;
        let lr = self.lr(); // η = schedule(t − 1)
        let started = Instant::now();
        let (train_loss, train_accuracy) = self.train_epoch(parts, lr, train, observer)?;
        let seconds = started.elapsed().as_secs_f64();
        // the history keeps the validation loss and accuracy, not the confusion matrix
        // (which would grow the checkpoints with every epoch)
        let val = match val {
            Some(v) => Some(Evaluation {
                confusion: None,
                ..evaluate(parts.model, parts.loss, v, self.cfg.eval_batch_size)?
            }),
            None => None,
        };
        self.epoch = epoch;
        Ok(EpochRecord {
            epoch,
            lr,
            train_loss,
            train_accuracy,
            val,
            seconds,
        })
    }

    /// One pass over the training rows at rate `lr`: returns the mean loss and the accuracy
    /// over the epoch's batches.
    fn train_epoch(
        &mut self,
        parts: &mut Parts<'_>,
        lr: f32,
        train: &Data<'_>,
        observer: &mut dyn Observer,
    ) -> Result<(f32, Option<f32>)> {
        let epoch = self.epoch + 1;
        rng::permutation_into(train.len(), &mut self.rng, &mut self.perm);
        let mut loss_sum = 0.0f64;
        let (mut correct, mut counted) = (0usize, 0usize);
        let Trainer {
            perm,
            batch,
            out,
            cfg,
            ..
        } = self;
        parts.model.zero_grad(); // each step leaves the gradients zero for the next
        for (k, idx) in perm.chunks(cfg.batch_size).enumerate() {
            let at = (epoch, k + 1);
            let batch = batch.gather(train, idx);
            let (e, right) = step(parts, &batch, out, lr, cfg.clip_grad_norm, at)?;
            if let Target::Classes(c) = &batch.target {
                (correct, counted) = (correct + right, counted + c.len());
            }
            self.step += 1;
            loss_sum += e as f64 * idx.len() as f64;
            observer.on_step(epoch, k + 1, e);
        }
        let accuracy = (counted > 0).then(|| correct as f32 / counted as f32);
        Ok(((loss_sum / train.len() as f64) as f32, accuracy))
    }

    fn track_best(&mut self, model: &mut dyn Layer, record: &EpochRecord) -> Result<()> {
        let Some(es) = self.cfg.early_stopping else {
            return Ok(());
        };
        let val = record.val.as_ref().expect("validation checked in fit");
        let (value, better): (f32, fn(f32, f32, f32) -> bool) = match es.monitor {
            Monitor::ValLoss => (val.loss, |new, best, d| new < best - d),
            Monitor::ValAccuracy => (
                val.accuracy
                    .ok_or_else(|| config("early stopping", "accuracy needs class targets"))?,
                |new, best, d| new > best + d,
            ),
        };
        match &mut self.best {
            Some(b) if !better(value, b.value, es.min_delta) => {
                b.wait += 1;
                if b.wait >= es.patience {
                    self.history.stopped_early = true;
                }
            }
            _ => {
                self.best = Some(BestSoFar {
                    epoch: record.epoch,
                    value,
                    wait: 0,
                    weights: weights::snapshot(model),
                });
            }
        }
        Ok(())
    }

    fn restore_best(&mut self, model: &mut dyn Layer) -> Result<()> {
        if let Some(b) = &self.best {
            weights::restore(model, &b.weights)?;
            self.history.best_epoch = Some(b.epoch);
        }
        Ok(())
    }
}

/// One training step on `batch` (at `(epoch, step)`, for messages), from zero gradients:
/// forward into `out`, loss, backward, gradient norm (clipped to `clip`), update at rate
/// `lr`, gradients back to zero. Returns the batch's loss and how many rows it classified
/// right. Nothing is applied when the loss or the gradients are not finite.
fn step(
    Parts { model, loss, opt }: &mut Parts<'_>,
    batch: &Data<'_>,
    out: &mut Buffer,
    lr: f32,
    clip: Option<f32>,
    (epoch, step): (usize, usize),
) -> Result<(f32, usize)> {
    model.forward(batch.x.view(), out, Mode::Train)?; // y = f(X_B), forward propagation
    let right = match &batch.target {
        Target::Classes(c) => correct(out.view(), c),
        Target::Values(_) => 0,
    };
    let e = loss.forward(out.view(), batch.target.clone())?; // E(y, t)
    let diverged = |what, value| Error::NonFinite {
        epoch,
        step,
        what,
        value,
    };
    if !e.is_finite() {
        return Err(diverged("loss", e));
    }
    // backward propagation, last layer first (no ∂E/∂x needed)
    model.backward(batch.x.view(), out.view(), loss.backward()?, None)?;
    let norm = match clip {
        Some(c) => clip_grad_norm(*model, c),
        None => grad_norm(*model),
    };
    if !norm.is_finite() {
        return Err(diverged("gradient norm", norm));
    }
    opt.step_and_zero_grad(*model, lr)?; // w ← w − η·∂E/∂w (or the optimizer's rule); ∂E/∂w ← 0
    Ok((e, right))
}

/// An observer's failure after `epoch`, with its causes on one line.
fn observer_error(epoch: usize, e: ObserverError) -> Error {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message += &format!(": {s}");
        source = s.source();
    }
    Error::Observer { epoch, message }
}
