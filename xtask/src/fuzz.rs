//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the fuzz targets of `fuzz/` with
//! cargo-fuzz (libFuzzer) on the nightly toolchain, installing cargo-fuzz if it is missing.
//!
//! Each target starts from its committed seeds (`fuzz/seeds/TARGET`) and grows a working
//! corpus in `target/fuzz-corpus/TARGET` (not committed). An input that crashes a target is
//! copied to `fuzz/regressions/TARGET/`, which the stable test suite replays
//! (`tests/fuzz_corpus.rs`) once it is committed, and the run fails. The stable build never
//! needs nightly: only this command does.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{flag, root};

/// The fuzz targets, as `fuzz/Cargo.toml` lists them.
pub const TARGETS: [&str; 7] = [
    "model_file",
    "checkpoint_file",
    "csv",
    "idx",
    "layers",
    "spec_file",
    "safetensors_file",
];

/// Runs `cargo xtask fuzz`.
pub fn fuzz(args: &[String]) -> Result<()> {
    let seconds: u64 = flag(args, "--seconds")?.map_or(Ok(60), |s| {
        s.parse().context("--seconds needs a whole number")
    })?;
    let which: Vec<&str> = match args
        .iter()
        .find(|a| !a.starts_with("--") && !is_value(args, a))
    {
        Some(t) if TARGETS.contains(&t.as_str()) => vec![t.as_str()],
        Some(t) => bail!(
            "unknown fuzz target `{t}`; the targets are {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    ensure_tools()?;
    let mut failed = Vec::new();
    for t in which {
        if !run_target(t, seconds)? {
            failed.push(t);
        }
    }
    if !failed.is_empty() {
        bail!(
            "fuzz target(s) {} crashed; the inputs are in fuzz/regressions/ (commit them: the stable tests replay them)",
            failed.join(", ")
        );
    }
    Ok(())
}

fn is_value(args: &[String], a: &str) -> bool {
    args.windows(2).any(|w| w[0] == "--seconds" && w[1] == a)
}

/// The nightly toolchain and cargo-fuzz, installed if missing.
fn ensure_tools() -> Result<()> {
    let nightly = Command::new("cargo")
        .args(["+nightly", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!("fuzzing needs a nightly toolchain: `rustup toolchain install nightly`");
    }
    let has_fuzz = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_fuzz {
        eprintln!("$ cargo install cargo-fuzz --locked");
        let ok = Command::new("cargo")
            .args(["install", "cargo-fuzz", "--locked"])
            .status()
            .context("could not run cargo install")?
            .success();
        if !ok {
            bail!("`cargo install cargo-fuzz --locked` failed");
        }
    }
    Ok(())
}

/// Fuzzes one target for `seconds`; returns whether it ran without a crash. Prints the
/// executions and coverage libFuzzer reports at the end.
fn run_target(target: &str, seconds: u64) -> Result<bool> {
    let root = root();
    let corpus = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let seeds = root.join("fuzz/seeds").join(target);
    let artifacts = root.join("target/fuzz-artifacts").join(target);
    std::fs::create_dir_all(&artifacts)?;
    eprintln!("== fuzzing {target} for {seconds} s");
    let out = Command::new("cargo")
        .current_dir(root.join("fuzz"))
        .args(["+nightly", "fuzz", "run", "-O", target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .args([
            "-rss_limit_mb=2048",
            "-max_len=65536",
            "-print_final_stats=1",
        ])
        .output()
        .context("could not run cargo fuzz")?;
    let log = String::from_utf8_lossy(&out.stderr);
    report(target, &log);
    if out.status.success() {
        return Ok(true);
    }
    keep_crashes(target, &artifacts)?;
    // the panic message and the first frames, not libFuzzer's signal-handler trace
    let at = log.find("panicked at").unwrap_or(0);
    eprintln!("{}", head(&log[at..], 12));
    Ok(false)
}

/// The last `DONE` line's executions and coverage, and the final stats.
fn report(target: &str, log: &str) {
    let done = log
        .lines()
        .rev()
        .find(|l| l.contains(" DONE ") || l.contains("cov:"));
    let execs = log
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .map(str::trim);
    println!(
        "{target}: {} executions; {}",
        execs.unwrap_or("?"),
        done.map_or("no coverage line", str::trim)
    );
}

/// Copies the crash inputs libFuzzer wrote to `fuzz/regressions/TARGET/`.
fn keep_crashes(target: &str, artifacts: &Path) -> Result<()> {
    let dest = root().join("fuzz/regressions").join(target);
    std::fs::create_dir_all(&dest)?;
    for e in std::fs::read_dir(artifacts)?.flatten() {
        let name = e.file_name();
        std::fs::copy(e.path(), dest.join(&name))?;
        eprintln!("kept {}", dest.join(name).display());
    }
    Ok(())
}

fn head(text: &str, n: usize) -> String {
    text.lines().take(n).collect::<Vec<_>>().join("\n")
}
