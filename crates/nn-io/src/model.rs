//! Model files and checkpoints: architecture, named tensors, metadata.
//!
//! A model file is a [`container`](crate::container) frame around a payload holding
//!
//! - the architecture as a [`LayerSpec`] (kinds and attributes, no weights);
//! - every named tensor (`"0.weight"`, batch norm's running statistics…) as shape + data;
//! - [`Metadata`]: the input shape, class names, feature names, normalisation statistics,
//!   the loss, and a summary of the training run.
//!
//! Loading checks everything before it builds anything. The architecture is read through a
//! [`Registry`] into validated [`LayerConfig`]s, which declare the tensors the model will
//! own and the output shapes it will produce, computed with checked arithmetic against the
//! [`limits`]. The stored tensors must be exactly the declared ones (names
//! and shapes), finite, and within each tensor's domain (a running variance is never
//! negative); the metadata must fit the architecture (input shape, class count,
//! normalisation statistics, finite and positive where they divide). Only then is the model
//! built, so a file that claims a layer larger than the bytes it holds is refused without
//! allocating for it.
//!
//! A checkpoint is the same payload plus the training state (optimizer state, epoch, step,
//! RNG): resuming from it continues exactly where training stopped.

use std::collections::HashMap;
use std::path::Path;

use nn_core::{TensorData, limits};
use nn_layers::weights::{self, Weights};
use nn_layers::{Attr, Context, Domain, Layer, LayerConfig, LayerSpec, Registry, TensorSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::container::{FileKind, Header, frame, read_file, unframe, write_atomic};
use crate::dataset::Normalization;
use crate::error::{Error, Result};
use crate::limits::MAX_NAME_BYTES;

/// What a model needs besides its weights to be used on new data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Metadata {
    /// Shape of one input row, without the batch axis (`[64]`, `[1, 28, 28]`).
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, { limits::MAX_RANK }>")]
    pub input_shape: Vec<usize>,
    /// Class names by index, for classifiers.
    #[serde(deserialize_with = "nn_core::bounded::option_vec::<_, _, { limits::MAX_CLASSES }>")]
    pub class_names: Option<Vec<String>>,
    /// Names of the input features (CSV columns), in order.
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, MAX_FEATURE_NAMES>")]
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

impl Metadata {
    /// Checks the metadata on its own and against the model's configuration `model`: the
    /// input shape within the limits and accepted by the model, class and feature names
    /// bounded, distinct and as many as the model's outputs and inputs, normalisation
    /// statistics finite, positive where they divide, one per input value.
    ///
    /// # Errors
    /// A sentence naming the field and the values that disagree.
    pub fn validate(&self, model: &dyn LayerConfig) -> Result<(), String> {
        let features = self.check_input_shape()?;
        let mut input = vec![1];
        input.extend_from_slice(&self.input_shape);
        let out = model
            .output_shape(&input)
            .map_err(|e| format!("the architecture does not take the input shape: {e}"))?;
        if let Some(names) = &self.class_names {
            check_names("class", names, limits::MAX_CLASSES)?;
            self.check_classes(names.len(), &out)?;
        }
        if !self.feature_names.is_empty() {
            check_names("feature", &self.feature_names, features)?;
            if self.feature_names.len() != features {
                return Err(format!(
                    "{} feature names for an input of {features} values",
                    self.feature_names.len()
                ));
            }
        }
        if let Some(n) = &self.normalization {
            n.validate(features)
                .map_err(|e| format!("normalisation: {e}"))?;
        }
        Ok(())
    }

    /// What one row of the model's outputs `z` means: the probability of each class —
    /// `softmax(z)` for softmax cross-entropy, `[1 − σ(z), σ(z)]` for a one-logit binary
    /// cross-entropy model — or `None` for a regression (`mse`) model, whose outputs are the
    /// values themselves. `nn predict` and the browser bindings both answer with this.
    pub fn class_probabilities(&self, z: ndarray::ArrayView1<'_, f32>) -> Option<Vec<f32>> {
        match self.loss.as_str() {
            "mse" => None,
            "bce_with_logits" => {
                let p1 = nn_layers::activation::sigmoid(z[0]); // P(class 1) = σ(z)
                Some(vec![1.0 - p1, p1])
            }
            _ => {
                let mut p = ndarray::Array1::zeros(z.len());
                nn_core::softmax::softmax_row(z, p.view_mut());
                Some(p.to_vec())
            }
        }
    }

    /// The input shape's element count, checked.
    fn check_input_shape(&self) -> Result<usize, String> {
        let s = &self.input_shape;
        if s.is_empty() || s.contains(&0) || s.len() >= limits::MAX_RANK {
            return Err(format!(
                "input shape {} must have 1 to {} positive sizes",
                nn_core::Shape(s.clone()),
                limits::MAX_RANK - 1
            ));
        }
        limits::elements(|| "input row".into(), s).map_err(|e| e.to_string())
    }

    /// The output a classifier of `k` classes needs: `[1, k]` for softmax cross-entropy,
    /// `[1, 1]` with two classes for binary cross-entropy.
    fn check_classes(&self, k: usize, out: &[usize]) -> Result<(), String> {
        let ok = match self.loss.as_str() {
            "softmax_cross_entropy" => out == [1, k],
            "bce_with_logits" => out == [1, 1] && k == 2,
            _ => true,
        };
        if k < 2 || !ok {
            return Err(format!(
                "{k} class names for a `{}` model whose output is {}",
                self.loss,
                nn_core::Shape(out[1..].to_vec())
            ));
        }
        Ok(())
    }
}

/// At most `max` names, each at most [`MAX_NAME_BYTES`] long, no two alike.
fn check_names(what: &str, names: &[String], max: usize) -> Result<(), String> {
    if names.len() > max {
        return Err(format!(
            "{} {what} names, more than the limit of {max}",
            names.len()
        ));
    }
    if let Some(n) = names.iter().find(|n| n.len() > MAX_NAME_BYTES) {
        return Err(format!(
            "a {what} name of {} bytes, more than the limit of {MAX_NAME_BYTES}",
            n.len()
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    if let Some(n) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(format!(
            "the {what} name `{}` appears twice",
            limits::excerpt(n)
        ));
    }
    Ok(())
}

/// One layer of the architecture as stored: nested layers are referred to by index into
/// the flat list instead of being nested, so decoding a file never recurses deeper than
/// the fixed structure of these types, whatever a hostile file holds.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredLayer {
    kind: String,
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, MAX_ATTRS>")]
    attrs: Vec<(String, StoredAttr)>,
}

/// [`Attr`] with nested layers replaced by indices.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) enum StoredAttr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(#[serde(deserialize_with = "nn_core::bounded::vec::<_, _, MAX_ATTRS>")] Vec<i64>),
    Layers(
        #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, { limits::MAX_LAYERS }>")]
        Vec<u32>,
    ),
}

/// The most attributes a stored layer may have, and integers a list attribute may hold.
const MAX_ATTRS: usize = 64;

/// The most tensors a model file may hold (every built-in layer has at most four).
pub const MAX_TENSORS: usize = 1 << 16;

/// The most feature names a model may keep.
pub const MAX_FEATURE_NAMES: usize = 1 << 20;

/// How deep containers may nest in a file.
const MAX_DEPTH: usize = nn_layers::sequential::MAX_DEPTH;

/// Appends `spec` and its nested layers to `out` (parents before children); returns its index.
pub(crate) fn flatten(spec: &LayerSpec, out: &mut Vec<StoredLayer>) -> u32 {
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

/// The architecture stored as `layers`: the spec tree rooted at layer 0, in which every
/// stored layer is used exactly once, by a parent stored before it, within [`MAX_DEPTH`]
/// levels, and there are at most [`limits::MAX_LAYERS`] layers besides the root.
pub(crate) fn architecture(layers: &[StoredLayer]) -> Result<LayerSpec, String> {
    if layers.len() > limits::MAX_LAYERS + 1 {
        return Err(format!(
            "{} layers, more than the limit of {}",
            layers.len() - 1,
            limits::MAX_LAYERS
        ));
    }
    let mut used = vec![false; layers.len()];
    let spec = unflatten(layers, 0, 0, &mut used)?;
    match used.iter().position(|u| !u) {
        Some(i) => Err(format!("layer {i} is not part of the model")),
        None => Ok(spec),
    }
}

/// Rebuilds the spec tree rooted at `index`; the recursion is bounded by [`MAX_DEPTH`].
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

/// The payload of a model file. Every list in it has a bound (`nn_core::bounded`), so a
/// crafted file of many tiny entries cannot decode to many times its size.
#[derive(Serialize, Deserialize)]
pub(crate) struct ModelPayload {
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, { limits::MAX_LAYERS + 1 }>")]
    pub(crate) layers: Vec<StoredLayer>,
    #[serde(deserialize_with = "nn_core::bounded::vec::<_, _, MAX_TENSORS>")]
    pub(crate) tensors: Vec<(String, TensorData)>,
    pub(crate) metadata: Metadata,
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

/// The payload of `model`, checked as the loader will check it, so that every file saved
/// can be loaded again: a model with too many layers, a non-finite weight or metadata
/// that does not fit it is refused here, before anything is written.
pub(crate) fn payload(
    model: &mut dyn Layer,
    metadata: &Metadata,
    path: &Path,
) -> Result<ModelPayload> {
    let tensors = weights::snapshot(model);
    let cfg = model.config();
    let mut layers = Vec::new();
    flatten(&cfg.spec(), &mut layers);
    let refuse = |m: String| encode_err(path, format!("the file would not load again: {m}"));
    architecture(&layers).map_err(|m| refuse(format!("architecture: {m}")))?;
    let declared = cfg.tensors().map_err(|e| refuse(e.to_string()))?;
    // the check consumes what it checks; the tensors go into the payload unchanged
    let stored = check_tensors(&declared, tensors).map_err(refuse)?;
    metadata
        .validate(cfg.as_ref())
        .map_err(|m| refuse(format!("metadata: {m}")))?;
    let mut stored = stored;
    let tensors = declared
        .iter()
        .map(|d| {
            let t = stored
                .remove(&d.name)
                .expect("checked: every declared tensor is stored");
            (d.name.clone(), t)
        })
        .collect();
    Ok(ModelPayload {
        layers,
        tensors,
        metadata: metadata.clone(),
    })
}

pub(crate) fn encode_err(path: &Path, message: String) -> Error {
    Error::Save {
        path: path.to_path_buf(),
        source: std::io::Error::other(message),
    }
}

/// The bytes of a model file (header and payload).
///
/// # Errors
/// [`Error::Save`] if the model would not load again (see [`save_model`]) or the payload is
/// over the size limit.
pub fn model_bytes(model: &mut dyn Layer, metadata: &Metadata) -> Result<Vec<u8>> {
    let path = Path::new("model");
    encode_framed(FileKind::Model, &payload(model, metadata, path)?, path)
}

/// Encodes a payload and frames it; `path` names the target in an error.
fn encode_framed<T: Serialize>(kind: FileKind, payload: &T, path: &Path) -> Result<Vec<u8>> {
    let bytes = codec::encode(payload).map_err(|m| encode_err(path, m))?;
    Ok(frame(kind, &bytes))
}

/// Saves a model atomically (temporary file, sync, rename), after checking it as
/// [`load_model`] will: whatever this writes, `load_model` reads.
///
/// # Errors
/// [`Error::Save`] for a model that would not load again (too many layers, a tensor that is
/// not finite, metadata that does not fit the architecture) or a failed write; the previous
/// file at `path` is left intact.
///
/// # Example
///
/// A model saved and loaded predicts exactly as before; a damaged file is refused.
///
/// ```
/// use nn_core::{Buffer, ndarray::Array2};
/// use nn_io::{Metadata, load_model, save_model};
/// use nn_layers::{Dense, DenseConfig, Layer, Mode, Registry, Sequential, Tanh};
///
/// let mut rng = nn_core::seeded(9);
/// let mut net = Sequential::new()
///     .with(Dense::new(&DenseConfig::new(3, 5), &mut rng)?)
///     .with(Tanh::new())
///     .with(Dense::new(&DenseConfig::new(5, 2), &mut rng)?);
/// let meta = Metadata {
///     input_shape: vec![3],
///     class_names: Some(vec!["no".into(), "yes".into()]),
///     loss: "softmax_cross_entropy".into(),
///     ..Metadata::default()
/// };
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("model.nnm");
/// save_model(&path, &mut net, &meta)?;
///
/// let mut loaded = load_model(&path, &Registry::default())?;
/// assert_eq!(loaded.metadata, meta);
/// let x = Array2::from_shape_fn((4, 3), |(i, j)| (i as f32 - j as f32) / 3.0).into_dyn();
/// let (mut before, mut after) = (Buffer::new(), Buffer::new());
/// net.forward(x.view(), &mut before, Mode::Eval)?;
/// loaded.model.forward(x.view(), &mut after, Mode::Eval)?;
/// assert_eq!(before.as_slice(), after.as_slice());
///
/// let mut bytes = std::fs::read(&path)?;
/// let last = bytes.len() - 1;
/// bytes[last] ^= 1; // one flipped bit
/// std::fs::write(&path, &bytes)?;
/// assert!(load_model(&path, &Registry::default()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_model(path: &Path, model: &mut dyn Layer, metadata: &Metadata) -> Result<()> {
    let framed = encode_framed(FileKind::Model, &payload(model, metadata, path)?, path)?;
    write_atomic(path, |w| w.write_all(&framed))
}

/// Loads a model: checks magic, version, length and checksum, decodes with a byte limit,
/// rebuilds the architecture through `registry` and checks every tensor's shape.
///
/// # Errors
/// One variant per failed check, each naming the file: [`Error::Io`],
/// [`Error::NotThisFile`], [`Error::NewerVersion`], [`Error::Length`], [`Error::Checksum`],
/// [`Error::Decode`], [`Error::Spec`] (e.g. an unregistered layer kind), [`Error::Tensor`].
///
/// # Example
///
/// [`save_model`]'s example saves a model, loads it with this function, compares the two
/// models' outputs and shows a damaged file refused.
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

/// Reads the architecture, checks the stored tensors and the metadata against it, and only
/// then builds the model and moves the tensors into it.
pub(crate) fn rebuild(
    p: ModelPayload,
    path: &Path,
    registry: &Registry,
) -> Result<(Box<dyn Layer>, Metadata)> {
    let decode_err = |message: String| Error::Decode {
        path: path.to_path_buf(),
        message,
    };
    let spec_err = |source| Error::Spec {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let spec = architecture(&p.layers).map_err(|m| decode_err(format!("architecture: {m}")))?;
    let cfg = registry
        .config(&spec, &Context::new(registry))
        .map_err(spec_err)?;
    let declared = cfg.tensors().map_err(spec_err)?;
    let mut stored = check_tensors(&declared, p.tensors).map_err(|message| Error::Tensor {
        path: path.to_path_buf(),
        message,
    })?;
    p.metadata
        .validate(cfg.as_ref())
        .map_err(|m| decode_err(format!("metadata: {m}")))?;
    let mut model = cfg.build(&mut nn_core::seeded(0)).map_err(spec_err)?;
    // in declared order, which is the built model's visiting order
    let tensors: Weights = declared
        .iter()
        .filter_map(|d| Some((d.name.clone(), stored.remove(&d.name)?)))
        .collect();
    weights::restore(model.as_mut(), &tensors).map_err(|e| Error::Tensor {
        path: path.to_path_buf(),
        message: format!("the built model differs from what its configuration declared: {e}"),
    })?;
    Ok((model, p.metadata))
}

/// The stored tensors by name, once they are exactly the `declared` ones: the same names
/// and shapes, no more, no fewer, finite and within their domains.
fn check_tensors(
    declared: &[TensorSpec],
    stored: Vec<(String, TensorData)>,
) -> Result<HashMap<String, TensorData>, String> {
    if stored.len() > declared.len() {
        let extra = stored
            .iter()
            .map(|(n, _)| n)
            .find(|n| !declared.iter().any(|d| &d.name == *n))
            .map_or_else(|| stored[0].0.clone(), |n| n.clone());
        return Err(format!(
            "tensor `{}` is not part of the architecture",
            limits::excerpt(&extra)
        ));
    }
    let mut by_name = HashMap::with_capacity(stored.len());
    for (name, t) in stored {
        if by_name.contains_key(&name) {
            return Err(format!(
                "tensor `{}` is stored twice",
                limits::excerpt(&name)
            ));
        }
        by_name.insert(name, t);
    }
    for d in declared {
        let Some(t) = by_name.get(&d.name) else {
            return Err(format!(
                "tensor `{}` required by the architecture is missing",
                d.name
            ));
        };
        check_tensor(d, t)?;
    }
    if let Some(name) = by_name
        .keys()
        .find(|n| !declared.iter().any(|d| &d.name == *n))
    {
        return Err(format!(
            "tensor `{}` is not part of the architecture",
            limits::excerpt(name)
        ));
    }
    Ok(by_name)
}

/// One stored tensor against its declaration: shape, length, finite values in the domain.
fn check_tensor(d: &TensorSpec, t: &TensorData) -> Result<(), String> {
    if t.shape != d.shape {
        return Err(format!(
            "tensor `{}` has shape {}, the architecture needs {}",
            d.name,
            nn_core::Shape(t.shape.clone()),
            nn_core::Shape(d.shape.clone())
        ));
    }
    if t.data.len() != d.len() {
        return Err(format!(
            "tensor `{}` holds {} values for shape {}",
            d.name,
            t.data.len(),
            nn_core::Shape(d.shape.clone())
        ));
    }
    let bad = t.data.iter().position(|v| match d.domain {
        Domain::Real => !v.is_finite(),
        Domain::NonNegative => !(v.is_finite() && *v >= 0.0),
    });
    if let Some(i) = bad {
        let want = match d.domain {
            Domain::Real => "finite",
            Domain::NonNegative => "finite and ≥ 0",
        };
        return Err(format!(
            "tensor `{}` holds {} at index {i}; its values must be {want}",
            d.name, t.data[i]
        ));
    }
    Ok(())
}

/// Saves a checkpoint: the model and any serialisable training state.
///
/// # Errors
/// [`Error::Save`]; the previous file at `path` is left intact.
///
/// # Example
///
/// The state can be any serialisable value; `nn train` stores the trainer's and the
/// optimizer's (`nn_optim::TrainerState`, `OptimizerState`).
///
/// ```
/// use nn_io::{Metadata, load_checkpoint, save_checkpoint};
/// use nn_layers::{Dense, DenseConfig, Layer, Registry};
///
/// let mut dense = Dense::new(&DenseConfig::new(2, 1), &mut nn_core::seeded(4))?;
/// let meta = Metadata { input_shape: vec![2], loss: "mse".into(), ..Metadata::default() };
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("run.ckpt");
/// save_checkpoint(&path, &mut dense, &meta, &(7usize, "after epoch 7".to_string()))?;
///
/// let (mut loaded, state): (_, (usize, String)) = load_checkpoint(&path, &Registry::default())?;
/// assert_eq!(state, (7, "after epoch 7".to_string()));
/// assert_eq!(loaded.model.num_params(), 3);
/// // a model file is not a checkpoint: the kinds are told apart
/// let model = dir.path().join("model.nnm");
/// nn_io::save_model(&model, &mut dense, &meta)?;
/// assert!(load_checkpoint::<(usize, String)>(&model, &Registry::default()).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_checkpoint<S: Serialize>(
    path: &Path,
    model: &mut dyn Layer,
    metadata: &Metadata,
    state: &S,
) -> Result<()> {
    let p = CheckpointPayload {
        model: payload(model, metadata, path)?,
        state,
    };
    let framed = encode_framed(FileKind::Checkpoint, &p, path)?;
    write_atomic(path, |w| w.write_all(&framed))
}

/// Loads a checkpoint saved by [`save_checkpoint`] (whose example loads one back).
///
/// # Errors
/// As [`load_model`].
pub fn load_checkpoint<S: DeserializeOwned>(
    path: &Path,
    registry: &Registry,
) -> Result<(LoadedModel, S)> {
    let bytes = read_file(path)?;
    checkpoint_from_bytes(&bytes, path, registry)
}

/// As [`load_checkpoint`], from bytes in memory; `path` names them in messages.
///
/// # Errors
/// As [`load_model`].
pub fn checkpoint_from_bytes<S: DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
    registry: &Registry,
) -> Result<(LoadedModel, S)> {
    let (header, body) = unframe(bytes, FileKind::Checkpoint, path)?;
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
