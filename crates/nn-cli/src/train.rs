//! `nn train`: read data, split, normalise, build the network, train, report, save.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use nn_io::{Dataset, Metadata, TrainingSummary, split_indices};
use nn_layers::{BceWithLogits, Layer, LayerConfig, Loss, Mse, Registry, SoftmaxCrossEntropy};
use nn_optim::{
    Data, EpochEnd, Evaluation, History, Observer, ObserverError, Optimizer, OptimizerState,
    Trainer, TrainerState, evaluate,
};

use crate::data::{self, Request, Task};
use crate::eval::{check_batch, eval_batch, report};
use crate::output::say;
use crate::progress::Progress;
use crate::spec;

pub use nn_cli::settings::{self, CheckpointState, Settings, TrainArgs};

/// Rows per forward pass when evaluating.
const EVAL_BATCH: usize = 1024;

/// The parts of the data a run uses.
struct Parts {
    train: Dataset,
    val: Option<Dataset>,
    test: Option<Dataset>,
    is_idx: bool,
}

/// Everything a run starts from, fresh or resumed.
struct Start {
    settings: Settings,
    model: Box<dyn Layer>,
    meta: Metadata,
    parts: Parts,
    trainer: Option<TrainerState>,
    optimizer: Option<OptimizerState>,
}

/// Runs `nn train`.
pub fn run(a: &TrainArgs) -> Result<()> {
    check_paths(a)?;
    let registry = Registry::new();
    let started = Instant::now();
    let mut s = match &a.resume {
        Some(p) => resume(a, p, &registry)?,
        None => fresh(a, &registry)?,
    };
    // normalise every part with statistics of the training rows (or the checkpoint's)
    for d in [
        Some(&mut s.parts.train),
        s.parts.val.as_mut(),
        s.parts.test.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        d.x = data::prepare(std::mem::take(&mut d.x), &s.meta, &a.data)?;
    }
    let (mut loss, loss_name) = choose_loss(&s, &a.data)?;
    s.meta.loss = loss_name.to_string();
    check_batch(
        s.model.as_ref(),
        &s.meta.input_shape,
        s.settings.batch_size.min(s.parts.train.len()),
    )?;
    let eval_rows = s.parts.val.as_ref().map_or(1, Dataset::len);
    let eval_size = eval_batch(s.model.as_ref(), &s.meta.input_shape, EVAL_BATCH, eval_rows)?;
    let mut opt = s.settings.optimizer()?;
    if let Some(st) = s.optimizer.take() {
        opt.load_state(st)?;
    }
    let cfg = s.settings.train_config(eval_size);
    let mut trainer = match s.trainer.take() {
        Some(st) => Trainer::resume(cfg, st)?,
        None => Trainer::new(cfg)?,
    };
    announce(&mut s)?;
    let history = train_epochs(a, &mut s, loss.as_mut(), opt.as_mut(), &mut trainer)?;
    let test = test_evaluation(&mut s, loss.as_mut())?;
    s.meta.training = Some(summary(a, &s, &trainer, &history, test.as_ref(), started));
    if let Some(t) = &test {
        let rows = s.parts.test.as_ref().map_or(0, Dataset::len);
        report("test", t, rows, s.meta.class_names.as_deref())?;
    }
    nn_io::save_model(&a.out, s.model.as_mut(), &s.meta)?;
    let size = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    say!("saved {} ({size} bytes)", a.out.display());
    write_extras(a, &history, test.as_ref(), &s.meta)
}

/// Refuses outputs that would overwrite an input: `--out` (or the metrics or plot file)
/// being the data file or the checkpoint resumed from.
fn check_paths(a: &TrainArgs) -> Result<()> {
    let inputs = [("--data", Some(&a.data)), ("--resume", a.resume.as_ref())];
    let outputs = [
        ("--out", Some(&a.out)),
        ("--metrics-json", a.metrics_json.as_ref()),
        ("--plot", a.plot.as_ref()),
    ];
    for (out_flag, out) in outputs {
        let Some(out) = out else { continue };
        for (in_flag, input) in inputs {
            if input.is_some_and(|i| same_file(i, out)) {
                bail!(
                    "{out_flag} {} is the {in_flag} file; writing it would destroy the input",
                    out.display()
                );
            }
        }
    }
    Ok(())
}

/// Whether two paths name the same existing file.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// A new run: the data, its split, the network built from `--layers` or `--model-spec`.
fn fresh(a: &TrainArgs, registry: &Registry) -> Result<Start> {
    let settings = Settings::from_args(a)?;
    let req = Request {
        label: settings.label.as_deref(),
        task: settings.task,
        class_names: None,
        features: None,
    };
    let source = data::load(&a.data, &req)?;
    require_two_classes(
        &source.main,
        settings.task,
        &a.data,
        settings.label.as_deref(),
    )?;
    let parts = split(source, &settings, a.data.is_dir())?;
    let input_shape = parts.train.input_shape().to_vec();
    let specs = match (&a.layers, &a.model_spec) {
        (Some(l), _) => spec::parse_layers(l)?,
        (None, Some(f)) => spec::read_spec_file(f)?,
        (None, None) => {
            bail!("give the network with --layers \"dense:64,relu,dense:10\" or --model-spec FILE")
        }
    };
    let batch = settings.batch_size.clamp(1, parts.train.len().max(1));
    if let Some(note) = spec::flatten_note(&specs, &input_shape) {
        eprintln!("{note}");
    }
    let cfg = spec::resolve(&specs, &input_shape, batch, registry)?;
    if cfg
        .layers
        .last()
        .is_some_and(|l| l.spec().kind == "softmax")
        && settings.task == Task::Classify
    {
        eprintln!(
            "note: the loss applies softmax itself; a final softmax layer makes training slower"
        );
    }
    cfg.tensors()?; // the parameter limit, before anything is allocated
    let model = cfg.build(&mut nn_core::seeded(settings.seed))?;
    let meta = Metadata {
        input_shape,
        class_names: parts.train.class_names.clone(),
        feature_names: parts.train.feature_names.clone(),
        normalization: data::fit_normalization(&a.normalize(), &parts.train, parts.is_idx)?,
        label: settings.label.clone(),
        loss: String::new(),
        training: None,
    };
    Ok(Start {
        settings,
        model,
        meta,
        parts,
        trainer: None,
        optimizer: None,
    })
}

/// Classification needs two classes at least; one class is a clear error, not nonsense.
fn require_two_classes(d: &Dataset, task: Task, path: &Path, label: Option<&str>) -> Result<()> {
    let k = d.num_classes().unwrap_or(2);
    if task == Task::Classify && k < 2 {
        let name = d
            .class_names
            .as_ref()
            .and_then(|n| n.first())
            .map_or_else(String::new, |n| {
                format!(" (`{}`)", nn_core::limits::excerpt(n))
            });
        bail!(
            "{}: the label column{} holds a single class{name}; classification needs at least two",
            path.display(),
            label.map_or_else(String::new, |l| format!(" `{l}`")),
        );
    }
    Ok(())
}

/// A run continued from a checkpoint: its settings, model and state, checked against one
/// another, and the same data read as the checkpoint's model reads it.
fn resume(a: &TrainArgs, path: &Path, registry: &Registry) -> Result<Start> {
    let (mut loaded, state) = settings::load_checkpoint(path, registry)?;
    let mut settings = state.settings;
    settings
        .validate()
        .with_context(|| path.display().to_string())?;
    settings::refuse_changes(a, &settings, loaded.model.as_ref(), registry)?;
    if let Some(e) = a.epochs {
        settings.epochs = settings::check_epochs(e)?;
    }
    state
        .trainer
        .validate(loaded.model.as_mut())
        .and_then(|()| state.optimizer.validate(loaded.model.as_mut()))
        .with_context(|| {
            format!(
                "{}: the training state does not fit its model",
                path.display()
            )
        })?;
    // the schedule owns the learning rate; the checkpoint's epoch count is its position
    let done = state.trainer.epoch;
    say!(
        "resuming {} after epoch {done}: the schedule ({}) continues at epoch {} with learning rate {}",
        path.display(),
        settings.schedule,
        done + 1,
        settings.schedule.lr_at(done)
    );
    let meta = loaded.metadata;
    let req = Request {
        label: settings.label.as_deref(),
        task: settings.task,
        class_names: meta.class_names.clone(),
        features: (!meta.feature_names.is_empty()).then(|| meta.feature_names.clone()),
    };
    let source = data::load(&a.data, &req)?;
    let parts = split(source, &settings, a.data.is_dir())?;
    let rows = parts.train.input_shape();
    if nn_core::limits::product(rows) != nn_core::limits::product(&meta.input_shape) {
        bail!(
            "{}: rows have shape {}, the checkpoint's model expects {}",
            a.data.display(),
            nn_core::Shape(rows.to_vec()),
            nn_core::Shape(meta.input_shape.clone())
        );
    }
    Ok(Start {
        settings,
        model: loaded.model,
        meta,
        parts,
        trainer: Some(state.trainer),
        optimizer: Some(state.optimizer),
    })
}

/// Splits the main part into training, validation and (for a CSV file) test rows.
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

/// The loss that fits the task and the network's output width.
fn choose_loss(s: &Start, data: &Path) -> Result<(Box<dyn Loss>, &'static str)> {
    let mut input = vec![1];
    input.extend_from_slice(&s.meta.input_shape);
    let out = s.model.output_shape(&input)?[1..].to_vec();
    let targets = data::output_width(&s.parts.train);
    let width: usize = out.iter().product();
    match s.settings.task {
        Task::Classify if width == targets && out.len() == 1 => Ok((
            Box::new(SoftmaxCrossEntropy::new()),
            "softmax_cross_entropy",
        )),
        Task::Classify if width == 1 && targets == 2 => {
            Ok((Box::new(BceWithLogits::new()), "bce_with_logits"))
        }
        Task::Classify => bail!(
            "the network ends with {} outputs but {} has {targets} classes; make the last layer dense:{targets}",
            nn_core::Shape(out),
            data.display()
        ),
        Task::Regress if width == targets => Ok((Box::new(Mse::new()), "mse")),
        Task::Regress => bail!(
            "the network ends with {} outputs but {} has {targets} target values per row",
            nn_core::Shape(out),
            data.display()
        ),
    }
}

/// The line that says what is about to be trained.
fn announce(s: &mut Start) -> Result<()> {
    let p = &s.parts;
    say!(
        "training {} on {} rows ({} validation{}), {} parameters, {} for {} epochs",
        s.model.name(),
        p.train.len(),
        p.val.as_ref().map_or(0, Dataset::len),
        p.test
            .as_ref()
            .map_or(String::new(), |t| format!(", {} test", t.len())),
        s.model.num_params(),
        s.settings.describe_optimizer(),
        s.settings.epochs
    );
    Ok(())
}

/// The epochs, in one call of the trainer: the observer draws the progress and writes a
/// checkpoint after each epoch.
fn train_epochs(
    a: &TrainArgs,
    s: &mut Start,
    loss: &mut dyn Loss,
    opt: &mut dyn Optimizer,
    trainer: &mut Trainer,
) -> Result<History> {
    let train = Data::new(s.parts.train.x(), s.parts.train.target())?;
    let val = match &s.parts.val {
        Some(v) => Some(Data::new(v.x(), v.target())?),
        None => None,
    };
    if let Some(dir) = &a.checkpoint_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create the checkpoint folder", dir.display()))?;
    }
    let mut watch = Watch {
        progress: Progress::new(s.settings.epochs, a.quiet),
        checkpoints: a.checkpoint_dir.as_deref(),
        settings: &s.settings,
        meta: &s.meta,
    };
    let history = trainer.fit(
        s.model.as_mut(),
        loss,
        opt,
        &train,
        val.as_ref(),
        &mut watch,
    )?;
    watch.progress.finish();
    if history.stopped_early {
        say!(
            "early stopping after epoch {}; keeping epoch {}",
            trainer.epoch(),
            history.best_epoch.unwrap_or(0)
        );
    }
    Ok(history)
}

/// What `nn train` does after every step and epoch: the progress bar and lines, and a
/// checkpoint in the folder of `--checkpoint-dir`.
struct Watch<'a> {
    progress: Progress,
    checkpoints: Option<&'a Path>,
    settings: &'a Settings,
    meta: &'a Metadata,
}

impl Observer for Watch<'_> {
    fn on_start(&mut self, first: usize, last: usize, steps: usize) {
        self.progress.on_start(first, last, steps);
    }

    fn on_step(&mut self, epoch: usize, step: usize, loss: f32) {
        self.progress.on_step(epoch, step, loss);
    }

    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        self.progress.on_epoch_end(end)?;
        let Some(dir) = self.checkpoints else {
            return Ok(());
        };
        let state = CheckpointState {
            settings: self.settings.clone(),
            trainer: end.trainer_state(),
            optimizer: end.optimizer_state(),
        };
        let path = dir.join(format!("epoch-{:04}.nnck", end.record.epoch));
        nn_io::save_checkpoint(&path, end.model, self.meta, &state)?;
        Ok(())
    }
}

/// Loss and accuracy on the held-out test rows, if any.
fn test_evaluation(s: &mut Start, loss: &mut dyn Loss) -> Result<Option<Evaluation>> {
    let Some(t) = &s.parts.test else {
        return Ok(None);
    };
    let batch = eval_batch(s.model.as_ref(), &s.meta.input_shape, EVAL_BATCH, t.len())?;
    let data = Data::new(t.x(), t.target())?;
    Ok(Some(evaluate(s.model.as_mut(), loss, &data, batch)?))
}

/// How the model was trained, for its metadata.
fn summary(
    a: &TrainArgs,
    s: &Start,
    trainer: &Trainer,
    history: &History,
    test: Option<&Evaluation>,
    started: Instant,
) -> TrainingSummary {
    let last = history.epochs.last();
    TrainingSummary {
        epochs: trainer.epoch(),
        optimizer: s.settings.describe_optimizer(),
        batch_size: s.settings.batch_size,
        seed: s.settings.seed,
        data: nn_core::limits::excerpt(&a.data.display().to_string()),
        train_rows: s.parts.train.len(),
        train_loss: last.map_or(f32::NAN, |e| e.train_loss),
        val_accuracy: last.and_then(|e| e.val.as_ref().and_then(|v| v.accuracy)),
        test_accuracy: test.and_then(|e| e.accuracy),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The metrics file and the plot, after the model is saved: a failure here leaves the
/// model in place.
fn write_extras(
    a: &TrainArgs,
    history: &History,
    test: Option<&Evaluation>,
    meta: &Metadata,
) -> Result<()> {
    if let Some(p) = &a.metrics_json {
        let json = serde_json::json!({ "history": history, "test": test, "model": a.out, "metadata": meta.training });
        nn_io::write_atomic(p, |w| {
            serde_json::to_writer_pretty(&mut *w, &json).map_err(std::io::Error::other)
        })
        .context("the model is saved; the metrics file is not")?;
    }
    if let Some(p) = &a.plot {
        crate::plot::plot(p, &history.epochs).with_context(|| {
            format!("the model is saved as {}; the plot is not", a.out.display())
        })?;
        say!("plotted {}", p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_file_sees_through_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d.csv");
        std::fs::write(&f, "a\n1\n").unwrap();
        let dotted = dir.path().join(".").join("d.csv");
        assert!(same_file(&f, &dotted));
        assert!(!same_file(&f, &dir.path().join("other.csv")));
    }
}
