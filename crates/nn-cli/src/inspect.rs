//! `nn inspect`: architecture, parameters, metadata, format version and checksum of a file.

use std::path::Path;

use anyhow::{Result, bail};
use nn_io::{FileKind, LoadedModel, Metadata, container};
use nn_layers::{Context, LayerConfig, Registry};

use crate::output::say;

/// Runs `nn inspect`.
pub fn run(path: &Path) -> Result<()> {
    let bytes = container::read_file(path)?;
    let kind = if bytes.starts_with(FileKind::Checkpoint.magic()) {
        FileKind::Checkpoint
    } else {
        FileKind::Model
    };
    header(path, &bytes, kind)?;
    let registry = Registry::new();
    let (loaded, state) = match kind {
        FileKind::Model => (nn_io::model_from_bytes(&bytes, path, &registry)?, None),
        FileKind::Checkpoint => {
            let (l, s) = nn_cli::settings::checkpoint_from_bytes(&bytes, path, &registry)?;
            (l, Some(s))
        }
    };
    if let Some(s) = &state {
        say!(
            "checkpoint:  after epoch {}, step {}",
            s.trainer.epoch,
            s.trainer.step
        );
    }
    architecture(&loaded, &registry)?;
    metadata(&loaded.metadata)
}

/// The file's frame: size, kind, format version, payload length and checksum.
fn header(path: &Path, bytes: &[u8], kind: FileKind) -> Result<()> {
    let header = container::parse_header(bytes, kind, path)?;
    let computed = crc32fast::hash(&bytes[container::HEADER_LEN..]);
    say!("file:        {} ({} bytes)", path.display(), bytes.len());
    let name = match kind {
        FileKind::Model => "model",
        FileKind::Checkpoint => "checkpoint",
    };
    say!("kind:        {name}");
    say!(
        "format:      version {} (this build reads 1 to {})",
        header.version,
        nn_io::FORMAT_VERSION
    );
    say!("payload:     {} bytes", header.payload_len);
    if computed != header.checksum {
        say!(
            "checksum:    MISMATCH (stored {:08x}, computed {computed:08x})",
            header.checksum
        );
        bail!("{}: checksum mismatch: the file is corrupt", path.display());
    }
    say!("checksum:    {:08x} (ok)", header.checksum);
    Ok(())
}

/// One line per layer: its name, output shape and parameter count, from the layers'
/// configurations (nothing is built).
fn architecture(loaded: &LoadedModel, registry: &Registry) -> Result<()> {
    let meta = &loaded.metadata;
    say!(
        "\narchitecture (input {}):",
        nn_core::Shape(meta.input_shape.clone())
    );
    say!(
        "  {:>3}  {:<24} {:<16} {:>10}",
        "#",
        "layer",
        "output",
        "parameters"
    );
    let root = loaded.model.config();
    let spec = root.spec();
    let layers: Vec<Box<dyn LayerConfig>> = match spec.layers("layers") {
        Ok(children) if spec.kind == "sequential" => children
            .iter()
            .map(|c| registry.config(c, &Context::new(registry)))
            .collect::<Result<_, _>>()?,
        _ => vec![root],
    };
    let mut shape = vec![1];
    shape.extend_from_slice(&meta.input_shape);
    let mut total = 0;
    for (i, layer) in layers.iter().enumerate() {
        shape = layer.output_shape(&shape)?;
        let n: usize = layer
            .tensors()?
            .iter()
            .filter(|t| t.trainable)
            .map(|t| t.len())
            .sum();
        total += n;
        say!(
            "  {i:>3}  {:<24} {:<16} {n:>10}",
            layer.name(),
            nn_core::Shape(shape[1..].to_vec()).to_string()
        );
    }
    say!("  total parameters: {total}");
    Ok(())
}

/// Class and feature names, label, normalisation, loss and the training summary.
fn metadata(meta: &Metadata) -> Result<()> {
    say!("\nmetadata:");
    if let Some(c) = &meta.class_names {
        say!("  classes:       {} ({})", shortened(c, 20), c.len());
    }
    if !meta.feature_names.is_empty() {
        let f = &meta.feature_names;
        say!("  features:      {} ({})", shortened(f, 8), f.len());
    }
    if let Some(l) = &meta.label {
        say!("  label column:  {l}");
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
    say!("  normalisation: {norm}");
    say!("  loss:          {}", meta.loss);
    if let Some(t) = &meta.training {
        say!(
            "  training:      {} epochs, {}, batch {}, seed {}, {} rows of {}",
            t.epochs,
            t.optimizer,
            t.batch_size,
            t.seed,
            t.train_rows,
            t.data
        );
        let acc = |a: Option<f32>| a.map_or("-".to_string(), |a| format!("{a:.4}"));
        say!(
            "  results:       train loss {:.4}, validation accuracy {}, test accuracy {}, {:.2} s",
            t.train_loss,
            acc(t.val_accuracy),
            acc(t.test_accuracy),
            t.seconds
        );
    }
    Ok(())
}

/// A list of names, the first four and the last two when there are more than `max`.
fn shortened(names: &[String], max: usize) -> String {
    if names.len() > max {
        format!(
            "{} … {}",
            names[..4].join(", "),
            names[names.len() - 2..].join(", ")
        )
    } else {
        names.join(", ")
    }
}
