//! `cargo xtask bench`: our workloads, and with `--peer torch` the PyTorch peer, alternating
//! run by run in the same invocation, with our/peer ratios.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, flag, root};

/// Median, min and max of a sample.
pub(crate) type Stats = Option<(f64, f64, f64)>;

/// Median, min and max.
pub(crate) fn stats(xs: &[f64]) -> Stats {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some((med, v[0], v[n - 1]))
}

/// What one side measured for one workload.
#[derive(Default)]
struct Side {
    epoch_s: Vec<f64>,
    acc: Vec<f64>,
    latency_us: Vec<f64>,
    throughput: Vec<f64>,
    /// One headline figure per run: the median epoch time, or W4's batch-1 latency.
    per_run: Vec<f64>,
    /// W2 only: its GEMM-only epochs, each measured right after one of `epoch_s`.
    gemm_epoch_s: Vec<f64>,
}

impl Side {
    /// Records the headline figure of the run whose results start at `epochs_before`.
    fn close_run(&mut self, epochs_before: usize) {
        let figure = match stats(&self.epoch_s[epochs_before..]) {
            Some((median, _, _)) => Some(median),
            None => self.latency_us.last().copied(),
        };
        self.per_run.extend(figure);
    }

    fn add_json(&mut self, rec: &Value) {
        if let Some(e) = rec["epoch_s"].as_array() {
            self.epoch_s.extend(e.iter().filter_map(Value::as_f64));
        }
        if let Some(g) = rec["gemm_epoch_s"].as_array() {
            self.gemm_epoch_s.extend(g.iter().filter_map(Value::as_f64));
        }
        if let Some(a) = rec["test_acc"].as_array() {
            self.acc.extend(a.iter().filter_map(Value::as_f64));
        }
        if let Some(l) = rec["latency_us_b1"]["median"].as_f64() {
            self.latency_us.push(l);
        }
        if let Some(t) = rec["throughput_sps_b1024"]["median"].as_f64() {
            self.throughput.push(t);
        }
    }
}

/// Runs `cargo xtask bench`.
pub fn bench(args: &[String]) -> Result<()> {
    let which = args
        .iter()
        .find(|a| !a.starts_with("--") && !is_value(args, a))
        .map_or("all", String::as_str);
    let reps: usize =
        flag(args, "--reps")?.map_or(Ok(3), |r| r.parse().context("--reps needs a number"))?;
    let peer = flag(args, "--peer")?;
    let python = flag(args, "--python")?.unwrap_or("python3");
    let script = PathBuf::from(flag(args, "--peer-script")?.map_or_else(
        || {
            root()
                .join("../shared/bench/torch_peer.py")
                .display()
                .to_string()
        },
        String::from,
    ));
    let out = PathBuf::from(flag(args, "--out")?.map_or_else(
        || {
            root()
                .join("target/bench/results.jsonl")
                .display()
                .to_string()
        },
        String::from,
    ));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if peer.is_some() && !script.is_file() {
        bail!(
            "peer script {} not found (pass --peer-script PATH)",
            script.display()
        );
    }
    if which == "scale" {
        return crate::bench_scale::bench(reps, python, &out);
    }
    match peer {
        None | Some("torch") => {}
        Some("ort") if ["w4", "all"].contains(&which) => {
            return crate::bench_ort::bench(args, reps, python, &out);
        }
        Some("ort") => bail!("the ONNX Runtime peer measures W4 only (`bench w4 --peer ort`)"),
        Some(other) => bail!("unknown peer `{other}`; expected torch or ort"),
    }
    let workloads: Vec<&str> = if which == "all" {
        vec!["w1", "w4", "w2", "w3", "w5", "w6"]
    } else {
        which.split(',').collect()
    };
    cargo(&["build", "--release", "--quiet", "-p", "nn-bench"], &[])?;
    let ours_bin = root().join("target/release/nn-bench");
    let mut sides: Vec<(String, Side, Side)> = workloads
        .iter()
        .map(|w| (w.to_string(), Side::default(), Side::default()))
        .collect();
    for rep in 0..reps {
        for (w, ours, theirs) in &mut sides {
            eprintln!("== {w} run {} of {reps}: nn", rep + 1);
            let before = ours.epoch_s.len();
            for rec in run_ours(&ours_bin, w, &out)? {
                ours.add_json(&rec);
            }
            ours.close_run(before);
            if peer.is_some() {
                eprintln!("== {w} run {} of {reps}: torch", rep + 1);
                let before = theirs.epoch_s.len();
                run_torch(python, &script, w, &out, theirs)?;
                theirs.close_run(before);
            }
        }
    }
    print_table(&sides, peer.is_some());
    print_gemm_gap(&sides);
    println!("\nJSON lines appended to {}", out.display());
    Ok(())
}

/// W2's epoch time over its GEMM-only time (`nn-bench w2` runs the products of one epoch
/// alone right after each training epoch): the medians' ratio, and each back-to-back pair's.
fn print_gemm_gap(sides: &[(String, Side, Side)]) {
    let Some((_, w2, _)) = sides.iter().find(|s| s.0 == "w2") else {
        return;
    };
    let Some((ratio, pairs)) = gemm_gap(w2) else {
        return;
    };
    let pairs: Vec<String> = pairs.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "\nW2 epoch / its GEMM-only epoch (the same products, nothing else): {ratio:.2}; \
         epoch by epoch: {}",
        pairs.join("  ")
    );
}

/// The median epoch over the median GEMM-only epoch, and the ratio of each pair.
fn gemm_gap(w2: &Side) -> Option<(f64, Vec<f64>)> {
    let (e, g) = (stats(&w2.epoch_s)?, stats(&w2.gemm_epoch_s)?);
    let pairs = (w2.epoch_s.iter().zip(&w2.gemm_epoch_s))
        .map(|(e, g)| e / g)
        .collect();
    Some((e.0 / g.0, pairs))
}

fn is_value(args: &[String], a: &String) -> bool {
    args.windows(2)
        .any(|w| w[1] == *a && w[0].starts_with("--"))
}

fn run_ours(bin: &Path, w: &str, out: &Path) -> Result<Vec<Value>> {
    let tmp = out.with_extension("nn.tmp");
    let _ = std::fs::remove_file(&tmp);
    let status = Command::new(bin)
        .args([w, "--reps", "1", "--out"])
        .arg(&tmp)
        .status()
        .with_context(|| format!("could not run {}", bin.display()))?;
    if !status.success() {
        bail!("nn-bench {w} failed ({status})");
    }
    let text = std::fs::read_to_string(&tmp)?;
    append(out, &text)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn run_torch(python: &str, script: &Path, w: &str, out: &Path, side: &mut Side) -> Result<()> {
    let tmp = out.with_extension("torch.tmp");
    let _ = std::fs::remove_file(&tmp);
    let dir = script.parent().unwrap_or(Path::new("."));
    let output = Command::new(python)
        .arg(script)
        .args([w, "--reps", "1", "--out"])
        .arg(&tmp)
        .current_dir(dir)
        .output()
        .with_context(|| format!("could not run {python}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "the torch peer failed: {}\n(it needs `pip install torch numpy` and the Fashion-MNIST files)",
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        );
    }
    print!("{stdout}");
    // raw epoch times from its progress line: `  [w1 rep0] epoch s: ['0.567', ...] ...`
    for line in stdout
        .lines()
        .filter(|l| l.contains(&format!("[{w} rep")) && l.contains("epoch s:"))
    {
        if let Some(list) = line.split('[').nth(2).and_then(|l| l.split(']').next()) {
            side.epoch_s.extend(
                list.split(',')
                    .filter_map(|t| t.trim().trim_matches('\'').parse::<f64>().ok()),
            );
        }
    }
    let text = std::fs::read_to_string(&tmp).unwrap_or_default();
    append(out, &text)?;
    for rec in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if rec["workload"] == w && (w != "w4" || rec["threads"] == 2) {
            side.add_json(&rec); // its JSON has no raw epoch times: those came from stdout
        }
    }
    Ok(())
}

/// Runs `cmd`, a benchmark that prints one JSON record per line among its other output;
/// returns the records `keep` accepts and appends them to `out`. A failed run is an error
/// ending with the last line it wrote to stderr.
pub(crate) fn json_records(
    cmd: &mut Command,
    out: &Path,
    keep: impl Fn(&Value) -> bool,
) -> Result<Vec<Value>> {
    let output = cmd
        .output()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr);
        bail!("{cmd:?} failed: {}", why.lines().last().unwrap_or_default());
    }
    let records: Vec<Value> = (String::from_utf8_lossy(&output.stdout).lines())
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r| keep(r))
        .collect();
    append(
        out,
        &records.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )?;
    Ok(records)
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn print_table(sides: &[(String, Side, Side)], with_peer: bool) {
    let cell = |s: Stats, p: usize| {
        s.map_or("-".to_string(), |(m, lo, hi)| {
            format!("{m:.p$} ({lo:.p$}–{hi:.p$})")
        })
    };
    println!(
        "\n| workload | metric | nn | {}ratio | accuracy nn{} |",
        if with_peer { "torch | " } else { "" },
        if with_peer { " / torch" } else { "" }
    );
    println!(
        "| --- | --- | --- | {}--- | --- |",
        if with_peer { "--- | " } else { "" }
    );
    for (w, ours, theirs) in sides {
        let acc = |s: &Side| stats(&s.acc).map_or("-".into(), |(m, _, _)| format!("{m:.4}"));
        let rows: Vec<(&str, Stats, Stats, usize)> = if w == "w4" {
            vec![
                (
                    "b1 latency µs",
                    stats(&ours.latency_us),
                    stats(&theirs.latency_us),
                    2,
                ),
                (
                    "b1024 samples/s",
                    stats(&ours.throughput),
                    stats(&theirs.throughput),
                    0,
                ),
            ]
        } else {
            let mut rows = vec![("s/epoch", stats(&ours.epoch_s), stats(&theirs.epoch_s), 3)];
            if !ours.gemm_epoch_s.is_empty() {
                rows.push((
                    "its products alone, s/epoch",
                    stats(&ours.gemm_epoch_s),
                    None,
                    3,
                ));
            }
            rows
        };
        for (metric, o, t, p) in rows {
            let ratio = match (o, t) {
                (Some(o), Some(t)) => format!("{:.2}", o.0 / t.0),
                _ => "-".into(),
            };
            let accs = if with_peer {
                format!("{} / {}", acc(ours), acc(theirs))
            } else {
                acc(ours)
            };
            if with_peer {
                println!(
                    "| {w} | {metric} | {} | {} | {ratio} | {accs} |",
                    cell(o, p),
                    cell(t, p)
                );
            } else {
                println!("| {w} | {metric} | {} | {accs} |", cell(o, p));
            }
        }
    }
    if with_peer {
        println!(
            "\nratio = nn / torch (for throughput, higher is better; otherwise lower is better)"
        );
        // Runs made back to back are the fairest pairs on a machine whose speed drifts:
        // a ratio far from the others means one side ran while the machine was slower.
        println!("\nper run, nn / torch of runs made back to back (s/epoch; W4: batch-1 latency):");
        for (w, ours, theirs) in sides {
            let pairs: Vec<String> = ours
                .per_run
                .iter()
                .zip(&theirs.per_run)
                .map(|(o, t)| format!("{:.2}", o / t))
                .collect();
            println!("  {w}: {}", pairs.join("  "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_headline_figure_per_run() {
        let mut side = Side::default();
        // run 1: epochs 0.3, 0.1, 0.2 → median 0.2; run 2: 0.5, 0.7 → median 0.6
        side.epoch_s.extend([0.3, 0.1, 0.2]);
        side.close_run(0);
        side.epoch_s.extend([0.5, 0.7]);
        side.close_run(3);
        assert_eq!(side.per_run, [0.2, 0.6]);
        // W4 has no epochs: the run's batch-1 latency
        let mut w4 = Side::default();
        w4.add_json(&serde_json::json!({
            "latency_us_b1": {"median": 2.5},
            "throughput_sps_b1024": {"median": 1.0e6}
        }));
        w4.close_run(0);
        assert_eq!(w4.per_run, [2.5]);
    }

    #[test]
    fn w2_over_its_products_pair_by_pair() {
        let mut w2 = Side::default();
        assert_eq!(gemm_gap(&w2), None);
        // epochs 1.2, 0.9, 1.0 (median 1.0), each followed by its products: 1.0, 0.6, 0.8
        // (median 0.8): 1.0 / 0.8 = 1.25 overall; pairs 1.2, 1.5, 1.25
        w2.add_json(&serde_json::json!({
            "epoch_s": [1.2, 0.9, 1.0],
            "gemm_epoch_s": [1.0, 0.6, 0.8],
        }));
        assert_eq!(w2.gemm_epoch_s, [1.0, 0.6, 0.8]);
        let (ratio, pairs) = gemm_gap(&w2).unwrap();
        assert!((ratio - 1.25).abs() < 1e-12);
        for (got, want) in pairs.iter().zip([1.2, 1.5, 1.25]) {
            assert!((got - want).abs() < 1e-12, "{pairs:?}");
        }
    }
}
