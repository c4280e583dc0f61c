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
            *m = normal_or_zero(b1 * *m + (1.0 - b1) * g); // m ← β₁·m + (1 − β₁)·g
            *v = normal_or_zero(b2 * *v + (1.0 - b2) * g * g); // v ← β₂·v + (1 − β₂)·g²
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

/// `x`, or 0 when `|x| < 2⁻¹²⁶` (a subnormal number; NaN and ±∞ pass unchanged).
///
/// A weight whose gradient stays zero for a while (one fed by a pixel that is blank in most
/// images) has its first moment decay by `β₁` a step: from 10⁻⁶ it falls below 2⁻¹²⁶ in
/// about 700 steps, and `v` follows more slowly. x86 CPUs take a slow path (a microcode
/// assist of ~100 cycles) for every instruction that reads or writes a subnormal, so such
/// moments made each later Adam step slower: W5's epochs took 0.38, 0.50, 0.59 s in one
/// run. A subnormal moment moves its weight by at most
/// `η/(1 − β₁ᵗ) · 2⁻¹²⁶/ε`, about 10⁻³⁰ at W5's settings: below half an ulp of any weight
/// larger than 10⁻²³, so setting it to zero changes no result that matters and keeps the
/// step fast, on every CPU alike (unlike the processor's flush-to-zero mode, which would
/// also change the rest of a program's arithmetic and not apply on every target).
#[inline(always)]
fn normal_or_zero(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x } // f32::MIN_POSITIVE = 2⁻¹²⁶
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

    #[test]
    fn normal_or_zero_keeps_normal_values_and_zeroes_subnormal_ones() {
        for x in [
            1.0,
            -3.5,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::MAX,
            f32::INFINITY,
        ] {
            assert_eq!(normal_or_zero(x), x);
        }
        // 2⁻¹²⁶·(1 − 2⁻²³), 10⁻³⁹, the smallest subnormal 2⁻¹⁴⁹, and −10⁻⁴⁰
        for x in [
            f32::MIN_POSITIVE * (1.0 - f32::EPSILON),
            1e-39,
            f32::from_bits(1),
            -1e-40,
        ] {
            assert!(x != 0.0 && !x.is_normal());
            assert_eq!(normal_or_zero(x), 0.0);
        }
        assert!(normal_or_zero(f32::NAN).is_nan());
    }

    /// With `g = 0`, `m ← 0.9·1.3·10⁻³⁸ = 1.17·10⁻³⁸`, below 2⁻¹²⁶ ≈ 1.1755·10⁻³⁸: set to 0;
    /// `v ← 0.999·1.3·10⁻³⁸ ≈ 1.2987·10⁻³⁸` is still normal and kept as computed.
    #[test]
    fn a_moment_that_decays_below_the_normal_range_becomes_zero() {
        let mut layer =
            Dense::new(&DenseConfig::new(1, 1).with_bias(false), &mut seeded(0)).unwrap();
        let mut adam = Adam::new(AdamConfig::adam()).unwrap();
        adam.step(&mut layer, 0.1).unwrap(); // g = 0: m = v = 0, the weight unchanged
        let mut state = adam.state();
        for slot in state.slots.values_mut() {
            slot[0].data = vec![1.3e-38]; // m
            slot[1].data = vec![1.3e-38]; // v
        }
        adam.load_state(state).unwrap();
        adam.step(&mut layer, 0.1).unwrap();
        let state = adam.state();
        let [m, v] = [0, 1].map(|i| state.slots.values().next().unwrap()[i].data[0]);
        assert_eq!(m, 0.0);
        assert_eq!(v, 0.999f32 * 1.3e-38);
        assert!(v.is_normal());
    }
}
