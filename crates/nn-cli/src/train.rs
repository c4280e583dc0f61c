//! `nn train`: read data, split, normalise, build the network, train, report, save.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nn_io::{Dataset, Metadata, TrainingSummary, split_indices};
use nn_layers::{BceWithLogits, Layer, LayerSpec, Loss, Mse, Registry, SoftmaxCrossEntropy};
use nn_optim::{
    Adam, AdamConfig, Data, EarlyStopping, Evaluation, History, LrSchedule, Monitor, Optimizer,
    OptimizerState, Schedule, Sgd, SgdConfig, TrainConfig, Trainer, TrainerState, evaluate,
};
use serde::{Deserialize, Serialize};

use crate::data::{self, Task};
use crate::progress::Progress;
use crate::spec;

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
    /// Classify (class labels) or regress (real-valued labels).
    #[arg(long, value_enum, default_value_t = Task::Classify)]
    pub task: Task,
    /// The network, e.g. "dense:128,relu,dense:10".
    #[arg(long, conflicts_with = "model_spec")]
    pub layers: Option<String>,
    /// The network as a TOML or JSON file with a `layers` list.
    #[arg(long)]
    pub model_spec: Option<PathBuf>,
    /// Epochs to train [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Rows per mini-batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adam)]
    pub optimizer: OptimizerKind,
    /// Learning rate [default: 0.1 for sgd, 0.05 for momentum/nesterov, 0.001 for adam/adamw].
    #[arg(long)]
    pub lr: Option<f32>,
    /// Momentum for momentum/nesterov.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    /// Weight decay: L2 for sgd/momentum/nesterov/adam, decoupled for adamw [default: 0, adamw 0.01].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Learning-rate schedule: constant, step:EVERY:GAMMA, exp:GAMMA, cosine or cosine:MIN_LR.
    #[arg(long, default_value = "constant")]
    pub schedule: String,
    /// Epochs of linear warm-up before the schedule.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub clip_grad_norm: Option<f32>,
    /// Stop after this many epochs without a better validation loss, keeping the best weights.
    #[arg(long)]
    pub early_stopping: Option<usize>,
    /// Seed for the split, the initial weights and the batch order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Fraction of the training rows held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub val_split: f32,
    /// Fraction of a CSV file held out for the final test (IDX folders use their t10k part).
    #[arg(long, default_value_t = 0.2)]
    pub test_split: f32,
    /// Input normalisation: auto, standard, minmax, none or scale:FACTOR.
    #[arg(long, default_value = "auto")]
    pub normalize: String,
    /// Where to save the trained model.
    #[arg(long)]
    pub out: PathBuf,
    /// Save a checkpoint here after every epoch.
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from a checkpoint (same --data).
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

/// The settings of a run, saved in checkpoints so that a resumed run continues the same way.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
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

/// What a checkpoint holds besides the model.
#[derive(Serialize, Deserialize)]
pub struct CheckpointState {
    /// The run's settings.
    pub settings: Settings,
    /// Epoch, step, RNG, early stopping, history.
    pub trainer: TrainerState,
    /// The optimizer's moments or velocities.
    pub optimizer: OptimizerState,
}

impl Settings {
    fn from_args(a: &TrainArgs) -> Result<Self> {
        let lr = a.lr.unwrap_or(match a.optimizer {
            OptimizerKind::Sgd => 0.1,
            OptimizerKind::Momentum | OptimizerKind::Nesterov => 0.05,
            OptimizerKind::Adam | OptimizerKind::Adamw => 1e-3,
        });
        let epochs = a.epochs.unwrap_or(10);
        let schedule = parse_schedule(&a.schedule, lr, epochs.saturating_sub(a.warmup))?;
        let schedule = match (schedule, a.warmup) {
            (None, 0) => None,
            (s, w) => {
                let mut s = s.unwrap_or(LrSchedule::constant(lr));
                if w > 0 {
                    s = s.with_warmup(w, 0.1);
                }
                Some(s)
            }
        };
        Ok(Settings {
            task: a.task,
            label: a.label.clone(),
            epochs,
            batch_size: a.batch_size,
            optimizer: a.optimizer,
            lr,
            momentum: a.momentum,
            weight_decay: a
                .weight_decay
                .unwrap_or(if a.optimizer == OptimizerKind::Adamw {
                    0.01
                } else {
                    0.0
                }),
            schedule,
            clip_grad_norm: a.clip_grad_norm,
            early_stopping: a.early_stopping,
            seed: a.seed,
            val_split: a.val_split,
            test_split: a.test_split,
        })
    }

    fn optimizer(&self) -> Result<Box<dyn Optimizer>> {
        let wd = self.weight_decay;
        Ok(match self.optimizer {
            OptimizerKind::Sgd => Box::new(Sgd::new(SgdConfig::new(self.lr).weight_decay(wd))?),
            OptimizerKind::Momentum => Box::new(Sgd::new(
                SgdConfig::new(self.lr)
                    .momentum(self.momentum)
                    .weight_decay(wd),
            )?),
            OptimizerKind::Nesterov => Box::new(Sgd::new(
                SgdConfig::new(self.lr)
                    .nesterov(self.momentum)
                    .weight_decay(wd),
            )?),
            OptimizerKind::Adam => Box::new(Adam::new(AdamConfig::adam(self.lr).weight_decay(wd))?),
            OptimizerKind::Adamw => {
                Box::new(Adam::new(AdamConfig::adamw(self.lr).weight_decay(wd))?)
            }
        })
    }

    fn describe_optimizer(&self) -> String {
        let name = format!("{:?}", self.optimizer).to_lowercase();
        let mut s = format!("{name}(lr={}", self.lr);
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

    fn train_config(&self) -> TrainConfig {
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
            eval_batch_size: 1024,
        }
    }
}

/// `constant`, `step:EVERY:GAMMA`, `exp:GAMMA`, `cosine[:MIN_LR]` (over the epochs after warm-up).
fn parse_schedule(text: &str, lr: f32, epochs: usize) -> Result<Option<LrSchedule>> {
    let parts: Vec<&str> = text.split(':').collect();
    let num = |s: &str| -> Result<f32> {
        s.parse::<f32>()
            .with_context(|| format!("--schedule `{text}`: `{s}` is not a number"))
    };
    let schedule = match parts.as_slice() {
        ["constant"] => return Ok(None),
        ["step", every, gamma] => Schedule::Step {
            every: every
                .parse()
                .with_context(|| format!("--schedule `{text}`: `{every}` is not a whole number"))?,
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
            "--schedule `{text}`: expected constant, step:EVERY:GAMMA, exp:GAMMA or cosine[:MIN_LR]"
        ),
    };
    let s = LrSchedule::new(lr, schedule);
    s.validate()
        .with_context(|| format!("--schedule `{text}`"))?;
    Ok(Some(s))
}

/// The loss that fits the task and the network's output width.
fn choose_loss(
    task: Task,
    out: &[usize],
    targets: usize,
    data: &Path,
) -> Result<(Box<dyn Loss>, &'static str)> {
    let width: usize = out.iter().product();
    match task {
        Task::Classify if width == targets && out.len() == 1 => Ok((
            Box::new(SoftmaxCrossEntropy::new()),
            "softmax_cross_entropy",
        )),
        Task::Classify if width == 1 && targets == 2 => {
            Ok((Box::new(BceWithLogits::new()), "bce_with_logits"))
        }
        Task::Classify => bail!(
            "the network ends with {} outputs but {} has {targets} classes; make the last layer dense:{targets}",
            nn_core::Shape(out.to_vec()),
            data.display()
        ),
        Task::Regress if width == targets => Ok((Box::new(Mse::new()), "mse")),
        Task::Regress => bail!(
            "the network ends with {} outputs but {} has {targets} target values per row",
            nn_core::Shape(out.to_vec()),
            data.display()
        ),
    }
}

/// The parts of the data a run uses.
struct Parts {
    train: Dataset,
    val: Option<Dataset>,
    test: Option<Dataset>,
    is_idx: bool,
}

fn split(source: data::Source, s: &Settings, is_idx: bool) -> Result<Parts> {
    let all = source.main;
    let test_frac = if source.test.is_some() {
        0.0
    } else {
        s.test_split
    };
    let sp = split_indices(all.len(), s.val_split, test_frac, s.seed, all.classes())?;
    if sp.train.is_empty() {
        bail!("no rows left to train on after the validation and test splits");
    }
    let part = |idx: &[usize]| (!idx.is_empty()).then(|| all.subset(idx));
    let test = match source.test {
        Some(t) => Some(t),
        None => part(&sp.test),
    };
    Ok(Parts {
        train: all.subset(&sp.train),
        val: part(&sp.val),
        test,
        is_idx,
    })
}

/// Runs `nn train`.
pub fn run(a: &TrainArgs) -> Result<()> {
    let registry = Registry::new();
    let started = Instant::now();

    // Settings, model and training state: fresh, or from a checkpoint.
    let (settings, resumed) = match &a.resume {
        Some(p) => {
            let (loaded, state): (_, CheckpointState) = nn_io::load_checkpoint(p, &registry)?;
            let mut s = state.settings.clone();
            if let Some(e) = a.epochs {
                s.epochs = e;
            }
            println!("resuming {} at epoch {}", p.display(), state.trainer.epoch);
            (s, Some((loaded, state)))
        }
        None => (Settings::from_args(a)?, None),
    };

    let class_names = resumed
        .as_ref()
        .and_then(|(l, _)| l.metadata.class_names.clone());
    let source = data::load(
        &a.data,
        settings.label.as_deref(),
        settings.task,
        class_names,
    )?;
    let is_idx = a.data.is_dir();
    let mut parts = split(source, &settings, is_idx)?;
    let input_shape = parts.train.input_shape().to_vec();

    let (mut model, mut meta, trainer_state, opt_state) = match resumed {
        Some((loaded, state)) => {
            let want: usize = loaded.metadata.input_shape.iter().product();
            if want != input_shape.iter().product::<usize>() {
                bail!(
                    "{}: rows have shape {}, the checkpoint's model expects {}",
                    a.data.display(),
                    nn_core::Shape(input_shape.clone()),
                    nn_core::Shape(loaded.metadata.input_shape.clone())
                );
            }
            (
                loaded.model,
                loaded.metadata,
                Some(state.trainer),
                Some(state.optimizer),
            )
        }
        None => {
            let items = match (&a.layers, &a.model_spec) {
                (Some(l), _) => spec::parse_layers(l)?,
                (None, Some(f)) => spec::read_spec_file(f)?,
                (None, None) => bail!(
                    "give the network with --layers \"dense:64,relu,dense:10\" or --model-spec FILE"
                ),
            };
            let (specs, _) = spec::resolve(&items, &input_shape, &registry)?;
            if specs.last().is_some_and(|s| s.kind == "softmax") && settings.task == Task::Classify
            {
                eprintln!(
                    "note: the loss applies softmax itself; a final softmax layer makes training slower"
                );
            }
            let model = registry.build_sequential(&specs, &mut nn_core::seeded(settings.seed))?;
            let meta = Metadata {
                input_shape: input_shape.clone(),
                class_names: parts.train.class_names.clone(),
                feature_names: parts.train.feature_names.clone(),
                normalization: data::fit_normalization(&a.normalize, &parts.train, parts.is_idx)?,
                label: settings.label.clone(),
                loss: String::new(),
                training: None,
            };
            (Box::new(model) as Box<dyn Layer>, meta, None, None)
        }
    };

    // Normalise every part with statistics of the training rows (or the checkpoint's).
    for d in [
        Some(&mut parts.train),
        parts.val.as_mut(),
        parts.test.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        d.x = data::prepare(std::mem::take(&mut d.x), &meta, &a.data)?;
    }

    let mut in_shape = vec![1];
    in_shape.extend_from_slice(&meta.input_shape);
    let out = model.output_shape(&in_shape)?[1..].to_vec();
    let (mut loss, loss_name) = choose_loss(
        settings.task,
        &out,
        data::output_width(&parts.train),
        &a.data,
    )?;
    meta.loss = loss_name.to_string();

    let mut opt = settings.optimizer()?;
    if let Some(st) = opt_state {
        opt.load_state(st)?;
    }
    let cfg = settings.train_config();
    let mut trainer = match trainer_state {
        Some(st) => Trainer::resume(cfg, st)?,
        None => Trainer::new(cfg)?,
    };

    println!(
        "training {} on {} rows ({} validation{}), {} parameters, {} for {} epochs",
        model.name(),
        parts.train.len(),
        parts.val.as_ref().map_or(0, Dataset::len),
        parts
            .test
            .as_ref()
            .map_or(String::new(), |t| format!(", {} test", t.len())),
        model.num_params(),
        settings.describe_optimizer(),
        settings.epochs
    );

    let train_data = Data::new(parts.train.x(), parts.train.target())?;
    let val_data = match &parts.val {
        Some(v) => Some(Data::new(v.x(), v.target())?),
        None => None,
    };
    let mut progress = Progress::new(settings.epochs, a.quiet);
    if let Some(dir) = &a.checkpoint_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the checkpoint folder", dir.display()))?;
    }
    let mut history = History::default();
    while trainer.epoch() < settings.epochs {
        let next = trainer.epoch() + 1;
        history = trainer.fit_until(
            model.as_mut(),
            loss.as_mut(),
            opt.as_mut(),
            &train_data,
            val_data.as_ref(),
            &mut progress,
            next,
        )?;
        if let Some(dir) = &a.checkpoint_dir {
            let state = CheckpointState {
                settings: settings.clone(),
                trainer: trainer.state(),
                optimizer: opt.state(),
            };
            let path = dir.join(format!("epoch-{:04}.nnck", trainer.epoch()));
            nn_io::save_checkpoint(&path, model.as_mut(), &meta, &state)?;
        }
        if history.stopped_early {
            println!(
                "early stopping after epoch {}; keeping epoch {}",
                trainer.epoch(),
                history.best_epoch.unwrap_or(0)
            );
            break;
        }
    }
    progress.finish();

    let test_eval = match &parts.test {
        Some(t) => Some(evaluate(
            model.as_mut(),
            loss.as_mut(),
            &Data::new(t.x(), t.target())?,
            1024,
        )?),
        None => None,
    };
    let last = history.epochs.last();
    meta.training = Some(TrainingSummary {
        epochs: trainer.epoch(),
        optimizer: settings.describe_optimizer(),
        batch_size: settings.batch_size,
        seed: settings.seed,
        data: a.data.display().to_string(),
        train_rows: parts.train.len(),
        train_loss: last.map_or(f32::NAN, |e| e.train_loss),
        val_accuracy: last.and_then(|e| e.val.as_ref().and_then(|v| v.accuracy)),
        test_accuracy: test_eval.as_ref().and_then(|e| e.accuracy),
        seconds: started.elapsed().as_secs_f64(),
    });
    if let Some(t) = &test_eval {
        report(
            "test",
            t,
            parts.test.as_ref().map_or(0, Dataset::len),
            meta.class_names.as_deref(),
        );
    }
    nn_io::save_model(&a.out, model.as_mut(), &meta)?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    println!("saved {} ({size} bytes)", a.out.display());

    if let Some(p) = &a.metrics_json {
        let json = serde_json::json!({ "history": history, "test": test_eval, "model": a.out, "metadata": meta.training });
        nn_io::write_atomic(p, |w| {
            serde_json::to_writer_pretty(&mut *w, &json).map_err(std::io::Error::other)
        })?;
    }
    if let Some(p) = &a.plot {
        crate::plot::plot(p, &history.epochs)?;
        println!("plotted {}", p.display());
    }
    Ok(())
}

/// Prints loss, accuracy and the confusion matrix.
pub fn report(what: &str, e: &Evaluation, rows: usize, names: Option<&[String]>) {
    match e.accuracy {
        Some(a) => println!("{what}: loss {:.4}  accuracy {a:.4} ({rows} rows)", e.loss),
        None => println!("{what}: loss {:.4} ({rows} rows)", e.loss),
    }
    if let Some(c) = &e.confusion {
        print!("{}", c.display_with(names));
    }
}

/// The architecture's spec as a list of layer specs (for `inspect`).
pub fn layer_specs(spec: &LayerSpec) -> Vec<LayerSpec> {
    match spec.layers("layers") {
        Ok(ls) if spec.kind == "sequential" => ls.to_vec(),
        _ => vec![spec.clone()],
    }
}
