//! Inputs from strangers and careless users, through the real `nn` binary: crafted model
//! files that reach the decoder, huge sizes in specs and flags, unbounded reads, data that
//! would give silent wrong answers, and pipes. Every case ends in one `error:` line with
//! exit code 1 (or a correct result), never a panic or an abort, and runs with its address
//! space limited (`ulimit -v`), so that a case which tries to allocate more fails the test:
//!
//! | case | memory bound |
//! | --- | --- |
//! | crafted and corrupt model files, flags, specs, pipes | 256 MiB |
//! | data files, training and evaluating small models | 512 MiB |
//! | 20,000 classes, 100,000 outputs, 10,000 layers | 1 GiB |

mod support;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use nn::io::{Metadata, Normalization};
use support::craft::{StoredAttr, classifier, layer, model_file, sequential, small_dense, tensor};
use support::run::{fails_with, nn, nn_within, repo, stderr, stdout, succeeds};

/// Runs `nn` on a crafted model with `predict` and `inspect`, both within 256 MiB: each
/// must refuse it naming `needle`.
fn refuse_model(dir: &Path, name: &str, bytes: &[u8], needle: &str) {
    std::fs::write(dir.join(name), bytes).unwrap();
    std::fs::write(dir.join("rows.csv"), "a,b\n1,2\n").unwrap();
    let o = nn_within(
        &["predict", "--model", name, "--input", "rows.csv"],
        dir,
        256,
        Stdio::null(),
    );
    fails_with(&o, needle);
    let o = nn_within(&["inspect", name], dir, 256, Stdio::null());
    fails_with(&o, needle);
}

#[test]
fn crafted_sizes_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let meta = classifier(2, 3);
    // a 600-byte file whose dense layer claims 2^24 outputs (within the parameter limit):
    // the declared weight is compared with the stored one before the layer is built
    let layers = sequential(vec![layer("dense", &[("n_in", 2), ("n_out", 1 << 24)])]);
    let tensors = vec![("0.weight".to_string(), tensor(&[3, 2], 0.1))];
    let bytes = model_file(&layers, &tensors, &meta);
    assert!(bytes.len() < 700, "{} bytes", bytes.len());
    refuse_model(
        d,
        "wide.nnm",
        &bytes,
        "tensor `0.weight` has shape [3, 2], the architecture needs [16777216, 2]",
    );
    // 2^26 outputs: beyond the parameter limit, refused from the spec alone
    let layers = sequential(vec![layer("dense", &[("n_in", 2), ("n_out", 1 << 26)])]);
    let bytes = model_file(&layers, &tensors, &meta);
    refuse_model(
        d,
        "wider.nnm",
        &bytes,
        "dense(2 → 67108864) weight [67108864, 2]: 134217728 elements, more than the limit of 67108864 parameters in a model",
    );
    // 2^31 outputs, n_in = n_out = 2^32: beyond the parameter limit
    for (n_in, n_out) in [(2, 1i64 << 31), (1 << 32, 1 << 32)] {
        let layers = sequential(vec![layer("dense", &[("n_in", n_in), ("n_out", n_out)])]);
        let bytes = model_file(&layers, &tensors, &meta);
        refuse_model(
            d,
            "huge.nnm",
            &bytes,
            "more than the limit of 67108864 parameters in a model",
        );
    }
    // a conv kernel of 10^6, 2^40 channels, 2^40 batch-norm features
    let conv = |c: i64, k: i64| {
        layer(
            "conv2d",
            &[("in_channels", c), ("out_channels", 2), ("kernel", k)],
        )
    };
    for l in [
        conv(1, 1_000_000),
        conv(1 << 40, 3),
        layer("batchnorm", &[("features", 1 << 40)]),
    ] {
        let mut l = l;
        if l.kind == "batchnorm" {
            l.attrs.push(("eps".into(), StoredAttr::Float(1e-5)));
            l.attrs.push(("momentum".into(), StoredAttr::Float(0.1)));
        }
        let bytes = model_file(&sequential(vec![l]), &tensors, &meta);
        refuse_model(
            d,
            "big.nnm",
            &bytes,
            "more than the limit of 67108864 parameters in a model",
        );
    }
    // padding whose arithmetic overflows, and padding that would wrap
    for p in [1i64 << 62, i64::MAX] {
        let l = layer(
            "conv2d",
            &[
                ("in_channels", 1),
                ("out_channels", 1),
                ("kernel", 3),
                ("padding", p),
            ],
        );
        let conv_meta = Metadata {
            input_shape: vec![1, 4, 4],
            ..Default::default()
        };
        let t = vec![
            ("0.weight".to_string(), tensor(&[1, 1, 3, 3], 0.1)),
            ("0.bias".to_string(), tensor(&[1], 0.0)),
        ];
        let bytes = model_file(&sequential(vec![l]), &t, &conv_meta);
        refuse_model(d, "pad.nnm", &bytes, "more than the limit");
    }
    // an input shape whose element count overflows
    let overflow = Metadata {
        input_shape: vec![1 << 40, 1 << 40],
        ..classifier(2, 3)
    };
    let bytes = small_dense(0.1, 0.0, &overflow);
    refuse_model(
        d,
        "shape.nnm",
        &bytes,
        "input row [1099511627776, 1099511627776]: too many elements to count",
    );
    // a length prefix claiming a 2^40-byte class name
    let mut bytes = small_dense(0.1, 0.0, &classifier(2, 3));
    let at = bytes.len() - 1;
    bytes.truncate(at); // drop the last byte, then claim a huge string: fix the frame
    let payload_start = 24;
    let mut payload = bytes[payload_start..].to_vec();
    payload.push(0xfd);
    payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
    let framed = nn::io::container::frame(nn::io::FileKind::Model, &payload);
    refuse_model(d, "prefix.nnm", &framed, "payload does not decode");
}

#[test]
fn values_that_would_give_wrong_answers_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (w, b, needle) in [
        (
            f32::NAN,
            0.0,
            "tensor `0.weight` holds NaN at index 0; its values must be finite",
        ),
        (0.1, f32::INFINITY, "tensor `0.bias` holds inf at index 0"),
    ] {
        refuse_model(d, "nan.nnm", &small_dense(w, b, &classifier(2, 3)), needle);
    }
    let with_norm = |n: Normalization| Metadata {
        normalization: Some(n),
        ..classifier(2, 3)
    };
    let nan_mean = with_norm(Normalization::Standardize {
        mean: vec![f32::NAN, 0.0],
        std: vec![1.0, 1.0],
    });
    refuse_model(
        d,
        "norm.nnm",
        &small_dense(0.1, 0.0, &nan_mean),
        "normalisation: mean[0] is NaN",
    );
    let zero_std = with_norm(Normalization::Standardize {
        mean: vec![0.0, 0.0],
        std: vec![1.0, 0.0],
    });
    refuse_model(
        d,
        "std.nnm",
        &small_dense(0.1, 0.0, &zero_std),
        "std[1] is 0; it must be finite and > 0",
    );
    let wrong_len = with_norm(Normalization::MinMax {
        min: vec![0.0; 5],
        range: vec![1.0; 5],
    });
    refuse_model(
        d,
        "len.nnm",
        &small_dense(0.1, 0.0, &wrong_len),
        "5 values of min for an input of 2",
    );
    // a negative running variance
    let layers = sequential(vec![{
        let mut l = layer("batchnorm", &[("features", 2)]);
        l.attrs.push(("eps".into(), StoredAttr::Float(1e-5)));
        l.attrs.push(("momentum".into(), StoredAttr::Float(0.1)));
        l
    }]);
    let t = vec![
        ("0.weight".to_string(), tensor(&[2], 1.0)),
        ("0.bias".to_string(), tensor(&[2], 0.0)),
        ("0.running_mean".to_string(), tensor(&[2], 0.0)),
        ("0.running_var".to_string(), tensor(&[2], -1.0)),
    ];
    let meta = Metadata {
        input_shape: vec![2],
        loss: "mse".into(),
        ..Default::default()
    };
    refuse_model(
        d,
        "var.nnm",
        &model_file(&layers, &t, &meta),
        "tensor `0.running_var` holds -1 at index 0; its values must be finite and ≥ 0",
    );
    // one class, or class names that do not match the outputs
    refuse_model(
        d,
        "one.nnm",
        &small_dense(0.1, 0.0, &classifier(2, 1)),
        "1 class names for a `softmax_cross_entropy` model whose output is [3]",
    );
    refuse_model(
        d,
        "four.nnm",
        &small_dense(0.1, 0.0, &classifier(2, 4)),
        "4 class names",
    );
}

/// A CSV of iris with its columns in another order and an extra column.
fn reordered_iris() -> String {
    let text = std::fs::read_to_string(repo("data/iris.csv")).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        let extra = if i == 0 { "note" } else { "x" };
        out.push_str(&format!(
            "{},{},{},{},{},{extra}\n",
            f[4], f[3], f[1], f[0], f[2]
        ));
    }
    out
}

#[test]
fn columns_are_matched_by_name_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let iris = repo("data/iris.csv");
    succeeds(&nn(
        &[
            "train",
            "--data",
            &iris,
            "--label",
            "species",
            "--layers",
            "dense:8,tanh,dense:3",
            "--epochs",
            "30",
            "--lr",
            "0.01",
            "--out",
            "m.nnm",
            "--quiet",
        ],
        d,
    ));
    let eval = |data: &str| nn(&["eval", "--model", "m.nnm", "--data", data], d);
    let base = eval(&iris);
    succeeds(&base);
    std::fs::write(d.join("reordered.csv"), reordered_iris()).unwrap();
    let o = eval("reordered.csv");
    succeeds(&o);
    let first = |o: &std::process::Output| {
        stdout(o)
            .lines()
            .next()
            .unwrap_or_default()
            .split(": ")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        first(&o),
        first(&base),
        "same accuracy whatever the column order"
    );
    assert!(
        stderr(&o).contains("note: reordered.csv: ignoring column(s) note"),
        "{}",
        stderr(&o)
    );
    let renamed = std::fs::read_to_string(&iris)
        .unwrap()
        .replacen("petal_width", "petal_w", 1);
    std::fs::write(d.join("renamed.csv"), renamed).unwrap();
    fails_with(
        &eval("renamed.csv"),
        "renamed.csv: no column named `petal_width` in the header",
    );
    let dup = std::fs::read_to_string(&iris)
        .unwrap()
        .replacen("sepal_width", "sepal_length", 1);
    std::fs::write(d.join("dup.csv"), &dup).unwrap();
    fails_with(
        &eval("dup.csv"),
        "dup.csv: columns 1 and 2 are both named `sepal_length`",
    );
    fails_with(
        &nn(
            &[
                "train", "--data", "dup.csv", "--label", "species", "--layers", "dense:3", "--out",
                "x.nnm",
            ],
            d,
        ),
        "columns 1 and 2 are both named",
    );
    std::fs::write(d.join("rows.csv"), "petal_length,sepal_length\n1,2\n").unwrap();
    fails_with(
        &nn(&["predict", "--model", "m.nnm", "--input", "rows.csv"], d),
        "rows.csv: no column named `sepal_width`",
    );
}

/// An MNIST-style folder of `n` `side`×`side` images per part, raw IDX.
fn idx_folder(dir: &Path, n: u32, side: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for part in ["train", "t10k"] {
        let mut img = vec![0, 0, 8, 3];
        for d in [n, side, side] {
            img.extend_from_slice(&d.to_be_bytes());
        }
        let mut lab = vec![0, 0, 8, 1];
        lab.extend_from_slice(&n.to_be_bytes());
        for i in 0..n {
            let class = (i % 3) as u8;
            let pixels = (side * side) as usize;
            img.extend((0..pixels).map(|p| if p % 3 == class as usize { 200 } else { 10 }));
            lab.push(class);
        }
        std::fs::write(dir.join(format!("{part}-images-idx3-ubyte")), img).unwrap();
        std::fs::write(dir.join(format!("{part}-labels-idx1-ubyte")), lab).unwrap();
    }
}

#[test]
fn a_broken_or_missing_test_part_is_an_error_not_a_substitute() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let idx = d.join("idx");
    idx_folder(&idx, 60, 8);
    let train = |out: &str| {
        nn(
            &[
                "train",
                "--data",
                "idx",
                "--layers",
                "flatten,dense:3",
                "--epochs",
                "1",
                "--out",
                out,
                "--quiet",
            ],
            d,
        )
    };
    succeeds(&train("m.nnm"));
    // truncate the test images
    let p = idx.join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 10]).unwrap();
    fails_with(
        &train("x.nnm"),
        "the `t10k` part of the IDX folder cannot be read",
    );
    fails_with(
        &nn(&["eval", "--model", "m.nnm", "--data", "idx"], d),
        "t10k-images-idx3-ubyte: dimensions [60, 8, 8] need 3840 bytes of data, the file holds 3830",
    );
    std::fs::write(&p, &bytes).unwrap();
    std::fs::remove_file(idx.join("t10k-labels-idx1-ubyte")).unwrap();
    fails_with(
        &train("x.nnm"),
        "t10k-labels-idx1-ubyte.gz: no such file (nor without .gz)",
    );
    fails_with(
        &nn(&["eval", "--model", "m.nnm", "--data", "idx"], d),
        "t10k-labels-idx1-ubyte",
    );
}

#[test]
fn huge_sizes_on_the_command_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    idx_folder(&d.join("idx"), 64, 28);
    let digits = repo("data/digits.csv");
    let train = |data: &str, layers: &str| {
        nn_within(
            &[
                "train", "--data", data, "--label", "digit", "--layers", layers, "--out", "x.nnm",
            ],
            d,
            256,
            Stdio::null(),
        )
    };
    fails_with(
        &train(&digits, "dense:99999999999"),
        "layer 0: dense(64 → 99999999999) weight [99999999999, 64]: 6399999999936 elements, more than the limit of 67108864 parameters in a model",
    );
    fails_with(
        &train(&digits, "dense:9223372036854775807"),
        "too many elements to count",
    );
    fails_with(
        &train("idx", "conv:100000:3x3,flatten,dense:3"),
        "output [32, 100000, 26, 26]: 2163200000 elements",
    );
    fails_with(
        &train("idx", "conv:3:3x3:p1000,flatten,dense:3"),
        "conv2d(1 → 3, 3×3, stride 1, padding 1000) output [32, 3, 2026, 2026]",
    );
    let gradcheck = |args: &[&str]| {
        let mut a = vec!["gradcheck", "--layers", "dense:4"];
        a.extend_from_slice(args);
        nn_within(&a, d, 256, Stdio::null())
    };
    fails_with(
        &gradcheck(&["--input-shape", "100000x100000"]),
        "a batch of 4 rows [4, 100000, 100000]: 40000000000 elements",
    );
    fails_with(
        &gradcheck(&["--batch", "1000000000000"]),
        "a batch of 1000000000000 rows",
    );
    fails_with(
        &gradcheck(&["--input-shape", "99999999999999999999"]),
        "--input-shape `99999999999999999999`: expected sizes",
    );
    // a JSON spec with 100,000 layers
    let layers = vec![r#"{"kind":"relu"}"#; 100_000].join(",");
    std::fs::write(d.join("big.json"), format!("{{\"layers\": [{layers}]}}")).unwrap();
    let o = nn_within(
        &[
            "train",
            "--data",
            &digits,
            "--label",
            "digit",
            "--model-spec",
            "big.json",
            "--out",
            "x.nnm",
        ],
        d,
        256,
        Stdio::null(),
    );
    fails_with(&o, "big.json: 100000 layers, more than the limit of 10000");
    let o = nn_within(
        &[
            "train", "--data", &digits, "--label", "digit", "--epochs", "2000000", "--layers",
            "dense:10", "--out", "x.nnm",
        ],
        d,
        256,
        Stdio::null(),
    );
    fails_with(&o, "--epochs 2000000: more than the limit of 1000000");
}

#[test]
fn reads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a 1.6 GB IDX file in a small gzip: refused from its header, nothing decompressed
    let idx = d.join("bomb");
    idx_folder(&idx, 3, 8);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut head = vec![0, 0, 8, 3];
    for n in [2_000_000u32, 28, 28] {
        head.extend_from_slice(&n.to_be_bytes());
    }
    gz.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&zeros).unwrap();
    }
    std::fs::remove_file(idx.join("train-images-idx3-ubyte")).unwrap();
    std::fs::write(idx.join("train-images-idx3-ubyte.gz"), gz.finish().unwrap()).unwrap();
    let o = nn_within(
        &[
            "train",
            "--data",
            "bomb",
            "--layers",
            "flatten,dense:3",
            "--out",
            "x.nnm",
        ],
        d,
        256,
        Stdio::null(),
    );
    fails_with(
        &o,
        "declare 1568000000 bytes of data, more than the limit of 268435456",
    );
    // /dev/zero as data and as standard input
    let o = nn_within(
        &[
            "train",
            "--data",
            "/dev/zero",
            "--label",
            "x",
            "--layers",
            "dense:2",
            "--out",
            "x.nnm",
        ],
        d,
        256,
        Stdio::null(),
    );
    fails_with(
        &o,
        "/dev/zero: line 1 is longer than the limit of 4194304 bytes (set NN_MAX_LINE_BYTES to raise it)",
    );
    std::fs::write(d.join("m.nnm"), small_dense(0.1, 0.0, &classifier(2, 3))).unwrap();
    let zero = File::open("/dev/zero").unwrap();
    let o = nn_within(
        &["predict", "--model", "m.nnm", "--input", "-"],
        d,
        256,
        Stdio::from(zero),
    );
    fails_with(&o, "<stdin>: line 1 is longer than the limit");
    // endless short lines: the input limit, here lowered
    let mut yes = std::process::Command::new("yes")
        .arg("1,2")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pipe = Stdio::from(yes.stdout.take().unwrap());
    let o = std::process::Command::new(support::run::nn_binary())
        .args(["predict", "--model", "m.nnm", "--input", "-"])
        .current_dir(d)
        .env("NN_MAX_INPUT_BYTES", "1000000")
        .stdin(pipe)
        .output()
        .unwrap();
    let _ = yes.kill();
    let _ = yes.wait();
    fails_with(
        &o,
        "<stdin>: more than the limit of 1000000 bytes (set NN_MAX_INPUT_BYTES to raise it)",
    );
}

#[test]
fn many_classes_and_many_outputs_stay_in_memory_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 20,000 classes, one row each: the confusion matrix is sparse (a dense one would take
    // 3.2 GB) and printed as a summary
    let mut csv = String::from("a,b,y\n");
    for i in 0..20_000 {
        csv.push_str(&format!("{},{},class{i}\n", i % 97, i % 89));
    }
    std::fs::write(d.join("many.csv"), &csv).unwrap();
    let o = nn_within(
        &[
            "train",
            "--data",
            "many.csv",
            "--label",
            "y",
            "--layers",
            "dense:20000",
            "--epochs",
            "1",
            "--test-split",
            "0.05",
            "--val-split",
            "0",
            "--out",
            "many.nnm",
            "--quiet",
        ],
        d,
        1024,
        Stdio::null(),
    );
    succeeds(&o);
    let some: String = csv.lines().take(1001).map(|l| format!("{l}\n")).collect();
    std::fs::write(d.join("some.csv"), some).unwrap();
    let o = nn_within(
        &["eval", "--model", "many.nnm", "--data", "some.csv"],
        d,
        1024,
        Stdio::null(),
    );
    succeeds(&o);
    let text = stdout(&o);
    assert!(text.contains("(1000 rows)"), "{text}");
    assert!(
        text.contains("20000 classes (more than 20): the matrix is not printed"),
        "{text}"
    );
    // a model with 100,000 outputs and no class names evaluates in bounded batches
    let layers = sequential(vec![layer("dense", &[("n_in", 2), ("n_out", 100_000)])]);
    let t = vec![
        ("0.weight".to_string(), tensor(&[100_000, 2], 0.01)),
        ("0.bias".to_string(), tensor(&[100_000], 0.0)),
    ];
    let meta = Metadata {
        input_shape: vec![2],
        feature_names: vec!["a".into(), "b".into()],
        label: Some("y".into()),
        loss: "softmax_cross_entropy".into(),
        ..Default::default()
    };
    std::fs::write(d.join("wide.nnm"), model_file(&layers, &t, &meta)).unwrap();
    let mut rows = String::from("a,b,y\n");
    for i in 0..3000 {
        rows.push_str(&format!("{},{},{}\n", i % 7, i % 5, i % 50));
    }
    std::fs::write(d.join("rows.csv"), rows).unwrap();
    let o = nn_within(
        &["eval", "--model", "wide.nnm", "--data", "rows.csv"],
        d,
        1024,
        Stdio::null(),
    );
    succeeds(&o);
    assert!(stdout(&o).contains("(3000 rows)"), "{}", stdout(&o));
}

#[test]
fn one_class_data_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("one.csv"), "a,b,y\n1,2,yes\n3,4,yes\n5,6,yes\n").unwrap();
    let o = nn(
        &[
            "train", "--data", "one.csv", "--label", "y", "--layers", "dense:1", "--out", "x.nnm",
        ],
        d,
    );
    fails_with(
        &o,
        "one.csv: the label column `y` holds a single class (`yes`); classification needs at least two",
    );
}

#[test]
fn ten_thousand_layers_train_and_deep_nesting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut layers = vec!["dense:3"];
    layers.extend(std::iter::repeat_n(
        "identity",
        nn::core::limits::MAX_LAYERS - 1,
    ));
    let spec = layers.join(",");
    let o = nn_within(
        &[
            "train",
            "--data",
            &repo("data/iris.csv"),
            "--label",
            "species",
            "--layers",
            &spec,
            "--epochs",
            "1",
            "--batch-size",
            "150",
            "--out",
            "deep.nnm",
            "--quiet",
        ],
        d,
        1024,
        Stdio::null(),
    );
    succeeds(&o);
    succeeds(&nn_within(&["inspect", "deep.nnm"], d, 512, Stdio::null()));
    let too_many = format!("{spec},identity");
    let o = nn(
        &[
            "train",
            "--data",
            &repo("data/iris.csv"),
            "--label",
            "species",
            "--layers",
            &too_many,
            "--out",
            "x.nnm",
        ],
        d,
    );
    fails_with(&o, "--layers has more than 10000 items");
    // containers nested 100 deep in a file: refused at the nesting limit, not by the stack
    let mut stored = Vec::new();
    for i in 0..100u32 {
        stored.push(support::craft::StoredLayer {
            kind: "sequential".into(),
            attrs: vec![("layers".into(), StoredAttr::Layers(vec![i + 1]))],
        });
    }
    stored.push(layer("relu", &[]));
    let meta = Metadata {
        input_shape: vec![2],
        loss: "mse".into(),
        ..Default::default()
    };
    refuse_model(
        d,
        "nested.nnm",
        &model_file(&stored, &[], &meta),
        "layers nest deeper than 64 levels",
    );
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.nnm"), small_dense(0.1, 0.0, &classifier(2, 3))).unwrap();
    let mut rows = String::from("a,b\n");
    for i in 0..100_000 {
        rows.push_str(&format!("{},{}\n", i % 7, i % 3));
    }
    std::fs::write(d.join("rows.csv"), rows).unwrap();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("\"$0\" predict --model m.nnm --input rows.csv | head -1; echo \"status ${PIPESTATUS:-x}\"")
        .arg(support::run::nn_binary())
        .current_dir(d)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked") && err.is_empty(), "{err}");
    assert_eq!(stdout(&o).lines().next(), Some("row,class,probability"));
    // with bash's pipefail the status of nn itself shows: 0
    let o = std::process::Command::new("bash")
        .arg("-c")
        .arg("set -o pipefail; \"$0\" predict --model m.nnm --input rows.csv | head -1 > /dev/null")
        .arg(support::run::nn_binary())
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // a closed standard output
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("\"$0\" inspect m.nnm >&-")
        .arg(support::run::nn_binary())
        .current_dir(d)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{:?} {err}",
        o.status
    );
}
