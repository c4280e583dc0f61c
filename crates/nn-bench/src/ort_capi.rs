//! W4 through ONNX Runtime's C API, the inference runtime people deploy, with no Python in
//! the timed path (feature `ort`; `nn-bench w4-ort --ort-lib path/to/libonnxruntime.so`).
//!
//! The trained W1 model is exported with our own ONNX exporter as a logits-only graph (the
//! metadata names no classifier loss, so no softmax node follows the last `Gemm`), loaded
//! from memory into a session with all graph optimisations, one inter-op thread and 1 or 2
//! intra-op threads, checked against our logits on 1024 rows, then timed with W4's protocol:
//! each call wraps the input array in a tensor, runs the session and reads the logits — what
//! a Rust program serving this model through the `ort` crate does per request.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use ndarray::ArrayView2;
use nn_core::Buffer;
use nn_io::Metadata;
use nn_io::onnx::export_onnx;
use nn_layers::{Layer, Mode, Sequential};
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;

/// Loads the shared library and makes the process's one ONNX Runtime environment.
fn init(lib: &Path) -> Result<Environment> {
    if !lib.is_file() {
        bail!(
            "{}: no such file (the onnxruntime wheel ships it in onnxruntime/capi/)",
            lib.display()
        );
    }
    ort::init_from(lib)
        .map_err(|e| anyhow!("{}: {e}", lib.display()))?
        .build()
        .map_err(|e| anyhow!("onnx runtime: {e}"))
}

/// A session over `onnx` with `threads` intra-op threads.
fn session(env: &Environment, onnx: &[u8], threads: usize) -> Result<Session> {
    let wrap = |e: ort::Error| anyhow!("onnx runtime: {e}");
    Session::builder(env)
        .map_err(wrap)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| wrap(e.into()))?
        .with_intra_threads(threads)
        .map_err(|e| wrap(e.into()))?
        .with_inter_threads(1)
        .map_err(|e| wrap(e.into()))?
        .commit_from_memory(onnx)
        .map_err(wrap)
}

/// Runs `x` through the session and hands the logits to `read`.
fn run(session: &mut Session, x: ArrayView2<'_, f32>, read: impl FnOnce(&[f32])) -> Result<()> {
    let input = TensorRef::from_array_view(x).map_err(|e| anyhow!("onnx runtime: {e}"))?;
    let outputs = session
        .run(ort::inputs![input])
        .map_err(|e| anyhow!("onnx runtime: {e}"))?;
    let (_, logits) = outputs["logits"]
        .try_extract_tensor::<f32>()
        .map_err(|e| anyhow!("onnx runtime: {e}"))?;
    read(logits);
    Ok(())
}

/// The largest |ours − theirs| over the logits of `xb`.
fn max_difference(
    model: &mut Sequential,
    session: &mut Session,
    xb: ArrayView2<'_, f32>,
) -> Result<f32> {
    let mut ours = Buffer::new();
    model.forward(xb.into_dyn(), &mut ours, Mode::Eval)?;
    let mut worst = f32::NAN;
    run(session, xb, |theirs| {
        worst = (ours.as_slice().iter().zip(theirs))
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
    })?;
    Ok(worst)
}

/// W4 of `model` through ONNX Runtime at 1 and 2 intra-op threads: one JSON record each.
pub(crate) fn measure(
    model: &mut Sequential,
    x1: ArrayView2<'_, f32>,
    xb: ArrayView2<'_, f32>,
    lib: &Path,
    reps: usize,
) -> Result<Vec<serde_json::Value>> {
    let environment = init(lib)?;
    let metadata = Metadata {
        input_shape: vec![x1.ncols()],
        loss: "mse".into(), // no classifier head: the graph ends at the logits, as W4 asks
        ..Metadata::default()
    };
    let onnx = export_onnx(model, &metadata).context("exporting the W1 model")?;
    // the wheel's file name carries the version (its build string names only a commit)
    let version = (lib.file_name().and_then(|n| n.to_str()))
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .unwrap_or("unknown");
    let peer = format!("onnxruntime-capi-{version}");
    let mut records = Vec::new();
    for threads in [1, 2] {
        let mut s = session(&environment, &onnx, threads)?;
        let diff = max_difference(model, &mut s, xb)?;
        if diff.is_nan() || diff > 1e-4 {
            bail!("ONNX Runtime's logits differ from ours by {diff} (limit 1e-4)");
        }
        let (l, t) = crate::w4_protocol(reps, x1, xb, |x| {
            run(&mut s, x, |logits| {
                std::hint::black_box(logits);
            })
        })?;
        records.push(crate::report_w4(&peer, threads, l, t));
    }
    Ok(records)
}
