//! The mini-batch training loop.
//!
//! ```text
//! for epoch t = 1 … T:
//!     η ← schedule(t − 1)
//!     perm ← a fresh seeded permutation of the N training rows
//!     for each batch B = perm[k·b .. (k+1)·b]  (the last, shorter batch is kept):
//!         zero every ∂E/∂w
//!         y ← forward(X_B)                      forward propagation, Train mode
//!         E ← loss(y, T_B)                      stop with an error if E is not finite
//!         backward(X_B, y, ∂E/∂y)                backward propagation, last layer first
//!         clip ‖∂E/∂w‖ (optional); stop with an error if it is not finite
//!         w ← optimizer(w, ∂E/∂w)               e.g. w − η·∂E/∂w
//!     evaluate on the validation rows (Eval mode); early stopping keeps the best weights
//! ```
//!
//! Because a step is applied only after its loss and gradients were found finite, a run
//! that diverges stops with [`Error::NonFinite`] naming the epoch
//! and step, and leaves the weights of the last good step in the model.
//!
//! Batches are gathered into one reused buffer and the model writes its output into another;
//! the data set itself is never copied.

use std::time::Instant;

use ndarray::{ArrayViewD, Ix2};
use nn_core::{Buffer, Rng, RngState, Tensor, TensorData, rng};
use nn_layers::{Layer, Loss, Mode, Slot, Target};
use serde::{Deserialize, Serialize};

use crate::batch::{BatchBuffer, Data};
use crate::clip::{clip_grad_norm, grad_norm};
use crate::error::{Error, Result, config};
use crate::metrics::ConfusionMatrix;
use crate::optimizer::Optimizer;
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
    /// Learning-rate schedule (`None`: the optimizer's rate throughout).
    pub schedule: Option<LrSchedule>,
    /// Clip the global gradient norm to this value.
    pub clip_grad_norm: Option<f32>,
    /// Early stopping on a validation metric.
    pub early_stopping: Option<EarlyStopping>,
    /// Rows per forward pass when evaluating.
    pub eval_batch_size: usize,
}

impl TrainConfig {
    /// `epochs` epochs of batches of `batch_size`, seed 0, no schedule, clipping or early stop.
    pub fn new(epochs: usize, batch_size: usize) -> Self {
        TrainConfig {
            epochs,
            batch_size,
            seed: 0,
            schedule: None,
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

    /// With a learning-rate schedule.
    pub fn schedule(mut self, schedule: LrSchedule) -> Self {
        self.schedule = Some(schedule);
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

    fn validate(&self) -> Result<()> {
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
        if let Some(s) = &self.schedule {
            s.validate()?;
        }
        Ok(())
    }
}

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

/// The most named tensors a saved snapshot or optimizer state may hold.
pub const MAX_SAVED_TENSORS: usize = 1 << 16;

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

/// Callbacks through which a command line draws progress or a test records a run.
pub trait Observer {
    /// Training is about to run epochs `first..=last`, each of `steps` batches.
    fn on_start(&mut self, first: usize, last: usize, steps: usize) {
        let _ = (first, last, steps);
    }
    /// A batch finished with loss `loss`.
    fn on_step(&mut self, epoch: usize, step: usize, loss: f32) {
        let _ = (epoch, step, loss);
    }
    /// An epoch finished (after validation).
    fn on_epoch_end(&mut self, record: &EpochRecord) {
        let _ = record;
    }
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

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
    /// [`Error::State`] naming what does not fit.
    pub fn validate(&self, model: &mut dyn Layer) -> Result<()> {
        if self.history.epochs.len() > self.epoch {
            return Err(Error::Snapshot(format!(
                "{} epochs of history after {} epochs",
                self.history.epochs.len(),
                self.epoch
            )));
        }
        match &self.best {
            Some(b) => snapshot_fits(model, &b.weights)
                .map_err(|e| Error::Snapshot(format!("best weights: {e}"))),
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

    /// A trainer continuing from a saved state (a checkpoint).
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

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Trains until `config().epochs` epochs are complete (or early stopping ends the run),
    /// validating after each epoch when `val` is given.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when the loss or the gradients stop being finite; errors of the
    /// layers and loss (shapes); [`Error::Config`] for early stopping without validation rows.
    pub fn fit(
        &mut self,
        model: &mut dyn Layer,
        loss: &mut dyn Loss,
        opt: &mut dyn Optimizer,
        train: &Data<'_>,
        val: Option<&Data<'_>>,
        observer: &mut dyn Observer,
    ) -> Result<History> {
        self.fit_until(model, loss, opt, train, val, observer, self.cfg.epochs)
    }

    /// As [`Trainer::fit`], but stops after epoch `until` (e.g. to save a checkpoint).
    ///
    /// # Errors
    /// As [`Trainer::fit`].
    #[allow(clippy::too_many_arguments)]
    pub fn fit_until(
        &mut self,
        model: &mut dyn Layer,
        loss: &mut dyn Loss,
        opt: &mut dyn Optimizer,
        train: &Data<'_>,
        val: Option<&Data<'_>>,
        observer: &mut dyn Observer,
        until: usize,
    ) -> Result<History> {
        if self.cfg.early_stopping.is_some() && val.is_none() {
            return Err(config("early stopping", "needs validation rows to monitor"));
        }
        if train.is_empty() {
            return Err(Error::Data("no training rows".into()));
        }
        let last = until.min(self.cfg.epochs);
        let steps = train.len().div_ceil(self.cfg.batch_size);
        observer.on_start(self.epoch + 1, last, steps);
        while self.epoch < last && !self.history.stopped_early {
            let epoch = self.epoch + 1;
            let lr = match &self.cfg.schedule {
                Some(s) => s.lr_at(epoch - 1),
                None => opt.lr(),
            };
            opt.set_lr(lr);
            let started = Instant::now();
            let (train_loss, train_accuracy) =
                self.train_epoch(model, loss, opt, train, observer)?;
            let seconds = started.elapsed().as_secs_f64();
            // the history keeps the validation loss and accuracy, not the confusion matrix
            // (which would grow the checkpoints with every epoch)
            let val_eval = match val {
                Some(v) => Some(Evaluation {
                    confusion: None,
                    ..evaluate(model, loss, v, self.cfg.eval_batch_size)?
                }),
                None => None,
            };
            self.epoch = epoch;
            let record = EpochRecord {
                epoch,
                lr,
                train_loss,
                train_accuracy,
                val: val_eval,
                seconds,
            };
            self.track_best(model, &record)?;
            observer.on_epoch_end(&record);
            self.history.epochs.push(record);
        }
        if self.epoch >= self.cfg.epochs || self.history.stopped_early {
            self.restore_best(model)?;
        }
        Ok(self.history.clone())
    }

    /// One pass over the training rows: returns the mean loss and the accuracy over the
    /// epoch's batches.
    fn train_epoch(
        &mut self,
        model: &mut dyn Layer,
        loss: &mut dyn Loss,
        opt: &mut dyn Optimizer,
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
        for (k, idx) in perm.chunks(cfg.batch_size).enumerate() {
            let at = (epoch, k + 1);
            let batch = batch.gather(train, idx);
            let (e, right) = step(model, loss, opt, &batch, out, cfg.clip_grad_norm, at)?;
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
                    weights: snapshot(model),
                });
            }
        }
        Ok(())
    }

    fn restore_best(&mut self, model: &mut dyn Layer) -> Result<()> {
        if let Some(b) = &self.best {
            restore(model, &b.weights)?;
            self.history.best_epoch = Some(b.epoch);
        }
        Ok(())
    }
}

/// One training step on `batch` (at `(epoch, step)`, for messages): forward into `out`,
/// loss, backward, gradient norm (clipped to `clip`), update. Returns the batch's loss and
/// how many rows it classified right. Nothing is applied when the loss or the gradients are
/// not finite.
fn step(
    model: &mut dyn Layer,
    loss: &mut dyn Loss,
    opt: &mut dyn Optimizer,
    batch: &Data<'_>,
    out: &mut Buffer,
    clip: Option<f32>,
    (epoch, step): (usize, usize),
) -> Result<(f32, usize)> {
    model.zero_grad();
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
        Some(c) => clip_grad_norm(model, c),
        None => grad_norm(model),
    };
    if !norm.is_finite() {
        return Err(diverged("gradient norm", norm));
    }
    opt.step(model)?; // w ← w − η·∂E/∂w (or the optimizer's rule)
    Ok((e, right))
}

/// Rows of logits `y` whose predicted class is the target.
fn correct(y: ArrayViewD<'_, f32>, classes: &[usize]) -> usize {
    let Ok(y) = y.into_dimensionality::<Ix2>() else {
        return 0;
    };
    y.rows()
        .into_iter()
        .zip(classes)
        .filter(|(row, t)| crate::metrics::predicted_class(*row) == **t)
        .count()
}

/// Copies every parameter and buffer of `model`, by name.
pub fn snapshot(model: &mut dyn Layer) -> Vec<(String, TensorData)> {
    let mut out = Vec::new();
    model.visit(&mut |name, slot| {
        let t: &Tensor = match slot {
            Slot::Param(p) => &p.value,
            Slot::Buffer(b) => b,
        };
        out.push((name.to_string(), TensorData::from_view(t.view())));
    });
    out
}

/// Writes a [`snapshot`] back into `model`.
///
/// # Errors
/// [`Error::Snapshot`] when a name, a shape or a length does not match, or a value is not
/// finite; the model is then left unchanged.
pub fn restore(model: &mut dyn Layer, weights: &[(String, TensorData)]) -> Result<()> {
    check_snapshot(model, weights)?;
    let mut i = 0;
    model.visit(&mut |_, slot| {
        let t: &mut Tensor = match slot {
            Slot::Param(p) => &mut p.value,
            Slot::Buffer(b) => b,
        };
        t.as_slice_mut()
            .expect("parameters are contiguous")
            .copy_from_slice(&weights[i].1.data);
        i += 1;
    });
    Ok(())
}

/// Checks that `weights` is a snapshot of `model`: the same names and shapes in visiting
/// order, as many values as each shape holds, all finite.
///
/// # Errors
/// [`Error::Snapshot`] naming the first tensor that differs.
pub fn check_snapshot(model: &mut dyn Layer, weights: &[(String, TensorData)]) -> Result<()> {
    snapshot_fits(model, weights).map_err(Error::Snapshot)
}

/// [`check_snapshot`] with the reason as a sentence.
fn snapshot_fits(
    model: &mut dyn Layer,
    weights: &[(String, TensorData)],
) -> std::result::Result<(), String> {
    let mut i = 0;
    let mut err = None;
    model.visit(&mut |name, slot| {
        let shape = match &slot {
            Slot::Param(p) => p.value.shape(),
            Slot::Buffer(b) => b.shape(),
        };
        if err.is_none() {
            err = check_entry(name, shape, weights.get(i)).err();
        }
        i += 1;
    });
    match err {
        Some(e) => Err(e),
        None if i != weights.len() => Err(format!(
            "saved weights hold {} tensors, the model {i}",
            weights.len()
        )),
        None => Ok(()),
    }
}

/// One entry of a snapshot against the model's tensor `name` of shape `shape`.
fn check_entry(
    name: &str,
    shape: &[usize],
    entry: Option<&(String, TensorData)>,
) -> std::result::Result<(), String> {
    let Some((n, d)) = entry else {
        return Err(format!("saved weights lack `{name}`"));
    };
    if n != name || d.shape != shape || nn_core::limits::product(&d.shape) != Some(d.data.len()) {
        return Err(format!(
            "saved weights do not match the model at `{name}` {}: found `{}` {} with {} values",
            nn_core::Shape(shape.to_vec()),
            nn_core::limits::excerpt(n),
            nn_core::Shape(d.shape.clone()),
            d.data.len()
        ));
    }
    if let Some(v) = d.data.iter().find(|v| !v.is_finite()) {
        return Err(format!("saved weights `{name}` hold {v}"));
    }
    Ok(())
}

/// Loss, accuracy and confusion matrix of `model` on `data` (Eval mode, in batches).
///
/// # Errors
/// Errors of the layers and loss (shapes, targets).
pub fn evaluate(
    model: &mut dyn Layer,
    loss: &mut dyn Loss,
    data: &Data<'_>,
    batch_size: usize,
) -> Result<Evaluation> {
    let n = data.len();
    let mut loss_sum = 0.0f64;
    let mut confusion: Option<ConfusionMatrix> = None;
    let mut out = Buffer::new();
    let mut start = 0;
    while start < n {
        let end = (start + batch_size.max(1)).min(n);
        let part = data.slice(start, end);
        model.forward(part.x.view(), &mut out, Mode::Eval)?;
        let y = out.view();
        if let Target::Classes(c) = &part.target
            && let Ok(y2) = y.view().into_dimensionality::<Ix2>()
        {
            let k = y2.ncols().max(2);
            confusion
                .get_or_insert_with(|| ConfusionMatrix::new(k))
                .add_batch(y2, c);
        }
        let e = loss.forward(y, part.target.clone())?;
        loss_sum += e as f64 * (end - start) as f64;
        start = end;
    }
    Ok(Evaluation {
        loss: (loss_sum / n.max(1) as f64) as f32,
        accuracy: confusion.as_ref().map(ConfusionMatrix::accuracy),
        confusion,
    })
}
