//! `nn-bench`: the standard CPU workloads of `shared/bench/WORKLOADS.md`, measured exactly
//! as the peers measure them.
//!
//! ```sh
//! cargo run --release -p nn-bench -- w1 --reps 3 --out results.jsonl
//! cargo xtask bench all --peer torch      # the same, alternating with the PyTorch peer
//! cargo run --release -p nn-bench -- w5,w6 # the CLI's default networks (Adam; batch norm, dropout)
//! ```
//!
//! - Data: Fashion-MNIST (`FMNIST_DIR`, default `/usr/share/datasets/fashion-mnist`),
//!   pixels / 255, no other normalisation; MLPs see rows of 784, the CNN `[n, 1, 28, 28]`.
//! - Init: He-uniform weights (fan-in), zero biases. Loss: softmax + cross-entropy, mean.
//! - Timed: from the start of an epoch (drawing the permutation) to its last optimizer
//!   step; not data loading, model construction or evaluation.
//! - Reported: median (min–max) over all reps × epochs, test accuracy per rep, one JSON
//!   line per workload in the peers' format.
//!
//! `w2` also runs the products of one W2 epoch alone (no gather, activation, loss or update)
//! right after each of its epochs and records their seconds as `gemm_epoch_s`: the floor its
//! epoch time is held to, measured back to back with it.
//!
//! More modes: `w2-gemm` (those products alone, on their own), `scale --points HxB,…` (W1 at
//! other hidden widths and batch sizes), and `w4-ort --ort-lib FILE` (W4 through ONNX
//! Runtime's C API).
//!
//! ## Features
//!
//! The default build has no peer in it. `--features ort` adds the `ort` crate with
//! `load-dynamic` for `w4-ort`: ONNX Runtime's shared library is loaded at run time from the
//! path given (the onnxruntime wheel ships it), nothing is downloaded at build time, and no
//! other crate of the toolkit depends on it. The crate is not published.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use ndarray::{Array2, ArrayView2, ArrayViewD, Ix2, IxDyn, s};
use nn_core::{Buffer, Rng, seeded};
use nn_io::{Dataset, Normalization, load_idx_dir};
use nn_layers::{
    BatchNormConfig, Conv2d, Conv2dConfig, Dense, DenseConfig, Dropout, Flatten, Layer,
    LayerConfig, MaxPool2d, Mode, Relu, Sequential, SoftmaxCrossEntropy,
};
use nn_optim::{
    Adam, AdamConfig, Data, EpochEnd, Observer, ObserverError, Optimizer, Sgd, SgdConfig,
    TrainConfig, Trainer, evaluate,
};
use serde_json::json;

mod gemm_only;
#[cfg(feature = "ort")]
mod ort_capi;

/// The workloads' seed (weights, batch order, dropout); `--seed` changes it to see how far
/// test accuracy moves with the seed alone.
static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(42);

fn seed() -> u64 {
    SEED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Median, min, max and count, as the peers report them.
fn summarize(xs: &[f64]) -> serde_json::Value {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    json!({ "median": median, "min": v[0], "max": v[n - 1], "n": n })
}

fn fmt(s: &serde_json::Value, prec: usize) -> String {
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    format!(
        "{:.p$} ({:.p$}-{:.p$}, n={})",
        f("median"),
        f("min"),
        f("max"),
        s["n"],
        p = prec
    )
}

/// The network of a workload.
#[derive(Clone, PartialEq)]
enum Net {
    /// Dense layers of these widths with ReLU between them.
    Mlp(Cow<'static, [usize]>),
    /// W3's LeNet-style CNN.
    Cnn,
    /// W6's CNN with padded convolutions, batch norm and dropout.
    CnnBn,
}

/// The update rule of a workload.
#[derive(Clone, Copy, PartialEq)]
enum Rule {
    /// SGD with this momentum (0: plain).
    Sgd(f32),
    /// Adam (β 0.9/0.999, ε 1e-8, no weight decay).
    Adam,
}

struct Workload {
    name: Cow<'static, str>,
    batch: usize,
    lr: f32,
    rule: Rule,
    epochs: usize,
    net: Net,
}

const W1: Workload = Workload {
    name: Cow::Borrowed("w1"),
    batch: 64,
    lr: 0.1,
    rule: Rule::Sgd(0.0),
    epochs: 5,
    net: Net::Mlp(Cow::Borrowed(&[784, 128, 10])),
};
const W2: Workload = Workload {
    name: Cow::Borrowed("w2"),
    batch: 128,
    lr: 0.05,
    rule: Rule::Sgd(0.9),
    epochs: 5,
    net: Net::Mlp(Cow::Borrowed(&[784, 512, 256, 10])),
};
const W3: Workload = Workload {
    name: Cow::Borrowed("w3"),
    batch: 64,
    lr: 0.05,
    rule: Rule::Sgd(0.9),
    epochs: 3,
    net: Net::Cnn,
};
const W5: Workload = Workload {
    name: Cow::Borrowed("w5"),
    batch: 64,
    lr: 0.001,
    rule: Rule::Adam,
    epochs: 3,
    net: Net::Mlp(Cow::Borrowed(&[784, 256, 128, 10])),
};
const W6: Workload = Workload {
    name: Cow::Borrowed("w6"),
    batch: 64,
    lr: 0.002,
    rule: Rule::Adam,
    epochs: 2,
    net: Net::CnnBn,
};

fn build(w: &Workload, rng: &mut Rng) -> Result<Sequential> {
    let mut m = Sequential::new();
    match &w.net {
        Net::Cnn => {
            m.push(Conv2d::new(&Conv2dConfig::new(1, 8, 5), rng)?);
            m.push(Relu::new());
            m.push(MaxPool2d::max(2, 2)?);
            m.push(Conv2d::new(&Conv2dConfig::new(8, 16, 5), rng)?);
            m.push(Relu::new());
            m.push(MaxPool2d::max(2, 2)?);
            m.push(Flatten::new());
            m.push(Dense::new(&DenseConfig::new(256, 10), rng)?);
        }
        Net::CnnBn => {
            let mut conv1 = Conv2dConfig::new(1, 12, 5);
            conv1.padding = (2, 2);
            m.push(Conv2d::new(&conv1, rng)?);
            m.push_boxed(BatchNormConfig::new(12).build(rng)?);
            m.push(Relu::new());
            m.push(MaxPool2d::max(2, 2)?);
            m.push(Conv2d::new(&Conv2dConfig::new(12, 24, 5), rng)?);
            m.push_boxed(BatchNormConfig::new(24).build(rng)?);
            m.push(Relu::new());
            m.push(MaxPool2d::max(2, 2)?);
            m.push(Flatten::new());
            m.push(Dense::new(&DenseConfig::new(600, 120), rng)?);
            m.push(Relu::new());
            m.push(Dropout::new(0.25, seed())?);
            m.push(Dense::new(&DenseConfig::new(120, 10), rng)?);
        }
        Net::Mlp(sizes) => {
            for (i, pair) in sizes.windows(2).enumerate() {
                m.push(Dense::new(&DenseConfig::new(pair[0], pair[1]), rng)?); // He uniform, b = 0
                if i + 2 < sizes.len() {
                    m.push(Relu::new());
                }
            }
        }
    }
    Ok(m)
}

/// The workload's optimizer.
fn optimizer(w: &Workload) -> Result<Box<dyn Optimizer>> {
    Ok(match w.rule {
        Rule::Sgd(mu) => Box::new(Sgd::new(SgdConfig::plain().momentum(mu))?),
        Rule::Adam => Box::new(Adam::new(AdamConfig::adam())?),
    })
}

/// Each epoch's seconds; for W2 also the seconds of a GEMM-only epoch (its products alone,
/// [`gemm_only`]) run right after it, so that each epoch and its floor are measured back to
/// back on a machine whose speed drifts.
struct Times {
    epochs: Vec<f64>,
    gemm: Option<(gemm_only::Epoch, Vec<f64>)>,
}

impl Observer for Times {
    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        self.epochs.push(end.record.seconds);
        if let Some((epoch, times)) = &mut self.gemm {
            times.push(epoch.run()?);
        }
        Ok(())
    }
}

struct Fmnist {
    train: Dataset,
    test: Dataset,
}

fn load() -> Result<Fmnist> {
    let dir = PathBuf::from(
        std::env::var("FMNIST_DIR").unwrap_or_else(|_| "/usr/share/datasets/fashion-mnist".into()),
    );
    let part = |p| -> Result<Dataset> {
        let mut d = load_idx_dir(&dir, p).with_context(|| "Fashion-MNIST is missing: `apt-get install dataset-fashion-mnist` or set FMNIST_DIR")?;
        Normalization::Scale {
            factor: 1.0 / 255.0,
        }
        .apply(&mut d.x)?; // u8 → f32 / 255
        Ok(d)
    };
    Ok(Fmnist {
        train: part("train")?,
        test: part("t10k")?,
    })
}

/// The inputs as the workload sees them: images `[n, 1, 28, 28]` for the CNN, rows
/// `[n, 784]` for the MLPs — a reshaped view, never a copy of the data set.
fn inputs(d: &Dataset, cnn: bool) -> ArrayViewD<'_, f32> {
    if cnn {
        return d.x.view();
    }
    let n = d.len();
    d.x.view()
        .into_shape_with_order(IxDyn(&[n, d.x.len() / n.max(1)]))
        .expect("standard layout")
}

/// Trains `w` `reps` times from the same seed; returns the JSON record and the last model.
fn train(
    w: &Workload,
    data: &Fmnist,
    reps: usize,
    out: &mut Vec<serde_json::Value>,
) -> Result<Sequential> {
    let (train, test) = (&data.train, &data.test);
    let cnn = !matches!(w.net, Net::Mlp(_));
    let (train_x, test_x) = (inputs(train, cnn), inputs(test, cnn));
    let (mut epoch_times, mut gemm_times) = (Vec::new(), Vec::new());
    let (mut first, mut accs) = (Vec::new(), Vec::new());
    let mut model = None;
    for rep in 0..reps {
        let mut m = build(w, &mut seeded(seed()))?;
        let mut loss = SoftmaxCrossEntropy::new();
        let mut opt = optimizer(w)?;
        let mut times = Times {
            epochs: Vec::new(),
            gemm: gemm_floor(w, train.len()).map(|e| (e, Vec::new())),
        };
        Trainer::new(TrainConfig::new(w.epochs, w.batch, w.lr).seed(seed()))?.fit(
            &mut m,
            &mut loss,
            opt.as_mut(),
            &Data::new(train_x.view(), train.target())?,
            None,
            &mut times,
        )?;
        let acc = evaluate(
            &mut m,
            &mut loss,
            &Data::new(test_x.view(), test.target())?,
            2000,
        )?
        .accuracy
        .unwrap_or(0.0);
        println!(
            "  [{} rep{rep}] epoch s: {:?} test acc {acc:.4}",
            w.name,
            times
                .epochs
                .iter()
                .map(|t| format!("{t:.3}"))
                .collect::<Vec<_>>()
        );
        first.push(times.epochs[0]);
        epoch_times.extend(times.epochs);
        gemm_times.extend(times.gemm.into_iter().flat_map(|g| g.1));
        accs.push(acc);
        model = Some(m);
    }
    let s = summarize(&epoch_times);
    println!("{}: s/epoch {}  acc {accs:?}", w.name, fmt(&s, 3));
    let mut rec = json!({
        "peer": "nn", "workload": w.name, "threads": nn_core::parallel::parallelism(),
        "sec_per_epoch": s, "first_epoch_s": first, "test_acc": accs, "epochs": w.epochs, "epoch_s": epoch_times,
    });
    if !gemm_times.is_empty() {
        println!(
            "{}: its products alone, s/epoch {} (each right after an epoch)",
            w.name,
            fmt(&summarize(&gemm_times), 3)
        );
        rec["gemm_epoch_s"] = json!(gemm_times);
    }
    out.push(rec);
    model.context("no repetition ran")
}

/// W2's GEMM-only epoch over `rows` samples, measured beside each of its epochs; none for
/// the other workloads.
fn gemm_floor(w: &Workload, rows: usize) -> Option<gemm_only::Epoch> {
    match &w.net {
        Net::Mlp(sizes) if w.name == W2.name => Some(gemm_only::Epoch::new(sizes, rows, w.batch)),
        _ => None,
    }
}

/// W1's protocol at hidden width `hidden` and batch size `batch`, `epochs` epochs: one point
/// of `cargo xtask bench scale`.
fn scale_point(hidden: usize, batch: usize, epochs: usize) -> Workload {
    Workload {
        name: Cow::Owned(format!("scale-h{hidden}-b{batch}")),
        batch,
        epochs,
        net: Net::Mlp(Cow::Owned(vec![784, hidden, 10])),
        ..W1
    }
}

/// The points of `--points 64x64,128x16` (hidden width × batch size).
fn parse_points(list: &str, epochs: usize) -> Result<Vec<Workload>> {
    let point = |p: &str| -> Option<Workload> {
        let (h, b) = p.split_once('x')?;
        let (h, b) = (h.parse().ok()?, b.parse().ok()?);
        (h > 0 && b > 0).then(|| scale_point(h, b, epochs))
    };
    (list.split(','))
        .map(|p| {
            point(p).with_context(|| format!("bad point `{p}`: expected HIDDENxBATCH, e.g. 128x64"))
        })
        .collect()
}

/// W2's GEMM-only epochs (see [`gemm_only`]): its products alone, `reps` × its epochs.
fn w2_gemm(data: &Fmnist, reps: usize) -> Result<serde_json::Value> {
    let Net::Mlp(sizes) = &W2.net else {
        bail!("W2 is an MLP");
    };
    let times = gemm_only::epochs(sizes, data.train.len(), W2.batch, reps * W2.epochs)?;
    let s = summarize(&times);
    println!(
        "w2-gemm: s/epoch {} (the products of a W2 epoch alone)",
        fmt(&s, 3)
    );
    Ok(json!({
        "peer": "nn", "workload": "w2-gemm", "threads": nn_core::parallel::parallelism(),
        "sec_per_epoch": s, "epoch_s": times,
    }))
}

/// W4's protocol around one forward call: batch-1 latency (200 warm-up, 5,000 timed calls,
/// median, in µs) and batch-1024 throughput (10 warm-up, 100 timed calls, 1024 / median),
/// each block `reps` times. `call` runs the network on its argument and materialises the
/// logits. Returns the JSON summaries of the per-block medians.
pub(crate) fn w4_protocol(
    reps: usize,
    x1: ArrayView2<'_, f32>,
    xb: ArrayView2<'_, f32>,
    mut call: impl FnMut(ArrayView2<'_, f32>) -> Result<()>,
) -> Result<(serde_json::Value, serde_json::Value)> {
    let mut median_of = |x: ArrayView2<'_, f32>, warm: usize, timed: usize| -> Result<f64> {
        for _ in 0..warm {
            call(x)?;
        }
        let mut ts = Vec::with_capacity(timed);
        for _ in 0..timed {
            let t = Instant::now();
            call(x)?;
            ts.push(t.elapsed().as_secs_f64());
        }
        ts.sort_by(f64::total_cmp);
        Ok(ts[ts.len() / 2])
    };
    let (mut lat, mut thr) = (Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        lat.push(median_of(x1, 200, 5000)? * 1e6);
        thr.push(xb.nrows() as f64 / median_of(xb, 10, 100)?);
    }
    Ok((summarize(&lat), summarize(&thr)))
}

/// W4's inputs: the first test image, and the first 1024.
fn w4_inputs(data: &Fmnist) -> Result<(Array2<f32>, Array2<f32>)> {
    let test = inputs(&data.test, false).into_dimensionality::<Ix2>()?;
    Ok((
        test.slice(s![0..1, ..]).to_owned(),
        test.slice(s![0..1024, ..]).to_owned(),
    ))
}

/// The trained W1 model W4 measures (the last of `w1`'s repetitions, or one trained now).
fn w1_model(trained: &mut Option<Sequential>, data: &Fmnist) -> Result<Sequential> {
    match trained.take() {
        Some(m) => Ok(m),
        None => train(&W1, data, 1, &mut Vec::new()),
    }
}

/// Prints and records one W4 result.
fn report_w4(
    peer: &str,
    threads: usize,
    l: serde_json::Value,
    t: serde_json::Value,
) -> serde_json::Value {
    println!(
        "{peer} w4 threads={threads}: b1 latency us {}; b1024 samples/s {}",
        fmt(&l, 3),
        fmt(&t, 0)
    );
    json!({
        "peer": peer, "workload": "w4", "threads": threads,
        "latency_us_b1": l, "throughput_sps_b1024": t,
    })
}

/// W4: batch-1 latency and batch-1024 throughput of the trained W1 model (Eval, logits).
fn infer(model: &mut Sequential, data: &Fmnist, reps: usize) -> Result<serde_json::Value> {
    let (x1, xb) = w4_inputs(data)?;
    let mut y = Buffer::new();
    let (l, t) = w4_protocol(reps, x1.view(), xb.view(), |x| {
        model.forward(x.into_dyn(), &mut y, Mode::Eval)?;
        std::hint::black_box(y.as_slice());
        Ok(())
    })?;
    Ok(report_w4("nn", nn_core::parallel::parallelism(), l, t))
}

/// W4 through ONNX Runtime's C API; [`ort_ready`] has already refused a build without the
/// `ort` feature or a missing library.
fn w4_ort(
    model: &mut Sequential,
    data: &Fmnist,
    reps: usize,
    lib: Option<&std::path::Path>,
) -> Result<Vec<serde_json::Value>> {
    ort_ready(lib)?;
    #[cfg(feature = "ort")]
    if let Some(lib) = lib {
        let (x1, xb) = w4_inputs(data)?;
        return ort_capi::measure(model, x1.view(), xb.view(), lib, reps);
    }
    let _ = (model, data, reps);
    bail!("w4-ort: no ONNX Runtime library") // ort_ready refused every way of getting here
}

/// What the command line asked for, checked before any data is read.
struct Args {
    list: Vec<String>,
    reps: usize,
    out_path: Option<PathBuf>,
    ort_lib: Option<PathBuf>,
    points: Vec<Workload>,
}

const USAGE: &str = "usage: nn-bench [w1|…|w6|w2-gemm|w4-ort|scale|all] [--reps N] [--out FILE] \
    [--ort-lib FILE] [--points HxB,…] [--epochs N] [--seed N]";

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let (mut which, mut reps, mut out_path) = ("all".to_string(), 3usize, None::<PathBuf>);
    let mut ort_lib = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
    let (mut points, mut epochs) = (String::from("64x64,128x64,2048x64"), 3usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--reps" => {
                reps = (args.next().and_then(|r| r.parse().ok()))
                    .filter(|&r| r > 0)
                    .context("--reps needs a positive number")?
            }
            "--out" => out_path = Some(args.next().context("--out needs a file")?.into()),
            "--points" => points = args.next().context("--points needs HxB,HxB,…")?,
            "--epochs" => {
                epochs = (args.next().and_then(|e| e.parse().ok()))
                    .filter(|&e| e > 0)
                    .context("--epochs needs a positive number")?
            }
            "--seed" => {
                let s = args.next().and_then(|s| s.parse().ok());
                SEED.store(
                    s.context("--seed needs a number")?,
                    std::sync::atomic::Ordering::Relaxed,
                )
            }
            "--ort-lib" => ort_lib = Some(args.next().context("--ort-lib needs a file")?.into()),
            w if !w.starts_with("--") => which = w.to_string(),
            other => bail!("unknown option `{other}`; {USAGE}"),
        }
    }
    let list: Vec<String> = match which.as_str() {
        "all" => ["w1", "w4", "w2", "w3"].map(String::from).to_vec(),
        _ => which.split(',').map(String::from).collect(),
    };
    const KNOWN: [&str; 9] = [
        "w1", "w2", "w3", "w4", "w5", "w6", "w4-ort", "scale", "w2-gemm",
    ];
    if let Some(bad) = list.iter().find(|w| !KNOWN.contains(&w.as_str())) {
        bail!("unknown workload `{bad}`; expected w1 to w6, w2-gemm, w4-ort, scale or all");
    }
    if list.iter().any(|w| w == "w4-ort") {
        ort_ready(ort_lib.as_deref())?;
    }
    let points = parse_points(&points, epochs)?;
    Ok(Args {
        list,
        reps,
        out_path,
        ort_lib,
        points,
    })
}

/// Refuses `w4-ort` before any work when it cannot run: no `ort` feature, or no library.
fn ort_ready(lib: Option<&std::path::Path>) -> Result<()> {
    if !cfg!(feature = "ort") {
        bail!("w4-ort needs nn-bench built with `--features ort`");
    }
    match lib {
        None => bail!("w4-ort needs --ort-lib FILE or ORT_DYLIB_PATH (libonnxruntime.so)"),
        Some(l) if !l.is_file() => bail!("--ort-lib {}: no such file", l.display()),
        Some(_) => Ok(()),
    }
}

/// Runs every workload of `args` in order; returns their JSON records.
fn run(args: &Args) -> Result<Vec<serde_json::Value>> {
    let (data, reps) = (load()?, args.reps);
    let mut out = Vec::new();
    let mut trained_w1 = None;
    for w in &args.list {
        match w.as_str() {
            "w1" => trained_w1 = Some(train(&W1, &data, reps, &mut out)?),
            "w2" => drop(train(&W2, &data, reps, &mut out)?),
            "w3" => drop(train(&W3, &data, reps, &mut out)?),
            "w5" => drop(train(&W5, &data, reps, &mut out)?),
            "w6" => drop(train(&W6, &data, reps, &mut out)?),
            "w2-gemm" => out.push(w2_gemm(&data, reps)?),
            "scale" => {
                for point in &args.points {
                    train(point, &data, reps, &mut out)?;
                }
            }
            w4 => {
                let mut m = w1_model(&mut trained_w1, &data)?;
                if w4 == "w4-ort" {
                    out.extend(w4_ort(&mut m, &data, reps, args.ort_lib.as_deref())?);
                } else {
                    out.push(infer(&mut m, &data, reps)?);
                }
                trained_w1 = Some(m);
            }
        }
    }
    Ok(out)
}

/// Prints the records and appends them to `path` when given.
fn write_records(out: &[serde_json::Value], path: Option<&std::path::Path>) -> Result<()> {
    for rec in out {
        println!("{rec}");
    }
    if let Some(p) = path {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .with_context(|| format!("{}", p.display()))?;
        for rec in out {
            writeln!(f, "{rec}")?;
        }
    }
    Ok(())
}

fn main() {
    let result = parse_args().and_then(|args| {
        let out = run(&args)?;
        write_records(&out, args.out_path.as_deref())
    });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_points_are_w1_at_other_shapes() {
        let points = parse_points("64x16,2048x512", 2).expect("two points");
        assert_eq!(points[0].name, "scale-h64-b16");
        assert_eq!((points[1].batch, points[1].epochs), (512, 2));
        assert!(points[1].net == Net::Mlp(Cow::Owned(vec![784, 2048, 10])));
        assert!(points.iter().all(|p| p.lr == W1.lr && p.rule == W1.rule));
        for bad in ["64", "0x64", "64x0", "x", "64x16,"] {
            assert!(parse_points(bad, 2).is_err(), "{bad}");
        }
    }

    #[test]
    fn gemm_only_epochs_time_each_epoch() {
        let times = gemm_only::epochs(&[8, 4, 2], 10, 4, 3).expect("products");
        assert_eq!(times.len(), 3);
        assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0));
    }
}
