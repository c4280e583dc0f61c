//! Project automation, run as `cargo xtask <command>`.
//!
//! - `cargo xtask ci`: the checks CI runs (`.ci/run` calls the same steps): formatting,
//!   clippy with warnings denied, documentation without warnings, and the test suite.

use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some(other) => bail!("unknown xtask command `{other}`; available: ci"),
        None => {
            eprintln!("usage: cargo xtask <command>\n\ncommands:\n  ci    run the CI checks");
            std::process::exit(2);
        }
    }
}

/// Runs `cargo <args>` (with extra environment), failing with the command line on error.
fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
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
