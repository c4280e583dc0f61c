//! Batch normalisation over rows `[n, f]` (per feature) or images `[n, c, h, w]` (per channel).
//!
//! For each feature (or channel) `j`, over the `m` values it takes in the batch (`m = n`, or
//! `n·h·w` for images):
//!
//! ```text
//! Train   μ = (1/m)·Σ x,   σ² = (1/m)·Σ (x − μ)²
//!         x̂ = (x − μ) / √(σ² + ε),   y = γ·x̂ + β
//!         running_mean ← (1 − momentum)·running_mean + momentum·μ
//!         running_var  ← (1 − momentum)·running_var  + momentum·σ²·m/(m − 1)   (unbiased)
//! Eval    y = γ·(x − running_mean)/√(running_var + ε) + β
//!
//! backward (Train; the batch statistics depend on x too)
//!         ∂E/∂β = Σ dy,   ∂E/∂γ = Σ dy·x̂
//!         ∂E/∂x = (γ / (m·√(σ² + ε))) · (m·dy − Σ dy − x̂·Σ dy·x̂)
//! ```
//!
//! The layer keeps μ and `1/√(σ² + ε)` per feature for backward, which recomputes `x̂` from
//! the input the network hands it back. `γ` (`weight`) and `β` (`bias`) are trained; the running statistics are buffers: saved in
//! model files, never touched by optimizers. Defaults follow PyTorch: `ε = 1e-5`,
//! `momentum = 0.1`, `γ = 1`, `β = 0`, running mean 0 and variance 1.

use ndarray::ArrayViewD;
use nn_core::norm::{self, Channels, Partials};
use nn_core::{Buffer, Param, Rng, Tensor, row_major};

use crate::config::{
    Context, Domain, LayerConfig, TensorSpec, checked_output, ensure, param_elements,
};
use crate::error::{Error, Result};
use crate::layer::{Layer, Mode, Slot, check_backward, require_forward};
use crate::spec::{Attr, LayerSpec};

/// Configuration of a [`BatchNorm`] layer; the defaults (`ε = 1e-5`, momentum 0.1) are
/// PyTorch's and live here alone.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Features (rows `[n, f]`) or channels (images `[n, c, h, w]`).
    pub features: usize,
    /// `ε` added to the variance.
    pub eps: f32,
    /// Weight of the newest batch in the running statistics.
    pub momentum: f32,
}

impl BatchNormConfig {
    /// The default `ε`.
    pub const EPS: f32 = 1e-5;
    /// The default momentum.
    pub const MOMENTUM: f32 = 0.1;

    /// Batch norm over `features` features or channels with the default `ε` and momentum.
    pub fn new(features: usize) -> Self {
        BatchNormConfig {
            features,
            eps: Self::EPS,
            momentum: Self::MOMENTUM,
        }
    }

    /// Checks `features > 0`, `ε > 0` (finite) and a momentum in `[0, 1]`.
    ///
    /// # Errors
    /// [`Error::Config`] or a limit error naming the layer.
    pub fn validate(&self) -> Result<()> {
        let (f, eps, m) = (self.features, self.eps, self.momentum);
        ensure(
            f > 0 && eps > 0.0 && eps.is_finite() && (0.0..=1.0).contains(&m),
            "batchnorm",
            || format!("need features > 0, ε > 0 and momentum in [0, 1], got {f}, {eps}, {m}"),
        )?;
        param_elements(|| format!("{} weight", self.name()), &[f])?;
        Ok(())
    }

    /// Reads `features` (inferred from the input's axis 1 when absent), `eps` and
    /// `momentum` (defaults [`BatchNormConfig::EPS`], [`BatchNormConfig::MOMENTUM`]).
    ///
    /// # Errors
    /// [`Error::Spec`] for a missing, unknown or ill-typed attribute; as
    /// [`BatchNormConfig::validate`].
    pub fn from_spec(spec: &LayerSpec, ctx: &Context<'_>) -> Result<Self> {
        spec.only(&["features", "eps", "momentum"])?;
        let cfg = BatchNormConfig {
            features: ctx.width(spec, "features", &[2, 4], "[n, f] or [n, c, h, w]")?,
            eps: spec.float_or("eps", f64::from(Self::EPS))? as f32,
            momentum: spec.float_or("momentum", f64::from(Self::MOMENTUM))? as f32,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl LayerConfig for BatchNormConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("batchnorm")
            .with("features", Attr::Int(self.features as i64))
            .with("eps", Attr::Float(self.eps as f64))
            .with("momentum", Attr::Float(self.momentum as f64))
    }

    fn name(&self) -> String {
        format!("batchnorm({})", self.features)
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        let f = || vec![self.features];
        Ok(vec![
            TensorSpec::param("weight", f()),
            TensorSpec::param("bias", f()),
            TensorSpec::buffer("running_mean", f(), Domain::Real),
            TensorSpec::buffer("running_var", f(), Domain::NonNegative),
        ])
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        layout_of(self.features, input, || self.name())?;
        checked_output(|| self.name(), input.to_vec())
    }

    fn build(&self, _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(BatchNorm::from_config(self)?))
    }
}

/// Batch normalisation; see the module doc.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    features: usize,
    eps: f32,
    momentum: f32,
    gamma: Param,
    beta: Param,
    running_mean: Tensor,
    running_var: Tensor,
    /// μ per feature of the last train-mode forward.
    mean: Vec<f32>,
    /// 1/√(σ² + ε) per feature of the last train-mode forward.
    inv_std: Vec<f32>,
    /// Per-feature working values of one pass (σ², the pass's coefficients).
    scratch: Vec<f32>,
    /// The kernels' per-thread partial sums.
    partials: Partials,
    ready: bool,
}

/// Samples, features and values per feature of a `[n, f]` or `[n, f, h, w]` input.
fn layout(shape: &[usize]) -> Option<Channels> {
    match shape {
        [n, f] => Some(Channels {
            n: *n,
            f: *f,
            sp: 1,
        }),
        [n, c, h, w] => Some(Channels {
            n: *n,
            f: *c,
            sp: h.checked_mul(*w)?,
        }),
        _ => None,
    }
}

/// The layout of an input `[n, f]` or `[n, f, h, w]` with `f` features; the error names
/// both shapes.
fn layout_of(features: usize, shape: &[usize], name: impl FnOnce() -> String) -> Result<Channels> {
    layout(shape).filter(|l| l.f == features).ok_or_else(|| {
        nn_core::Error::shape(
            format!("{} forward", name()),
            format!("[n, {features}] or [n, {features}, h, w]"),
            shape,
        )
        .into()
    })
}

impl BatchNorm {
    /// Batch norm over `features` features or channels, `ε = 1e-5`, momentum 0.1.
    ///
    /// # Errors
    /// [`Error::Config`] for zero features, `ε ≤ 0` or a momentum outside `[0, 1]`.
    pub fn new(features: usize, eps: f32, momentum: f32) -> Result<Self> {
        Self::from_config(&BatchNormConfig {
            features,
            eps,
            momentum,
        })
    }

    /// Batch norm as `cfg` describes it: `γ = 1`, `β = 0`, running mean 0 and variance 1.
    ///
    /// # Errors
    /// As [`BatchNormConfig::validate`].
    pub fn from_config(cfg: &BatchNormConfig) -> Result<Self> {
        cfg.validate()?;
        let BatchNormConfig {
            features,
            eps,
            momentum,
        } = *cfg;
        Ok(BatchNorm {
            features,
            eps,
            momentum,
            gamma: Param::new(Tensor::ones(vec![features])),
            beta: Param::new(Tensor::zeros(vec![features])),
            running_mean: Tensor::zeros(vec![features]),
            running_var: Tensor::ones(vec![features]),
            mean: Vec::new(),
            inv_std: Vec::new(),
            scratch: Vec::new(),
            partials: Partials::default(),
            ready: false,
        })
    }

    /// The default: `ε = 1e-5`, momentum 0.1.
    ///
    /// # Errors
    /// [`Error::Config`] for zero features.
    pub fn with_features(features: usize) -> Result<Self> {
        Self::from_config(&BatchNormConfig::new(features))
    }

    /// The running mean and variance (used in Eval mode).
    pub fn running_stats(&self) -> (&Tensor, &Tensor) {
        (&self.running_mean, &self.running_var)
    }

    fn label(&self) -> String {
        format!("batchnorm({})", self.features)
    }

    /// `(n, f, spatial)` of an input `[n, f]` or `[n, f, h, w]` with `f` features; the error
    /// names both shapes.
    fn layout_of(&self, shape: &[usize]) -> Result<Channels> {
        layout_of(self.features, shape, || self.label())
    }

    fn bn_config(&self) -> BatchNormConfig {
        BatchNormConfig {
            features: self.features,
            eps: self.eps,
            momentum: self.momentum,
        }
    }
}

/// `y = γ·(x − μ)·s + β` as one multiply-add `a·x + b`: `a = γ·s`, `b = β − a·μ`.
fn as_affine(gamma: f32, beta: f32, mu: f32, s: f32) -> (f32, f32) {
    let a = gamma * s;
    (a, beta - a * mu)
}

impl BatchNorm {
    /// Train mode: batch statistics, `y = γ·x̂ + β`, running statistics updated.
    fn forward_train(&mut self, xs: &[f32], y: &mut [f32], c: Channels) {
        let (f, m) = (c.f, c.m() as f32);
        self.mean.resize(f, 0.0);
        self.inv_std.resize(f, 0.0);
        self.scratch.resize(3 * f, 0.0);
        let (var, coef) = self.scratch.split_at_mut(f);
        norm::moments(c, xs, &mut self.partials, &mut self.mean, var); // μ, σ²
        let (a, b) = coef.split_at_mut(f);
        let (g, bt) = (self.gamma.values(), self.beta.values());
        for j in 0..f {
            let (mu, inv) = (self.mean[j], 1.0 / (var[j] + self.eps).sqrt()); // 1/√(σ² + ε)
            self.inv_std[j] = inv;
            (a[j], b[j]) = as_affine(g[j], bt[j], mu, inv); // y = γ·(x − μ)/√(σ² + ε) + β
            let mom = self.momentum;
            let rm = &mut self.running_mean[[j]];
            *rm = (1.0 - mom) * *rm + mom * mu;
            let rv = &mut self.running_var[[j]];
            *rv = (1.0 - mom) * *rv + mom * var[j] * m / (m - 1.0); // unbiased σ²
        }
        norm::affine(c, xs, (a, b), y);
    }

    /// Eval mode: `y = γ·(x − running_mean)/√(running_var + ε) + β`.
    fn forward_eval(&mut self, xs: &[f32], y: &mut [f32], c: Channels) {
        let f = c.f;
        self.scratch.resize(2 * f, 0.0);
        let (a, b) = self.scratch.split_at_mut(f);
        let (g, bt) = (self.gamma.values(), self.beta.values());
        for j in 0..f {
            let inv = 1.0 / (self.running_var[[j]] + self.eps).sqrt();
            // y = γ·(x − running_mean)/√(running_var + ε) + β
            (a[j], b[j]) = as_affine(g[j], bt[j], self.running_mean[[j]], inv);
        }
        norm::affine(c, xs, (a, b), y);
    }

    /// `∂E/∂x = (γ/(m·√(σ² + ε)))·(m·dy − Σ dy − x̂·Σ dy·x̂)` as one pass `A·dy + B·x + C`,
    /// from `sdy = Σ dy` and `sdyx = Σ dy·x̂` per feature.
    fn input_grad(&mut self, (dys, xs): (&[f32], &[f32]), c: Channels, dx: &mut [f32]) {
        let (f, m) = (c.f, c.m() as f32);
        let (sums, coef) = self.scratch.split_at_mut(2 * f);
        let (sdy, sdyx) = sums.split_at(f);
        let (a, rest) = coef.split_at_mut(f);
        let (b, cc) = rest.split_at_mut(f);
        for j in 0..f {
            let (g, mu, inv) = (self.gamma.value[[j]], self.mean[j], self.inv_std[j]);
            let k = g * inv / m; // γ/(m·√(σ² + ε))
            // k·(m·dy − Σdy − (x − μ)·inv·Σdy·x̂) = (k·m)·dy + B·x + (−k·Σdy − B·μ)
            a[j] = k * m;
            b[j] = -k * inv * sdyx[j];
            cc[j] = -k * sdy[j] - b[j] * mu;
        }
        norm::affine2(c, (dys, xs), (a, b, cc), dx);
    }
}

impl Layer for BatchNorm {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("weight", Slot::Param(&mut self.gamma));
        f("bias", Slot::Param(&mut self.beta));
        f("running_mean", Slot::Buffer(&mut self.running_mean));
        f("running_var", Slot::Buffer(&mut self.running_var));
    }

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()> {
        let c = self.layout_of(x.shape())?;
        if mode == Mode::Train && c.m() < 2 {
            return Err(Error::Custom {
                layer: self.label(),
                message: format!(
                    "training needs at least 2 values per feature to estimate a variance, got {} (input {})",
                    c.m(),
                    nn_core::Shape(x.shape().to_vec())
                ),
            });
        }
        let xs = row_major(&x);
        y.resize(x.shape());
        match mode {
            Mode::Train => self.forward_train(&xs, y.as_mut_slice(), c),
            Mode::Eval => self.forward_eval(&xs, y.as_mut_slice(), c),
        }
        self.ready = mode == Mode::Train;
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        require_forward(self.ready, || self.label())?;
        let c = self.layout_of(x.shape())?;
        check_backward(|| self.label(), x.shape(), &y, &dy)?;
        let (xs, dys) = (row_major(&x), row_major(&dy));
        let f = c.f;
        self.scratch.resize(5 * f, 0.0);
        let (sdy, sdyx) = self.scratch[..2 * f].split_at_mut(f);
        norm::grad_sums(c, &dys, &xs, &self.mean, &mut self.partials, (sdy, sdyx)); // Σ dy, Σ dy·(x − μ)
        for j in 0..f {
            sdyx[j] *= self.inv_std[j]; // Σ dy·x̂ = Σ dy·(x − μ)/√(σ² + ε)
            self.beta.grad[[j]] += sdy[j]; // ∂E/∂β = Σ dy
            self.gamma.grad[[j]] += sdyx[j]; // ∂E/∂γ = Σ dy·x̂
        }
        if let Some(d) = dx {
            let d = d.resized(x.shape());
            self.input_grad((&dys, &xs), c, d);
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(self.bn_config())
    }

    fn name(&self) -> String {
        self.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn normalises_by_hand_and_tracks_running_stats() {
        // one feature, values [1, 3]: μ = 2, σ² = 1, x̂ = [−1, 1]/√(1 + ε) ≈ [−1, 1]
        // γ = 1, β = 0 → y ≈ [−1, 1]; running mean 0.9·0 + 0.1·2 = 0.2;
        // running var 0.9·1 + 0.1·(1·2/1) = 1.1
        let mut bn = BatchNorm::with_features(1).unwrap();
        let x = array![[1.0f32], [3.0]].into_dyn();
        let y = crate::layer::apply(&mut bn, x.view(), Mode::Train)
            .unwrap()
            .to_owned();
        assert!(
            (y[[0, 0]] + 1.0).abs() < 1e-4 && (y[[1, 0]] - 1.0).abs() < 1e-4,
            "{y}"
        );
        let (rm, rv) = bn.running_stats();
        assert!((rm[[0]] - 0.2).abs() < 1e-6 && (rv[[0]] - 1.1).abs() < 1e-6);
        // Eval uses the running statistics: (3 − 0.2)/√(1.1 + 1e-5) = 2.8/1.0488136 = 2.669683
        let y = crate::layer::apply(&mut bn, array![[3.0f32]].into_dyn().view(), Mode::Eval)
            .unwrap()
            .to_owned();
        assert!((y[[0, 0]] - 2.669_683).abs() < 1e-5, "{y}");
        // backward: dy = [1, 0] → Σdy = 1, Σdy·x̂ ≈ −1; ∂E/∂β = 1, ∂E/∂γ ≈ −1
        // ∂E/∂x = (1/(2·1))·(2·[1, 0] − 1 − [−1, 1]·(−1)) = ½·([2, 0] − 1 − [1, −1]) = [0, 0]
        let dy = array![[1.0f32], [0.0]].into_dyn();
        let (_, dx) = crate::layer::apply_backward(&mut bn, x.view(), dy.view()).unwrap();
        assert!(dx.iter().all(|v| v.abs() < 1e-4), "{dx}");
        assert_eq!(bn.beta.grad[[0]], 1.0);
        assert!((bn.gamma.grad[[0]] + 1.0).abs() < 1e-4);
    }

    #[test]
    fn per_channel_on_images_and_shape_errors() {
        let mut bn = BatchNorm::with_features(2).unwrap();
        let x = Tensor::from_shape_fn(vec![2, 2, 2, 2], |d| {
            (d[0] * 8 + d[1] * 4 + d[2] * 2 + d[3]) as f32
        });
        let y = crate::layer::apply(&mut bn, x.view(), Mode::Train)
            .unwrap()
            .to_owned();
        // each channel of the output has mean 0 over n·h·w
        for c in 0..2 {
            let s: f32 = (0..2)
                .flat_map(|i| (0..4).map(move |k| (i, k)))
                .map(|(i, k)| y[[i, c, k / 2, k % 2]])
                .sum();
            assert!(s.abs() < 1e-4);
        }
        let e = crate::layer::apply(&mut bn, Tensor::zeros(vec![2, 3]).view(), Mode::Train)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "batchnorm(2) forward: expected shape [n, 2] or [n, 2, h, w], got [2, 3]"
        );
        let mut names = Vec::new();
        bn.visit(&mut |n, s| names.push((n.to_string(), matches!(s, Slot::Buffer(_)))));
        assert_eq!(names.iter().filter(|(_, buf)| *buf).count(), 2);
    }

    #[test]
    fn a_large_epsilon_shows_in_the_output() {
        // values [0, 2]: μ = 1, σ² = 1; ε = 0.5 → x̂ = ∓1/√1.5 = ∓0.81649658 (γ = 1, β = 0)
        let cfg = BatchNormConfig {
            eps: 0.5,
            ..BatchNormConfig::new(1)
        };
        let mut bn = BatchNorm::from_config(&cfg).unwrap();
        let x = array![[0.0f32], [2.0]].into_dyn();
        let y = crate::layer::apply(&mut bn, x.view(), Mode::Train).unwrap();
        assert!((y[[0, 0]] + 0.816_496_6).abs() < 1e-6, "{y}");
        assert!((y[[1, 0]] - 0.816_496_6).abs() < 1e-6, "{y}");
    }

    #[test]
    fn training_needs_two_values_per_feature() {
        let mut bn = BatchNorm::with_features(2).unwrap();
        for shape in [vec![1, 2], vec![1, 2, 1, 1]] {
            let e = crate::layer::apply(&mut bn, Tensor::zeros(shape).view(), Mode::Train)
                .unwrap_err()
                .to_string();
            assert!(e.contains("at least 2 values per feature"), "{e}");
        }
        // two rows, or one image of two pixels, are enough; Eval needs no batch statistics
        for shape in [vec![2, 2], vec![1, 2, 1, 2]] {
            crate::layer::apply(&mut bn, Tensor::zeros(shape).view(), Mode::Train).unwrap();
        }
        crate::layer::apply(&mut bn, Tensor::zeros(vec![1, 2]).view(), Mode::Eval).unwrap();
    }
}
