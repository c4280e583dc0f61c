//! Model files crafted byte by byte, with a correct frame (length and checksum), so that
//! whatever they hold reaches the decoder and the checks behind it. The structs mirror the
//! payload `nn-io` writes (field order is the encoding), so a crafted file is exactly what a
//! stranger with the format description could produce.

#![allow(dead_code)]

use nn::core::TensorData;
use nn::io::container::frame;
use nn::io::{FileKind, Metadata};
use serde::Serialize;

/// A layer as stored: kind, attributes, nested layers by index.
#[derive(Serialize, Clone)]
pub struct StoredLayer {
    pub kind: String,
    pub attrs: Vec<(String, StoredAttr)>,
}

/// An attribute as stored.
#[derive(Serialize, Clone)]
pub enum StoredAttr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
    Layers(Vec<u32>),
}

#[derive(Serialize)]
struct Payload<'a> {
    layers: &'a [StoredLayer],
    tensors: &'a [(String, TensorData)],
    metadata: &'a Metadata,
}

/// A layer of `kind` with integer attributes.
pub fn layer(kind: &str, attrs: &[(&str, i64)]) -> StoredLayer {
    StoredLayer {
        kind: kind.into(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), StoredAttr::Int(*v)))
            .collect(),
    }
}

/// A `sequential` root holding `children` (stored after it, at indices 1…).
pub fn sequential(children: Vec<StoredLayer>) -> Vec<StoredLayer> {
    let n = children.len() as u32;
    let mut all = vec![StoredLayer {
        kind: "sequential".into(),
        attrs: vec![("layers".into(), StoredAttr::Layers((1..=n).collect()))],
    }];
    all.extend(children);
    all
}

/// A tensor of `shape` filled with `value`.
pub fn tensor(shape: &[usize], value: f32) -> TensorData {
    TensorData {
        shape: shape.to_vec(),
        data: vec![value; shape.iter().product()],
    }
}

/// The bytes of a model file holding exactly this payload.
pub fn model_file(
    layers: &[StoredLayer],
    tensors: &[(String, TensorData)],
    metadata: &Metadata,
) -> Vec<u8> {
    let payload = Payload {
        layers,
        tensors,
        metadata,
    };
    let bytes = bincode::serde::encode_to_vec(&payload, bincode::config::standard()).unwrap();
    frame(FileKind::Model, &bytes)
}

/// Metadata of a classifier of `input` features and `classes` named classes.
pub fn classifier(input: usize, classes: usize) -> Metadata {
    Metadata {
        input_shape: vec![input],
        class_names: Some((0..classes).map(|c| format!("c{c}")).collect()),
        loss: "softmax_cross_entropy".into(),
        ..Default::default()
    }
}

/// A small valid model: dense(2 → 3) with weights `w` and bias `b`.
pub fn small_dense(w: f32, b: f32, metadata: &Metadata) -> Vec<u8> {
    let layers = sequential(vec![layer("dense", &[("n_in", 2), ("n_out", 3)])]);
    let tensors = vec![
        ("0.weight".to_string(), tensor(&[3, 2], w)),
        ("0.bias".to_string(), tensor(&[3], b)),
    ];
    model_file(&layers, &tensors, metadata)
}
