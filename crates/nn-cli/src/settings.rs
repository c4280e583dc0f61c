//! The options of `nn train`, the settings a run keeps in its checkpoints, and the
//! checkpoint's state.
//!
//! Every training setting is optional on the command line, with its default applied here,
//! so that `--resume` can tell what was given: a setting given with `--resume` must equal
//! the checkpoint's (re-running the same command with `--resume` added works), and one that
//! differs is refused instead of being silently ignored.

use std::path::PathBuf;

use anyhow::{Result, bail};
use nn_layers::{Attr, Layer, LayerSpec, Registry};
use nn_optim::{
    Adam, AdamConfig, EarlyStopping, LrSchedule, Monitor, Optimizer, Schedule, Sgd, SgdConfig,
    TrainConfig,
};
use serde::{Deserialize, Serialize};

use crate::spec;

/// Whether targets are classes or real values.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
pub enum Task {
    /// Class labels; softmax + cross-entropy (or one logit and binary cross-entropy).
    Classify,
    /// Real-valued targets; mean squared error.
    Regress,
}

/// What a checkpoint holds besides the model.
#[derive(Serialize, Deserialize)]
pub struct CheckpointState {
    /// The run's settings.
    pub settings: Settings,
    /// Epoch, step, RNG, early stopping, history.
    pub trainer: nn_optim::TrainerState,
    /// The optimizer's moments or velocities.
    pub optimizer: nn_optim::OptimizerState,
}

/// [`CheckpointState`] as format version 1 stored it.
#[derive(Deserialize)]
struct CheckpointStateV1 {
    settings: SettingsV1,
    trainer: nn_optim::legacy::TrainerStateV1,
    optimizer: nn_optim::legacy::OptimizerStateV1,
}

/// [`Settings`] as format version 1 stored them: a learning rate beside an optional
/// schedule (which, when present, had the same rate as its `η₀`).
#[derive(Deserialize)]
struct SettingsV1 {
    task: Task,
    label: Option<String>,
    epochs: usize,
    batch_size: usize,
    optimizer: OptimizerKind,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
    schedule: Option<LrSchedule>,
    clip_grad_norm: Option<f32>,
    early_stopping: Option<usize>,
    seed: u64,
    val_split: f32,
    test_split: f32,
}

impl From<SettingsV1> for Settings {
    fn from(v1: SettingsV1) -> Self {
        Settings {
            task: v1.task,
            label: v1.label,
            epochs: v1.epochs,
            batch_size: v1.batch_size,
            optimizer: v1.optimizer,
            momentum: v1.momentum,
            weight_decay: v1.weight_decay,
            schedule: v1.schedule.unwrap_or(LrSchedule::constant(v1.lr)),
            clip_grad_norm: v1.clip_grad_norm,
            early_stopping: v1.early_stopping,
            seed: v1.seed,
            val_split: v1.val_split,
            test_split: v1.test_split,
        }
    }
}

/// Reads a checkpoint of `nn train` from `bytes` (named `path` in messages), of this
/// format version or version 1.
///
/// # Errors
/// As [`nn_io::load_checkpoint`].
pub fn checkpoint_from_bytes(
    bytes: &[u8],
    path: &std::path::Path,
    registry: &Registry,
) -> Result<(nn_io::LoadedModel, CheckpointState), nn_io::Error> {
    let header = nn_io::container::parse_header(bytes, nn_io::FileKind::Checkpoint, path)?;
    if header.version == 1 {
        let (loaded, v1): (_, CheckpointStateV1) =
            nn_io::checkpoint_from_bytes(bytes, path, registry)?;
        let state = CheckpointState {
            settings: v1.settings.into(),
            trainer: v1.trainer.into(),
            optimizer: v1.optimizer.into(),
        };
        return Ok((loaded, state));
    }
    nn_io::checkpoint_from_bytes(bytes, path, registry)
}

/// Reads a checkpoint file of `nn train`, of this format version or version 1.
///
/// # Errors
/// As [`nn_io::load_checkpoint`].
pub fn load_checkpoint(
    path: &std::path::Path,
    registry: &Registry,
) -> Result<(nn_io::LoadedModel, CheckpointState), nn_io::Error> {
    checkpoint_from_bytes(&nn_io::container::read_file(path)?, path, registry)
}

/// The most epochs a run may have (each adds a record to the history its checkpoints keep).
pub const MAX_EPOCHS: usize = 1_000_000;

/// The optimizers `--optimizer` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum OptimizerKind {
    /// Plain SGD: w ← w − η·∂E/∂w.
    Sgd,
    /// SGD with momentum.
    Momentum,
    /// SGD with Nesterov momentum.
    Nesterov,
    /// Adam.
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// Options of `nn train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training data: a CSV file with a header, or a folder of MNIST-style IDX files.
    #[arg(long)]
    pub data: PathBuf,
    /// The label column of a CSV file.
    #[arg(long)]
    pub label: Option<String>,
    /// Classify (class labels) or regress (real-valued labels) [default: classify].
    #[arg(long, value_enum)]
    pub task: Option<Task>,
    /// The network, e.g. "dense:128,relu,dense:10".
    #[arg(long, conflicts_with = "model_spec")]
    pub layers: Option<String>,
    /// The network as a TOML or JSON file with a `layers` list.
    #[arg(long)]
    pub model_spec: Option<PathBuf>,
    /// Epochs to train [default: 10]; with --resume, the new total.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per mini-batch [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer [default: adam].
    #[arg(long, value_enum)]
    pub optimizer: Option<OptimizerKind>,
    /// Learning rate [default: 0.1 for sgd, 0.05 for momentum/nesterov, 0.001 for adam/adamw].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Momentum for momentum/nesterov [default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    pub momentum: Option<f32>,
    /// Weight decay: L2 for sgd/momentum/nesterov/adam, decoupled for adamw [default: 0, adamw 0.01].
    #[arg(long, allow_negative_numbers = true)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA, exp:GAMMA, cosine or cosine:MIN_LR [default: constant].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Epochs of linear warm-up before the schedule [default: 0].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Clip the global gradient norm to this value.
    #[arg(long, allow_negative_numbers = true)]
    pub clip_grad_norm: Option<f32>,
    /// Stop after this many epochs without a better validation loss, keeping the best weights.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Seed for the split, the initial weights and the batch order [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Fraction of the training rows held out for validation [default: 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub val_split: Option<f32>,
    /// Fraction of a CSV file held out for the final test (IDX folders use their t10k part) [default: 0.2].
    #[arg(long, allow_negative_numbers = true)]
    pub test_split: Option<f32>,
    /// Input normalisation: auto, standard, minmax, none or scale:FACTOR [default: auto].
    #[arg(long)]
    pub normalize: Option<String>,
    /// Where to save the trained model.
    #[arg(long)]
    pub out: PathBuf,
    /// Save a checkpoint here after every epoch.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from a checkpoint (same --data); other settings come from the checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Write the per-epoch metrics and the test results as JSON.
    #[arg(long)]
    pub metrics_json: Option<PathBuf>,
    /// Draw loss and accuracy per epoch into a PNG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// `--normalize` or its default.
    pub fn normalize(&self) -> String {
        self.normalize.clone().unwrap_or_else(|| "auto".into())
    }
}

/// The settings of a run, saved in checkpoints so that a resumed run continues the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Classes or values.
    pub task: Task,
    /// The label column of a CSV file.
    pub label: Option<String>,
    /// Epochs in all.
    pub epochs: usize,
    /// Rows per mini-batch.
    pub batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Momentum (momentum and Nesterov SGD).
    pub momentum: f32,
    /// Weight decay.
    pub weight_decay: f32,
    /// The learning rate of every epoch (`η₀` and its schedule): its one owner.
    pub schedule: LrSchedule,
    /// Gradient clipping.
    pub clip_grad_norm: Option<f32>,
    /// Early-stopping patience.
    pub early_stopping: Option<usize>,
    /// Seed of the split, the weights and the batch order.
    pub seed: u64,
    /// Validation fraction.
    pub val_split: f32,
    /// Test fraction.
    pub test_split: f32,
}

/// `--epochs`, within [`MAX_EPOCHS`].
pub fn check_epochs(e: usize) -> Result<usize> {
    if e > MAX_EPOCHS {
        bail!("--epochs {e}: more than the limit of {MAX_EPOCHS}");
    }
    Ok(e)
}

impl Settings {
    /// The settings the options ask for, defaults filled in, validated.
    pub fn from_args(a: &TrainArgs) -> Result<Self> {
        let optimizer = a.optimizer.unwrap_or(OptimizerKind::Adam);
        let lr = a.lr.unwrap_or(match optimizer {
            OptimizerKind::Sgd => 0.1,
            OptimizerKind::Momentum | OptimizerKind::Nesterov => 0.05,
            OptimizerKind::Adam | OptimizerKind::Adamw => 1e-3,
        });
        let epochs = check_epochs(a.epochs.unwrap_or(10))?;
        let warmup = a.warmup.unwrap_or(0);
        let text = a.schedule.as_deref().unwrap_or("constant");
        let mut schedule = parse_schedule(text, lr, epochs.saturating_sub(warmup))?;
        if warmup > 0 {
            schedule = schedule.with_warmup(warmup, 0.1);
        }
        let s = Settings {
            task: a.task.unwrap_or(Task::Classify),
            label: a.label.clone(),
            epochs,
            batch_size: a.batch_size.unwrap_or(32),
            optimizer,
            momentum: a.momentum.unwrap_or(0.9),
            weight_decay: a
                .weight_decay
                .unwrap_or(if optimizer == OptimizerKind::Adamw {
                    0.01
                } else {
                    0.0
                }),
            schedule,
            clip_grad_norm: a.clip_grad_norm,
            early_stopping: a.early_stopping,
            seed: a.seed.unwrap_or(42),
            val_split: a.val_split.unwrap_or(0.1),
            test_split: a.test_split.unwrap_or(0.2),
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks every setting the way the optimizer, the schedule and the trainer will, so
    /// that a bad value is refused before any data is read.
    pub fn validate(&self) -> Result<()> {
        self.optimizer()?;
        nn_optim::Trainer::new(self.train_config(1))?;
        check_epochs(self.epochs)?;
        Ok(())
    }

    /// The optimizer the settings describe.
    pub fn optimizer(&self) -> Result<Box<dyn Optimizer>> {
        let wd = self.weight_decay;
        Ok(match self.optimizer {
            OptimizerKind::Sgd => Box::new(Sgd::new(SgdConfig::plain().weight_decay(wd))?),
            OptimizerKind::Momentum => Box::new(Sgd::new(
                SgdConfig::plain().momentum(self.momentum).weight_decay(wd),
            )?),
            OptimizerKind::Nesterov => Box::new(Sgd::new(
                SgdConfig::plain().nesterov(self.momentum).weight_decay(wd),
            )?),
            OptimizerKind::Adam => Box::new(Adam::new(AdamConfig::adam().weight_decay(wd))?),
            OptimizerKind::Adamw => Box::new(Adam::new(AdamConfig::adamw().weight_decay(wd))?),
        })
    }

    /// `adam(lr=0.001)`, with momentum and weight decay where they apply.
    pub fn describe_optimizer(&self) -> String {
        let name = format!("{:?}", self.optimizer).to_lowercase();
        let mut s = format!("{name}(lr={}", self.schedule);
        if matches!(
            self.optimizer,
            OptimizerKind::Momentum | OptimizerKind::Nesterov
        ) {
            s += &format!(", momentum={}", self.momentum);
        }
        if self.weight_decay > 0.0 {
            s += &format!(", weight_decay={}", self.weight_decay);
        }
        s + ")"
    }

    /// The trainer's settings, evaluating `eval_batch_size` rows at a time.
    pub fn train_config(&self, eval_batch_size: usize) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            schedule: self.schedule,
            clip_grad_norm: self.clip_grad_norm,
            early_stopping: self.early_stopping.map(|patience| EarlyStopping {
                monitor: Monitor::ValLoss,
                patience,
                min_delta: 0.0,
            }),
            eval_batch_size,
        }
    }
}

/// Refuses, for `--resume`, every option given that would change the checkpoint's run: a
/// setting that differs from the saved one, or a network other than the saved model's.
pub fn refuse_changes(
    a: &TrainArgs,
    saved: &Settings,
    model: &dyn Layer,
    registry: &Registry,
) -> Result<()> {
    let want = Settings::from_args(a).unwrap_or_else(|_| saved.clone());
    let mut differ = changed_flags(a, &want, saved);
    if a.normalize.is_some() {
        differ.push("--normalize"); // the checkpoint keeps the statistics it was fitted with
    }
    if let Some(f) = network_differs(a, model, registry)? {
        differ.push(f);
    }
    if !differ.is_empty() {
        bail!(
            "--resume continues the checkpoint's run with its own settings; {} {} from the checkpoint (drop them, or start a new run without --resume)",
            differ.join(", "),
            if differ.len() == 1 {
                "differs"
            } else {
                "differ"
            }
        );
    }
    Ok(())
}

/// The options given that set another value than the checkpoint's settings.
fn changed_flags(a: &TrainArgs, w: &Settings, s: &Settings) -> Vec<&'static str> {
    let (ws, ss) = (&w.schedule, &s.schedule);
    [
        ("--task", a.task.is_some(), w.task != s.task),
        ("--label", a.label.is_some(), w.label != s.label),
        (
            "--batch-size",
            a.batch_size.is_some(),
            w.batch_size != s.batch_size,
        ),
        (
            "--optimizer",
            a.optimizer.is_some(),
            w.optimizer != s.optimizer,
        ),
        ("--lr", a.lr.is_some(), ws.base_lr != ss.base_lr),
        ("--momentum", a.momentum.is_some(), w.momentum != s.momentum),
        (
            "--weight-decay",
            a.weight_decay.is_some(),
            w.weight_decay != s.weight_decay,
        ),
        (
            "--schedule",
            a.schedule.is_some(),
            ws.schedule != ss.schedule,
        ),
        ("--warmup", a.warmup.is_some(), ws.warmup != ss.warmup),
        (
            "--clip-grad-norm",
            a.clip_grad_norm.is_some(),
            w.clip_grad_norm != s.clip_grad_norm,
        ),
        (
            "--early-stopping",
            a.early_stopping.is_some(),
            w.early_stopping != s.early_stopping,
        ),
        ("--seed", a.seed.is_some(), w.seed != s.seed),
        (
            "--val-split",
            a.val_split.is_some(),
            w.val_split != s.val_split,
        ),
        (
            "--test-split",
            a.test_split.is_some(),
            w.test_split != s.test_split,
        ),
    ]
    .into_iter()
    .filter(|&(_, given, differs)| given && differs)
    .map(|(flag, ..)| flag)
    .collect()
}

/// `--layers` or `--model-spec` when given and describing another network than `model`:
/// other kinds, or an attribute given with another value (widths the trainer inferred, and
/// the `flatten` it put in front, are not compared).
fn network_differs(
    a: &TrainArgs,
    model: &dyn Layer,
    _registry: &Registry,
) -> Result<Option<&'static str>> {
    let (given, flag) = match (&a.layers, &a.model_spec) {
        (Some(l), _) => (spec::parse_layers(l)?, "--layers"),
        (None, Some(f)) => (spec::read_spec_file(f)?, "--model-spec"),
        (None, None) => return Ok(None),
    };
    let saved = model.config().spec();
    let mut saved: &[LayerSpec] = saved.layers("layers").unwrap_or_default();
    let inserted_flatten = saved.first().is_some_and(|l| l.kind == "flatten")
        && given.first().is_some_and(|g| g.kind != "flatten");
    if inserted_flatten {
        saved = &saved[1..];
    }
    let same = saved.len() == given.len()
        && saved
            .iter()
            .zip(&given)
            .all(|(s, g)| s.kind == g.kind && g.attrs.iter().all(|(k, v)| same_attr(s.get(k), v)));
    Ok((!same).then_some(flag))
}

/// Whether a stored attribute equals a given one (a pair stored for one integer given, a
/// number compared as the `f32` the layer keeps).
fn same_attr(stored: Option<&Attr>, given: &Attr) -> bool {
    match (stored, given) {
        (Some(Attr::Ints(v)), Attr::Int(i)) => v.iter().all(|x| x == i),
        (Some(Attr::Float(f)), Attr::Float(g)) => (*f as f32) == (*g as f32),
        (Some(Attr::Float(f)), Attr::Int(i)) => (*f as f32) == (*i as f32),
        (Some(s), g) => s == g,
        (None, _) => false,
    }
}

/// `constant`, `step:EVERY:GAMMA`, `exp:GAMMA`, `cosine[:MIN_LR]` (over the epochs after warm-up).
fn parse_schedule(text: &str, lr: f32, epochs: usize) -> Result<LrSchedule> {
    let shown = nn_core::limits::excerpt(text);
    let parts: Vec<&str> = text.split(':').collect();
    let num = |s: &str| -> Result<f32> {
        s.parse::<f32>().map_err(|_| {
            anyhow::anyhow!(
                "--schedule `{shown}`: `{}` is not a number",
                nn_core::limits::excerpt(s)
            )
        })
    };
    let schedule = match parts.as_slice() {
        ["constant"] => Schedule::Constant,
        ["step", every, gamma] => Schedule::Step {
            every: every.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--schedule `{shown}`: `{}` is not a whole number",
                    nn_core::limits::excerpt(every)
                )
            })?,
            gamma: num(gamma)?,
        },
        ["exp", gamma] => Schedule::Exponential { gamma: num(gamma)? },
        ["cosine"] => Schedule::Cosine {
            t_max: epochs.max(1),
            min_lr: 0.0,
        },
        ["cosine", min] => Schedule::Cosine {
            t_max: epochs.max(1),
            min_lr: num(min)?,
        },
        _ => bail!(
            "--schedule `{shown}`: expected constant, step:EVERY:GAMMA, exp:GAMMA or cosine[:MIN_LR]"
        ),
    };
    let s = LrSchedule::new(lr, schedule);
    s.validate()
        .map_err(|e| anyhow::anyhow!("--schedule `{shown}`: {e}"))?;
    Ok(s)
}
