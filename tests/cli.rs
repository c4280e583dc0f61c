//! End to end through the real `nn` binary: train → save → inspect → predict → eval on a
//! small CSV, checkpoints and resuming, and every bad input a user can give.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nn::io::load_model;
use nn::layers::{Registry, Slot};

/// The `nn` binary cargo built for this test run (next to the test executable's folder).
fn nn_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap(); // target/<profile>/deps → target/<profile>
    let bin = dir.join(format!("nn{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "nn-cli", "--bin", "nn"])
            .status()
            .unwrap();
        assert!(status.success(), "could not build the nn binary");
    }
    bin
}

fn nn(args: &[&str], dir: &Path) -> Output {
    Command::new(nn_binary())
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a clean failure: non-zero exit, one `error:` line naming `needle`, no panic.
fn fails_with(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "panic output: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("note:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains(needle),
        "`{needle}` not in: {err}"
    );
}

fn train_iris(dir: &Path, out: &str, epochs: &str, extra: &[&str]) -> Output {
    let data = repo("data/iris.csv");
    let mut args = vec![
        "train",
        "--data",
        &data,
        "--label",
        "species",
        "--layers",
        "dense:16,tanh,dense:3",
        "--epochs",
        epochs,
        "--batch-size",
        "16",
        "--lr",
        "0.01",
        "--seed",
        "5",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    nn(&args, dir)
}

#[test]
fn train_save_inspect_predict_eval() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = train_iris(
        d,
        "iris.nnm",
        "40",
        &["--metrics-json", "m.json", "--plot", "curves.png"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    assert!(text.contains("epoch 40/40"), "{text}");
    let acc: f32 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("test: ")
                .and_then(|l| l.split("accuracy ").nth(1))
        })
        .and_then(|a| a.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in {text}"));
    assert!(acc >= 0.85, "iris test accuracy {acc}");
    assert!(
        text.contains("setosa"),
        "confusion matrix with class names: {text}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("m.json")).unwrap()).unwrap();
    assert_eq!(json["history"]["epochs"].as_array().unwrap().len(), 40);
    let png = std::fs::read(d.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let o = nn(&["inspect", "iris.nnm"], d);
    assert!(o.status.success());
    let text = stdout(&o);
    for want in [
        "format:      version 2",
        "(ok)",
        "dense(4 → 16)",
        "total parameters: 131",
        "setosa, versicolor, virginica",
        "label column:  species",
    ] {
        assert!(
            text.contains(want),
            "`{want}` missing from inspect output:\n{text}"
        );
    }

    // predict reads the model's feature columns by name, in any order, ignoring others
    std::fs::write(
        d.join("rows.csv"),
        "petal_width,petal_length,sepal_width,sepal_length,note\n0.2,1.4,3.5,5.1,a\n2.3,5.4,3.0,6.7,b\n",
    )
    .unwrap();
    let o = nn(
        &["predict", "--model", "iris.nnm", "--input", "rows.csv"],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines[0], "row,class,probability");
    assert!(lines[1].starts_with("1,setosa,"), "{lines:?}");
    assert!(lines[2].starts_with("2,virginica,"), "{lines:?}");
    let o = nn(
        &[
            "predict", "--model", "iris.nnm", "--input", "rows.csv", "--format", "json",
        ],
        d,
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v[1]["class"], "virginica");

    let o = nn(
        &[
            "eval",
            "--model",
            "iris.nnm",
            "--data",
            &repo("data/iris.csv"),
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("(150 rows)"), "{}", stdout(&o));
}

fn weights(path: &Path) -> Vec<u32> {
    let mut m = load_model(path, &Registry::new()).unwrap().model;
    let mut out = Vec::new();
    m.visit(&mut |_, s| {
        if let Slot::Param(p) = s {
            out.extend(p.value.iter().map(|v| v.to_bits()));
        }
    });
    out
}

#[test]
fn resuming_a_checkpoint_gives_the_same_weights_as_never_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let common = ["--optimizer", "momentum", "--schedule", "cosine"];
    let o = train_iris(d, "straight.nnm", "4", &common);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = train_iris(
        d,
        "half.nnm",
        "4",
        &[&["--checkpoint-dir", "ck"], &common[..]].concat(),
    );
    assert!(o.status.success());
    // stop after 2 of the 4 epochs: resume from the epoch-2 checkpoint
    let o = nn(
        &[
            "train",
            "--data",
            &repo("data/iris.csv"),
            "--resume",
            "ck/epoch-0002.nnck",
            "--out",
            "resumed.nnm",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        // cosine from 0.01 over 4 epochs, at t = 2: 0.01·(1 + cos(π/2))/2 = 0.005
        stdout(&o).contains("resuming ck/epoch-0002.nnck after epoch 2: the schedule (0.01 cosine to 0 over 4 epochs) continues at epoch 3 with learning rate 0.005"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("epoch 3/4") && !stdout(&o).contains("epoch 2/4"));
    assert_eq!(
        weights(&d.join("straight.nnm")),
        weights(&d.join("resumed.nnm"))
    );
    let o = nn(&["inspect", "ck/epoch-0002.nnck"], d);
    assert!(
        stdout(&o).contains("checkpoint:  after epoch 2"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn bad_inputs_fail_cleanly_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(train_iris(d, "good.nnm", "2", &[]).status.success());
    let good = std::fs::read(d.join("good.nnm")).unwrap();
    let iris = repo("data/iris.csv");
    let rows = "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n";
    std::fs::write(d.join("rows.csv"), rows).unwrap();
    let predict = |model: &str| nn(&["predict", "--model", model, "--input", "rows.csv"], d);

    fails_with(
        &nn(
            &[
                "train",
                "--data",
                "missing.csv",
                "--label",
                "y",
                "--layers",
                "dense:2",
                "--out",
                "x.nnm",
            ],
            d,
        ),
        "missing.csv: no such file",
    );
    fails_with(&predict("missing.nnm"), "missing.nnm: No such file");

    std::fs::write(d.join("empty.csv"), "").unwrap();
    fails_with(
        &nn(
            &[
                "train",
                "--data",
                "empty.csv",
                "--label",
                "y",
                "--layers",
                "dense:2",
                "--out",
                "x.nnm",
            ],
            d,
        ),
        "empty.csv: empty file",
    );
    std::fs::write(d.join("empty.nnm"), "").unwrap();
    fails_with(&predict("empty.nnm"), "empty.nnm: not a model file");

    std::fs::write(d.join("truncated.nnm"), &good[..good.len() / 2]).unwrap();
    fails_with(
        &predict("truncated.nnm"),
        "truncated.nnm: header declares a",
    );

    let mut flipped = good.clone();
    flipped[good.len() - 40] ^= 0x04;
    std::fs::write(d.join("flipped.nnm"), &flipped).unwrap();
    fails_with(&predict("flipped.nnm"), "flipped.nnm: checksum mismatch");
    fails_with(&nn(&["inspect", "flipped.nnm"], d), "checksum mismatch");

    std::fs::write(d.join("magic.nnm"), std::fs::read(&iris).unwrap()).unwrap();
    fails_with(&predict("magic.nnm"), "magic.nnm: not a model file");

    let mut future = good.clone();
    future[8..12].copy_from_slice(&3u32.to_le_bytes());
    std::fs::write(d.join("future.nnm"), &future).unwrap();
    fails_with(
        &predict("future.nnm"),
        "future.nnm: format version 3 is not supported; this build reads versions 1 to 2",
    );

    let mut bad = std::fs::read_to_string(&iris).unwrap();
    bad = bad.replacen("5.0,3.6,1.4,0.2", "5.0,3.6,abc,0.2", 1);
    std::fs::write(d.join("bad.csv"), bad).unwrap();
    fails_with(
        &nn(
            &[
                "train", "--data", "bad.csv", "--label", "species", "--layers", "dense:3", "--out",
                "x.nnm",
            ],
            d,
        ),
        "bad.csv: line 6, column 3 (`petal_length`): expected a finite number, got `abc`",
    );

    fails_with(
        &nn(
            &[
                "train",
                "--data",
                &iris,
                "--label",
                "species",
                "--layers",
                "dense:8,relu,dense:4",
                "--out",
                "x.nnm",
            ],
            d,
        ),
        "the network ends with [4] outputs but",
    );
    fails_with(
        &nn(
            &[
                "train", "--data", &iris, "--label", "kind", "--layers", "dense:3", "--out",
                "x.nnm",
            ],
            d,
        ),
        "no column named `kind`",
    );
    fails_with(
        &nn(
            &[
                "train",
                "--data",
                &iris,
                "--label",
                "species",
                "--layers",
                "dense:3",
                "--out",
                "no/such/dir/x.nnm",
            ],
            d,
        ),
        "could not save",
    );
    // nothing above touched the good model
    assert_eq!(std::fs::read(d.join("good.nnm")).unwrap(), good);
}

#[test]
fn gradcheck_command_reports_every_layer() {
    let dir = tempfile::tempdir().unwrap();
    let o = nn(
        &[
            "gradcheck",
            "--layers",
            "dense:6,tanh,dense:3,sigmoid",
            "--input-shape",
            "4",
        ],
        dir.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    for want in [
        "dense(4 → 6)",
        "tanh",
        "dense(6 → 3)",
        "sigmoid",
        "whole network",
    ] {
        assert!(text.contains(want), "`{want}` missing:\n{text}");
    }
}

/// Writes an MNIST-style folder of 8×8 images of a horizontal (0) or vertical (1) bar.
fn write_bars(dir: &Path) {
    for (part, n, seed) in [("train", 400usize, 1u64), ("t10k", 100, 2)] {
        let mut r = nn::core::seeded(seed);
        let (mut img, mut lab) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let class = nn::core::rng::below(&mut r, 2);
            let at = 1 + nn::core::rng::below(&mut r, 6);
            for a in 0..8 {
                for b in 0..8 {
                    let on = if class == 0 { a == at } else { b == at };
                    img.push(if on {
                        200
                    } else {
                        nn::core::rng::below(&mut r, 60) as u8
                    });
                }
            }
            lab.push(class as u8);
        }
        let idx = |dims: &[u32], data: &[u8]| {
            let mut b = vec![0, 0, 8, dims.len() as u8];
            dims.iter()
                .for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
            b.extend_from_slice(data);
            b
        };
        std::fs::write(
            dir.join(format!("{part}-images-idx3-ubyte")),
            idx(&[n as u32, 8, 8], &img),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{part}-labels-idx1-ubyte")),
            idx(&[n as u32], &lab),
        )
        .unwrap();
    }
}

#[test]
fn convolutional_network_on_idx_images() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("bars")).unwrap();
    write_bars(&d.join("bars"));
    let o = nn(
        &[
            "train",
            "--data",
            "bars",
            "--layers",
            "conv:4:3x3:p1,bn,relu,maxpool:2,flatten,dropout:0.2,dense:2",
            "--epochs",
            "6",
            "--batch-size",
            "16",
            "--lr",
            "0.01",
            "--out",
            "bars.nnm",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = stdout(&o);
    let acc: f32 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("test: ")
                .and_then(|l| l.split("accuracy ").nth(1))
        })
        .and_then(|a| a.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test accuracy in {text}"));
    assert!(acc >= 0.9, "bars test accuracy {acc}");

    let o = nn(&["inspect", "bars.nnm"], d);
    let text = stdout(&o);
    for want in [
        "architecture (input [1, 8, 8])",
        "[4, 8, 8]",
        "[4, 4, 4]",
        "[64]",
        "batchnorm(4)",
        "dropout(0.2)",
    ] {
        assert!(text.contains(want), "`{want}` missing from:\n{text}");
    }
    let o = nn(
        &[
            "predict",
            "--model",
            "bars.nnm",
            "--input",
            "bars/t10k-images-idx3-ubyte",
        ],
        d,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o).lines().count(), 101);

    // a spec that does not fit the images is refused before training
    fails_with(
        &nn(
            &[
                "train",
                "--data",
                "bars",
                "--layers",
                "conv:4:9x9,relu,flatten,dense:2",
                "--out",
                "x.nnm",
            ],
            d,
        ),
        "kernel larger than the padded input",
    );
}
