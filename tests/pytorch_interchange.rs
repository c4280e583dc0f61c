//! Safetensors interchange with PyTorch: fixtures written by PyTorch
//! (`tests/fixtures/pytorch/make_fixtures.py`) import and give PyTorch's outputs; files
//! exported here have exactly the fixtures' headers; nn → safetensors → nn is exact; and
//! hostile files are refused with a clear error.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use nn_core::Buffer;
use nn_io::torch::{self, Describe};
use nn_io::{Error, Metadata};
use nn_layers::{Layer, LayerConfig, LayerSpec, Mode, Registry};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/pytorch/{name}"))
}

/// A fixture's record: the network in `--layers` terms, its inputs and PyTorch's outputs.
struct Record {
    layers: String,
    input_shape: Vec<usize>,
    inputs: Vec<Vec<f32>>,
    outputs: Vec<Vec<f32>>,
}

fn record(name: &str) -> Record {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{name}.json"))).unwrap())
            .unwrap();
    let rows = |k: &str| -> Vec<Vec<f32>> {
        serde_json::from_value::<Vec<Vec<f64>>>(v[k].clone())
            .unwrap()
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as f32).collect())
            .collect()
    };
    Record {
        layers: v["layers"].as_str().unwrap().to_string(),
        input_shape: serde_json::from_value(v["input_shape"].clone()).unwrap(),
        inputs: rows("inputs"),
        outputs: rows("outputs"),
    }
}

/// The complete architecture (widths resolved) of a record's network.
fn architecture(r: &Record) -> LayerSpec {
    let specs = nn_cli::spec::parse_layers(&r.layers).unwrap();
    let mut shape = vec![1];
    shape.extend_from_slice(&r.input_shape);
    Registry::new().sequential(&specs, &shape).unwrap().spec()
}

fn given(r: &Record) -> Describe {
    Describe::Given {
        architecture: architecture(r),
        metadata: Box::new(Metadata {
            input_shape: r.input_shape.clone(),
            loss: "softmax_cross_entropy".into(),
            ..Metadata::default()
        }),
    }
}

/// The model's outputs in eval mode on `rows` (flattened inputs).
fn outputs(model: &mut dyn Layer, shape: &[usize], rows: &[Vec<f32>]) -> ArrayD<f32> {
    let mut dims = vec![rows.len()];
    dims.extend_from_slice(shape);
    let x = ArrayD::from_shape_vec(IxDyn(&dims), rows.concat()).unwrap();
    let mut y = Buffer::new();
    model.forward(x.view(), &mut y, Mode::Eval).unwrap();
    y.view().to_owned()
}

fn import(name: &str, describe: Describe) -> nn_io::Result<torch::Imported> {
    let bytes = std::fs::read(fixture(&format!("{name}.safetensors"))).unwrap();
    torch::import_safetensors(&bytes, Path::new(name), describe, &Registry::new())
}

#[test]
fn pytorch_fixtures_give_pytorchs_outputs() {
    for name in ["mlp", "cnn"] {
        let r = record(name);
        let mut m = import(name, given(&r)).unwrap();
        let y = outputs(m.model.as_mut(), &r.input_shape, &r.inputs);
        assert_eq!(y.shape(), [r.outputs.len(), r.outputs[0].len()]);
        for (got, want) in y.iter().zip(r.outputs.concat()) {
            assert!(
                (got - want).abs() <= 1e-5,
                "{name}: {got} vs PyTorch's {want}"
            );
        }
    }
}

/// A safetensors header as name → (dtype, shape), read with serde_json alone.
fn header(bytes: &[u8]) -> BTreeMap<String, (String, Vec<u64>)> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let v: BTreeMap<String, Value> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    v.into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(k, t)| {
            let dtype = t["dtype"].as_str().unwrap().to_string();
            (
                k,
                (dtype, serde_json::from_value(t["shape"].clone()).unwrap()),
            )
        })
        .collect()
}

#[test]
fn exports_have_exactly_the_pytorch_headers() {
    for name in ["mlp", "cnn"] {
        let r = record(name);
        let cfg = Registry::new()
            .config(
                &architecture(&r),
                &nn_layers::Context::new(&Registry::new()),
            )
            .unwrap();
        let mut model = cfg.build(&mut nn_core::seeded(3)).unwrap();
        let meta = Metadata {
            input_shape: r.input_shape.clone(),
            loss: "softmax_cross_entropy".into(),
            ..Metadata::default()
        };
        let export = torch::export_safetensors(model.as_mut(), &meta).unwrap();
        assert!(export.notes.is_empty(), "{:?}", export.notes);
        let theirs = std::fs::read(fixture(&format!("{name}.safetensors"))).unwrap();
        assert_eq!(header(&export.bytes), header(&theirs), "{name}");
    }
}

#[test]
fn nn_to_safetensors_to_nn_is_exact() {
    let r = record("cnn");
    let mut m = import("cnn", given(&r)).unwrap();
    let export = torch::export_safetensors(m.model.as_mut(), &m.metadata).unwrap();
    let mut back = torch::import_safetensors(
        &export.bytes,
        Path::new("re-export"),
        Describe::FromFile,
        &Registry::new(),
    )
    .unwrap();
    assert_eq!(back.metadata, m.metadata);
    assert_eq!(back.model.config().spec(), m.model.config().spec());
    let a = outputs(m.model.as_mut(), &r.input_shape, &r.inputs);
    let b = outputs(back.model.as_mut(), &r.input_shape, &r.inputs);
    assert_eq!(a, b, "bit-identical predictions");
    let again = torch::export_safetensors(back.model.as_mut(), &back.metadata).unwrap();
    assert!(
        again.bytes == export.bytes,
        "the same model exports to the same bytes"
    );
}

#[test]
fn a_diverged_runs_summary_is_left_out_with_a_note() {
    let r = record("mlp");
    let mut m = import("mlp", given(&r)).unwrap();
    m.metadata.training = Some(nn_io::TrainingSummary {
        epochs: 3,
        batch_size: 4,
        train_rows: 10,
        train_loss: f32::NAN,
        ..Default::default()
    });
    let export = torch::export_safetensors(m.model.as_mut(), &m.metadata).unwrap();
    assert_eq!(export.notes.len(), 1);
    assert!(export.notes[0].contains("not finite"), "{:?}", export.notes);
    let back = torch::import_safetensors(
        &export.bytes,
        Path::new("x"),
        Describe::FromFile,
        &Registry::new(),
    )
    .unwrap();
    assert_eq!(back.metadata.training, None);
    assert_eq!(back.metadata.input_shape, vec![4]);
}

#[test]
fn num_batches_tracked_counts_the_summarys_batches() {
    let r = record("cnn");
    let mut m = import("cnn", given(&r)).unwrap();
    m.metadata.training = Some(nn_io::TrainingSummary {
        epochs: 3,
        batch_size: 4,
        train_rows: 10,
        ..Default::default()
    });
    let bytes = torch::export_safetensors(m.model.as_mut(), &m.metadata)
        .unwrap()
        .bytes;
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let v: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let at = 8
        + n
        + v["1.num_batches_tracked"]["data_offsets"][0]
            .as_u64()
            .unwrap() as usize;
    // 3 epochs of ⌈10 / 4⌉ = 3 batches
    assert_eq!(i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()), 9);
}

#[test]
fn nn_import_refuses_hostile_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = fixture("mlp.safetensors");
    let mlp = mlp.to_str().unwrap();
    let evil = dir.path().join("evil.safetensors");
    std::fs::write(&evil, crafted("{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", &[0; 4])).unwrap();
    let evil = evil.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "--weights",
                mlp,
                "--layers",
                "dense:99999999999,relu,dense:3",
                "--input-shape",
                "4",
            ],
            "dense",
        ),
        (
            &[
                "--weights",
                mlp,
                "--layers",
                "dense:8,relu,dense:3",
                "--input-shape",
                "0x4",
            ],
            "--input-shape",
        ),
        (
            &[
                "--weights",
                evil,
                "--layers",
                "dense:8,relu,dense:3",
                "--input-shape",
                "4",
            ],
            "evil.safetensors",
        ),
        (&["--weights", mlp, "--input-shape", "4"], "--layers"),
    ];
    for (args, want) in cases {
        let mut full = vec!["import"];
        full.extend_from_slice(args);
        full.extend_from_slice(&["--out", "m.nnm"]);
        let out = support::run::nn(&full, dir.path());
        let err = support::run::stderr(&out);
        assert!(
            out.status.code() == Some(1) || out.status.code() == Some(2),
            "{args:?}: {err}"
        );
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!dir.path().join("m.nnm").exists());
    }
}

#[test]
fn a_plain_pytorch_file_needs_an_architecture() {
    let e = import("mlp", Describe::FromFile).unwrap_err();
    assert!(e.to_string().contains("no `nn` entry"), "{e}");
}

/// A safetensors file from a JSON header and data bytes, as a stranger might write one.
fn crafted(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

fn refused(bytes: &[u8], describe: Describe) -> String {
    let e = torch::import_safetensors(
        bytes,
        Path::new("evil.safetensors"),
        describe,
        &Registry::new(),
    )
    .map(|_| ())
    .unwrap_err();
    assert!(!matches!(e, Error::Io { .. }));
    e.to_string()
}

#[test]
fn hostile_files_are_refused_by_name() {
    let r = record("mlp");
    let good = std::fs::read(fixture("mlp.safetensors")).unwrap();
    let t = |name: &str, dtype: &str, shape: &str, a: usize, b: usize| {
        format!(r#""{name}":{{"dtype":"{dtype}","shape":{shape},"data_offsets":[{a},{b}]}}"#)
    };
    let mut huge_len = good.clone();
    huge_len[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut past_end = good.clone();
    past_end[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (huge_len, "more than the limit"),
        (past_end, "not a valid safetensors file"),
        (b"\x02\0\0".to_vec(), "too short"),
        (crafted("{nope", &[]), "not a valid safetensors file"),
        (
            crafted(
                &format!("{{{}}}", t("0.weight", "F32", "[2]", 4, 12)),
                &[0; 12],
            ),
            "not a valid safetensors file",
        ),
        (
            crafted(
                &format!(
                    "{{{},{}}}",
                    t("0.weight", "F32", "[2]", 0, 8),
                    t("0.bias", "F32", "[2]", 4, 12)
                ),
                &[0; 12],
            ),
            "not a valid safetensors file",
        ),
        (
            crafted(
                &format!(
                    "{{{}}}",
                    t("0.weight", "F32", "[1099511627776,1099511627776]", 0, 0)
                ),
                &[],
            ),
            "not a valid safetensors file",
        ),
        (
            crafted(
                &format!("{{{}}}", t("0.weight", "F32", "[8,4,0]", 0, 0)),
                &[],
            ),
            "the architecture needs F32 of shape [8, 4]",
        ),
        (
            crafted(
                &format!("{{{}}}", t("0.weight", "F64", "[8,4]", 0, 256)),
                &[0; 256],
            ),
            "F64 of shape [8, 4] in the file",
        ),
        (
            crafted(
                &format!("{{{}}}", t("7.weight", "F32", "[1]", 0, 4)),
                &[0; 4],
            ),
            "`7.weight` is in the file but the architecture has no such tensor",
        ),
        (
            crafted(
                &format!("{{{}}}", t("0.weight", "F32", "[8,4]", 0, 128)),
                &[0; 128],
            ),
            "`0.bias` [8] is not in the file",
        ),
    ];
    for (bytes, want) in cases {
        let msg = refused(&bytes, given(&r));
        assert!(msg.starts_with("evil.safetensors: "), "{msg}");
        assert!(msg.contains(want), "{msg:?} should say {want:?}");
    }
}

#[test]
fn values_are_checked_as_model_files_check_them() {
    let r = record("cnn");
    let good = std::fs::read(fixture("cnn.safetensors")).unwrap();
    // a running variance below zero, and a NaN weight: find their bytes through the header
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let v: Value = serde_json::from_slice(&good[8..8 + n]).unwrap();
    let at = |name: &str| 8 + n + v[name]["data_offsets"][0].as_u64().unwrap() as usize;
    let mut negative = good.clone();
    negative[at("1.running_var")..][..4].copy_from_slice(&(-1.0f32).to_le_bytes());
    assert!(refused(&negative, given(&r)).contains("running_var"));
    let mut nan = good.clone();
    nan[at("0.weight")..][..4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert!(refused(&nan, given(&r)).contains("0.weight"));
    let mut counter = good;
    counter[at("1.num_batches_tracked")..][..8].copy_from_slice(&(-5i64).to_le_bytes());
    assert!(refused(&counter, given(&r)).contains("num_batches_tracked"));
}
