//! Adam and AdamW.
//!
//! Adam keeps running means of the gradient and of its square, corrects their bias towards
//! zero in the first steps, and takes a step scaled per entry (`torch.optim.Adam`/`AdamW`
//! conventions, step count `t` from 1):
//!
//! ```text
//! g  ← ∂E/∂w + λ·w                  (Adam: L2 penalty in the gradient)
//! w  ← w − η·λ·w                    (AdamW instead: decoupled weight decay, before the step)
//! m  ← β₁·m + (1 − β₁)·g
//! v  ← β₂·v + (1 − β₂)·g²
//! m̂  = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ)
//! w  ← w − η · m̂ / (√v̂ + ε)
//! ```
//!
//! Decoupling (AdamW, Loshchilov & Hutter) keeps the decay from being rescaled by `1/√v̂`,
//! so every weight shrinks at the same rate `η·λ`.
//!
//! The step is computed in the same order as PyTorch's (whose two per-step factors are
//! computed in double precision, here in `f32`): `η/(1 − β₁ᵗ)` and `√(1 − β₂ᵗ)` once per step, then per entry `w ← w − (η/(1 − β₁ᵗ))·(m / (√v/√(1 − β₂ᵗ) + ε))` — equal to the
//! last line above, with two divisions per entry instead of three (the division is the
//! slowest arithmetic in the step), and AdamW's decay as `w ← w·(1 − η·λ)`.

use nn_layers::Layer;
use serde::{Deserialize, Serialize};

use crate::error::{Result, config};
use crate::optimizer::{Optimizer, OptimizerState, SlotMap};
use crate::update::{Grad, each_param, update};

/// Settings of [`Adam`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// Decay of the first moment, `β₁`.
    pub beta1: f32,
    /// Decay of the second moment, `β₂`.
    pub beta2: f32,
    /// `ε` in the denominator.
    pub eps: f32,
    /// Weight decay `λ`.
    pub weight_decay: f32,
    /// Decoupled weight decay (AdamW) instead of an L2 term in the gradient (Adam).
    pub decoupled: bool,
}

impl AdamConfig {
    /// Adam with `β = (0.9, 0.999)`, `ε = 1e-8`, no weight decay (PyTorch's defaults).
    pub fn adam() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// AdamW with decoupled weight decay `λ = 0.01` (PyTorch's default).
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::adam()
        }
    }

    /// With weight decay `λ`.
    pub fn weight_decay(mut self, lambda: f32) -> Self {
        self.weight_decay = lambda;
        self
    }

    /// With moment decays `β₁`, `β₂`.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Self {
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
}

/// Adam or AdamW; see the module doc for the update.
///
/// # Example
///
/// Adam's first step moves every weight by about η whatever the gradient's size:
/// `m̂ = g`, `v̂ = g²`, so `w ← w − η·g/(|g| + ε)`.
///
/// ```
/// use nn_core::ndarray::array;
/// use nn_layers::{Dense, Layer, Slot};
/// use nn_optim::{Adam, AdamConfig, Optimizer};
///
/// let mut layer = Dense::from_weights(array![[1.0f32, 1.0]].into_dyn(), None)?;
/// layer.visit(&mut |_, slot| {
///     if let Slot::Param(p) = slot {
///         p.grad.assign(&array![[1000.0f32, -0.001]]); // very different scales
///     }
/// });
/// Adam::new(AdamConfig::adam())?.step(&mut layer, 0.01)?;
/// let w = &layer.weight().value;
/// assert!((w[[0, 0]] - 0.99).abs() < 1e-6 && (w[[0, 1]] - 1.01).abs() < 1e-5);
///
/// // AdamW also shrinks the weight itself: w ← w − η·λ·w before the Adam step
/// let mut layer = Dense::from_weights(array![[1.0f32]].into_dyn(), None)?;
/// Adam::new(AdamConfig::adamw().weight_decay(0.5))?.step(&mut layer, 0.1)?; // g = 0
/// assert!((layer.weight().value[[0, 0]] - 0.95).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    cfg: AdamConfig,
    steps: u64,
    /// `[m, v]` per parameter.
    moments: SlotMap<2>,
}

impl Adam {
    /// Builds the optimizer.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for settings out of range.
    pub fn new(cfg: AdamConfig) -> Result<Self> {
        for (name, b) in [("beta1", cfg.beta1), ("beta2", cfg.beta2)] {
            if !(b.is_finite() && (0.0..1.0).contains(&b)) {
                return Err(config("beta", format!("{name} must be in [0, 1), got {b}")));
            }
        }
        if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
            return Err(config("epsilon", format!("must be > 0, got {}", cfg.eps)));
        }
        if !(cfg.weight_decay.is_finite() && cfg.weight_decay >= 0.0) {
            return Err(config(
                "weight decay",
                format!("must be ≥ 0, got {}", cfg.weight_decay),
            ));
        }
        Ok(Adam {
            cfg,
            steps: 0,
            moments: SlotMap::default(),
        })
    }

    fn kind(&self) -> &'static str {
        if self.cfg.decoupled { "adamw" } else { "adam" }
    }

    /// The update of the module docs on every parameter; the gradients kept or cleared.
    fn apply(&mut self, model: &mut dyn Layer, lr: f32, grad: Grad) -> Result<()> {
        let AdamConfig {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: lambda,
            decoupled,
        } = self.cfg;
        let t = (self.steps + 1) as i32;
        let step = lr / (1.0 - b1.powi(t)); // η / (1 − β₁ᵗ): m̂ = m / (1 − β₁ᵗ) folded in
        let bc2_sqrt = (1.0 - b2.powi(t)).sqrt(); // √(1 − β₂ᵗ)
        let shrink = 1.0 - lr * lambda; // AdamW's factor 1 − η·λ
        let rule = move |w: &mut f32, g: f32, [m, v]: [&mut f32; 2]| {
            let g = if decoupled {
                *w *= shrink; // AdamW: w ← w − η·λ·w
                g
            } else {
                g + lambda * *w // Adam: g = ∂E/∂w + λ·w
            };
            *m = b1 * *m + (1.0 - b1) * g; // m ← β₁·m + (1 − β₁)·g
            *v = b2 * *v + (1.0 - b2) * g * g; // v ← β₂·v + (1 − β₂)·g²
            let denom = v.sqrt() / bc2_sqrt + eps; // √v̂ + ε = √v / √(1 − β₂ᵗ) + ε
            *w -= step * (*m / denom); // w ← w − η·m̂/(√v̂ + ε)
        };
        let moments = &mut self.moments;
        each_param(model, |name, p| {
            update(p, moments.get(name, p.value.shape())?, &rule, grad);
            Ok(())
        })?;
        self.steps += 1;
        Ok(())
    }
}

impl Optimizer for Adam {
    fn step(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
        self.apply(model, lr, Grad::Keep)
    }

    fn step_and_zero_grad(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
        self.apply(model, lr, Grad::Zero) // ∂E/∂w ← 0 in the update's pass
    }

    fn state(&self) -> OptimizerState {
        self.moments.snapshot(self.kind(), self.steps)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        (self.moments, self.steps) = SlotMap::restore(state, self.kind())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn_core::seeded;
    use nn_layers::{Dense, DenseConfig, Slot};

    /// One Adam step by hand, with ε large enough to count: w = 1, ∂E/∂w = 2, η = 0.1,
    /// β₁ = 0.9, β₂ = 0.999, ε = 1. m = 0.1·2 = 0.2, v = 0.001·4 = 0.004;
    /// η/(1 − β₁) = 1, √v/√(1 − β₂) = 0.0632456/0.0316228 = 2, so
    /// w ← 1 − 1·0.2/(2 + 1) = 0.933333.
    #[test]
    fn one_step_by_hand() {
        let mut layer =
            Dense::new(&DenseConfig::new(1, 1).with_bias(false), &mut seeded(0)).unwrap();
        layer.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                p.value.fill(1.0);
                p.grad.fill(2.0);
            }
        });
        let cfg = AdamConfig {
            eps: 1.0,
            ..AdamConfig::adam()
        };
        Adam::new(cfg).unwrap().step(&mut layer, 0.1).unwrap();
        layer.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                assert!((p.value[[0, 0]] - 0.933_333).abs() < 1e-5, "{}", p.value);
            }
        });
    }
}
