//! `nn eval`, `nn predict`, `nn inspect` and `nn gradcheck`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use ndarray::{Axis, IxDyn};
use nn_core::Tensor;
use nn_io::{FileKind, Metadata, container};
use nn_layers::{
    BceWithLogits, GradCheckConfig, Loss, Mode, Mse, Registry, Slot, SoftmaxCrossEntropy,
    check_layer,
};
use nn_optim::{Data, evaluate};

use crate::data::{self, Task};
use crate::train::{CheckpointState, layer_specs, report};

fn loss_for(meta: &Metadata) -> Result<Box<dyn Loss>> {
    Ok(match meta.loss.as_str() {
        "softmax_cross_entropy" => Box::new(SoftmaxCrossEntropy::new()),
        "bce_with_logits" => Box::new(BceWithLogits::new()),
        "mse" => Box::new(Mse::new()),
        other => bail!("the model was trained with an unknown loss `{other}`"),
    })
}

/// Options of `nn eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A model file saved by `nn train`.
    #[arg(long)]
    pub model: PathBuf,
    /// A CSV file with the model's label column, or an IDX folder (its t10k part).
    #[arg(long)]
    pub data: PathBuf,
    /// The label column [default: the one the model was trained on].
    #[arg(long)]
    pub label: Option<String>,
    /// Rows per forward pass.
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
}

/// Runs `nn eval`.
pub fn eval(a: &EvalArgs) -> Result<()> {
    let mut loaded = nn_io::load_model(&a.model, &Registry::new())?;
    let meta = &loaded.metadata;
    let task = if meta.loss == "mse" {
        Task::Regress
    } else {
        Task::Classify
    };
    let label = a.label.clone().or_else(|| meta.label.clone());
    let source = data::load(&a.data, label.as_deref(), task, meta.class_names.clone())?;
    let mut d = source.test.unwrap_or(source.main);
    d.x = data::prepare(std::mem::take(&mut d.x), meta, &a.data)?;
    let mut loss = loss_for(meta)?;
    let e = evaluate(
        loaded.model.as_mut(),
        loss.as_mut(),
        &Data::new(d.x(), d.target())?,
        a.batch_size.max(1),
    )?;
    report(
        &a.data.display().to_string(),
        &e,
        d.len(),
        meta.class_names.as_deref(),
    );
    Ok(())
}

/// Output formats of `nn predict`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `row,class,probability` lines.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Options of `nn predict`.
#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// A model file saved by `nn train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Rows to predict: a CSV file (the model's feature columns), an IDX images file or
    /// folder, or `-` for CSV on standard input.
    #[arg(long)]
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
}

/// Reads the inputs of `nn predict`.
fn read_inputs(input: &Path, meta: &Metadata) -> Result<Tensor> {
    let columns = (!meta.feature_names.is_empty()).then_some(meta.feature_names.as_slice());
    if input == Path::new("-") {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading standard input")?;
        return Ok(nn_io::parse_csv_features(text.as_slice(), Path::new("<stdin>"), columns)?.0);
    }
    if input.is_dir() {
        let (images, _) = nn_io::idx::find_idx_pair(input, "t10k")?;
        return idx_images(&images);
    }
    let mut magic = [0u8; 4];
    let is_idx = std::fs::File::open(input)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic[..2] == [0, 0] || magic[..2] == [0x1f, 0x8b]);
    if is_idx {
        return idx_images(input);
    }
    Ok(nn_io::read_csv_features(input, columns)?.0)
}

fn idx_images(path: &Path) -> Result<Tensor> {
    let a = nn_io::read_idx(path)?;
    let n = a.dims.first().copied().unwrap_or(0);
    let mut shape = vec![n, 1];
    shape.extend_from_slice(&a.dims[1..]);
    let x: Vec<f32> = a.data.iter().map(|&b| b as f32).collect();
    Ok(Tensor::from_shape_vec(IxDyn(&shape), x).expect("IDX size checked"))
}

/// Runs `nn predict`.
pub fn predict(a: &PredictArgs) -> Result<()> {
    let mut loaded = nn_io::load_model(&a.model, &Registry::new())?;
    let meta = loaded.metadata.clone();
    let x = data::prepare(read_inputs(&a.input, &meta)?, &meta, &a.input)?;
    let names = meta.class_names.clone();
    let mut rows = Vec::with_capacity(x.shape()[0]);
    for (start, chunk) in x.axis_chunks_iter(Axis(0), 1024).enumerate() {
        let y = loaded.model.forward(chunk, Mode::Eval)?;
        let y = y
            .into_dimensionality::<ndarray::Ix2>()
            .context("the model's output is not one row per input")?;
        for (i, z) in y.rows().into_iter().enumerate() {
            let row = start * 1024 + i + 1;
            rows.push(match meta.loss.as_str() {
                "mse" => Prediction::Value {
                    row,
                    values: z.to_vec(),
                },
                loss => {
                    let (class, p) = if loss == "bce_with_logits" {
                        let p1 = nn_layers::activation::sigmoid(z[0]); // P(class 1) = σ(z)
                        if z[0] > 0.0 { (1, p1) } else { (0, 1.0 - p1) }
                    } else {
                        let class = nn_optim::predicted_class(z);
                        let mut p = ndarray::Array1::zeros(z.len());
                        nn_core::softmax::softmax_row(z, p.view_mut());
                        (class, p[class])
                    };
                    let name = names
                        .as_ref()
                        .and_then(|n| n.get(class).cloned())
                        .unwrap_or_else(|| class.to_string());
                    Prediction::Class {
                        row,
                        class: name,
                        probability: p,
                    }
                }
            });
        }
    }
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => {
            match rows.first() {
                Some(Prediction::Value { .. }) => println!("row,value"),
                _ => println!("row,class,probability"),
            }
            for r in &rows {
                match r {
                    Prediction::Class {
                        row,
                        class,
                        probability,
                    } => println!("{row},{},{probability:.6}", csv_field(class)),
                    Prediction::Value { row, values } => {
                        let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                        println!("{row},{}", v.join(";"));
                    }
                }
            }
        }
    }
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum Prediction {
    Class {
        row: usize,
        class: String,
        probability: f32,
    },
    Value {
        row: usize,
        values: Vec<f32>,
    },
}

/// Runs `nn inspect`.
pub fn inspect(path: &Path) -> Result<()> {
    let bytes = container::read_file(path)?;
    let kind = if bytes.starts_with(FileKind::Checkpoint.magic()) {
        FileKind::Checkpoint
    } else {
        FileKind::Model
    };
    let header = container::parse_header(&bytes, kind, path)?;
    let computed = crc32fast::hash(&bytes[container::HEADER_LEN..]);
    println!("file:        {} ({} bytes)", path.display(), bytes.len());
    println!(
        "kind:        {}",
        if kind == FileKind::Model {
            "model"
        } else {
            "checkpoint"
        }
    );
    println!(
        "format:      version {} (this build reads 1 to {})",
        header.version,
        nn_io::FORMAT_VERSION
    );
    println!("payload:     {} bytes", header.payload_len);
    if computed != header.checksum {
        println!(
            "checksum:    MISMATCH (stored {:08x}, computed {computed:08x})",
            header.checksum
        );
        bail!("{}: checksum mismatch: the file is corrupt", path.display());
    }
    println!("checksum:    {:08x} (ok)", header.checksum);
    let registry = Registry::new();
    let (mut loaded, state) = match kind {
        FileKind::Model => (nn_io::model_from_bytes(&bytes, path, &registry)?, None),
        FileKind::Checkpoint => {
            let (l, s): (_, CheckpointState) = nn_io::load_checkpoint(path, &registry)?;
            (l, Some(s))
        }
    };
    if let Some(s) = &state {
        println!(
            "checkpoint:  after epoch {}, step {}",
            s.trainer.epoch, s.trainer.step
        );
    }
    let meta = &loaded.metadata;
    println!(
        "\narchitecture (input {}):",
        nn_core::Shape(meta.input_shape.clone())
    );
    println!(
        "  {:>3}  {:<24} {:<16} {:>10}",
        "#", "layer", "output", "parameters"
    );
    let mut counts: Vec<usize> = Vec::new();
    loaded.model.visit(&mut |name, slot| {
        if let Slot::Param(p) = slot {
            let i: usize = name
                .split('.')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            if counts.len() <= i {
                counts.resize(i + 1, 0);
            }
            counts[i] += p.len();
        }
    });
    let mut shape = vec![1];
    shape.extend_from_slice(&meta.input_shape);
    for (i, spec) in layer_specs(&loaded.model.spec()).iter().enumerate() {
        let layer = registry.build(spec, &mut nn_core::seeded(0))?;
        shape = layer.output_shape(&shape)?;
        let n = counts.get(i).copied().unwrap_or(0);
        println!(
            "  {i:>3}  {:<24} {:<16} {n:>10}",
            layer.name(),
            nn_core::Shape(shape[1..].to_vec()).to_string()
        );
    }
    println!("  total parameters: {}", loaded.model.num_params());
    println!("\nmetadata:");
    if let Some(c) = &meta.class_names {
        println!("  classes:       {} ({})", c.join(", "), c.len());
    }
    if !meta.feature_names.is_empty() {
        let f = &meta.feature_names;
        let shown = if f.len() > 8 {
            format!("{} … {}", f[..4].join(", "), f[f.len() - 2..].join(", "))
        } else {
            f.join(", ")
        };
        println!("  features:      {shown} ({})", f.len());
    }
    if let Some(l) = &meta.label {
        println!("  label column:  {l}");
    }
    let norm = match &meta.normalization {
        Some(nn_io::Normalization::Standardize { mean, .. }) => {
            format!("standardise ({} features)", mean.len())
        }
        Some(nn_io::Normalization::MinMax { min, .. }) => {
            format!("min-max to [0, 1] ({} features)", min.len())
        }
        Some(nn_io::Normalization::Scale { factor }) => format!("scale by {factor}"),
        None => "none".into(),
    };
    println!("  normalisation: {norm}");
    println!("  loss:          {}", meta.loss);
    if let Some(t) = &meta.training {
        println!(
            "  training:      {} epochs, {}, batch {}, seed {}, {} rows of {}",
            t.epochs, t.optimizer, t.batch_size, t.seed, t.train_rows, t.data
        );
        let acc = |a: Option<f32>| a.map_or("-".to_string(), |a| format!("{a:.4}"));
        println!(
            "  results:       train loss {:.4}, validation accuracy {}, test accuracy {}, {:.2} s",
            t.train_loss,
            acc(t.val_accuracy),
            acc(t.test_accuracy),
            t.seconds
        );
    }
    Ok(())
}

/// Options of `nn gradcheck`.
#[derive(clap::Args, Debug)]
pub struct GradcheckArgs {
    /// The network, e.g. "dense:16,tanh,dense:4".
    #[arg(long)]
    pub layers: String,
    /// Shape of one input row, e.g. 8 or 1x28x28.
    #[arg(long, default_value = "8")]
    pub input_shape: String,
    /// Rows in the random batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Seed of the weights, the input and the projection.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Half-width ε of the central differences.
    #[arg(long, default_value_t = 1e-2)]
    pub eps: f32,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-3)]
    pub abs_tol: f32,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-2)]
    pub rel_tol: f32,
    /// Check at most this many entries per tensor.
    #[arg(long, default_value_t = 200)]
    pub max_entries: usize,
}

/// Runs `nn gradcheck`: each layer on its own input, then the whole network.
pub fn gradcheck(a: &GradcheckArgs) -> Result<()> {
    let shape: Vec<usize> = a
        .input_shape
        .split(['x', ','])
        .map(|s| s.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .with_context(|| {
            format!(
                "--input-shape `{}`: expected sizes like 8 or 1x28x28",
                a.input_shape
            )
        })?;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let registry = Registry::new();
    let items = crate::spec::parse_layers(&a.layers)?;
    let (specs, _) = crate::spec::resolve(&items, &shape, &registry)?;
    let mut net = registry.build_sequential(&specs, &mut nn_core::seeded(a.seed))?;
    let mut full = vec![a.batch];
    full.extend_from_slice(&shape);
    let mut rng = nn_core::seeded(a.seed ^ 0x9e37_79b9);
    let x = Tensor::from_shape_fn(IxDyn(&full), |_| nn_core::rng::uniform(&mut rng, -1.0, 1.0));
    let cfg = GradCheckConfig {
        eps: a.eps,
        abs_tol: a.abs_tol,
        rel_tol: a.rel_tol,
        seed: a.seed,
        max_entries: Some(a.max_entries),
    };
    println!(
        "gradient check: ε = {}, pass if |analytic − numeric| ≤ {} + {}·|numeric|",
        a.eps, a.abs_tol, a.rel_tol
    );
    println!(
        "  {:>3}  {:<22} {:<12} {:>11} {:>11}  verdict",
        "#", "layer", "tensor", "max abs", "max rel"
    );
    let mut failed = 0;
    let mut input = x.clone();
    for (i, layer) in net.layers_mut().iter_mut().enumerate() {
        let report = check_layer(layer.as_mut(), input.view(), &cfg)?;
        for t in &report.tensors {
            let abs = t.worst_abs.as_ref().map_or(0.0, |c| c.abs_err());
            let rel = t.worst_rel.as_ref().map_or(0.0, |c| c.rel_err());
            let verdict = if t.failed == 0 {
                "ok".to_string()
            } else {
                format!("FAILED ({} of {})", t.failed, t.checked)
            };
            println!(
                "  {i:>3}  {:<22} {:<12} {abs:>11.3e} {rel:>11.3e}  {verdict}",
                layer.name(),
                t.name
            );
        }
        failed += usize::from(!report.passed());
        input = layer.forward(input.view(), Mode::Eval)?.to_owned();
    }
    let whole = check_layer(&mut net, x.view(), &cfg)?;
    let worst = whole.worst_abs().map_or(0.0, |c| c.abs_err());
    println!(
        "  whole network: max abs error {worst:.3e}, {}",
        if whole.passed() { "ok" } else { "FAILED" }
    );
    if failed > 0 || !whole.passed() {
        bail!(
            "gradient check failed for {failed} layer(s); note that ReLU-like kinks within ε of an input disagree legitimately"
        );
    }
    Ok(())
}
