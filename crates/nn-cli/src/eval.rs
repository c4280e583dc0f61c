//! `nn eval`: loss, accuracy and confusion matrix of a saved model on a data set.

use std::path::PathBuf;

use anyhow::{Result, bail};
use nn_io::Metadata;
use nn_layers::{BceWithLogits, Layer, Loss, Mse, Registry, SoftmaxCrossEntropy};
use nn_optim::{Data, Evaluation, evaluate};

use crate::data::{self, Request, Task};
use crate::output::say;

/// Options of `nn eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model file saved by `nn train`.
    #[arg(long)]
    pub model: PathBuf,
    /// A CSV file with the model's feature and label columns (matched by name), or an IDX
    /// folder (its t10k part).
    #[arg(long)]
    pub data: PathBuf,
    /// The label column [default: the one the model was trained on].
    #[arg(long)]
    pub label: Option<String>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
}

/// The loss a model was trained with, by the name its metadata stores.
pub fn loss_for(meta: &Metadata) -> Result<Box<dyn Loss>> {
    Ok(match meta.loss.as_str() {
        "softmax_cross_entropy" => Box::new(SoftmaxCrossEntropy::new()),
        "bce_with_logits" => Box::new(BceWithLogits::new()),
        "mse" => Box::new(Mse::new()),
        other => bail!(
            "the model was trained with an unknown loss `{}`",
            nn_core::limits::excerpt(other)
        ),
    })
}

/// What a model reads from a data set: its label (as given, or the one it was trained
/// on), its classes and its feature columns by name.
pub fn request<'a>(meta: &'a Metadata, label: Option<&'a str>) -> Request<'a> {
    Request {
        label: label.or(meta.label.as_deref()),
        task: if meta.loss == "mse" {
            Task::Regress
        } else {
            Task::Classify
        },
        class_names: meta.class_names.clone(),
        features: (!meta.feature_names.is_empty()).then(|| meta.feature_names.clone()),
    }
}

/// Checks that a batch of `batch` rows of `input` fits the model within the limits.
pub fn check_batch(model: &dyn Layer, input: &[usize], batch: usize) -> Result<()> {
    if batch == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    nn_core::limits::elements(|| format!("a batch of {batch} rows"), &shape)?;
    model.output_shape(&shape)?;
    Ok(())
}

/// The most elements the layer outputs of one evaluation batch may hold together: 2²⁴
/// (64 MiB of f32), so that a model with very wide layers evaluates in smaller batches
/// instead of taking gigabytes.
const EVAL_ACTIVATIONS: usize = 1 << 24;

/// Rows per forward pass for inference: at most `requested` and the rows there are, and
/// few enough that the batch's layer outputs stay within [`EVAL_ACTIVATIONS`].
pub fn eval_batch(
    model: &dyn Layer,
    input: &[usize],
    requested: usize,
    rows: usize,
) -> Result<usize> {
    if requested == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut one = vec![1];
    one.extend_from_slice(input);
    let per_row = model.config().output_elements(&one)?;
    let batch = requested
        .min(rows)
        .min(EVAL_ACTIVATIONS / per_row.max(1))
        .max(1);
    check_batch(model, input, batch)?;
    Ok(batch)
}

/// Runs `nn eval`.
pub fn run(a: &EvalArgs) -> Result<()> {
    let mut loaded = nn_io::load_model(&a.model, &Registry::new())?;
    let meta = &loaded.metadata;
    let source = data::load(&a.data, &request(meta, a.label.as_deref()))?;
    // an IDX folder is evaluated on its test part, a CSV file as a whole
    let mut d = source.test.unwrap_or(source.main);
    d.x = data::prepare(std::mem::take(&mut d.x), meta, &a.data)?;
    let batch = eval_batch(
        loaded.model.as_ref(),
        &meta.input_shape,
        a.batch_size,
        d.len(),
    )?;
    let mut loss = loss_for(meta)?;
    let e = evaluate(
        loaded.model.as_mut(),
        loss.as_mut(),
        &Data::new(d.x(), d.target())?,
        batch,
    )?;
    report(
        &a.data.display().to_string(),
        &e,
        d.len(),
        meta.class_names.as_deref(),
    )
}

/// Prints loss, accuracy and the confusion matrix.
pub fn report(what: &str, e: &Evaluation, rows: usize, names: Option<&[String]>) -> Result<()> {
    match e.accuracy {
        Some(a) => say!("{what}: loss {:.4}  accuracy {a:.4} ({rows} rows)", e.loss),
        None => say!("{what}: loss {:.4} ({rows} rows)", e.loss),
    }
    if let Some(c) = &e.confusion {
        let table = c.display_with(names).to_string();
        say!("{}", table.trim_end());
    }
    Ok(())
}
