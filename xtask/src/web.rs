//! The browser page: `cargo xtask web` builds `crates/nn-wasm` for `wasm32-unknown-unknown`,
//! generates its JavaScript bindings with the `wasm-bindgen` CLI (installed from crates.io
//! into `target/tools` at the version `Cargo.lock` pins), runs `wasm-opt` when one is on the
//! `PATH`, and writes everything the page needs to `target/web`: `index.html`, `app.js`,
//! `style.css`, `pkg/` and the model `digits.nnm`. The folder works offline; [`serve`]
//! serves it on 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root};

/// The wasm target.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// The folder the page is written to.
pub fn out_dir() -> PathBuf {
    root().join("target/web")
}

/// The `.wasm` file of the page (after `wasm-bindgen`).
pub fn wasm_file(dir: &Path) -> PathBuf {
    dir.join("pkg/nn_wasm_bg.wasm")
}

/// Builds the page into [`out_dir`] with `model` as its `digits.nnm`; returns the folder.
///
/// # Errors
/// A failed step (target, build, bindings, copy), with the command that failed.
pub fn build(model: &Path) -> Result<PathBuf> {
    add_target()?;
    cargo(
        &[
            "build",
            "--locked",
            "--profile",
            "wasm-release",
            "--target",
            TARGET,
            "-p",
            "nn-wasm",
        ],
        &[],
    )?;
    let out = out_dir();
    let pkg = out.join("pkg");
    std::fs::create_dir_all(&pkg).with_context(|| format!("creating {}", pkg.display()))?;
    let wasm = root().join(format!("target/{TARGET}/wasm-release/nn_wasm.wasm"));
    run(Command::new(wasm_bindgen()?)
        .args([
            "--target",
            "web",
            "--no-typescript",
            "--remove-name-section",
        ])
        .args(["--remove-producers-section", "--out-dir"])
        .arg(&pkg)
        .arg(&wasm))?;
    if let Ok(opt) = which("wasm-opt") {
        let file = wasm_file(&out);
        run(Command::new(opt).arg("-Oz").arg(&file).arg("-o").arg(&file))?;
    }
    for f in ["index.html", "app.js", "style.css"] {
        copy(&root().join("web").join(f), &out.join(f))?;
    }
    copy(model, &out.join("digits.nnm"))?;
    Ok(out)
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// Adds the wasm target with rustup when it is not installed.
///
/// # Errors
/// rustup failing or missing.
pub fn add_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        eprintln!("$ rustup target add {TARGET}");
        run(Command::new("rustup").args(["target", "add", TARGET]))
            .context("the wasm target is needed: rustup target add wasm32-unknown-unknown")?;
    }
    Ok(())
}

/// The `wasm-bindgen` CLI of the version `Cargo.lock` pins, installed into `target/tools`
/// from crates.io when missing.
fn wasm_bindgen() -> Result<PathBuf> {
    let version = locked_version("wasm-bindgen")?;
    let tools = root().join("target/tools");
    let bin = tools.join("bin/wasm-bindgen");
    let current = Command::new(&bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&version))
        .unwrap_or(false);
    if !current {
        let tools = tools.to_str().context("the workspace path is not UTF-8")?;
        cargo(
            &[
                "install",
                "wasm-bindgen-cli",
                "--version",
                &version,
                "--root",
                tools,
            ],
            &[],
        )?;
    }
    Ok(bin)
}

/// The version of `package` in `Cargo.lock`.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let entry = format!("name = \"{package}\"\nversion = \"");
    let start = lock
        .find(&entry)
        .with_context(|| format!("{package} is not in Cargo.lock"))?
        + entry.len();
    let end = lock[start..].find('"').context("a version in Cargo.lock")? + start;
    Ok(lock[start..end].to_string())
}

/// The path of a program on the `PATH`.
pub fn which(program: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("`{program}` is not on the PATH"))
}

/// Runs a command, failing with it and its status.
///
/// # Errors
/// The command could not start or failed.
pub fn run(c: &mut Command) -> Result<()> {
    let status = c
        .status()
        .with_context(|| format!("could not start {c:?}"))?;
    if !status.success() {
        bail!("{c:?} failed ({status})");
    }
    Ok(())
}

/// Serves the files of `dir` over HTTP on `listener` (GET only, no listing), one thread
/// per connection; returns only if accepting fails.
pub fn serve(dir: &Path, listener: TcpListener) -> Result<()> {
    for stream in listener.incoming() {
        let stream = stream.context("accepting a connection")?;
        let dir = dir.to_path_buf();
        std::thread::spawn(move || {
            let _ = respond(&dir, stream); // a client that went away is not our error
        });
    }
    Ok(())
}

/// Answers one request: the file under `dir` the path names, `index.html` for `/`.
fn respond(dir: &Path, mut stream: TcpStream) -> std::io::Result<()> {
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    reader.read_line(&mut line)?;
    while {
        let mut h = String::new();
        reader.read_line(&mut h)? > 2 // headers end with an empty line
    } {}
    let path = line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let rel = if path == "/" {
        "index.html"
    } else {
        path.trim_start_matches('/')
    };
    let safe = Path::new(rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let file = dir.join(rel);
    match std::fs::read(&file) {
        Ok(body) if safe && line.starts_with("GET ") => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
                mime(&file),
                body.len()
            );
            // one write: a head and a body sent apart wait for the client's delayed ACK
            let mut response = head.into_bytes();
            response.extend_from_slice(&body);
            stream.write_all(&response)
        }
        _ => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    }
}

/// The content type of a file the page uses (`application/wasm` lets the browser compile
/// the module while it downloads).
fn mime(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}
