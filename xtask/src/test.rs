//! `cargo xtask test`: the whole test suite with everything it needs, prepared first.
//!
//! Besides Rust, the ONNX export test (`tests/onnx_runtime.rs`) needs a Python with
//! `onnx`, `onnxruntime` and `numpy`. This command makes a virtual environment in
//! `target/python` (once; later runs reuse it), installs the pinned versions of
//! `tests/python/requirements.txt` from PyPI, builds the `nn` binary the end-to-end tests
//! run, and runs `cargo test --workspace --locked` with `NN_PYTHON` pointing at that Python
//! and `NN_REQUIRE_PYTHON=1`, so a missing package fails the run instead of skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root};

/// Runs the test suite with its Python side prepared.
pub fn test(args: &[String]) -> Result<()> {
    let python = python_env()?;
    cargo(&["build", "--locked", "-p", "nn-cli", "--bin", "nn"], &[])?;
    let python = python.to_str().context("the workspace path is not UTF-8")?;
    let mut full = vec!["test", "--workspace", "--locked"];
    full.extend(args.iter().map(String::as_str));
    cargo(&full, &[("NN_PYTHON", python), ("NN_REQUIRE_PYTHON", "1")])
}

/// The virtual environment's Python, made and filled if it cannot import the packages.
fn python_env() -> Result<PathBuf> {
    let venv = root().join("target/python");
    let python = venv.join("bin/python");
    if imports(&python) {
        return Ok(python);
    }
    let requirements = root().join("tests/python/requirements.txt");
    eprintln!("$ python3 -m venv {}", venv.display());
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
        "python3 with the venv module is needed for the ONNX Runtime test: apt-get install python3 python3-venv",
    )?;
    eprintln!(
        "$ {} -m pip install -r {}",
        python.display(),
        requirements.display()
    );
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(&requirements))
    .context("could not install the packages of tests/python/requirements.txt from PyPI")?;
    if !imports(&python) {
        bail!(
            "{} still cannot import onnx, onnxruntime and numpy",
            python.display()
        );
    }
    Ok(python)
}

/// Whether `python` runs and imports the packages the ONNX test uses.
fn imports(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(c: &mut Command) -> Result<()> {
    let status = c
        .status()
        .with_context(|| format!("could not start {c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed ({status})");
    }
    Ok(())
}
