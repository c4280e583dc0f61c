//! `cargo xtask bench scale`: how cost grows with the network and the batch. W1's protocol
//! at hidden widths 64 … 2048 (batch 64) and batch sizes 16 … 512 (width 128), our side and
//! PyTorch's (`crates/nn-bench/peers/torch_scale.py`, which trains with the shared peer's own
//! loop) alternating point by point, with the ratio at each point so a cliff shows.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::bench::{json_records, stats};
use crate::{cargo, root};

/// Hidden widths swept at batch 64.
const WIDTHS: [usize; 6] = [64, 128, 256, 512, 1024, 2048];
/// Batch sizes swept at width 128.
const BATCHES: [usize; 6] = [16, 32, 64, 128, 256, 512];
/// Epochs per point (the protocol's median makes the first, warm-up epoch irrelevant).
const EPOCHS: usize = 3;

/// Every point once, as `(hidden, batch)`.
fn points() -> Vec<(usize, usize)> {
    let mut p: Vec<(usize, usize)> = WIDTHS.iter().map(|&h| (h, 64)).collect();
    p.extend(BATCHES.iter().filter(|&&b| b != 64).map(|&b| (128, b)));
    p
}

/// Runs the sweep `reps` times, each point on both sides back to back.
pub fn bench(reps: usize, python: &str, out: &Path) -> Result<()> {
    let peer = root().join("crates/nn-bench/peers/torch_scale.py");
    let shared = root().join("../shared/bench");
    if !shared.join("torch_peer.py").is_file() {
        bail!(
            "{} has no torch_peer.py (the PyTorch peer)",
            shared.display()
        );
    }
    cargo(&["build", "--release", "--quiet", "-p", "nn-bench"], &[])?;
    let bin = root().join("target/release/nn-bench");
    let epochs = EPOCHS.to_string();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // point by point, so that both sides of a ratio run minutes apart at most
    for rep in 1..=reps {
        for (h, b) in points() {
            let point = format!("{h}x{b}");
            eprintln!("== scale {point}, run {rep} of {reps}: nn, then torch");
            let mut nn = Command::new(&bin);
            nn.args([
                "scale", "--reps", "1", "--points", &point, "--epochs", &epochs,
            ]);
            ours.extend(json_records(&mut nn, out, is_point)?);
            let mut torch = Command::new(python);
            torch.arg(&peer).arg("--bench-dir").arg(&shared);
            torch.args(["--points", &point, "--epochs", &epochs]);
            theirs.extend(json_records(&mut torch, out, is_point)?);
        }
    }
    print_table(&ours, &theirs);
    println!("\nJSON lines appended to {}", out.display());
    Ok(())
}

/// A record of one point of the sweep.
fn is_point(r: &Value) -> bool {
    r["workload"]
        .as_str()
        .is_some_and(|w| w.starts_with("scale-"))
}

/// The per-run median s/epoch of every record for the point `name`.
fn medians(recs: &[Value], name: &str) -> Vec<f64> {
    (recs.iter())
        .filter(|r| r["workload"] == name)
        .filter_map(|r| r["sec_per_epoch"]["median"].as_f64())
        .collect()
}

fn print_table(ours: &[Value], theirs: &[Value]) {
    println!("\n| hidden | batch | nn s/epoch | torch s/epoch | ratio |");
    println!("| --- | --- | --- | --- | --- |");
    let mut worst = (0.0f64, String::new());
    for (h, b) in points() {
        let name = format!("scale-h{h}-b{b}");
        let (o, t) = (stats(&medians(ours, &name)), stats(&medians(theirs, &name)));
        let cell = |s: Option<(f64, f64, f64)>| {
            s.map_or("-".into(), |(m, lo, hi)| {
                format!("{m:.3} ({lo:.3}–{hi:.3})")
            })
        };
        let ratio = o.zip(t).map(|(o, t)| o.0 / t.0);
        if let Some(r) = ratio.filter(|&r| r > worst.0) {
            worst = (r, format!("hidden {h}, batch {b}"));
        }
        let shown = ratio.map_or("-".into(), |r| format!("{r:.2}"));
        println!("| {h} | {b} | {} | {} | {shown} |", cell(o), cell(t));
    }
    println!(
        "\nratio = nn / torch (lower is better); highest: {:.2} at {}",
        worst.0, worst.1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_at_batch_64_and_every_batch_at_width_128_once() {
        let p = points();
        assert_eq!(p.len(), 11); // 6 widths + 6 batches − the shared (128, 64)
        assert_eq!(p.iter().filter(|&&q| q == (128, 64)).count(), 1);
        assert!(WIDTHS.iter().all(|&h| p.contains(&(h, 64))));
        assert!(BATCHES.iter().all(|&b| p.contains(&(128, b))));
    }

    #[test]
    fn medians_are_read_from_the_point_named() {
        let recs = [
            serde_json::json!({"workload": "scale-h64-b64", "sec_per_epoch": {"median": 0.5}}),
            serde_json::json!({"workload": "scale-h128-b64", "sec_per_epoch": {"median": 0.25}}),
            serde_json::json!({"workload": "scale-h64-b64", "sec_per_epoch": {"median": 0.75}}),
        ];
        assert_eq!(medians(&recs, "scale-h64-b64"), [0.5, 0.75]);
        assert!(medians(&recs, "scale-h2048-b64").is_empty());
    }
}
