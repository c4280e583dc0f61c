//! PyTorch interchange: a model's weights as a safetensors file, named as PyTorch's
//! `nn.Sequential(...).state_dict()` names them.
//!
//! | here                     | PyTorch                | tensors (name: shape)                          |
//! |--------------------------|------------------------|------------------------------------------------|
//! | `dense(n_in → n_out)`    | `nn.Linear`            | `weight: [n_out, n_in]`, `bias: [n_out]`       |
//! | `conv2d(c → k, h×w)`     | `nn.Conv2d`            | `weight: [k, c, h, w]`, `bias: [k]`            |
//! | `batchnorm(c)`           | `nn.BatchNorm1d`/`2d`  | `weight`, `bias`, `running_mean`, `running_var`: `[c]`; `num_batches_tracked: []` (I64) |
//! | activations, softmax, flatten, pooling, dropout | the module of that name | none |
//! | `sequential`             | `nn.Sequential`        | its children's, prefixed by their index        |
//!
//! Every child counts towards the index, with tensors or without, so `dense, relu, dense`
//! holds `0.weight`, `0.bias`, `2.weight`, `2.bias`. Flatten keeps the channel, row,
//! column order of PyTorch's. Dropout's stream counter is this toolkit's own bookkeeping and
//! is not exported (an imported dropout starts its stream at 0); `num_batches_tracked` is
//! written as the number of training batches the model's summary records (0 without one)
//! and is checked but not kept on import.
//!
//! The file's `__metadata__` holds one entry, [`DESCRIPTION_KEY`]: the architecture and the
//! model's [`Metadata`] as one JSON object (`{"architecture": …, "metadata": …}`), so a file
//! exported here imports again without a spec. (One entry, because the `safetensors` crate
//! writes `__metadata__` from a hash map: with more, their order and the file's bytes would
//! change from one export to the next.) A file from PyTorch carries no description: the
//! importer is given the architecture and metadata. A training summary whose numbers are
//! not finite (a diverged run's loss) has no JSON form and is left out, with a note.
//!
//! A layer kind PyTorch does not have (a custom layer) keeps its own tensor names, prefixed
//! by its index; [`Export::notes`] says which.
//!
//! Importing checks before it allocates: the header's length against
//! [`MAX_HEADER_BYTES`], offsets and sizes by the `safetensors` crate, then every tensor's
//! name, dtype and shape against the architecture's declared tensors (themselves checked
//! against the limits), and finally everything [`load_model`](crate::load_model) checks.

use std::collections::HashMap;
use std::path::Path;

use nn_core::{Shape, TensorData};
use nn_layers::{Layer, LayerSpec, Registry, TensorSpec};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::container::write_atomic;
use crate::error::{Error, Result};
use crate::model::{self, Metadata, ModelPayload, StoredLayer};

/// The `__metadata__` key holding the architecture and the model's [`Metadata`] (JSON).
pub const DESCRIPTION_KEY: &str = "nn";

/// What [`DESCRIPTION_KEY`] holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Description {
    architecture: Vec<StoredLayer>,
    metadata: Metadata,
}

/// The longest safetensors header read (or written): 16 MiB.
pub const MAX_HEADER_BYTES: usize = 16 << 20;

/// Layer kinds with a PyTorch module of the same tensors.
const TORCH_KINDS: &[&str] = &[
    "dense",
    "conv2d",
    "batchnorm",
    "identity",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "softmax",
    "flatten",
    "maxpool2d",
    "avgpool2d",
    "dropout",
    "sequential",
];

/// A safetensors file ready to write, and what it could not name as PyTorch does.
#[derive(Debug)]
pub struct Export {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// One sentence per layer whose tensors keep this toolkit's names.
    pub notes: Vec<String>,
}

/// A model read from a safetensors file.
#[derive(Debug)]
pub struct Imported {
    /// The model, built from the architecture and holding the file's weights.
    pub model: Box<dyn Layer>,
    /// Its metadata (from the file, or as given).
    pub metadata: Metadata,
}

/// Where an import takes the architecture and metadata from.
#[derive(Clone, Debug)]
pub enum Describe {
    /// The file's own `__metadata__` (a file exported by this toolkit).
    FromFile,
    /// Given by the caller (a file from PyTorch): the architecture as a complete spec
    /// (widths resolved, e.g. by `Registry::sequential(..).spec()`) and the metadata.
    Given {
        /// The architecture.
        architecture: LayerSpec,
        /// The metadata: input shape, loss, names.
        metadata: Box<Metadata>,
    },
}

/// The safetensors bytes of `model` with PyTorch's names (see the module docs).
///
/// # Errors
/// [`Error::Save`] if the model would not load again (as
/// [`save_model`](crate::save_model) checks) or its header would exceed
/// [`MAX_HEADER_BYTES`].
pub fn export_safetensors(model: &mut dyn Layer, metadata: &Metadata) -> Result<Export> {
    let path = Path::new("safetensors export");
    let mut notes = Vec::new();
    let mut metadata = metadata.clone();
    if metadata
        .training
        .as_ref()
        .is_some_and(|t| !summary_is_finite(t))
    {
        metadata.training = None;
        notes.push("the training summary holds a number that is not finite (a diverged run's loss); JSON cannot hold it, so the file's description leaves the summary out".into());
    }
    let payload = model::payload(model, &metadata, path)?;
    let spec = model::architecture(&payload.layers).map_err(|m| model::encode_err(path, m))?;
    let batches = batches_trained(&metadata);
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &payload.tensors {
        let (kind, prefix, local) = owner(&spec, name);
        if !TORCH_KINDS.contains(&kind.as_str())
            && !notes
                .iter()
                .any(|n: &String| n.contains(&format!("`{prefix}`")))
        {
            notes.push(format!(
                "layer `{prefix}` ({kind}) has no PyTorch counterpart: its tensors keep their own names"
            ));
        }
        if kind == "dropout" && local == "counter" {
            continue; // this toolkit's own stream position, not a PyTorch buffer
        }
        let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        entries.push((name.clone(), Dtype::F32, t.shape.clone(), bytes));
        if kind == "batchnorm" && local == "running_var" {
            let n = format!("{prefix}.num_batches_tracked");
            entries.push((n, Dtype::I64, vec![], batches.to_le_bytes().to_vec()));
        }
    }
    let bytes = serialize(&entries, &payload).map_err(|m| model::encode_err(path, m))?;
    Ok(Export { bytes, notes })
}

/// Writes [`export_safetensors`]' bytes to `path` atomically; returns its notes.
///
/// # Errors
/// As [`export_safetensors`]; [`Error::Save`] for a failed write (the previous file at
/// `path` is left intact).
pub fn save_safetensors(
    path: &Path,
    model: &mut dyn Layer,
    metadata: &Metadata,
) -> Result<Vec<String>> {
    let export = export_safetensors(model, metadata)?;
    write_atomic(path, |w| w.write_all(&export.bytes))?;
    Ok(export.notes)
}

/// The safetensors file of `entries`, with the architecture and metadata of `payload`.
fn serialize(
    entries: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    payload: &ModelPayload,
) -> Result<Vec<u8>, String> {
    let description = serde_json::to_string(&Description {
        architecture: payload.layers.clone(),
        metadata: payload.metadata.clone(),
    })
    .map_err(|e| e.to_string())?;
    let info = HashMap::from([(DESCRIPTION_KEY.to_string(), description)]);
    let views = entries
        .iter()
        .map(|(n, d, s, b)| Ok((n.as_str(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| e.to_string())?;
    let bytes = safetensors::serialize(views, Some(info)).map_err(|e| e.to_string())?;
    header_len(&bytes)?;
    Ok(bytes)
}

/// The header length a safetensors file declares, within [`MAX_HEADER_BYTES`].
fn header_len(bytes: &[u8]) -> Result<usize, String> {
    let Some(n) = bytes.get(..8) else {
        return Err(format!(
            "{} bytes, too short for a safetensors file (8-byte header length first)",
            bytes.len()
        ));
    };
    let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
    if n > MAX_HEADER_BYTES as u64 {
        return Err(format!(
            "a header of {n} bytes, more than the limit of {MAX_HEADER_BYTES}"
        ));
    }
    Ok(n as usize)
}

/// Whether every number of a training summary is finite (JSON has no NaN or infinity).
fn summary_is_finite(t: &model::TrainingSummary) -> bool {
    let optional = |v: Option<f32>| v.is_none_or(f32::is_finite);
    t.train_loss.is_finite()
        && t.seconds.is_finite()
        && optional(t.val_accuracy)
        && optional(t.test_accuracy)
}

/// The number of training batches the metadata's summary records: epochs × ⌈rows / batch⌉.
fn batches_trained(metadata: &Metadata) -> i64 {
    metadata.training.as_ref().map_or(0, |t| {
        let per_epoch = t.train_rows.div_ceil(t.batch_size.max(1));
        i64::try_from(per_epoch.saturating_mul(t.epochs)).unwrap_or(i64::MAX)
    })
}

/// The layer owning the tensor `name` in `spec`: its kind, its prefix (`"3"`, `"1.0"`, or
/// `""` for the root) and the tensor's own name within it.
fn owner(spec: &LayerSpec, name: &str) -> (String, String, String) {
    let mut layer = spec;
    let mut prefix = Vec::new();
    let mut rest = name;
    while let Some((head, tail)) = rest.split_once('.') {
        let child = head
            .parse::<usize>()
            .ok()
            .and_then(|i| layer.layers("layers").ok()?.get(i));
        let Some(child) = child else { break };
        layer = child;
        prefix.push(head);
        rest = tail;
    }
    (layer.kind.clone(), prefix.join("."), rest.to_string())
}

/// Reads a safetensors file at `path` (see [`import_safetensors`]).
///
/// # Errors
/// As [`import_safetensors`], and [`Error::Io`]/[`Error::Length`] reading the file.
pub fn load_safetensors(path: &Path, describe: Describe, registry: &Registry) -> Result<Imported> {
    let bytes = crate::container::read_file(path)?;
    import_safetensors(&bytes, path, describe, registry)
}

/// Builds a model from safetensors `bytes` named as PyTorch names them, described by the
/// file itself or by the caller; `path` names the bytes in messages.
///
/// # Errors
/// [`Error::Safetensors`] for a malformed file (header length, JSON, offsets, sizes) or a
/// missing description; [`Error::Spec`] for an architecture the registry refuses; [`Error::Tensor`]
/// for a tensor missing, extra, of another dtype or shape, not finite or out of its domain;
/// and everything [`load_model`](crate::load_model) refuses.
pub fn import_safetensors(
    bytes: &[u8],
    path: &Path,
    describe: Describe,
    registry: &Registry,
) -> Result<Imported> {
    let decode_err = |message: String| Error::Safetensors {
        path: path.to_path_buf(),
        message,
    };
    header_len(bytes).map_err(decode_err)?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| decode_err(format!("not a valid safetensors file: {e}")))?;
    let (layers, metadata) = describe_model(bytes, describe).map_err(decode_err)?;
    let spec =
        model::architecture(&layers).map_err(|m| decode_err(format!("architecture: {m}")))?;
    let cfg = registry
        .config(&spec, &nn_layers::Context::new(registry))
        .map_err(|source| Error::Spec {
            path: path.to_path_buf(),
            source: Box::new(source),
        })?;
    let declared = cfg.tensors().map_err(|source| Error::Spec {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let tensor_err = |message: String| Error::Tensor {
        path: path.to_path_buf(),
        message,
    };
    let tensors = read_tensors(&file, &spec, &declared).map_err(tensor_err)?;
    let payload = ModelPayload {
        layers,
        tensors,
        metadata,
    };
    let (model, metadata) = model::rebuild(payload, path, registry)?;
    Ok(Imported { model, metadata })
}

/// The stored architecture and metadata, from the file's `__metadata__` or as given.
fn describe_model(
    bytes: &[u8],
    describe: Describe,
) -> Result<(Vec<StoredLayer>, Metadata), String> {
    match describe {
        Describe::Given {
            architecture,
            metadata,
        } => {
            let mut layers = Vec::new();
            model::flatten(&architecture, &mut layers);
            Ok((layers, *metadata))
        }
        Describe::FromFile => {
            let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| e.to_string())?;
            let info = header.metadata().as_ref();
            let text = info.and_then(|m| m.get(DESCRIPTION_KEY)).ok_or_else(|| {
                format!(
                    "the file's metadata has no `{DESCRIPTION_KEY}` entry (it was not exported by nn): give the architecture (--layers or --model-spec)"
                )
            })?;
            let d: Description = serde_json::from_str(text)
                .map_err(|e| format!("`__metadata__.{DESCRIPTION_KEY}`: {e}"))?;
            Ok((d.architecture, d.metadata))
        }
    }
}

/// The file's tensors in `declared` order, once each has the declared name, dtype (F32)
/// and shape, and the file holds nothing else but batch norm's `num_batches_tracked`.
fn read_tensors(
    file: &SafeTensors<'_>,
    spec: &LayerSpec,
    declared: &[TensorSpec],
) -> Result<Vec<(String, TensorData)>, String> {
    for (name, view) in file.iter() {
        let (kind, _, local) = owner(spec, name);
        if kind == "batchnorm" && local == "num_batches_tracked" {
            check_counter(name, &view)?;
        } else if !declared.iter().any(|d| d.name == name) {
            return Err(format!(
                "`{}` is in the file but the architecture has no such tensor",
                nn_core::limits::excerpt(name)
            ));
        }
    }
    declared
        .iter()
        .map(|d| read_tensor(file, spec, d))
        .collect()
}

/// Batch norm's `num_batches_tracked`: one non-negative I64.
fn check_counter(name: &str, view: &TensorView<'_>) -> Result<(), String> {
    let ok = view.dtype() == Dtype::I64
        && view.shape().is_empty()
        && i64::from_le_bytes(view.data().try_into().unwrap_or([0xff; 8])) >= 0;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be one non-negative I64 (shape []), found {:?} of shape {}",
            view.dtype(),
            Shape(view.shape().to_vec())
        ))
    }
}

/// The declared tensor `d` from the file: F32 of the declared shape. Dropout's counter,
/// which PyTorch does not have, starts at 0 when the file does not hold it.
fn read_tensor(
    file: &SafeTensors<'_>,
    spec: &LayerSpec,
    d: &TensorSpec,
) -> Result<(String, TensorData), String> {
    let view = match file.tensor(&d.name) {
        Ok(v) => v,
        Err(_) if owner(spec, &d.name).0 == "dropout" => {
            let zeros = vec![0.0; d.len()]; // declared, so within the limits
            return Ok((
                d.name.clone(),
                TensorData {
                    shape: d.shape.clone(),
                    data: zeros,
                },
            ));
        }
        Err(_) => {
            return Err(format!(
                "`{}` {} is not in the file",
                d.name,
                Shape(d.shape.clone())
            ));
        }
    };
    if view.dtype() != Dtype::F32 || view.shape() != d.shape.as_slice() {
        return Err(format!(
            "`{}` is {:?} of shape {} in the file; the architecture needs F32 of shape {}",
            d.name,
            view.dtype(),
            Shape(view.shape().to_vec()),
            Shape(d.shape.clone())
        ));
    }
    let data = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Ok((
        d.name.clone(),
        TensorData {
            shape: d.shape.clone(),
            data,
        },
    ))
}
