//! Reading data sets for the commands: a CSV file or an MNIST-style IDX folder.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ndarray::IxDyn;
use nn_core::{Tensor, limits};
use nn_io::{
    CsvOptions, Dataset, FASHION_MNIST_CLASSES, LabelKind, Limits, Metadata, Normalization, Targets,
};

pub use nn_cli::settings::Task;

/// A data source as given on the command line.
pub struct Source {
    /// Rows to train on (the train part of an IDX folder, or the whole CSV file).
    pub main: Dataset,
    /// The test part of an IDX folder (`t10k`).
    pub test: Option<Dataset>,
}

/// How to read a source: the label column and the columns a model expects.
pub struct Request<'a> {
    /// The label column of a CSV file.
    pub label: Option<&'a str>,
    /// Classes or values.
    pub task: Task,
    /// The class names labels must be one of (a model's), or `None` to take them from the data.
    pub class_names: Option<Vec<String>>,
    /// The feature columns to read by name (a model's), or `None` for every other column.
    pub features: Option<Vec<String>>,
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

/// Loads `path`: a folder of IDX files (both its `train` and `t10k` parts, which must be
/// whole) or a CSV file read as `req` says.
pub fn load(path: &Path, req: &Request<'_>) -> Result<Source> {
    if path.is_dir() {
        return load_idx(path, req.class_names.clone());
    }
    if !path.exists() {
        bail!("{}: no such file or folder", path.display());
    }
    let Some(label) = req.label else {
        bail!(
            "{}: --label COLUMN is needed to read a CSV file",
            path.display()
        );
    };
    let opts = CsvOptions {
        label: label.to_string(),
        kind: match req.task {
            Task::Classify => LabelKind::Classes,
            Task::Regress => LabelKind::Values,
        },
        class_names: req.class_names.clone(),
        features: req.features.clone(),
        limits: Limits::from_env().map_err(anyhow::Error::msg)?,
    };
    let main = nn_io::read_csv(path, &opts)?;
    note_ignored(path, &main.ignored_columns);
    Ok(Source { main, test: None })
}

/// Says which columns of `path` were skipped, if any.
pub fn note_ignored(path: &Path, ignored: &[String]) {
    if ignored.is_empty() {
        return;
    }
    let shown: Vec<String> = ignored.iter().take(8).map(|c| limits::excerpt(c)).collect();
    let more = if ignored.len() > 8 {
        format!(" and {} more", ignored.len() - 8)
    } else {
        String::new()
    };
    eprintln!(
        "note: {}: ignoring column(s) {}{more}, which the model does not use",
        path.display(),
        shown.join(", ")
    );
}

/// Both parts of an IDX folder; a missing or broken part is an error naming its file, never
/// replaced by rows of the other part.
fn load_idx(path: &Path, class_names: Option<Vec<String>>) -> Result<Source> {
    let part = |name: &str| {
        nn_io::load_idx_dir(path, name).with_context(|| {
            format!(
                "{}: the `{name}` part of the IDX folder cannot be read (an IDX folder needs whole `train` and `t10k` parts)",
                path.display()
            )
        })
    };
    let mut main = part("train")?;
    let mut test = part("t10k")?;
    let k = main
        .num_classes()
        .unwrap_or(0)
        .max(test.num_classes().unwrap_or(0));
    let names = class_names.unwrap_or_else(|| idx_class_names(path, k));
    for d in [&mut main, &mut test] {
        if let Some((i, &c)) = d
            .classes()
            .into_iter()
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
        d.class_names = Some(names.clone());
    }
    Ok(Source {
        main,
        test: Some(test),
    })
}

/// Brings raw inputs to what a model expects: its normalisation, then its row shape.
pub fn prepare(mut x: Tensor, meta: &Metadata, source: &Path) -> Result<Tensor> {
    let n = x.shape().first().copied().unwrap_or(0);
    let per_row = limits::elements(|| "input row".into(), x.shape().get(1..).unwrap_or(&[]))?;
    let want = limits::elements(|| "model input".into(), &meta.input_shape)?;
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
                "--normalize `{}`: expected auto, standard, minmax, none or scale:FACTOR",
                limits::excerpt(other)
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
