//! `nn export` and `nn import`: models out to safetensors (PyTorch's names) and ONNX, and
//! weights in from safetensors files, ours or PyTorch's.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use nn_io::Metadata;
use nn_io::torch::{self, Describe};
use nn_layers::{LayerConfig, Registry};

use crate::gradcheck::parse_shape;
use crate::output::say;
use crate::spec;
use crate::train::same_file;

/// Formats `nn export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// Weights named as PyTorch's `nn.Sequential.state_dict()` names them, with our
    /// architecture and metadata in `__metadata__`.
    Safetensors,
    /// An ONNX graph (opset 13) taking raw features, with `logits` and `probabilities`
    /// outputs.
    Onnx,
}

/// Options of `nn export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A model file saved by `nn train` or `nn import`.
    #[arg(long)]
    pub model: PathBuf,
    /// The format to write.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Losses an imported model can be used with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportLoss {
    /// A classifier of k ≥ 2 outputs (softmax over the outputs).
    SoftmaxCrossEntropy,
    /// A two-class classifier of one output (σ of the output is P(class 1)).
    BceWithLogits,
    /// A regression model.
    Mse,
}

/// Options of `nn import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// A safetensors file: exported by `nn export`, or PyTorch's `state_dict()` of an
    /// `nn.Sequential` saved with `safetensors.torch.save_file`.
    #[arg(long)]
    pub weights: PathBuf,
    /// The architecture, for a file from PyTorch, e.g. "dense:16,relu,dense:3".
    #[arg(long, conflicts_with = "model_spec", requires = "input_shape")]
    pub layers: Option<String>,
    /// The architecture as a TOML or JSON spec file.
    #[arg(long, requires = "input_shape")]
    pub model_spec: Option<PathBuf>,
    /// Shape of one input row (with --layers or --model-spec), e.g. 4 or 1x28x28.
    #[arg(long)]
    pub input_shape: Option<String>,
    /// What the outputs mean (with --layers or --model-spec).
    #[arg(long, value_enum, default_value_t = ImportLoss::SoftmaxCrossEntropy)]
    pub loss: ImportLoss,
    /// Class names by output index, comma-separated (with --layers or --model-spec).
    #[arg(long)]
    pub class_names: Option<String>,
    /// The model file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Refuses an output that names the input.
fn check_out(input: &Path, in_flag: &str, out: &Path) -> Result<()> {
    if same_file(input, out) {
        bail!(
            "--out {} is the {in_flag} file; writing it would destroy the input",
            out.display()
        );
    }
    Ok(())
}

/// Runs `nn export`.
pub fn export(a: &ExportArgs) -> Result<()> {
    check_out(&a.model, "--model", &a.out)?;
    let registry = Registry::new();
    let mut loaded = nn_io::load_model(&a.model, &registry)?;
    let (model, meta) = (loaded.model.as_mut(), &loaded.metadata);
    match a.format {
        ExportFormat::Safetensors => {
            for note in torch::save_safetensors(&a.out, model, meta)? {
                say!("note: {note}");
            }
            say!(
                "exported {} to {} (safetensors, PyTorch names; `load_state_dict` of the same nn.Sequential takes it)",
                a.model.display(),
                a.out.display()
            );
        }
        ExportFormat::Onnx => {
            nn_io::onnx::save_onnx(&a.out, model, meta)?;
            let outputs = if meta.loss == "mse" {
                "`logits`"
            } else {
                "`logits` and `probabilities`"
            };
            say!(
                "exported {} to {} (ONNX opset {}): input `input` [batch, {}] of raw features, outputs {outputs}",
                a.model.display(),
                a.out.display(),
                nn_io::onnx::OPSET,
                shape_text(&meta.input_shape)
            );
        }
    }
    Ok(())
}

fn shape_text(shape: &[usize]) -> String {
    let s: Vec<String> = shape.iter().map(usize::to_string).collect();
    s.join(", ")
}

/// Runs `nn import`.
pub fn import(a: &ImportArgs) -> Result<()> {
    check_out(&a.weights, "--weights", &a.out)?;
    let registry = Registry::new();
    let describe = describe(a, &registry)?;
    let mut imported = torch::load_safetensors(&a.weights, describe, &registry)?;
    nn_io::save_model(&a.out, imported.model.as_mut(), &imported.metadata)?;
    say!(
        "imported {} ({} parameters) from {}: saved {}",
        imported.model.name(),
        imported.model.num_params(),
        a.weights.display(),
        a.out.display()
    );
    Ok(())
}

/// The architecture and metadata the user gave, or the file's own.
fn describe(a: &ImportArgs, registry: &Registry) -> Result<Describe> {
    let specs = match (&a.layers, &a.model_spec) {
        (Some(l), _) => spec::parse_layers(l)?,
        (None, Some(f)) => spec::read_spec_file(f)?,
        (None, None) => {
            if a.input_shape.is_some() || a.class_names.is_some() {
                bail!(
                    "--input-shape and --class-names go with --layers or --model-spec (a file exported by nn carries its own)"
                );
            }
            return Ok(Describe::FromFile);
        }
    };
    let input = parse_shape(a.input_shape.as_deref().unwrap_or_default())?;
    let mut shape = vec![1];
    shape.extend_from_slice(&input);
    let cfg = registry.sequential(&specs, &shape)?;
    let metadata = Metadata {
        input_shape: input,
        class_names: a
            .class_names
            .as_ref()
            .map(|c| c.split(',').map(|s| s.trim().to_string()).collect()),
        loss: match a.loss {
            ImportLoss::SoftmaxCrossEntropy => "softmax_cross_entropy",
            ImportLoss::BceWithLogits => "bce_with_logits",
            ImportLoss::Mse => "mse",
        }
        .into(),
        ..Metadata::default()
    };
    Ok(Describe::Given {
        architecture: cfg.spec(),
        metadata: Box::new(metadata),
    })
}
