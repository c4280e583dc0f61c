//! Stochastic gradient descent, plain, with momentum, or Nesterov.
//!
//! Plain SGD is the derivation's rule, applied to every parameter after each mini-batch:
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

use nn_core::parallel::{split_runs, split_runs2};
use nn_layers::{Parameterized, Slot};
use serde::{Deserialize, Serialize};

use crate::error::{Result, config};
use crate::optimizer::{Optimizer, OptimizerState, SlotMap, check_lr};

/// Settings of [`Sgd`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdConfig {
    /// Learning rate `η`.
    pub lr: f32,
    /// Momentum `μ` (0 for plain SGD).
    pub momentum: f32,
    /// Nesterov momentum (needs `μ > 0`).
    pub nesterov: bool,
    /// L2 weight decay `λ`.
    pub weight_decay: f32,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
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
#[derive(Clone, Debug)]
pub struct Sgd {
    cfg: SgdConfig,
    steps: u64,
    velocity: SlotMap,
}

impl Sgd {
    /// Builds the optimizer.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a negative or non-finite setting, or
    /// Nesterov without momentum.
    pub fn new(cfg: SgdConfig) -> Result<Self> {
        check_lr(cfg.lr)?;
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
}

impl Optimizer for Sgd {
    fn step(&mut self, model: &mut dyn Parameterized) -> Result<()> {
        let SgdConfig {
            lr,
            momentum: mu,
            nesterov,
            weight_decay: lambda,
        } = self.cfg;
        let velocity = &mut self.velocity;
        let mut err = None;
        model.visit(&mut |name, slot| {
            let Slot::Param(p) = slot else { return };
            if mu == 0.0 {
                let update = |w: &mut f32, g: f32| {
                    let g = g + lambda * *w; // g = ∂E/∂w + λ·w
                    *w -= lr * g; // w ← w − η·g
                };
                match (p.value.as_slice_mut(), p.grad.as_slice()) {
                    // a large parameter is updated by all threads, each on its own run
                    (Some(w), Some(gs)) => split_runs(w.len(), (w, 1), 2 * gs.len(), &|r, w| {
                        w.iter_mut().zip(&gs[r]).for_each(|(w, &g)| update(w, g))
                    }),
                    _ => p.value.zip_mut_with(&p.grad, |w, &g| update(w, g)),
                }
                return;
            }
            let v = match velocity.get(name, p.value.shape(), 1) {
                Ok(v) => &mut v[0],
                Err(e) => {
                    err.get_or_insert(e);
                    return;
                }
            };
            let update = |w: &mut f32, g: f32, v: &mut f32| {
                let g = g + lambda * *w; // g = ∂E/∂w + λ·w
                *v = mu * *v + g; // v ← μ·v + g
                let d = if nesterov { g + mu * *v } else { *v }; // Nesterov: g + μ·v
                *w -= lr * d; // w ← w − η·d
            };
            match (p.value.as_slice_mut(), p.grad.as_slice(), v.as_slice_mut()) {
                // a large parameter is updated by all threads, each on its own run
                (Some(w), Some(gs), Some(v)) => {
                    split_runs2(w.len(), (w, 1), (v, 1), 3 * gs.len(), &|r, w, v| {
                        for ((w, &g), v) in w.iter_mut().zip(&gs[r]).zip(v) {
                            update(w, g, v);
                        }
                    })
                }
                _ => ndarray::Zip::from(&mut p.value)
                    .and(&p.grad)
                    .and(v)
                    .for_each(|w, &g, v| update(w, g, v)),
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
        self.steps += 1;
        Ok(())
    }

    fn lr(&self) -> f32 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f32) {
        self.cfg.lr = lr;
    }

    fn state(&self) -> OptimizerState {
        self.velocity.snapshot("sgd", self.steps, self.cfg.lr)
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        (self.velocity, self.steps, self.cfg.lr) = SlotMap::restore(state, "sgd")?;
        Ok(())
    }
}
