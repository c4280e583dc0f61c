//! `cargo xtask test`: the whole test suite with everything it needs, prepared first.
//!
//! Besides Rust, two tests need more:
//! - the ONNX export test (`tests/onnx_runtime.rs`) needs a Python with `onnx`,
//!   `onnxruntime` and `numpy`: this command makes a virtual environment in
//!   `target/python` (once; later runs reuse it) with the pinned versions of
//!   `tests/python/requirements.txt` from PyPI;
//! - the browser test (`xtask/tests/browser.rs`) needs the page built for wasm32
//!   (`cargo xtask web --build-only`, which adds the target and the `wasm-bindgen` CLI) and
//!   Chromium with its WebDriver (`apt-get install chromium chromium-driver`, run here when
//!   they are missing and the user is root).
//!
//! It then builds the `nn` binary the end-to-end tests run and runs `cargo test --workspace
//! --locked` with `NN_PYTHON`, `NN_WEB_DIR`, `NN_CHROMIUM` and `NN_CHROMEDRIVER` set and
//! `NN_REQUIRE_PYTHON=1`, `NN_REQUIRE_BROWSER=1`, so a missing piece fails the run instead
//! of skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use xtask::web::{run, which};

use crate::{cargo, root};

/// Runs the test suite with its Python side prepared.
pub fn test(args: &[String]) -> Result<()> {
    let python = python_env()?;
    cargo(&["build", "--locked", "-p", "nn-cli", "--bin", "nn"], &[])?;
    let web = xtask::web::build(&crate::test_digits_model()?)?;
    let (chromium, driver) = browser()?;
    let text = |p: &Path| {
        p.to_str()
            .map(String::from)
            .context("a path that is not UTF-8")
    };
    let (python, web) = (text(&python)?, text(&web)?);
    let (chromium, driver) = (text(&chromium)?, text(&driver)?);
    let mut full = vec!["test", "--workspace", "--locked"];
    full.extend(args.iter().map(String::as_str));
    cargo(
        &full,
        &[
            ("NN_PYTHON", &python),
            ("NN_REQUIRE_PYTHON", "1"),
            ("NN_WEB_DIR", &web),
            ("NN_CHROMIUM", &chromium),
            ("NN_CHROMEDRIVER", &driver),
            ("NN_REQUIRE_BROWSER", "1"),
        ],
    )
}

/// Chromium and its WebDriver, installed with apt when missing and the user is root.
fn browser() -> Result<(PathBuf, PathBuf)> {
    let found = || Ok::<_, anyhow::Error>((which("chromium")?, which("chromedriver")?));
    if let Ok(both) = found() {
        return Ok(both);
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root_user || which("apt-get").is_err() {
        bail!(
            "the browser test needs Chromium and its driver: sudo apt-get install chromium chromium-driver"
        );
    }
    eprintln!("$ apt-get update && apt-get install -y chromium chromium-driver");
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get").args(["install", "-y", "-q", "chromium", "chromium-driver"]))?;
    found()
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
