//! ONNX export checked by the real runtime: every built-in layer kind, exported by
//! `nn export --format onnx`, passes `onnx.checker` and gives in ONNX Runtime what
//! `nn predict` gives, within 1e-5 (`tests/python/onnx_check.py` runs the Python side).
//!
//! The test needs a Python with `onnx`, `onnxruntime` and `numpy`: `cargo xtask test` makes
//! one in `target/python` and sets `NN_PYTHON` and `NN_REQUIRE_PYTHON=1`, so there a missing
//! Python fails the test with the command that installs it. Plain `cargo test` without
//! such a Python says that it skips the check.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{ArrayD, IxDyn};
use nn_core::{Buffer, Rng};
use nn_io::{Metadata, Normalization};
use nn_layers::{Attr, LayerConfig, LayerSpec, Mode, Registry};
use serde_json::{Value, json};
use support::run::{nn, repo, stderr, stdout};

const INSTALL: &str = "cargo xtask test (it makes target/python), or: python3 -m venv target/python && target/python/bin/pip install -r tests/python/requirements.txt";

/// The Python to run the check with, or `None` (after saying so) when there is none and
/// the run does not require one.
fn python() -> Option<PathBuf> {
    let required = std::env::var_os("NN_REQUIRE_PYTHON").is_some();
    let candidate = std::env::var_os("NN_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(repo("target/python/bin/python")));
    let works = Command::new(&candidate)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    match (works, required) {
        (true, _) => Some(candidate),
        (false, true) => panic!(
            "{} cannot import onnx, onnxruntime and numpy; install them with: {INSTALL}",
            candidate.display()
        ),
        (false, false) => {
            eprintln!(
                "SKIPPED onnx_runtime: no Python with onnx and onnxruntime at {}; `cargo xtask test` runs this check ({INSTALL})",
                candidate.display()
            );
            None
        }
    }
}

fn spec(kind: &str, attrs: &[(&str, Attr)]) -> LayerSpec {
    attrs
        .iter()
        .fold(LayerSpec::new(kind), |s, (k, v)| s.with(*k, v.clone()))
}

/// A model built from `layers`, its batch norm statistics moved by a few training passes.
fn build(layers: Vec<LayerSpec>, input: &[usize], rng: &mut Rng) -> Box<dyn nn_layers::Layer> {
    let mut shape = vec![8];
    shape.extend_from_slice(input);
    let cfg = Registry::new().sequential(&layers, &shape).unwrap();
    let mut model = cfg.build(rng).unwrap();
    let mut y = Buffer::new();
    for _ in 0..3 {
        let x = random(&shape, rng, 1.5);
        model.forward(x.view(), &mut y, Mode::Train).unwrap();
    }
    model
}

fn random(shape: &[usize], rng: &mut Rng, scale: f32) -> ArrayD<f32> {
    let n = shape.iter().product();
    let v = (0..n)
        .map(|_| nn_core::rng::uniform(rng, -scale, scale) + 0.2)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Exports `model.nnm` in `dir` to ONNX and compares ONNX Runtime with `nn predict` on
/// `rows`, given to `nn predict` as a CSV of raw features under the header `columns`.
fn compare(python: &Path, dir: &Path, name: &str, rows: &ArrayD<f32>, columns: &[String]) {
    let model = format!("{name}.nnm");
    let onnx = format!("{name}.onnx");
    let out = nn(
        &[
            "export", "--model", &model, "--format", "onnx", "--out", &onnx,
        ],
        dir,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = dir.join(format!("{name}.csv"));
    let width = rows.len() / rows.shape()[0];
    assert_eq!(columns.len(), width);
    let mut text = columns.join(",") + "\n";
    for r in rows.as_slice().unwrap().chunks(width) {
        let r: Vec<String> = r.iter().map(|v| format!("{v:?}")).collect();
        text += &(r.join(",") + "\n");
    }
    std::fs::write(&csv, text).unwrap();
    let pred = nn(
        &[
            "predict",
            "--model",
            &model,
            "--input",
            csv.to_str().unwrap(),
            "--format",
            "json",
            "--all-probabilities",
        ],
        dir,
    );
    assert!(pred.status.success(), "{}", stderr(&pred));
    let ours: Vec<Value> = serde_json::from_str(&stdout(&pred)).unwrap();
    let inputs = dir.join(format!("{name}.inputs.json"));
    let values: Vec<f32> = rows.iter().copied().collect();
    std::fs::write(
        &inputs,
        json!({"shape": rows.shape(), "values": values}).to_string(),
    )
    .unwrap();
    let run = Command::new(python)
        .arg(repo("tests/python/onnx_check.py"))
        .arg(dir.join(&onnx))
        .arg(&inputs)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let theirs: Value = serde_json::from_slice(&run.stdout).unwrap();
    check(name, &ours, &theirs);
}

/// `nn predict`'s probabilities (or values) against ONNX Runtime's outputs, within 1e-5.
fn check(name: &str, ours: &[Value], theirs: &Value) {
    let rows = |v: &Value| -> Vec<Vec<f32>> { serde_json::from_value(v.clone()).unwrap() };
    let theirs = match theirs.get("probabilities") {
        Some(p) => rows(p),
        None => rows(&theirs["logits"]),
    };
    assert_eq!(ours.len(), theirs.len(), "{name}: rows");
    for (o, t) in ours.iter().zip(&theirs) {
        let mine: Vec<f32> = match (o.get("probabilities"), o.get("values")) {
            (Some(p), _) => serde_json::from_value(p.clone()).unwrap(),
            (None, Some(v)) => serde_json::from_value(v.clone()).unwrap(),
            _ => panic!("{name}: {o}"),
        };
        // a one-logit classifier: ONNX gives σ(z) = P(class 1); nn predict both classes
        let mine = if t.len() == 1 && mine.len() == 2 {
            vec![mine[1]]
        } else {
            mine
        };
        assert_eq!(mine.len(), t.len(), "{name}: outputs per row");
        for (a, b) in mine.iter().zip(t) {
            assert!((a - b).abs() <= 1e-5, "{name}: nn {a} vs ONNX Runtime {b}");
        }
    }
}

/// `prefix0`, `prefix1`, … for each value of a row of `x`.
fn columns(x: &ArrayD<f32>, prefix: &str) -> Vec<String> {
    (0..x.len() / x.shape()[0])
        .map(|j| format!("{prefix}{j}"))
        .collect()
}

fn save(dir: &Path, name: &str, model: &mut dyn nn_layers::Layer, meta: Metadata) {
    nn_io::save_model(&dir.join(format!("{name}.nnm")), model, &meta).unwrap();
}

fn meta(input: &[usize], loss: &str, normalization: Option<Normalization>) -> Metadata {
    Metadata {
        input_shape: input.to_vec(),
        loss: loss.into(),
        normalization,
        ..Metadata::default()
    }
}

/// Dense layers and every activation, a softmax layer, min–max scaling.
fn mlp(dir: &Path, rng: &mut Rng) -> ArrayD<f32> {
    let d = |n: i64| spec("dense", &[("n_out", Attr::Int(n))]);
    let layers = vec![
        d(12),
        spec("relu", &[]),
        d(10),
        spec("sigmoid", &[]),
        d(9),
        spec("tanh", &[]),
        d(8),
        spec("leaky_relu", &[("alpha", Attr::Float(0.1))]),
        spec(
            "dense",
            &[("n_out", Attr::Int(7)), ("bias", Attr::Bool(false))],
        ),
        spec("identity", &[]),
        d(5),
        spec("softmax", &[]),
    ];
    let mut model = build(layers, &[6], rng);
    let minmax = Normalization::MinMax {
        min: vec![-1.0, 0.0, 2.0, -3.0, 0.5, 1.0],
        range: vec![2.0, 1.5, 4.0, 0.5, 3.0, 10.0],
    };
    save(
        dir,
        "mlp",
        model.as_mut(),
        meta(&[6], "softmax_cross_entropy", Some(minmax)),
    );
    random(&[9, 6], rng, 4.0)
}

/// Convolutions (padded, strided, without bias), batch norm in both layouts, both
/// poolings, flatten, dropout; pixels scaled by 1/16.
fn cnn(dir: &Path, rng: &mut Rng) -> ArrayD<f32> {
    let conv = |c: i64, k: i64, s: i64, p: i64, bias: bool| {
        spec(
            "conv2d",
            &[
                ("out_channels", Attr::Int(c)),
                ("kernel", Attr::Ints(vec![k, k])),
                ("stride", Attr::Int(s)),
                ("padding", Attr::Int(p)),
                ("bias", Attr::Bool(bias)),
            ],
        )
    };
    let pool = |kind: &str, k: i64, s: i64| {
        spec(kind, &[("kernel", Attr::Int(k)), ("stride", Attr::Int(s))])
    };
    let layers = vec![
        conv(4, 3, 1, 1, true),
        spec("batchnorm", &[]),
        spec("relu", &[]),
        pool("maxpool2d", 2, 2),
        conv(6, 3, 2, 1, false),
        spec("batchnorm", &[]),
        spec("tanh", &[]),
        pool("avgpool2d", 2, 1),
        spec("flatten", &[]),
        spec("dropout", &[("p", Attr::Float(0.3))]),
        spec("dense", &[("n_out", Attr::Int(8))]),
        spec("batchnorm", &[]),
        spec("relu", &[]),
        spec("dense", &[("n_out", Attr::Int(4))]),
    ];
    let mut model = build(layers, &[1, 14, 14], rng);
    let scale = Normalization::Scale { factor: 1.0 / 16.0 };
    save(
        dir,
        "cnn",
        model.as_mut(),
        meta(&[1, 14, 14], "softmax_cross_entropy", Some(scale)),
    );
    random(&[5, 1, 14, 14], rng, 16.0)
}

/// A one-logit classifier (σ output) and a regression model (logits only).
fn heads(dir: &Path, rng: &mut Rng) -> ArrayD<f32> {
    let d = |n: i64| spec("dense", &[("n_out", Attr::Int(n))]);
    let mut bce = build(vec![d(5), spec("tanh", &[]), d(1)], &[3], rng);
    let mut m = meta(&[3], "bce_with_logits", None);
    m.class_names = Some(vec!["no".into(), "yes".into()]);
    save(dir, "bce", bce.as_mut(), m);
    let mut mse = build(vec![d(5), spec("relu", &[]), d(2)], &[3], rng);
    save(dir, "mse", mse.as_mut(), meta(&[3], "mse", None));
    random(&[6, 3], rng, 2.0)
}

#[test]
fn onnx_runtime_agrees_with_nn_predict_for_every_layer_kind() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut rng = nn_core::seeded(11);
    let x = mlp(dir.path(), &mut rng);
    compare(&python, dir.path(), "mlp", &x, &columns(&x, "f"));
    let x = cnn(dir.path(), &mut rng);
    compare(&python, dir.path(), "cnn", &x, &columns(&x, "f"));
    let x = heads(dir.path(), &mut rng);
    compare(&python, dir.path(), "bce", &x, &columns(&x, "f"));
    compare(&python, dir.path(), "mse", &x, &columns(&x, "f"));
}

#[test]
fn the_digits_model_with_its_standardisation_runs_in_onnx_runtime() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = repo("data/digits.csv");
    let out = nn(
        &[
            "train",
            "--data",
            &data,
            "--label",
            "digit",
            "--layers",
            "dense:32,relu,dense:10",
            "--epochs",
            "2",
            "--seed",
            "3",
            "--out",
            "digits.nnm",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // raw rows of the data set, the label column left out
    let text = std::fs::read_to_string(&data).unwrap();
    let rows: Vec<f32> = text
        .lines()
        .skip(1)
        .take(20)
        .flat_map(|l| {
            l.split(',')
                .take(64)
                .map(|v| v.parse::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let x = ArrayD::from_shape_vec(IxDyn(&[20, 64]), rows).unwrap();
    compare(&python, dir.path(), "digits", &x, &columns(&x, "p"));
}

#[test]
fn a_missing_model_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = nn(
        &[
            "export", "--model", "none.nnm", "--format", "onnx", "--out", "x.onnx",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: none.nnm") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("x.onnx").exists());
}
