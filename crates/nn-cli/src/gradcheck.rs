//! `nn gradcheck`: every layer's gradients, and the whole network's, checked numerically.

use anyhow::{Context, Result, bail};
use ndarray::IxDyn;
use nn_core::{Tensor, limits};
use nn_layers::{GradCheckConfig, Mode, Registry, Sequential, check_layer};

use crate::output::say;

/// Options of `nn gradcheck`.
#[derive(clap::Args, Debug)]
pub struct GradcheckArgs {
    /// The network, e.g. "dense:16,tanh,dense:4".
    #[arg(long)]
    pub layers: String,
    /// Shape of one input row, e.g. 8 or 1x28x28.
    #[arg(long, default_value = "8")]
    pub input_shape: String,
    /// Rows in the random batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Seed of the weights, the input and the projection.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Half-width ε of the central differences.
    #[arg(long, default_value_t = 1e-2, allow_negative_numbers = true)]
    pub eps: f32,
    /// Absolute tolerance.
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub abs_tol: f32,
    /// Relative tolerance.
    #[arg(long, default_value_t = 1e-2, allow_negative_numbers = true)]
    pub rel_tol: f32,
    /// Check at most this many entries per tensor.
    #[arg(long, default_value_t = 200)]
    pub max_entries: usize,
}

/// `8`, `1x28x28` or `1,28,28`: positive sizes whose product is within the tensor limit.
pub(crate) fn parse_shape(text: &str) -> Result<Vec<usize>> {
    let shape: Vec<usize> = text
        .split(['x', ','])
        .map(|s| s.trim().parse::<usize>().ok().filter(|&d| d > 0))
        .collect::<Option<_>>()
        .with_context(|| {
            format!(
                "--input-shape `{}`: expected sizes like 8 or 1x28x28",
                limits::excerpt(text)
            )
        })?;
    if shape.len() >= limits::MAX_RANK {
        bail!(
            "--input-shape `{}`: at most {} sizes",
            limits::excerpt(text),
            limits::MAX_RANK - 1
        );
    }
    Ok(shape)
}

/// Runs `nn gradcheck`: each layer on its own input, then the whole network.
pub fn run(a: &GradcheckArgs) -> Result<()> {
    let shape = parse_shape(&a.input_shape)?;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if !(a.eps.is_finite() && a.eps > 0.0) {
        bail!("--eps {}: must be a positive number", a.eps);
    }
    let registry = Registry::new();
    let specs = crate::spec::parse_layers(&a.layers)?;
    if let Some(note) = crate::spec::flatten_note(&specs, &shape) {
        eprintln!("{note}");
    }
    let cfg = crate::spec::resolve(&specs, &shape, a.batch, &registry)?;
    let mut net = Sequential::from_config(&cfg, &mut nn_core::seeded(a.seed))?;
    let mut full = vec![a.batch];
    full.extend_from_slice(&shape);
    let mut rng = nn_core::seeded(a.seed ^ 0x9e37_79b9);
    let x = Tensor::from_shape_fn(IxDyn(&full), |_| nn_core::rng::uniform(&mut rng, -1.0, 1.0));
    let check = GradCheckConfig {
        eps: a.eps,
        abs_tol: a.abs_tol,
        rel_tol: a.rel_tol,
        seed: a.seed,
        max_entries: Some(a.max_entries),
    };
    say!(
        "gradient check: ε = {}, pass if |analytic − numeric| ≤ {} + {}·|numeric|",
        a.eps,
        a.abs_tol,
        a.rel_tol
    );
    say!(
        "  {:>3}  {:<22} {:<12} {:>11} {:>11}  verdict",
        "#",
        "layer",
        "tensor",
        "max abs",
        "max rel"
    );
    let failed = check_each_layer(&mut net, x.clone(), &check)?;
    let whole = check_layer(&mut net, x.view(), &check)?;
    let worst = whole.worst_abs().map_or(0.0, |c| c.abs_err());
    say!(
        "  whole network: max abs error {worst:.3e}, {}",
        if whole.passed() { "ok" } else { "FAILED" }
    );
    if failed > 0 || !whole.passed() {
        bail!(
            "gradient check failed for {failed} layer(s); note that ReLU-like kinks within ε of an input disagree legitimately"
        );
    }
    Ok(())
}

/// Checks each layer on the output of the ones before it; returns how many failed.
fn check_each_layer(
    net: &mut Sequential,
    mut input: Tensor,
    cfg: &GradCheckConfig,
) -> Result<usize> {
    let mut failed = 0;
    for (i, layer) in net.layers_mut().iter_mut().enumerate() {
        let report = check_layer(layer.as_mut(), input.view(), cfg)?;
        for t in &report.tensors {
            let abs = t.worst_abs.as_ref().map_or(0.0, |c| c.abs_err());
            let rel = t.worst_rel.as_ref().map_or(0.0, |c| c.rel_err());
            let verdict = if t.failed == 0 {
                "ok".to_string()
            } else {
                format!("FAILED ({} of {})", t.failed, t.checked)
            };
            say!(
                "  {i:>3}  {:<22} {:<12} {abs:>11.3e} {rel:>11.3e}  {verdict}",
                layer.name(),
                t.name
            );
        }
        failed += usize::from(!report.passed());
        input = nn_layers::layer::apply(layer.as_mut(), input.view(), Mode::Eval)?;
    }
    Ok(failed)
}
