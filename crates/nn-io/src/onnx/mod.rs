//! ONNX export: a trained model as an ONNX graph (opset [`OPSET`]) that ONNX Runtime and
//! other runtimes run.
//!
//! The graph takes raw features, as `nn predict` does: the input `input` has shape
//! `[batch, …input_shape]` (`batch` is a dynamic axis) and the model's normalisation comes
//! first as nodes, `x' = (x − μ)/σ` (`Sub`, `Div`), `x' = (x − min)/(max − min)` or
//! `x' = x·s` (`Mul`). Then one node per layer:
//!
//! | layer          | ONNX                                                          |
//! |----------------|---------------------------------------------------------------|
//! | `dense`        | `Gemm(x, W, b)`, `transB = 1`: `y = x·Wᵀ + b`                 |
//! | `conv2d`       | `Conv` with `kernel_shape`, `strides`, `pads`                 |
//! | `maxpool2d`    | `MaxPool`, `avgpool2d` → `AveragePool` (no padding, floor)    |
//! | `batchnorm`    | `BatchNormalization` with the running statistics (inference)  |
//! | activations    | `Relu`, `Sigmoid`, `Tanh`, `LeakyRelu(alpha)`, `Identity`     |
//! | `softmax`      | `Softmax(axis = 1)`; `flatten` → `Flatten(axis = 1)`          |
//! | `dropout`      | nothing: at inference dropout is the identity                 |
//!
//! Outputs: `logits`, the network's output `[batch, k]`; and for classifiers
//! `probabilities`, `softmax(logits)` over axis 1 (softmax cross-entropy models) or
//! `σ(logits)`, the probability of class 1 (binary cross-entropy models). The model's
//! `metadata_props` hold the class names (`class_names`, JSON) and feature names.
//!
//! A layer kind with no ONNX form (a custom layer) is refused by name.

pub mod proto;

use std::collections::HashMap;
use std::path::Path;

use nn_core::TensorData;
use nn_layers::{Layer, LayerSpec};
use prost::Message;

use crate::container::write_atomic;
use crate::dataset::Normalization;
use crate::error::{Error, Result};
use crate::model::{self, Metadata};
use proto::*;

/// The ONNX operator set the exported graphs use.
pub const OPSET: i64 = 13;

/// The ONNX IR version written (IR 7 goes with opset 13).
pub const IR_VERSION: i64 = 7;

/// The graph being built: nodes, constants and the name of the latest value.
struct Graph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Weights by name, taken as their layers are reached.
    weights: HashMap<String, TensorData>,
    /// The value the next node reads.
    current: String,
    /// Values made so far, for fresh names.
    made: usize,
}

/// The ONNX bytes of `model` (see the module docs).
///
/// # Errors
/// [`Error::Export`] naming a layer kind with no ONNX form; [`Error::Save`] if the model
/// would not load again (as [`save_model`](crate::save_model) checks).
pub fn export_onnx(model: &mut dyn Layer, metadata: &Metadata) -> Result<Vec<u8>> {
    let path = Path::new("onnx export");
    let payload = model::payload(model, metadata, path)?;
    let spec = model::architecture(&payload.layers).map_err(|m| model::encode_err(path, m))?;
    let mut g = Graph {
        nodes: Vec::new(),
        initializers: Vec::new(),
        weights: payload.tensors.into_iter().collect(),
        current: "input".into(),
        made: 0,
    };
    if let Some(n) = &metadata.normalization {
        g.normalize(n, &metadata.input_shape);
    }
    g.layer(&spec, "")?;
    let mut input_shape = vec![1];
    input_shape.extend_from_slice(&metadata.input_shape);
    let out = (model.config().output_shape(&input_shape))
        .map_err(|e| model::encode_err(path, e.to_string()))?;
    let outputs = g.outputs(metadata, &batched(&out));
    let input_shape = batched(&input_shape);
    let graph = GraphProto {
        node: g.nodes,
        name: Some("nn".into()),
        initializer: g.initializers,
        input: vec![value_info("input", &input_shape)],
        output: outputs,
    };
    Ok(model_proto(graph, metadata).encode_to_vec())
}

/// Writes [`export_onnx`]'s bytes to `path` atomically.
///
/// # Errors
/// As [`export_onnx`]; [`Error::Save`] for a failed write (the previous file at `path` is
/// left intact).
pub fn save_onnx(path: &Path, model: &mut dyn Layer, metadata: &Metadata) -> Result<()> {
    let bytes = export_onnx(model, metadata)?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// The model around `graph`: IR version, opset, producer, metadata.
fn model_proto(graph: GraphProto, metadata: &Metadata) -> ModelProto {
    let mut props = Vec::new();
    let mut prop = |k: &str, v: String| {
        props.push(StringStringEntryProto {
            key: Some(k.into()),
            value: Some(v),
        })
    };
    if let Some(names) = &metadata.class_names {
        prop(
            "class_names",
            serde_json::to_string(names).unwrap_or_default(),
        );
    }
    if !metadata.feature_names.is_empty() {
        let names = serde_json::to_string(&metadata.feature_names).unwrap_or_default();
        prop("feature_names", names);
    }
    prop("loss", metadata.loss.clone());
    ModelProto {
        ir_version: Some(IR_VERSION),
        producer_name: Some("nn".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        doc_string: Some(
            "inputs: raw features; outputs: logits and, for classifiers, probabilities".into(),
        ),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(OPSET),
        }],
        metadata_props: props,
    }
}

/// `shape` with its first (batch) axis marked dynamic (`-1`).
fn batched(shape: &[usize]) -> Vec<i64> {
    std::iter::once(-1)
        .chain(shape.iter().skip(1).map(|&d| d as i64))
        .collect()
}

/// A float tensor value of `shape`, `-1` standing for the dynamic `batch` axis.
fn value_info(name: &str, shape: &[i64]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .map(|&d| Dimension {
            dim_value: (d >= 0).then_some(d),
            dim_param: (d < 0).then(|| "batch".to_string()),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        i: Some(i),
        r#type: Some(attribute_type::INT),
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        ints: v.to_vec(),
        r#type: Some(attribute_type::INTS),
        ..Default::default()
    }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        f: Some(f),
        r#type: Some(attribute_type::FLOAT),
        ..Default::default()
    }
}

/// An attribute the exported layer's complete spec holds (its configuration wrote every
/// one), read with the spec's own getters.
fn attr<T>(read: nn_layers::Result<T>) -> Result<T> {
    read.map_err(|e| Error::Export {
        format: "ONNX",
        message: e.to_string(),
    })
}

/// An integer pair attribute (`kernel`, `stride`, `padding`) as ONNX integers.
fn pair(spec: &LayerSpec, key: &str) -> Result<[i64; 2]> {
    let (a, b) = attr(spec.pair_or(key, (0, 0)))?;
    Ok([a as i64, b as i64])
}

/// A number attribute (`alpha`, `eps`) as an ONNX float.
fn number(spec: &LayerSpec, key: &str) -> Result<f32> {
    Ok(attr(spec.float(key))? as f32)
}

impl Graph {
    /// Appends a node reading `current` (then `extra`) and makes its output current.
    fn node(&mut self, op: &str, name: &str, extra: &[String], attribute: Vec<AttributeProto>) {
        self.made += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.made);
        let mut input = vec![std::mem::replace(&mut self.current, out.clone())];
        input.extend_from_slice(extra);
        self.nodes.push(NodeProto {
            input,
            output: vec![out],
            name: Some(format!("{name}{op}")),
            op_type: Some(op.into()),
            attribute,
        });
    }

    /// Adds a constant of `shape` and returns its name.
    fn constant(&mut self, name: &str, shape: &[usize], values: &[f32]) -> String {
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(FLOAT),
            name: Some(name.into()),
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        });
        name.into()
    }

    /// Moves the layer's weight `prefix + local` into the graph's constants.
    fn weight(&mut self, prefix: &str, local: &str) -> Option<String> {
        let name = format!("{prefix}{local}");
        let t = self.weights.remove(&name)?;
        Some(self.constant(&name, &t.shape, &t.data))
    }

    /// The normalisation as leading nodes; per-feature statistics take the input's shape.
    fn normalize(&mut self, n: &Normalization, input_shape: &[usize]) {
        match n {
            Normalization::Standardize { mean, std } => {
                let m = self.constant("normalization.mean", input_shape, mean);
                let s = self.constant("normalization.std", input_shape, std);
                self.node("Sub", "normalization.", &[m], vec![]); // x − μ
                self.node("Div", "normalization.", &[s], vec![]); // (x − μ)/σ
            }
            Normalization::MinMax { min, range } => {
                let m = self.constant("normalization.min", input_shape, min);
                let r = self.constant("normalization.range", input_shape, range);
                self.node("Sub", "normalization.", &[m], vec![]); // x − min
                self.node("Div", "normalization.", &[r], vec![]); // (x − min)/(max − min)
            }
            Normalization::Scale { factor } => {
                let s = self.constant("normalization.factor", &[], &[*factor]);
                self.node("Mul", "normalization.", &[s], vec![]); // x·s
            }
        }
    }

    /// The nodes of the layer `spec` whose tensors are named `prefix + local`.
    fn layer(&mut self, spec: &LayerSpec, prefix: &str) -> Result<()> {
        let simple = |op: &str| Some((op.to_string(), Vec::new()));
        let (op, attrs) = match spec.kind.as_str() {
            "sequential" => return self.children(spec, prefix),
            "dropout" => return Ok(()), // the identity at inference
            "dense" => return self.dense(prefix),
            "conv2d" => return self.conv(spec, prefix),
            "batchnorm" => return self.batchnorm(spec, prefix),
            "relu" => simple("Relu"),
            "sigmoid" => simple("Sigmoid"),
            "tanh" => simple("Tanh"),
            "identity" => simple("Identity"),
            "leaky_relu" => Some((
                "LeakyRelu".into(),
                vec![float("alpha", number(spec, "alpha")?)],
            )),
            "softmax" => Some(("Softmax".into(), vec![int("axis", 1)])),
            "flatten" => Some(("Flatten".into(), vec![int("axis", 1)])),
            "maxpool2d" | "avgpool2d" => Some(pool(spec)?),
            _ => None,
        }
        .ok_or_else(|| Error::Export {
            format: "ONNX",
            message: format!(
                "layer `{}` is a `{}`, which has no ONNX form",
                prefix.trim_end_matches('.'),
                nn_core::limits::excerpt(&spec.kind)
            ),
        })?;
        self.node(&op, prefix, &[], attrs);
        Ok(())
    }

    /// A container's children in order, the `i`-th under `prefix + "i."`.
    fn children(&mut self, spec: &LayerSpec, prefix: &str) -> Result<()> {
        for (i, l) in attr(spec.layers("layers"))?.iter().enumerate() {
            self.layer(l, &format!("{prefix}{i}."))?;
        }
        Ok(())
    }

    /// `y = x·Wᵀ + b` as `Gemm` with `transB = 1` (W is `[n_out, n_in]`).
    fn dense(&mut self, prefix: &str) -> Result<()> {
        let mut inputs: Vec<String> = self.weight(prefix, "weight").into_iter().collect();
        inputs.extend(self.weight(prefix, "bias"));
        self.node("Gemm", prefix, &inputs, vec![int("transB", 1)]);
        Ok(())
    }

    /// `Conv` with the layer's kernel, stride and symmetric zero padding.
    fn conv(&mut self, spec: &LayerSpec, prefix: &str) -> Result<()> {
        let mut inputs: Vec<String> = self.weight(prefix, "weight").into_iter().collect();
        inputs.extend(self.weight(prefix, "bias"));
        let p = pair(spec, "padding")?;
        let attrs = vec![
            ints("kernel_shape", &pair(spec, "kernel")?),
            ints("strides", &pair(spec, "stride")?),
            ints("pads", &[p[0], p[1], p[0], p[1]]), // top, left, bottom, right
        ];
        self.node("Conv", prefix, &inputs, attrs);
        Ok(())
    }

    /// `y = γ·(x − μ_run)/√(σ²_run + ε) + β`: `BatchNormalization` in inference form.
    fn batchnorm(&mut self, spec: &LayerSpec, prefix: &str) -> Result<()> {
        let inputs: Vec<String> = ["weight", "bias", "running_mean", "running_var"]
            .iter()
            .filter_map(|t| self.weight(prefix, t))
            .collect();
        let eps = number(spec, "eps")?;
        self.node(
            "BatchNormalization",
            prefix,
            &inputs,
            vec![float("epsilon", eps)],
        );
        Ok(())
    }

    /// `logits`, and `probabilities` for a classifier.
    fn outputs(&mut self, metadata: &Metadata, shape: &[i64]) -> Vec<ValueInfoProto> {
        if self.current == "input" {
            self.node("Identity", "", &[], vec![]); // an empty network: the output is a copy
        }
        let logits = std::mem::take(&mut self.current);
        self.nodes
            .iter_mut()
            .flat_map(|n| n.output.iter_mut())
            .filter(|o| **o == logits)
            .for_each(|o| *o = "logits".into());
        self.current = "logits".into();
        let mut out = vec![value_info("logits", shape)];
        let head = match metadata.loss.as_str() {
            "softmax_cross_entropy" => Some(("Softmax", vec![int("axis", 1)])),
            "bce_with_logits" => Some(("Sigmoid", vec![])),
            _ => None,
        };
        if let Some((op, attrs)) = head {
            self.node(op, "probabilities.", &[], attrs);
            let last = self.nodes.last_mut().expect("just added");
            last.output = vec!["probabilities".into()];
            out.push(value_info("probabilities", shape));
        }
        out
    }
}

/// `MaxPool`/`AveragePool` with the layer's square kernel and stride.
fn pool(spec: &LayerSpec) -> Result<(String, Vec<AttributeProto>)> {
    let [k, _] = pair(spec, "kernel")?;
    let [s, _] = pair(spec, "stride")?;
    let op = if spec.kind == "maxpool2d" {
        "MaxPool"
    } else {
        "AveragePool"
    };
    Ok((
        op.into(),
        vec![ints("kernel_shape", &[k, k]), ints("strides", &[s, s])],
    ))
}
