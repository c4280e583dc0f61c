//! Model files and checkpoints: architecture, named tensors, metadata.
//!
//! A model file is a [`container`](crate::container) frame around a payload holding
//!
//! - the architecture as a [`LayerSpec`] (kinds and attributes, no weights);
//! - every named tensor (`"0.weight"`, batch norm's running statistics…) as shape + data;
//! - [`Metadata`]: the input shape, class names, feature names, normalisation statistics,
//!   the loss, and a summary of the training run.
//!
//! Loading rebuilds the architecture through a [`Registry`] and then checks every stored
//! tensor against the shape the rebuilt layer expects: a file cannot smuggle a tensor of
//! the wrong size into a layer, and a tensor missing or left over is an error.
//!
//! A checkpoint is the same payload plus the training state (optimizer state, epoch, step,
//! RNG): resuming from it continues exactly where training stopped.

use std::collections::HashMap;
use std::path::Path;

use nn_core::TensorData;
use nn_layers::{Attr, Layer, LayerSpec, Registry, Slot};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::container::{FileKind, Header, frame, read_file, unframe, write_atomic};
use crate::dataset::Normalization;
use crate::error::{Error, Result};

/// What a model needs besides its weights to be used on new data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// Shape of one input row, without the batch axis (`[64]`, `[1, 28, 28]`).
    pub input_shape: Vec<usize>,
    /// Class names by index, for classifiers.
    pub class_names: Option<Vec<String>>,
    /// Names of the input features (CSV columns), in order.
    pub feature_names: Vec<String>,
    /// The mapping from raw inputs to what the model was trained on.
    pub normalization: Option<Normalization>,
    /// The label column the model was trained to predict (CSV data).
    pub label: Option<String>,
    /// The training loss (`softmax_cross_entropy`, `bce_with_logits`, `mse`).
    pub loss: String,
    /// How the model was trained.
    pub training: Option<TrainingSummary>,
}

/// A summary of the run that produced a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingSummary {
    /// Epochs run.
    pub epochs: usize,
    /// Optimizer and its main settings, e.g. `sgd(lr=0.1)`.
    pub optimizer: String,
    /// Rows per batch.
    pub batch_size: usize,
    /// Seed of the run.
    pub seed: u64,
    /// Training data source.
    pub data: String,
    /// Training rows.
    pub train_rows: usize,
    /// Mean training loss of the last epoch.
    pub train_loss: f32,
    /// Validation accuracy after the last epoch.
    pub val_accuracy: Option<f32>,
    /// Accuracy on held-out test rows.
    pub test_accuracy: Option<f32>,
    /// Wall-clock seconds of training.
    pub seconds: f64,
}

/// One layer of the architecture as stored: nested layers are referred to by index into
/// the flat list instead of being nested, so decoding a file never recurses deeper than
/// the fixed structure of these types, whatever a hostile file holds.
#[derive(Serialize, Deserialize)]
struct StoredLayer {
    kind: String,
    attrs: Vec<(String, StoredAttr)>,
}

/// [`Attr`] with nested layers replaced by indices.
#[derive(Serialize, Deserialize)]
enum StoredAttr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
    Layers(Vec<u32>),
}

/// How deep containers may nest in a file.
const MAX_DEPTH: usize = 64;

/// Appends `spec` and its nested layers to `out` (parents before children); returns its index.
fn flatten(spec: &LayerSpec, out: &mut Vec<StoredLayer>) -> u32 {
    let me = out.len();
    out.push(StoredLayer {
        kind: spec.kind.clone(),
        attrs: Vec::new(),
    });
    let attrs = spec
        .attrs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Attr::Int(i) => StoredAttr::Int(*i),
                Attr::Float(f) => StoredAttr::Float(*f),
                Attr::Bool(b) => StoredAttr::Bool(*b),
                Attr::Str(s) => StoredAttr::Str(s.clone()),
                Attr::Ints(v) => StoredAttr::Ints(v.clone()),
                Attr::Layers(ls) => {
                    StoredAttr::Layers(ls.iter().map(|l| flatten(l, out)).collect())
                }
            };
            (k.clone(), v)
        })
        .collect();
    out[me].attrs = attrs;
    me as u32
}

/// Rebuilds the spec tree rooted at `index`; every layer must be used exactly once, by a
/// parent stored before it, within [`MAX_DEPTH`] levels.
fn unflatten(
    layers: &[StoredLayer],
    index: usize,
    depth: usize,
    used: &mut [bool],
) -> Result<LayerSpec, String> {
    if depth > MAX_DEPTH {
        return Err(format!("layers nest deeper than {MAX_DEPTH} levels"));
    }
    let Some(l) = layers.get(index) else {
        return Err(format!(
            "layer index {index} out of range ({} layers)",
            layers.len()
        ));
    };
    if std::mem::replace(&mut used[index], true) {
        return Err(format!("layer {index} is used twice"));
    }
    let mut spec = LayerSpec::new(l.kind.clone());
    for (k, v) in &l.attrs {
        let v = match v {
            StoredAttr::Int(i) => Attr::Int(*i),
            StoredAttr::Float(f) => Attr::Float(*f),
            StoredAttr::Bool(b) => Attr::Bool(*b),
            StoredAttr::Str(s) => Attr::Str(s.clone()),
            StoredAttr::Ints(v) => Attr::Ints(v.clone()),
            StoredAttr::Layers(children) => {
                let mut specs = Vec::with_capacity(children.len().min(layers.len()));
                for &c in children {
                    if c as usize <= index {
                        return Err(format!("layer {index} refers back to layer {c}"));
                    }
                    specs.push(unflatten(layers, c as usize, depth + 1, used)?);
                }
                Attr::Layers(specs)
            }
        };
        spec.attrs.push((k.clone(), v));
    }
    Ok(spec)
}

/// The payload of a model file.
#[derive(Serialize, Deserialize)]
struct ModelPayload {
    layers: Vec<StoredLayer>,
    tensors: Vec<(String, TensorData)>,
    metadata: Metadata,
}

/// The payload of a checkpoint: a model and the training state.
#[derive(Serialize, Deserialize)]
struct CheckpointPayload<S> {
    model: ModelPayload,
    state: S,
}

/// A model read from a file.
#[derive(Debug)]
pub struct LoadedModel {
    /// The rebuilt model with its stored weights.
    pub model: Box<dyn Layer>,
    /// Its metadata.
    pub metadata: Metadata,
    /// The file's header (format version, checksum).
    pub header: Header,
}

fn payload(model: &mut dyn Layer, metadata: &Metadata) -> ModelPayload {
    let mut tensors = Vec::new();
    model.visit(&mut |name, slot| {
        let t = match slot {
            Slot::Param(p) => &p.value,
            Slot::Buffer(b) => &*b,
        };
        tensors.push((name.to_string(), TensorData::from_view(t.view())));
    });
    let mut layers = Vec::new();
    flatten(&model.spec(), &mut layers);
    ModelPayload {
        layers,
        tensors,
        metadata: metadata.clone(),
    }
}

fn encode_err(path: &Path, message: String) -> Error {
    Error::Save {
        path: path.to_path_buf(),
        source: std::io::Error::other(message),
    }
}

/// The bytes of a model file (header and payload).
///
/// # Errors
/// [`Error::Save`] if the payload cannot be encoded (over the size limit).
pub fn model_bytes(model: &mut dyn Layer, metadata: &Metadata) -> Result<Vec<u8>> {
    encode_framed(
        FileKind::Model,
        &payload(model, metadata),
        Path::new("model"),
    )
}

/// Encodes a payload and frames it; `path` names the target in an error.
fn encode_framed<T: Serialize>(kind: FileKind, payload: &T, path: &Path) -> Result<Vec<u8>> {
    let bytes = codec::encode(payload).map_err(|m| encode_err(path, m))?;
    Ok(frame(kind, &bytes))
}

/// Saves a model atomically (temporary file, sync, rename).
///
/// # Errors
/// [`Error::Save`]; the previous file at `path` is left intact.
pub fn save_model(path: &Path, model: &mut dyn Layer, metadata: &Metadata) -> Result<()> {
    let framed = encode_framed(FileKind::Model, &payload(model, metadata), path)?;
    write_atomic(path, |w| w.write_all(&framed))
}

/// Loads a model: checks magic, version, length and checksum, decodes with a byte limit,
/// rebuilds the architecture through `registry` and checks every tensor's shape.
///
/// # Errors
/// One variant per failed check, each naming the file: [`Error::Io`],
/// [`Error::NotThisFile`], [`Error::NewerVersion`], [`Error::Length`], [`Error::Checksum`],
/// [`Error::Decode`], [`Error::Spec`] (e.g. an unregistered layer kind), [`Error::Tensor`].
pub fn load_model(path: &Path, registry: &Registry) -> Result<LoadedModel> {
    let bytes = read_file(path)?;
    model_from_bytes(&bytes, path, registry)
}

/// As [`load_model`], from bytes in memory; `path` names them in messages.
///
/// # Errors
/// As [`load_model`].
pub fn model_from_bytes(bytes: &[u8], path: &Path, registry: &Registry) -> Result<LoadedModel> {
    let (header, body) = unframe(bytes, FileKind::Model, path)?;
    let p: ModelPayload = codec::decode(body).map_err(|message| Error::Decode {
        path: path.to_path_buf(),
        message,
    })?;
    let (model, metadata) = rebuild(p, path, registry)?;
    Ok(LoadedModel {
        model,
        metadata,
        header,
    })
}

/// Builds the architecture and moves the stored tensors into it, checking names and shapes.
fn rebuild(
    p: ModelPayload,
    path: &Path,
    registry: &Registry,
) -> Result<(Box<dyn Layer>, Metadata)> {
    let spec_err = |source| Error::Spec {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let tensor_err = |message: String| Error::Tensor {
        path: path.to_path_buf(),
        message,
    };
    let mut used = vec![false; p.layers.len()];
    let spec = unflatten(&p.layers, 0, 0, &mut used).map_err(|message| Error::Decode {
        path: path.to_path_buf(),
        message: format!("architecture: {message}"),
    })?;
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            message: format!("architecture: layer {i} is not part of the model"),
        });
    }
    let mut model = registry
        .build(&spec, &mut nn_core::seeded(0))
        .map_err(spec_err)?;
    let mut stored: HashMap<String, TensorData> = HashMap::with_capacity(p.tensors.len());
    for (name, t) in p.tensors {
        let expected: Option<usize> = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if expected != Some(t.data.len()) {
            return Err(tensor_err(format!(
                "tensor `{name}` holds {} values for shape {}",
                t.data.len(),
                nn_core::Shape(t.shape.clone())
            )));
        }
        if stored.insert(name.clone(), t).is_some() {
            return Err(tensor_err(format!("tensor `{name}` is stored twice")));
        }
    }
    let mut err = None;
    model.visit(&mut |name, slot| {
        if err.is_some() {
            return;
        }
        let target = match slot {
            Slot::Param(p) => &mut p.value,
            Slot::Buffer(b) => b,
        };
        match stored.remove(name) {
            None => {
                err = Some(tensor_err(format!(
                    "tensor `{name}` required by the architecture is missing"
                )))
            }
            Some(t) if t.shape != target.shape() => {
                err = Some(tensor_err(format!(
                    "tensor `{name}` has shape {}, the architecture needs {}",
                    nn_core::Shape(t.shape),
                    nn_core::Shape(target.shape().to_vec())
                )));
            }
            Some(t) => target
                .as_slice_mut()
                .expect("fresh tensors are contiguous")
                .copy_from_slice(&t.data),
        }
    });
    if let Some(e) = err {
        return Err(e);
    }
    if let Some(name) = stored.keys().min() {
        return Err(tensor_err(format!(
            "tensor `{name}` is not part of the architecture"
        )));
    }
    let mut input = vec![1];
    input.extend_from_slice(&p.metadata.input_shape);
    model.output_shape(&input).map_err(spec_err)?;
    Ok((model, p.metadata))
}

/// Saves a checkpoint: the model and any serialisable training state.
///
/// # Errors
/// [`Error::Save`]; the previous file at `path` is left intact.
pub fn save_checkpoint<S: Serialize>(
    path: &Path,
    model: &mut dyn Layer,
    metadata: &Metadata,
    state: &S,
) -> Result<()> {
    let p = CheckpointPayload {
        model: payload(model, metadata),
        state,
    };
    let framed = encode_framed(FileKind::Checkpoint, &p, path)?;
    write_atomic(path, |w| w.write_all(&framed))
}

/// Loads a checkpoint saved by [`save_checkpoint`].
///
/// # Errors
/// As [`load_model`].
pub fn load_checkpoint<S: DeserializeOwned>(
    path: &Path,
    registry: &Registry,
) -> Result<(LoadedModel, S)> {
    let bytes = read_file(path)?;
    let (header, body) = unframe(&bytes, FileKind::Checkpoint, path)?;
    let p: CheckpointPayload<S> = codec::decode(body).map_err(|message| Error::Decode {
        path: path.to_path_buf(),
        message,
    })?;
    let (model, metadata) = rebuild(p.model, path, registry)?;
    Ok((
        LoadedModel {
            model,
            metadata,
            header,
        },
        p.state,
    ))
}
