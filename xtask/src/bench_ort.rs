//! `cargo xtask bench w4 --peer ort`: W4 against ONNX Runtime, through its C API (nn-bench
//! built with the `ort` feature, the wheel's `libonnxruntime.so` loaded at run time) and
//! through Python (`ort_peer.py`), at 1 and 2 threads, alternating run by run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::bench::{Stats, json_records, stats};
use crate::{cargo, flag, root};

/// The sides of the comparison, in the order each repetition runs them.
const SIDES: [&str; 3] = ["nn", "ORT C API", "ORT Python"];

/// W4's two figures for one side at one thread count.
#[derive(Default)]
struct Figures {
    latency_us: Vec<f64>,
    throughput: Vec<f64>,
}

/// Reads one metric's figures.
type Getter = fn(&Figures) -> &Vec<f64>;

/// A W4 record (the peers print others too).
fn is_w4(r: &Value) -> bool {
    r["workload"] == "w4"
}

/// Figures by side (index into [`SIDES`]) and thread count (1, 2).
type Table = [[Figures; 2]; 3];

/// Runs the ONNX Runtime comparison.
pub fn bench(args: &[String], reps: usize, python: &str, out: &Path) -> Result<()> {
    let lib = ort_library(args, python)?;
    let script = root().join("../shared/bench/ort_peer.py");
    if !script.is_file() {
        bail!("{} not found (the ONNX Runtime peer)", script.display());
    }
    cargo(
        &[
            "build",
            "--release",
            "--quiet",
            "-p",
            "nn-bench",
            "--features",
            "ort",
        ],
        &[],
    )?;
    let bin = root().join("target/release/nn-bench");
    let mut table: Table = Default::default();
    for rep in 1..=reps {
        for threads in [2, 1] {
            eprintln!("== w4 run {rep} of {reps}: nn, {threads} thread(s)");
            let mut nn = Command::new(&bin);
            nn.args(["w4", "--reps", "1"])
                .env("NN_NUM_THREADS", threads.to_string());
            record(&mut table, 0, &json_records(&mut nn, out, is_w4)?);
        }
        eprintln!("== w4 run {rep} of {reps}: ONNX Runtime C API");
        let mut capi = Command::new(&bin);
        capi.args(["w4-ort", "--reps", "1", "--ort-lib"]).arg(&lib);
        record(&mut table, 1, &json_records(&mut capi, out, is_w4)?);
        eprintln!("== w4 run {rep} of {reps}: ONNX Runtime through Python");
        let mut py = Command::new(python);
        py.arg(&script)
            .args(["--reps", "1"])
            .current_dir(script.parent().unwrap_or(Path::new(".")));
        record(&mut table, 2, &json_records(&mut py, out, is_w4)?);
    }
    print_table(&table, &lib);
    println!("\nJSON lines appended to {}", out.display());
    Ok(())
}

/// `--ort-lib`, `ORT_DYLIB_PATH`, or the library inside `python`'s onnxruntime package.
fn ort_library(args: &[String], python: &str) -> Result<PathBuf> {
    if let Some(p) = flag(args, "--ort-lib")? {
        return Ok(PathBuf::from(p));
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Ok(PathBuf::from(p));
    }
    let probe = "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))";
    let output = Command::new(python)
        .args(["-c", probe])
        .output()
        .with_context(|| format!("could not run {python}"))?;
    if !output.status.success() {
        bail!(
            "{python} has no onnxruntime (`pip install torch onnx onnxruntime numpy`, or pass --ort-lib FILE)"
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            (p.file_name().and_then(|n| n.to_str()))
                .is_some_and(|n| n.starts_with("libonnxruntime.so"))
        })
        .with_context(|| format!("no libonnxruntime.so in {}", dir.display()))
}

/// Files each record's medians under its side and thread count.
fn record(table: &mut Table, side: usize, records: &[Value]) {
    for r in records {
        let Some(t @ 1..=2) = r["threads"].as_u64() else {
            continue;
        };
        let f = &mut table[side][t as usize - 1];
        f.latency_us.extend(r["latency_us_b1"]["median"].as_f64());
        f.throughput
            .extend(r["throughput_sps_b1024"]["median"].as_f64());
    }
}

fn print_table(table: &Table, lib: &Path) {
    let cell = |s: Stats, p: usize| {
        s.map_or("-".to_string(), |(m, lo, hi)| {
            format!("{m:.p$} ({lo:.p$}–{hi:.p$})")
        })
    };
    let ratio = |a: Stats, b: Stats| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a.0 / b.0),
        _ => "-".into(),
    };
    println!("\nONNX Runtime: {}", lib.display());
    println!(
        "\n| threads | metric | {} | {} | nn / C API | {} | nn / Python |",
        SIDES[0], SIDES[1], SIDES[2]
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for t in [0, 1] {
        let metrics: [(&str, Getter, usize); 2] = [
            ("b1 latency µs", |f| &f.latency_us, 2),
            ("b1024 samples/s", |f| &f.throughput, 0),
        ];
        for (name, get, p) in metrics {
            let s: Vec<Stats> = table.iter().map(|side| stats(get(&side[t]))).collect();
            println!(
                "| {} | {name} | {} | {} | {} | {} | {} |",
                t + 1,
                cell(s[0], p),
                cell(s[1], p),
                ratio(s[0], s[1]),
                cell(s[2], p),
                ratio(s[0], s[2])
            );
        }
    }
    println!("\nlatency: lower is better; throughput: higher is better");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_filed_by_side_and_thread_count() {
        let mut table: Table = Default::default();
        let rec = |threads: u64, lat: f64, thr: f64| {
            serde_json::json!({
                "workload": "w4", "threads": threads,
                "latency_us_b1": {"median": lat}, "throughput_sps_b1024": {"median": thr},
            })
        };
        record(
            &mut table,
            1,
            &[rec(1, 7.0, 5e5), rec(2, 5.5, 1e6), rec(4, 1.0, 1.0)],
        );
        record(&mut table, 0, &[rec(2, 2.5, 1.1e6)]);
        assert_eq!(table[1][0].latency_us, [7.0]);
        assert_eq!(table[1][1].throughput, [1e6]);
        assert_eq!(table[0][1].latency_us, [2.5]);
        assert!(table[0][0].latency_us.is_empty() && table[2][1].latency_us.is_empty());
    }
}
