//! Numerical gradient checking: does a layer's `backward` agree with its `forward`?
//!
//! The checker turns a layer into a scalar function with a fixed random projection `r`
//! (seeded, entries in `[−1, 1)`), so that `∂L/∂y = r` exercises every output at once:
//!
//! ```text
//! L(x, θ)        = Σ r ⊙ f(x; θ)                        (accumulated in f64)
//! analytic       ∂L/∂x, ∂L/∂θ  from  backward(r)
//! numeric        ∂L/∂v ≈ (L(v + ε) − L(v − ε)) / ((v + ε) − (v − ε))   (central difference)
//! agreement      |a − n| ≤ abs_tol + rel_tol · |n|
//! ```
//!
//! Central differences have truncation error `O(ε²)`; the denominator is the step actually
//! taken in f32. For a loss, `L` is the loss itself and `∂L/∂y` comes from `Loss::backward`.
//!
//! # Tolerances (f32)
//!
//! The defaults, `ε = 1e-2`, `abs_tol = 1e-3`, `rel_tol = 1e-2`, suit f32 layers whose
//! inputs and outputs are of order 1: rounding in `L(v ± ε)` costs about `1e-7·|L|/ε`, the
//! truncation about `ε²·|f‴|/6`, both well under the tolerance, while a wrong formula
//! (a dropped transpose, a lost sign, a wrong derivative) is off by order 1. Keep inputs of
//! ReLU-like layers farther than `ε` from their kink, and max-pooling inputs free of ties:
//! there the function is not differentiable and the two sides disagree legitimately.

use std::fmt;

use ndarray::{ArrayViewD, IxDyn};
use nn_core::{Buffer, Tensor, rng};

use crate::error::Result;
use crate::layer::{Layer, Mode, Slot};
use crate::loss::{Loss, Target};

/// Step and tolerances of a gradient check.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckConfig {
    /// Half-width `ε` of the central difference.
    pub eps: f32,
    /// Absolute tolerance.
    pub abs_tol: f32,
    /// Relative tolerance, as a fraction of the numeric gradient.
    pub rel_tol: f32,
    /// Seed of the random projection `r` (and of the sampled entries).
    pub seed: u64,
    /// Check at most this many entries per tensor, chosen at random (all when `None`).
    pub max_entries: Option<usize>,
}

impl Default for GradCheckConfig {
    fn default() -> Self {
        GradCheckConfig {
            eps: 1e-2,
            abs_tol: 1e-3,
            rel_tol: 1e-2,
            seed: 0,
            max_entries: None,
        }
    }
}

impl GradCheckConfig {
    /// Whether an analytic value agrees with a numeric one.
    pub fn agrees(&self, analytic: f32, numeric: f32) -> bool {
        (analytic - numeric).abs() <= self.abs_tol + self.rel_tol * numeric.abs()
    }
}

/// One compared entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// `"input"`, `"prediction"` or a parameter name.
    pub tensor: String,
    /// Index of the entry in its tensor.
    pub index: Vec<usize>,
    /// Gradient from `backward`.
    pub analytic: f32,
    /// Gradient from central differences.
    pub numeric: f32,
}

impl Comparison {
    /// `|a − n|`.
    pub fn abs_err(&self) -> f32 {
        (self.analytic - self.numeric).abs()
    }

    /// `|a − n| / max(|a|, |n|)` (0 when both are 0).
    pub fn rel_err(&self) -> f32 {
        let scale = self.analytic.abs().max(self.numeric.abs());
        if scale == 0.0 {
            0.0
        } else {
            self.abs_err() / scale
        }
    }
}

/// The result for one tensor (the input or one parameter).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorCheck {
    /// `"input"`, `"prediction"` or a parameter name.
    pub name: String,
    /// Entries compared.
    pub checked: usize,
    /// Entries outside the tolerance.
    pub failed: usize,
    /// The entry with the largest absolute error.
    pub worst_abs: Option<Comparison>,
    /// The entry with the largest relative error.
    pub worst_rel: Option<Comparison>,
    /// The first entry outside the tolerance.
    pub first_failure: Option<Comparison>,
}

impl TensorCheck {
    fn new(name: &str) -> Self {
        TensorCheck {
            name: name.to_string(),
            checked: 0,
            failed: 0,
            worst_abs: None,
            worst_rel: None,
            first_failure: None,
        }
    }

    fn record(&mut self, c: Comparison, cfg: &GradCheckConfig) {
        self.checked += 1;
        if !cfg.agrees(c.analytic, c.numeric) {
            self.failed += 1;
            if self.first_failure.is_none() {
                self.first_failure = Some(c.clone());
            }
        }
        if self
            .worst_abs
            .as_ref()
            .is_none_or(|w| c.abs_err() > w.abs_err())
        {
            self.worst_abs = Some(c.clone());
        }
        if self
            .worst_rel
            .as_ref()
            .is_none_or(|w| c.rel_err() > w.rel_err())
        {
            self.worst_rel = Some(c);
        }
    }
}

/// Everything a gradient check found.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// The settings used.
    pub config: GradCheckConfig,
    /// One entry per checked tensor: the input first, then the parameters in visit order.
    pub tensors: Vec<TensorCheck>,
}

impl GradCheckReport {
    /// Whether every compared entry agreed within the tolerance.
    pub fn passed(&self) -> bool {
        self.tensors.iter().all(|t| t.failed == 0)
    }

    /// The entry with the largest absolute error over all tensors.
    pub fn worst_abs(&self) -> Option<&Comparison> {
        self.tensors
            .iter()
            .filter_map(|t| t.worst_abs.as_ref())
            .max_by(|a, b| a.abs_err().total_cmp(&b.abs_err()))
    }

    /// The entry with the largest relative error over all tensors.
    pub fn worst_rel(&self) -> Option<&Comparison> {
        self.tensors
            .iter()
            .filter_map(|t| t.worst_rel.as_ref())
            .max_by(|a, b| a.rel_err().total_cmp(&b.rel_err()))
    }
}

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(
            f,
            "gradient check {verdict} (ε = {}, |a − n| ≤ {} + {}·|n|)",
            self.config.eps, self.config.abs_tol, self.config.rel_tol
        )?;
        for t in &self.tensors {
            let (abs, rel) = (
                t.worst_abs.as_ref().map_or(0.0, Comparison::abs_err),
                t.worst_rel.as_ref().map_or(0.0, Comparison::rel_err),
            );
            write!(
                f,
                "  {:<14} {:>6} checked {:>5} failed   max abs {abs:.2e}   max rel {rel:.2e}",
                t.name, t.checked, t.failed
            )?;
            if let Some(c) = &t.first_failure {
                write!(
                    f,
                    "   first failure at {:?}: analytic {:.6} numeric {:.6}",
                    c.index, c.analytic, c.numeric
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Chooses which flat indices of a tensor of `len` entries to check.
fn entries(len: usize, cfg: &GradCheckConfig, rng: &mut nn_core::Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..len).collect();
    if let Some(max) = cfg.max_entries
        && max < len
    {
        rng::shuffle(&mut idx, rng);
        idx.truncate(max);
        idx.sort_unstable();
    }
    idx
}

/// The multi-index of flat position `i` in a row-major tensor of `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (d, &n) in shape.iter().enumerate().rev() {
        index[d] = i % n;
        i /= n;
    }
    index
}

/// Central difference of `objective` in entry `*v`: evaluates at `v ± ε`, restores `v`.
fn central_difference(
    eps: f32,
    mut set: impl FnMut(f32),
    v: f32,
    mut objective: impl FnMut() -> Result<f64>,
) -> Result<f32> {
    let (hi, lo) = (v + eps, v - eps);
    set(hi);
    let l_hi = objective()?;
    set(lo);
    let l_lo = objective()?;
    set(v);
    Ok(((l_hi - l_lo) / (hi as f64 - lo as f64)) as f32) // (L(v+ε) − L(v−ε)) / 2ε
}

/// Runs `f` on entry `flat` of the parameter called `name`.
fn with_param_entry(layer: &mut dyn Layer, name: &str, flat: usize, f: &mut dyn FnMut(&mut f32)) {
    layer.visit(&mut |n, slot| {
        if n == name
            && let Slot::Param(p) = slot
            && let Some(v) = p.value.iter_mut().nth(flat)
        {
            f(v);
        }
    });
}

/// `L = Σ r ⊙ f(x)` for a train-mode forward at `x`, in f64.
fn objective(layer: &mut dyn Layer, x: ArrayViewD<'_, f32>, r: &Tensor) -> Result<f64> {
    let mut y = Buffer::new();
    layer.forward(x, &mut y, Mode::Train)?;
    Ok(y.as_slice()
        .iter()
        .zip(r.iter())
        .map(|(&y, &r)| y as f64 * r as f64)
        .sum())
}

/// The random projection `r`, `∂L/∂x`, and each parameter's name and `∂L/∂θ`.
type Analytic = (Tensor, Tensor, Vec<(String, Tensor)>);

/// The analytic gradients at `x` for a random projection `r`: `∂L/∂x` and each parameter's
/// `∂L/∂θ` (left in the layer), with `r` itself.
fn analytic(
    layer: &mut dyn Layer,
    x: ArrayViewD<'_, f32>,
    rng: &mut nn_core::Rng,
) -> Result<Analytic> {
    let (mut y, mut dx) = (Buffer::new(), Buffer::new());
    layer.zero_grad();
    layer.forward(x.view(), &mut y, Mode::Train)?;
    let r = Tensor::from_shape_fn(IxDyn(y.shape()), |_| rng::uniform(rng, -1.0, 1.0));
    layer.backward(x, y.view(), r.view(), Some(&mut dx))?; // ∂L/∂x, and ∂L/∂θ into the grads
    let mut grads = Vec::new();
    layer.visit(&mut |n, slot| {
        if let Slot::Param(p) = slot {
            grads.push((n.to_string(), p.grad.clone()));
        }
    });
    Ok((r, dx.to_tensor(), grads))
}

/// `∂L/∂x` against central differences, on the sampled entries of `x`.
fn check_input(
    layer: &mut dyn Layer,
    x: ArrayViewD<'_, f32>,
    r: &Tensor,
    dx: &Tensor,
    cfg: &GradCheckConfig,
    rng: &mut nn_core::Rng,
) -> Result<TensorCheck> {
    let mut check = TensorCheck::new("input");
    let mut xp = x.to_owned();
    for i in entries(xp.len(), cfg, rng) {
        let index = unravel(i, xp.shape());
        let v = xp[IxDyn(&index)];
        let cell = std::cell::RefCell::new(&mut xp);
        let numeric = central_difference(
            cfg.eps,
            |nv| cell.borrow_mut()[IxDyn(&index)] = nv,
            v,
            || objective(layer, cell.borrow().view(), r),
        )?;
        let analytic = dx[IxDyn(&index)];
        let tensor = "input".into();
        check.record(
            Comparison {
                tensor,
                analytic,
                numeric,
                index,
            },
            cfg,
        );
    }
    Ok(check)
}

/// `∂L/∂θ` of the parameter `name` against central differences, on its sampled entries.
fn check_param(
    layer: &mut dyn Layer,
    x: ArrayViewD<'_, f32>,
    r: &Tensor,
    (name, grad): (&str, &Tensor),
    cfg: &GradCheckConfig,
    rng: &mut nn_core::Rng,
) -> Result<TensorCheck> {
    let mut check = TensorCheck::new(name);
    for i in entries(grad.len(), cfg, rng) {
        let mut v = 0.0;
        with_param_entry(layer, name, i, &mut |p| v = *p);
        let cell = std::cell::RefCell::new(&mut *layer);
        let numeric = central_difference(
            cfg.eps,
            |nv| with_param_entry(*cell.borrow_mut(), name, i, &mut |p| *p = nv),
            v,
            || objective(*cell.borrow_mut(), x.view(), r),
        )?;
        let index = unravel(i, grad.shape());
        let analytic = grad[IxDyn(&index)];
        let tensor = name.into();
        check.record(
            Comparison {
                tensor,
                analytic,
                numeric,
                index,
            },
            cfg,
        );
    }
    Ok(check)
}

/// Checks `layer`'s input and parameter gradients at input `x` (train mode).
///
/// The layer's parameter gradients are zeroed and left holding the analytic gradient of
/// `Σ r ⊙ f(x)`; parameter values are restored exactly.
///
/// # Errors
/// Whatever the layer's `forward` or `backward` return.
///
/// # Example
///
/// ```
/// use nn_core::ndarray::Array2;
/// use nn_layers::{Conv2d, Conv2dConfig, GradCheckConfig, check_layer};
///
/// let mut conv = Conv2d::new(&Conv2dConfig::new(2, 3, 3), &mut nn_core::seeded(1))?;
/// let x = Array2::from_shape_fn((2, 2 * 5 * 5), |(i, j)| ((i * 50 + j) % 7) as f32 / 7.0)
///     .into_shape_with_order((2, 2, 5, 5))
///     .expect("50 values per image")
///     .into_dyn();
/// let report = check_layer(&mut conv, x.view(), &GradCheckConfig::default())?;
/// assert!(report.passed(), "{report:?}");
/// // the input and both parameters were compared entry by entry
/// assert_eq!(report.tensors.len(), 3);
/// # Ok::<(), nn_layers::Error>(())
/// ```
pub fn check_layer(
    layer: &mut dyn Layer,
    x: ArrayViewD<'_, f32>,
    cfg: &GradCheckConfig,
) -> Result<GradCheckReport> {
    let mut rng = nn_core::seeded(cfg.seed);
    let (r, dx, grads) = analytic(layer, x.view(), &mut rng)?;
    let mut tensors = vec![check_input(layer, x.view(), &r, &dx, cfg, &mut rng)?];
    for (name, grad) in &grads {
        tensors.push(check_param(
            layer,
            x.view(),
            &r,
            (name, grad),
            cfg,
            &mut rng,
        )?);
    }
    // leave the layer holding the analytic gradient
    let mut rng = nn_core::seeded(cfg.seed);
    analytic(layer, x, &mut rng)?;
    Ok(GradCheckReport {
        config: cfg.clone(),
        tensors,
    })
}

/// Checks a loss's gradient `∂E/∂y` at prediction `y` against central differences of `E`.
///
/// # Errors
/// Whatever the loss's `forward` or `backward` return.
pub fn check_loss(
    loss: &mut dyn Loss,
    y: ArrayViewD<'_, f32>,
    target: Target<'_>,
    cfg: &GradCheckConfig,
) -> Result<GradCheckReport> {
    let mut rng = nn_core::seeded(cfg.seed);
    loss.forward(y.view(), target.clone())?;
    let analytic = loss.backward()?.to_owned();
    let mut check = TensorCheck::new("prediction");
    let mut yp = y.to_owned();
    for i in entries(yp.len(), cfg, &mut rng) {
        let index = unravel(i, yp.shape());
        let v = yp[IxDyn(&index)];
        let cell = std::cell::RefCell::new(&mut yp);
        let numeric = central_difference(
            cfg.eps,
            |nv| cell.borrow_mut()[IxDyn(&index)] = nv,
            v,
            || Ok(loss.forward(cell.borrow().view(), target.clone())? as f64),
        )?;
        check.record(
            Comparison {
                tensor: "prediction".into(),
                analytic: analytic[IxDyn(&index)],
                numeric,
                index,
            },
            cfg,
        );
    }
    Ok(GradCheckReport {
        config: cfg.clone(),
        tensors: vec![check],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_row_major() {
        assert_eq!(unravel(5, &[2, 3]), vec![1, 2]);
        assert_eq!(unravel(0, &[4]), vec![0]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
    }

    #[test]
    fn tolerance_rule() {
        let c = GradCheckConfig::default();
        assert!(c.agrees(1.0, 1.0 + 0.5e-2)); // 0.005 ≤ 0.001 + 0.01·1.005
        assert!(!c.agrees(1.0, 1.1)); // 0.1 > 0.012
        assert!(c.agrees(0.0, 0.0009));
        assert!(!c.agrees(0.0, 0.002));
    }

    #[test]
    fn sampling_limits_entries() {
        let cfg = GradCheckConfig {
            max_entries: Some(3),
            ..Default::default()
        };
        let e = entries(100, &cfg, &mut nn_core::seeded(0));
        assert_eq!(e.len(), 3);
        assert!(e.windows(2).all(|w| w[0] < w[1]));
    }

    fn cmp(tensor: &str, i: usize, analytic: f32, numeric: f32) -> Comparison {
        Comparison {
            tensor: tensor.into(),
            index: vec![i],
            analytic,
            numeric,
        }
    }

    #[test]
    fn errors_of_one_entry_by_hand() {
        let c = cmp("x", 0, 3.0, 1.0);
        assert_eq!((c.abs_err(), c.rel_err()), (2.0, 2.0 / 3.0));
        let c = cmp("x", 0, -2.0, 1.0); // |−2 − 1| = 3, over max(2, 1)
        assert_eq!((c.abs_err(), c.rel_err()), (3.0, 1.5));
        let c = cmp("x", 0, 0.5, 4.0); // 3.5 over 4
        assert_eq!(c.rel_err(), 0.875);
        assert_eq!(cmp("x", 0, 0.0, 0.0).rel_err(), 0.0);
    }

    #[test]
    fn a_tensor_record_keeps_counts_the_worst_entries_and_the_first_failure() {
        let cfg = GradCheckConfig::default(); // pass when |a − n| ≤ 0.001 + 0.01·|n|
        let mut t = TensorCheck::new("w");
        let seen = [
            cmp("w", 0, 1.0, 1.0),     // agrees
            cmp("w", 1, 1.0, 1.5),     // fails: abs 0.5, rel 1/3
            cmp("w", 2, 0.1, 0.3),     // fails: abs 0.2, rel 2/3
            cmp("w", 3, 2.0, 2.5),     // fails: abs 0.5 (a tie: the first stays), rel 0.2
            cmp("w", 4, 0.01, 0.0105), // agrees: abs 0.0005, rel 1/21
        ];
        for c in seen.iter().cloned() {
            t.record(c, &cfg);
        }
        assert_eq!((t.checked, t.failed), (5, 3));
        assert_eq!(t.worst_abs.as_ref().unwrap().index, [1]);
        assert_eq!(t.worst_rel.as_ref().unwrap().index, [2]);
        assert_eq!(t.first_failure.as_ref().unwrap().index, [1]);
        let mut other = TensorCheck::new("b");
        other.record(cmp("b", 7, 1.0, 0.0), &cfg); // abs 1, rel 1
        let report = GradCheckReport {
            config: cfg,
            tensors: vec![t, other],
        };
        assert!(!report.passed());
        assert_eq!(report.worst_abs().unwrap().tensor, "b");
        assert_eq!(report.worst_rel().unwrap().tensor, "b");
        let text = report.to_string();
        assert!(text.starts_with("gradient check FAILED"), "{text}");
        assert!(
            text.contains("first failure at [1]: analytic 1.000000 numeric 1.500000"),
            "{text}"
        );
    }
}
