//! Reading data sets for the commands: a CSV file or an MNIST-style IDX folder.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ndarray::IxDyn;
use nn_core::Tensor;
use nn_io::{
    CsvOptions, Dataset, FASHION_MNIST_CLASSES, LabelKind, Metadata, Normalization, Targets,
};

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

/// A data source as given on the command line.
pub struct Source {
    /// Rows to train on (or to evaluate, for `eval`).
    pub main: Dataset,
    /// A separate test part, for IDX folders (`t10k`).
    pub test: Option<Dataset>,
}

/// Names for the `k` classes of an IDX folder: Fashion-MNIST's when the folder's name says
/// so and there are 10, else the label numbers.
fn idx_class_names(dir: &Path, k: usize) -> Vec<String> {
    let fashion = dir
        .to_string_lossy()
        .to_ascii_lowercase()
        .contains("fashion");
    if fashion && k == FASHION_MNIST_CLASSES.len() {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..k).map(|d| d.to_string()).collect()
    }
}

/// Loads `path`: a folder of IDX files (`train` as the main part, `t10k` as test) or a CSV
/// file with the label column `label`.
pub fn load(
    path: &Path,
    label: Option<&str>,
    task: Task,
    class_names: Option<Vec<String>>,
) -> Result<Source> {
    if path.is_dir() {
        let mut main = nn_io::load_idx_dir(path, "train")?;
        let mut test = nn_io::load_idx_dir(path, "t10k").ok();
        let k = main
            .num_classes()
            .unwrap_or(0)
            .max(test.as_ref().and_then(Dataset::num_classes).unwrap_or(0));
        let names = class_names.unwrap_or_else(|| idx_class_names(path, k));
        if let Some((i, &c)) = main
            .classes()
            .into_iter()
            .chain(test.as_ref().and_then(Dataset::classes))
            .flatten()
            .enumerate()
            .find(|(_, c)| **c >= names.len())
        {
            bail!(
                "{}: label {c} (row {}) is outside the model's {} classes",
                path.display(),
                i + 1,
                names.len()
            );
        }
        main.class_names = Some(names.clone());
        if let Some(t) = &mut test {
            t.class_names = Some(names);
        }
        return Ok(Source { main, test });
    }
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    let Some(label) = label else {
        bail!(
            "{}: --label COLUMN is needed to read a CSV file",
            path.display()
        );
    };
    let opts = CsvOptions {
        label: label.to_string(),
        kind: match task {
            Task::Classify => LabelKind::Classes,
            Task::Regress => LabelKind::Values,
        },
        class_names,
    };
    Ok(Source {
        main: nn_io::read_csv(path, &opts)?,
        test: None,
    })
}

/// Brings raw inputs to what a model expects: its normalisation, then its row shape.
pub fn prepare(mut x: Tensor, meta: &Metadata, source: &Path) -> Result<Tensor> {
    let n = x.shape().first().copied().unwrap_or(0);
    let per_row: usize = x.shape()[1..].iter().product();
    let want: usize = meta.input_shape.iter().product();
    if per_row != want {
        bail!(
            "{}: rows have {} values ({}), the model expects {} ({})",
            source.display(),
            per_row,
            nn_core::Shape(x.shape()[1..].to_vec()),
            want,
            nn_core::Shape(meta.input_shape.clone())
        );
    }
    if let Some(norm) = &meta.normalization {
        norm.apply(&mut x)
            .with_context(|| source.display().to_string())?;
    }
    let mut shape = vec![n];
    shape.extend_from_slice(&meta.input_shape);
    Ok(x.into_shape_with_order(IxDyn(&shape))
        .expect("element count checked"))
}

/// How to normalise inputs, from `--normalize`.
pub fn fit_normalization(
    choice: &str,
    train: &Dataset,
    is_idx: bool,
) -> Result<Option<Normalization>> {
    Ok(match choice {
        "auto" if is_idx => Some(Normalization::Scale {
            factor: 1.0 / 255.0,
        }),
        "auto" | "standard" => Some(Normalization::fit_standardize(&train.x)),
        "minmax" => Some(Normalization::fit_min_max(&train.x)),
        "none" => None,
        other => match other
            .strip_prefix("scale:")
            .and_then(|f| f.parse::<f32>().ok())
        {
            Some(f) if f.is_finite() && f != 0.0 => Some(Normalization::Scale { factor: f }),
            _ => bail!(
                "--normalize `{other}`: expected auto, standard, minmax, none or scale:FACTOR"
            ),
        },
    })
}

/// Number of classes (or of target values per row).
pub fn output_width(d: &Dataset) -> usize {
    match &d.targets {
        Targets::Classes(_) => d.num_classes().unwrap_or(0),
        Targets::Values(t) => t.shape()[1..].iter().product(),
    }
}
