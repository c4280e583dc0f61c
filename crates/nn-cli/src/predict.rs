//! `nn predict`: the class and its probability (or the values) for each input row.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndarray::{ArrayView1, Axis, IxDyn};
use nn_core::Tensor;
use nn_io::{Limits, Metadata};
use nn_layers::{Mode, Registry};

use crate::data;
use crate::eval::eval_batch;
use crate::output::say;

/// Rows per forward pass.
const BATCH: usize = 1024;

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
    /// Rows to predict: a CSV file (the model's feature columns, matched by name), an IDX
    /// images file or folder, or `-` for CSV on standard input.
    #[arg(long)]
    pub input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,
    /// Also give every class's probability (a `probabilities` column of `;`-separated
    /// values in CSV, a `probabilities` array in JSON).
    #[arg(long)]
    pub all_probabilities: bool,
}

/// Reads the inputs of `nn predict`, bounded by the input limits.
fn read_inputs(input: &Path, meta: &Metadata) -> Result<Tensor> {
    let columns = (!meta.feature_names.is_empty()).then_some(meta.feature_names.as_slice());
    let limits = Limits::from_env().map_err(anyhow::Error::msg)?;
    let (x, ignored) = if input == Path::new("-") {
        let stdin = std::io::stdin().lock();
        let (x, _, ignored) =
            nn_io::parse_csv_features(stdin, Path::new("<stdin>"), columns, &limits)?;
        (x, ignored)
    } else if input.is_dir() {
        let (images, _) = nn_io::idx::find_idx_pair(input, "t10k")?;
        return idx_images(&images);
    } else if is_idx(input) {
        return idx_images(input);
    } else {
        let (x, _, ignored) = nn_io::read_csv_features(input, columns, &limits)?;
        (x, ignored)
    };
    data::note_ignored(input, &ignored);
    Ok(x)
}

/// Whether a file starts like an IDX file, raw (`00 00`) or gzipped.
fn is_idx(input: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(input)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| magic[..2] == [0, 0] || magic[..2] == [0x1f, 0x8b])
}

fn idx_images(path: &Path) -> Result<Tensor> {
    let a = nn_io::read_idx(path)?;
    let n = a.dims.first().copied().unwrap_or(0);
    let mut shape = vec![n, 1];
    shape.extend_from_slice(&a.dims[1..]);
    let x: Vec<f32> = a.data.iter().map(|&b| b as f32).collect();
    Tensor::from_shape_vec(IxDyn(&shape), x).context("IDX images")
}

/// Runs `nn predict`.
pub fn run(a: &PredictArgs) -> Result<()> {
    let mut loaded = nn_io::load_model(&a.model, &Registry::new())?;
    let meta = loaded.metadata.clone();
    let x = data::prepare(read_inputs(&a.input, &meta)?, &meta, &a.input)?;
    let batch = eval_batch(
        loaded.model.as_ref(),
        &meta.input_shape,
        BATCH,
        x.shape()[0],
    )?;
    let mut rows = Vec::with_capacity(x.shape()[0]);
    let mut out = nn_core::Buffer::new();
    for (start, chunk) in x.axis_chunks_iter(Axis(0), batch).enumerate() {
        loaded.model.forward(chunk, &mut out, Mode::Eval)?;
        let y = out
            .view()
            .into_dimensionality::<ndarray::Ix2>()
            .context("the model's output is not one row per input")?;
        for (i, z) in y.rows().into_iter().enumerate() {
            let mut p = prediction(start * batch + i + 1, z, &meta);
            if !a.all_probabilities {
                p.drop_probabilities();
            }
            rows.push(p);
        }
    }
    match a.format {
        Format::Json => say!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Csv => print_csv(&rows)?,
    }
    Ok(())
}

/// The prediction for one row of outputs `z`.
fn prediction(row: usize, z: ArrayView1<'_, f32>, meta: &Metadata) -> Prediction {
    let Some(all) = meta.class_probabilities(z) else {
        return Prediction::Value {
            row,
            values: z.to_vec(),
        };
    };
    let class = nn_optim::predicted_class(z); // one logit: 1 when z > 0
    let probability = all[class];
    let class = meta
        .class_names
        .as_ref()
        .and_then(|n| n.get(class).cloned())
        .unwrap_or_else(|| class.to_string());
    Prediction::Class {
        row,
        class,
        probability,
        probabilities: Some(all),
    }
}

fn print_csv(rows: &[Prediction]) -> Result<()> {
    match rows.first() {
        Some(Prediction::Value { .. }) => say!("row,value"),
        Some(Prediction::Class {
            probabilities: Some(_),
            ..
        }) => say!("row,class,probability,probabilities"),
        _ => say!("row,class,probability"),
    }
    for r in rows {
        match r {
            Prediction::Class {
                row,
                class,
                probability,
                probabilities: None,
            } => say!("{row},{},{probability:.6}", csv_field(class)),
            Prediction::Class {
                row,
                class,
                probability,
                probabilities: Some(all),
            } => {
                let all: Vec<String> = all.iter().map(|p| format!("{p:.6}")).collect();
                say!(
                    "{row},{},{probability:.6},{}",
                    csv_field(class),
                    all.join(";")
                );
            }
            Prediction::Value { row, values } => {
                let v: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                say!("{row},{}", v.join(";"));
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
        /// Every class's probability, by class index (`--all-probabilities`).
        #[serde(skip_serializing_if = "Option::is_none")]
        probabilities: Option<Vec<f32>>,
    },
    Value {
        row: usize,
        values: Vec<f32>,
    },
}

impl Prediction {
    /// Leaves out every class's probability (only the predicted class's is printed).
    fn drop_probabilities(&mut self) {
        if let Prediction::Class { probabilities, .. } = self {
            *probabilities = None;
        }
    }
}
