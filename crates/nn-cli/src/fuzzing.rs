//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`, run with `cargo xtask fuzz`),
//! kept here so that the stable test suite replays the same code on the saved corpus and on
//! every crash the fuzzer found (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes, feeds them to one parser the way the `nn` command
//! does, and checks what must hold whatever the input: no panic (the fuzzer reports one),
//! and where the input is accepted, the properties the toolkit promises — a model that
//! loads saves and loads again to the same model, a resolved network's shapes fit its
//! limits.

use std::path::Path;

use nn_core::limits;
use nn_io::{CsvOptions, FileKind, LabelKind, Limits, container};
use nn_layers::{LayerConfig, Mode, Registry};

use crate::spec;

/// Reading limits small enough for a fuzzer's inputs.
fn small_limits() -> Limits {
    Limits {
        input_bytes: 1 << 20,
        line_bytes: 1 << 16,
    }
}

/// The input as a file, then its payload (the input after a file header, or the whole
/// input) in a correct frame: most mutations of a file fail its checksum, so the second
/// form is what reaches the decoder and the checks behind it.
fn as_file_and_payload(data: &[u8], kind: FileKind, check: fn(&[u8])) {
    check(data);
    let payload = match data.get(container::HEADER_LEN..) {
        Some(p) if data.starts_with(kind.magic()) => p,
        _ => data,
    };
    check(&container::frame(kind, payload));
}

/// A model file: loads or is refused; one that loads saves, loads and saves again to the
/// same bytes, and runs forward on one row when that row is small.
pub fn model_file(data: &[u8]) {
    as_file_and_payload(data, FileKind::Model, model_bytes_check);
}

fn model_bytes_check(data: &[u8]) {
    let registry = Registry::new();
    let Ok(mut loaded) = nn_io::model_from_bytes(data, Path::new("fuzz.nnm"), &registry) else {
        return;
    };
    let bytes =
        nn_io::model_bytes(loaded.model.as_mut(), &loaded.metadata).expect("a loaded model saves");
    let mut again = nn_io::model_from_bytes(&bytes, Path::new("again.nnm"), &registry)
        .expect("a saved model loads");
    // compared as bytes: the metadata may hold NaN (a summary's loss), which is not == itself
    let twice =
        nn_io::model_bytes(again.model.as_mut(), &again.metadata).expect("a reloaded model saves");
    assert!(bytes == twice, "save → load → save changed the model");
    let mut input = vec![1];
    input.extend_from_slice(&loaded.metadata.input_shape);
    let small = loaded
        .model
        .config()
        .output_elements(&input)
        .is_ok_and(|n| n <= 1 << 16);
    if small && limits::product(&input).is_some_and(|n| n <= 1 << 16) {
        let x = nn_core::Tensor::zeros(input);
        nn_layers::layer::apply(loaded.model.as_mut(), x.view(), Mode::Eval)
            .expect("a loaded model runs on its input shape");
    }
}

/// A checkpoint of `nn train`: loads or is refused; the training state of one that loads
/// is checked against its model without panicking.
pub fn checkpoint_file(data: &[u8]) {
    as_file_and_payload(data, FileKind::Checkpoint, checkpoint_bytes_check);
}

fn checkpoint_bytes_check(data: &[u8]) {
    let registry = Registry::new();
    let Ok((mut loaded, state)) =
        crate::settings::checkpoint_from_bytes(data, Path::new("fuzz.nnck"), &registry)
    else {
        return;
    };
    let _ = state.settings.validate();
    let _ = state.trainer.validate(loaded.model.as_mut());
    let _ = state.optimizer.validate(loaded.model.as_mut());
}

/// A CSV source read as training data (classes and values) and as rows to predict.
pub fn csv(data: &[u8]) {
    let path = Path::new("fuzz.csv");
    let label = std::str::from_utf8(data)
        .ok()
        .and_then(|t| t.lines().next())
        .and_then(|h| h.split(',').next_back())
        .unwrap_or("y")
        .trim()
        .to_string();
    for kind in [LabelKind::Classes, LabelKind::Values] {
        let opts = CsvOptions {
            label: label.clone(),
            kind,
            limits: small_limits(),
            ..Default::default()
        };
        if let Ok(d) = nn_io::csv::parse_csv(data, path, &opts) {
            assert_eq!(d.x.shape()[0], d.len());
            assert!(d.x.iter().all(|v| v.is_finite()));
            if let Some(c) = d.classes() {
                let k = d.num_classes().unwrap_or(0);
                assert!(c.iter().all(|&c| c < k) && k <= limits::MAX_CLASSES);
            }
        }
    }
    let _ = nn_io::parse_csv_features(data, path, None, &small_limits());
}

/// An IDX file, raw and as the payload of a gzip stream.
pub fn idx(data: &[u8]) {
    let path = Path::new("fuzz.idx");
    if let Ok(a) = nn_io::idx::parse_idx(data, path) {
        assert_eq!(limits::product(&a.dims), Some(a.data.len()));
    }
    let _ = nn_io::idx::parse_idx(flate2::read::GzDecoder::new(data), path);
}

/// A `--layers` string, resolved for rows and for images.
pub fn layers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(specs) = spec::parse_layers(text) else {
        return;
    };
    resolve_both(&specs);
}

/// A spec file, as TOML and as JSON.
pub fn spec_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for ext in ["toml", "json"] {
        if let Ok(specs) = spec::parse_spec_text(text, Some(ext), Path::new("fuzz")) {
            resolve_both(&specs);
        }
    }
}

/// Resolves a network for 8 features and for 1×8×8 images, batch 4: when it resolves, its
/// parameters and every output are within the limits.
fn resolve_both(specs: &[nn_layers::LayerSpec]) {
    let registry = Registry::new();
    for input in [&[8usize][..], &[1, 8, 8]] {
        if let Ok(cfg) = spec::resolve(specs, input, 4, &registry) {
            let mut shape = vec![4];
            shape.extend_from_slice(input);
            let shapes = cfg
                .output_shapes(&shape)
                .expect("a resolved network has shapes");
            for s in &shapes {
                assert!(limits::product(s).is_some_and(|n| n <= limits::MAX_TENSOR_ELEMENTS));
            }
            let _ = cfg.tensors();
        }
    }
}

/// A safetensors file, imported as `nn import` does: with its own description, and as
/// PyTorch weights of a small fixed network. One that imports exports to the same tensors
/// and imports again to the same model.
pub fn safetensors_file(data: &[u8]) {
    use nn_io::torch::{self, Describe};
    let registry = Registry::new();
    let given = || {
        let specs = spec::parse_layers("dense:4,relu,bn,dense:3").expect("a valid spec");
        let cfg = registry
            .sequential(&specs, &[1, 2])
            .expect("a valid network");
        Describe::Given {
            architecture: cfg.spec(),
            metadata: Box::new(nn_io::Metadata {
                input_shape: vec![2],
                loss: "softmax_cross_entropy".into(),
                ..Default::default()
            }),
        }
    };
    for describe in [Describe::FromFile, given()] {
        let path = Path::new("fuzz.safetensors");
        let Ok(mut m) = torch::import_safetensors(data, path, describe, &registry) else {
            continue;
        };
        let out = torch::export_safetensors(m.model.as_mut(), &m.metadata)
            .expect("an imported model exports");
        let mut again = torch::import_safetensors(&out.bytes, path, Describe::FromFile, &registry)
            .expect("an exported model imports");
        let twice = torch::export_safetensors(again.model.as_mut(), &again.metadata)
            .expect("a re-imported model exports");
        assert!(
            out.bytes == twice.bytes,
            "export → import → export changed the file"
        );
        let a = nn_layers::weights::snapshot(m.model.as_mut());
        let b = nn_layers::weights::snapshot(again.model.as_mut());
        // the same weights, but for dropout's stream counter, which PyTorch has no slot for
        let same = |(x, y): (
            &(String, nn_core::TensorData),
            &(String, nn_core::TensorData),
        )| { x == y || x.0.ends_with(".counter") };
        assert!(
            a.len() == b.len() && a.iter().zip(&b).all(same),
            "import → export → import changed the weights"
        );
    }
}
