//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask train [--dataset digits|fashion-mnist] [--data-dir DIR] [--out FILE]`:
//!   trains the default model with the `nn` command (release build) and saves it;
//! - `cargo xtask bench [w1|…|w6|all] [--peer torch|ort]`: the standard workloads, with
//!   ratios against PyTorch (or, for W4, ONNX Runtime) measured in the same invocation;
//! - `cargo xtask fuzz [TARGET] [--seconds N]`: the fuzz targets (nightly, cargo-fuzz);
//! - `cargo xtask test`: the whole test suite, its Python side (ONNX Runtime), the page and
//!   Chromium prepared;
//! - `cargo xtask web [--port N] [--build-only]`: builds the draw-a-digit page into
//!   `target/web` and serves it;
//! - `cargo xtask ci`: the checks CI runs (`.ci/run` runs the same steps).

mod bench;
mod bench_ort;
mod bench_scale;
mod fuzz;
mod test;

use std::path::Path;

use anyhow::{Context, Result, bail};
pub(crate) use xtask::{cargo, root};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  train [--dataset digits|fashion-mnist] [--model mlp|cnn] [--data-dir DIR] [--out FILE]
        train the default model (digits: from data/digits.csv; fashion-mnist: from the
        IDX files, default folder /usr/share/datasets/fashion-mnist; --model cnn trains a
        LeNet-style network with batch norm on Fashion-MNIST)
  bench [w1|w2|w3|w4|w5|w6|all|scale] [--reps N] [--peer torch|ort] [--peer-script PATH]
        [--python PATH] [--ort-lib FILE] [--out FILE]
        run the standard workloads (release build), optionally alternating with the
        PyTorch peer (../shared/bench/torch_peer.py) and printing nn/torch ratios; with
        --peer ort, W4 against ONNX Runtime through its C API (libonnxruntime.so from the
        Python package, or --ort-lib) and through Python (../shared/bench/ort_peer.py)
  fuzz [TARGET] [--seconds N]
        fuzz the parsers (model_file, checkpoint_file, csv, idx, layers, spec_file,
        safetensors_file; all
        by default) for N seconds each (default 60) with cargo-fuzz on the nightly
        toolchain; crashes are kept in fuzz/regressions/ for the stable tests to replay
  test [ARGS]
        run the whole test suite (cargo test --workspace --locked [ARGS]) after making
        target/python, a Python venv with onnx, onnxruntime and numpy for the ONNX
        Runtime test, and building the nn binary the end-to-end tests run
  web [--port N] [--build-only]
        build the draw-a-digit page (crates/nn-wasm for wasm32, wasm-bindgen, web/, the
        digits model) into target/web and serve it on http://127.0.0.1:N/ (default 8080)
  ci    run the CI checks (fmt, clippy, docs, package, test)";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("test") => test::test(&args[1..]),
        Some("web") => web(&args[1..]),
        Some("train") => train(&args[1..]),
        Some("bench") => bench::bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown xtask command `{other}`\n\n{USAGE}"),
    }
}

/// `cargo xtask web`: builds the page (training the digits model first if
/// `models/digits.nnm` is missing) and serves it unless `--build-only`.
fn web(args: &[String]) -> Result<()> {
    let model = digits_model()?;
    let dir = xtask::web::build(&model)?;
    let wasm = std::fs::metadata(xtask::web::wasm_file(&dir)).map_or(0, |m| m.len());
    println!(
        "page written to {} ({} KB of wasm)",
        dir.display(),
        wasm / 1000
    );
    if args.iter().any(|a| a == "--build-only") {
        return Ok(());
    }
    let port = flag(args, "--port")?.unwrap_or("8080");
    let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}")).with_context(|| {
        format!("cannot listen on 127.0.0.1:{port} (choose another with --port)")
    })?;
    println!("serving http://{}/ (Ctrl-C stops)", listener.local_addr()?);
    xtask::web::serve(&dir, listener)
}

/// `models/digits.nnm`, trained by `cargo xtask train` if it is not there.
pub(crate) fn digits_model() -> Result<std::path::PathBuf> {
    let model = root().join("models/digits.nnm");
    if !model.is_file() {
        train(&[])?;
    }
    Ok(model)
}

/// The page's model for the tests: `models/digits.nnm` when present, else the default digits
/// model trained by the dev-profile `nn` (which the tests build anyway) into `target/web-model`.
pub(crate) fn test_digits_model() -> Result<std::path::PathBuf> {
    let model = root().join("models/digits.nnm");
    if model.is_file() {
        return Ok(model);
    }
    let out = root().join("target/web-model/digits.nnm");
    std::fs::create_dir_all(root().join("target/web-model"))?;
    let out_text = out.to_str().context("a path that is not UTF-8")?;
    let data = root().join("data/digits.csv");
    let data = data.to_str().context("a path that is not UTF-8")?;
    let mut full = vec![
        "run", "--quiet", "--locked", "-p", "nn-cli", "--bin", "nn", "--", "train",
    ];
    full.extend(["--data", data, "--out", out_text]);
    full.extend(DIGITS.split_whitespace());
    cargo(&full, &[])?;
    Ok(out)
}

/// The CI steps, in the order `.ci/run` runs them.
fn ci() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"], &[])?;
    cargo(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        &[
            "clippy",
            "-p",
            "nn-bench",
            "--features",
            "ort",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    xtask::web::add_target()?;
    cargo(
        &[
            "clippy",
            "--target",
            xtask::web::TARGET,
            "-p",
            "nn-wasm",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    cargo(
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    drop_unpacked_copies()?;
    cargo(
        &[
            "package",
            "-p",
            "nn-core",
            "-p",
            "nn-layers",
            "-p",
            "nn-optim",
            "-p",
            "nn-io",
            "-p",
            "nn-cli",
        ],
        &[],
    )?;
    test::test(&[])
}

/// The crates `cargo package` puts into its local registry.
const PACKAGED: [&str; 5] = ["nn-core", "nn-layers", "nn-optim", "nn-io", "nn-cli"];

/// Removes the copies of our crates that earlier `cargo package` runs unpacked under
/// `CARGO_HOME` (folders of local registries start with `-`): cargo reuses an unpacked copy
/// of the same name and version, so a clone at a path packaged before would otherwise be
/// verified against the old sources.
fn drop_unpacked_copies() -> Result<()> {
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(home) = home else { return Ok(()) };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue; // crates.io and other remote registries
            }
            for entry in std::fs::read_dir(registry.path())?.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if PACKAGED.iter().any(|c| name.starts_with(&format!("{c}-"))) {
                    let path = entry.path();
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else {
                        std::fs::remove_file(&path)
                    };
                    removed.with_context(|| format!("removing {}", path.display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Value of `--name VALUE` in `args`, if present.
pub(crate) fn flag<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>> {
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1) {
            Some(v) => Ok(Some(v)),
            None => bail!("{name} needs a value"),
        },
        None => Ok(None),
    }
}

/// `nn train` settings of the default digits model.
const DIGITS: &str = "--label digit --layers dense:128,relu,dense:10 --optimizer adam --lr 0.001 \
    --epochs 60 --early-stopping 10 --batch-size 32 --val-split 0.1 --test-split 0.2 --seed 42";

/// `nn train` settings of the default Fashion-MNIST MLP.
const FASHION_MLP: &str = "--layers dense:256,relu,dense:128,relu,dense:10 --optimizer adam --lr 0.001 \
    --schedule cosine --epochs 15 --batch-size 64 --val-split 0.05 --seed 42";

/// `nn train` settings of the default Fashion-MNIST CNN (LeNet-style, with batch norm).
const FASHION_CNN: &str = "--layers \
    conv:12:5x5:p2,bn,relu,maxpool:2,conv:24:5x5,bn,relu,maxpool:2,flatten,dense:120,relu,dropout:0.25,dense:10 \
    --optimizer adam --lr 0.002 --schedule cosine --epochs 10 --batch-size 64 --val-split 0.05 --seed 42";

/// Trains the default model on a data set through `nn train` (release build).
fn train(args: &[String]) -> Result<()> {
    for a in args.iter().filter(|a| a.starts_with("--")) {
        if !["--dataset", "--data-dir", "--out", "--model"].contains(&a.as_str()) {
            bail!("unknown option `{a}` for `cargo xtask train`\n\n{USAGE}");
        }
    }
    let dataset = flag(args, "--dataset")?.unwrap_or("digits");
    let model = flag(args, "--model")?.unwrap_or("mlp");
    if !["mlp", "cnn"].contains(&model) {
        bail!("unknown model `{model}`; expected mlp or cnn");
    }
    if model == "cnn" && dataset != "fashion-mnist" {
        bail!("--model cnn needs image data: use it with --dataset fashion-mnist");
    }
    let models = root().join("models");
    std::fs::create_dir_all(&models).context("cannot create models/")?;
    let (data, settings, default_out) = match (dataset, model) {
        ("digits", _) => ("data/digits.csv".to_string(), DIGITS, "models/digits.nnm"),
        ("fashion-mnist", m) => {
            let dir = flag(args, "--data-dir")?.unwrap_or("/usr/share/datasets/fashion-mnist");
            if !Path::new(dir).join("train-images-idx3-ubyte.gz").is_file()
                && !Path::new(dir).join("train-images-idx3-ubyte").is_file()
            {
                bail!(
                    "no Fashion-MNIST files in {dir}\n  install them with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu),\n  or download the four *-ubyte.gz files of the Fashion-MNIST project into a folder and pass --data-dir DIR"
                );
            }
            if m == "cnn" {
                (dir.to_string(), FASHION_CNN, "models/fashion-mnist-cnn.nnm")
            } else {
                (dir.to_string(), FASHION_MLP, "models/fashion-mnist.nnm")
            }
        }
        (other, _) => bail!("unknown dataset `{other}`; expected digits or fashion-mnist"),
    };
    let mut nn_args: Vec<String> = vec!["--data".into(), data];
    nn_args.extend(settings.split_whitespace().map(String::from));
    let out = flag(args, "--out")?.unwrap_or(default_out);
    nn_args.extend(["--out".to_string(), out.to_string()]);
    let mut full = vec![
        "run",
        "--release",
        "--quiet",
        "-p",
        "nn-cli",
        "--bin",
        "nn",
        "--",
        "train",
    ];
    full.extend(nn_args.iter().map(String::as_str));
    cargo(&full, &[])?;
    println!("model saved to {out}; try `cargo run --release -p nn-cli -- inspect {out}`");
    Ok(())
}
