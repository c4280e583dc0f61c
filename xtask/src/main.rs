//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask train [--dataset digits|fashion-mnist] [--data-dir DIR] [--out FILE]`:
//!   trains the default model with the `nn` command (release build) and saves it;
//! - `cargo xtask ci`: the checks CI runs (`.ci/run` runs the same steps).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  train [--dataset digits|fashion-mnist] [--data-dir DIR] [--out FILE]
        train the default model (digits: from data/digits.csv; fashion-mnist: from the
        IDX files, default folder /usr/share/datasets/fashion-mnist)
  ci    run the CI checks (fmt, clippy, docs, tests)";

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
        Some("train") => train(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown xtask command `{other}`\n\n{USAGE}"),
    }
}

/// The workspace root (the folder above `xtask/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

/// Runs `cargo <args>` in the workspace root, failing with the command line on error.
fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .with_context(|| format!("could not start `{cargo}`"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
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
        &["doc", "--workspace", "--no-deps"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    cargo(&["test", "--workspace"], &[])?;
    Ok(())
}

/// Value of `--name VALUE` in `args`, if present.
fn flag<'a>(args: &'a [String], name: &str) -> Result<Option<&'a str>> {
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1) {
            Some(v) => Ok(Some(v)),
            None => bail!("{name} needs a value"),
        },
        None => Ok(None),
    }
}

/// Trains the default model on a data set through `nn train` (release build).
fn train(args: &[String]) -> Result<()> {
    for a in args.iter().filter(|a| a.starts_with("--")) {
        if !["--dataset", "--data-dir", "--out"].contains(&a.as_str()) {
            bail!("unknown option `{a}` for `cargo xtask train`\n\n{USAGE}");
        }
    }
    let dataset = flag(args, "--dataset")?.unwrap_or("digits");
    let models = root().join("models");
    std::fs::create_dir_all(&models).context("cannot create models/")?;
    let (mut nn_args, default_out): (Vec<String>, &str) = match dataset {
        "digits" => (
            [
                "--data",
                "data/digits.csv",
                "--label",
                "digit",
                "--layers",
                "dense:128,relu,dense:10",
                "--optimizer",
                "adam",
                "--lr",
                "0.001",
                "--epochs",
                "60",
                "--early-stopping",
                "10",
                "--batch-size",
                "32",
                "--val-split",
                "0.1",
                "--test-split",
                "0.2",
                "--seed",
                "42",
            ]
            .map(String::from)
            .to_vec(),
            "models/digits.nnm",
        ),
        "fashion-mnist" => {
            let dir = flag(args, "--data-dir")?.unwrap_or("/usr/share/datasets/fashion-mnist");
            if !Path::new(dir).join("train-images-idx3-ubyte.gz").is_file()
                && !Path::new(dir).join("train-images-idx3-ubyte").is_file()
            {
                bail!(
                    "no Fashion-MNIST files in {dir}\n  install them with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu),\n  or download the four *-ubyte.gz files of the Fashion-MNIST project into a folder and pass --data-dir DIR"
                );
            }
            (
                [
                    "--data",
                    dir,
                    "--layers",
                    "dense:256,relu,dense:128,relu,dense:10",
                    "--optimizer",
                    "adam",
                    "--lr",
                    "0.001",
                    "--schedule",
                    "cosine",
                    "--epochs",
                    "15",
                    "--batch-size",
                    "64",
                    "--val-split",
                    "0.05",
                    "--seed",
                    "42",
                ]
                .map(String::from)
                .to_vec(),
                "models/fashion-mnist.nnm",
            )
        }
        other => bail!("unknown dataset `{other}`; expected digits or fashion-mnist"),
    };
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
