//! Stochastic gradient descent, plain, with momentum, or Nesterov.
//!
//! Plain SGD is the derivation's rule, applied to every parameter after each mini-batch
//! (`η` is the rate the training loop's schedule gives the step):
//!
//! ```text
//! w ← w − η · ∂E/∂w
//! ```
//!
//! With L2 weight decay `λ`, momentum `μ` and Nesterov, following PyTorch's conventions
//! (`torch.optim.SGD`, dampening 0, velocity starting at zero):
//!
//! ```text
//! g ← ∂E/∂w + λ·w                  (L2 penalty ½λ‖w‖² folded into the gradient)
//! v ← μ·v + g                      (momentum; v₀ = 0, so v₁ = g)
//! d ← g + μ·v   (Nesterov)   or   d ← v   (classical momentum)   or   d ← g   (μ = 0)
//! w ← w − η·d
//! ```
//!
//! Note PyTorch's form puts `η` outside the velocity (Sutskever et al. put it inside); the
//! two agree for a constant learning rate.

use nn_layers::Layer;
use serde::{Deserialize, Serialize};

use crate::error::{Result, config};
use crate::optimizer::{Optimizer, OptimizerState, SlotMap};
use crate::update::{Grad, each_param, update};

/// Settings of [`Sgd`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Momentum `μ` (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov momentum (needs `μ > 0`).
    pub nesterov: bool,
    /// L2 weight decay `λ`.
    pub weight_decay: f32,
}

impl SgdConfig {
    /// Plain SGD: no momentum, no weight decay.
    pub fn plain() -> Self {
        Self::default()
    }

    /// With momentum `μ`.
    pub fn momentum(mut self, mu: f32) -> Self {
        self.momentum = mu;
        self
    }

    /// With Nesterov momentum `μ`.
    pub fn nesterov(mut self, mu: f32) -> Self {
        self.momentum = mu;
        self.nesterov = true;
        self
    }

    /// With L2 weight decay `λ`.
    pub fn weight_decay(mut self, lambda: f32) -> Self {
        self.weight_decay = lambda;
        self
    }
}

/// SGD; see the module doc for the update.
///
/// # Example
///
/// Two steps with momentum μ = 0.9 on one weight whose gradient stays 1:
/// `v₁ = 1, w₁ = 1 − 0.1·1 = 0.9`; `v₂ = 0.9·1 + 1 = 1.9, w₂ = 0.9 − 0.1·1.9 = 0.71`.
///
/// ```
/// use nn_core::ndarray::array;
/// use nn_layers::{Dense, Layer, Slot};
/// use nn_optim::{Optimizer, Sgd, SgdConfig};
///
/// let mut layer = Dense::from_weights(array![[1.0f32]].into_dyn(), None)?;
/// let mut sgd = Sgd::new(SgdConfig::plain().momentum(0.9))?;
/// for _ in 0..2 {
///     layer.visit(&mut |_, slot| {
///         if let Slot::Param(p) = slot {
///             p.grad.fill(1.0); // ∂E/∂w = 1
///         }
///     });
///     sgd.step(&mut layer, 0.1)?; // η = 0.1
/// }
/// assert!((layer.weight().value[[0, 0]] - 0.71).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Sgd {
    cfg: SgdConfig,
    steps: u64,
    velocity: SlotMap<1>,
}

impl Sgd {
    /// Builds the optimizer.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a negative or non-finite setting, or
    /// Nesterov without momentum.
    pub fn new(cfg: SgdConfig) -> Result<Self> {
        if !(cfg.momentum.is_finite() && (0.0..1.0).contains(&cfg.momentum)) {
            return Err(config(
                "momentum",
                format!("must be in [0, 1), got {}", cfg.momentum),
            ));
        }
        if cfg.nesterov && cfg.momentum == 0.0 {
            return Err(config("momentum", "Nesterov needs a momentum above 0"));
        }
        if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
            return Err(config(
                "weight decay",
                format!("must be ≥ 0, got {}", cfg.weight_decay),
            ));
        }
        Ok(Sgd {
            cfg,
            steps: 0,
            velocity: SlotMap::default(),
        })
    }

    /// The update of the module docs on every parameter; the gradients kept or cleared.
    fn apply(&mut self, model: &mut dyn Layer, lr: f32, grad: Grad) -> Result<()> {
        let SgdConfig {
            momentum: mu,
            nesterov,
            weight_decay: lambda,
        } = self.cfg;
        let plain = move |w: &mut f32, g: f32, []: [&mut f32; 0]| {
            let g = g + lambda * *w; // g = ∂E/∂w + λ·w
            *w -= lr * g; // w ← w − η·g
        };
        let momentum = move |w: &mut f32, g: f32, [v]: [&mut f32; 1]| {
            let g = g + lambda * *w; // g = ∂E/∂w + λ·w
            *v = mu * *v + g; // v ← μ·v + g
            let d = if nesterov { g + mu * *v } else { *v }; // Nesterov: g + μ·v
            *w -= lr * d; // w ← w − η·d
        };
        let velocity = &mut self.velocity;
        each_param(model, |name, p| {
            if mu == 0.0 {
                update(p, &mut [], &plain, grad);
            } else {
                update(p, velocity.get(name, p.value.shape())?, &momentum, grad);
            }
            Ok(())
        })?;
        self.steps += 1;
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
        self.apply(model, lr, Grad::Keep)
    }

    fn step_and_zero_grad(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
        self.apply(model, lr, Grad::Zero) // ∂E/∂w ← 0 in the update's pass
    }

    fn state(&self) -> OptimizerState {
        self.velocity.snapshot("sgd", self.steps)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        (self.velocity, self.steps) = SlotMap::restore(state, "sgd")?;
        Ok(())
    }
}
