//! Learning-rate schedules: `η` as a function of the epoch `t` (from 0).
//!
//! ```text
//! constant      η_t = η₀
//! step          η_t = η₀ · γ^⌊t / s⌋
//! exponential   η_t = η₀ · γ^t
//! cosine        η_t = η_min + (η₀ − η_min) · (1 + cos(π·t / T)) / 2      (t ≤ T; η_min after)
//! warm-up       η_t = η₀ · (f + (1 − f) · t / w)   for t < w, then the schedule at t − w
//! ```
//!
//! These are closed forms of PyTorch's `StepLR`, `ExponentialLR`, `CosineAnnealingLR`, and
//! `LinearLR(start_factor = f, total_iters = w)` chained by `SequentialLR`. A schedule is a
//! pure function of `t`, so resuming from a checkpoint needs only the epoch.

use serde::{Deserialize, Serialize};

use crate::error::{Result, config};

/// The shape of the schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
pub enum Schedule {
    /// `η₀` throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor per decay.
        gamma: f32,
    },
    /// Multiply by `gamma` every epoch.
    Exponential {
        /// Factor per epoch.
        gamma: f32,
    },
    /// Half a cosine from `η₀` down to `min_lr` over `t_max` epochs.
    Cosine {
        /// Length of the descent in epochs.
        t_max: usize,
        /// Final learning rate.
        min_lr: f32,
    },
}

/// Linear warm-up before the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Warmup {
    /// Warm-up length in epochs.
    pub epochs: usize,
    /// Fraction of `η₀` at epoch 0.
    pub start_factor: f32,
}

/// A base learning rate, a schedule and an optional warm-up.
///
/// # Example
///
/// ```
/// use nn_optim::{LrSchedule, Schedule};
///
/// let cosine = LrSchedule::new(0.1, Schedule::Cosine { t_max: 4, min_lr: 0.0 });
/// // η_t = η_min + (η₀ − η_min)·(1 + cos(πt/T))/2
/// let rates: Vec<f32> = (0..5).map(|t| cosine.lr_at(t)).collect();
/// let expected = [0.1, 0.085355, 0.05, 0.014645, 0.0];
/// assert!(rates.iter().zip(expected).all(|(r, e)| (r - e).abs() < 1e-6), "{rates:?}");
///
/// // two warm-up epochs from 0.1×, then the schedule starts at its own epoch 0
/// let warm = cosine.with_warmup(2, 0.1);
/// assert!((warm.lr_at(0) - 0.01).abs() < 1e-7 && (warm.lr_at(1) - 0.055).abs() < 1e-7);
/// assert_eq!(warm.lr_at(2), 0.1);
/// assert_eq!(warm.to_string(), "0.1 cosine to 0 over 4 epochs after 2 warm-up epochs from 0.1×");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// `η₀`.
    pub base_lr: f32,
    /// The schedule after warm-up.
    pub schedule: Schedule,
    /// Optional linear warm-up.
    pub warmup: Option<Warmup>,
}

impl LrSchedule {
    /// A constant learning rate.
    pub fn constant(base_lr: f32) -> Self {
        LrSchedule {
            base_lr,
            schedule: Schedule::Constant,
            warmup: None,
        }
    }

    /// `base_lr` with `schedule`.
    pub fn new(base_lr: f32, schedule: Schedule) -> Self {
        LrSchedule {
            base_lr,
            schedule,
            warmup: None,
        }
    }

    /// Adds a linear warm-up over `epochs`, starting at `start_factor·η₀`.
    pub fn with_warmup(mut self, epochs: usize, start_factor: f32) -> Self {
        self.warmup = Some(Warmup {
            epochs,
            start_factor,
        });
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        check_lr(self.base_lr)?;
        match self.schedule {
            Schedule::Step { every: 0, .. } => {
                return Err(config("schedule", "step schedule needs `every` ≥ 1"));
            }
            Schedule::Step { gamma, .. } | Schedule::Exponential { gamma }
                if !(gamma.is_finite() && gamma > 0.0) =>
            {
                return Err(config(
                    "schedule",
                    format!("gamma must be > 0, got {gamma}"),
                ));
            }
            Schedule::Cosine { t_max: 0, .. } => {
                return Err(config("schedule", "cosine schedule needs t_max ≥ 1"));
            }
            Schedule::Cosine { min_lr, .. } if !(min_lr.is_finite() && min_lr >= 0.0) => {
                return Err(config(
                    "schedule",
                    format!("min_lr must be ≥ 0, got {min_lr}"),
                ));
            }
            _ => {}
        }
        if let Some(w) = self.warmup
            && !(w.start_factor.is_finite() && w.start_factor > 0.0 && w.start_factor <= 1.0)
        {
            return Err(config(
                "warm-up",
                format!("start factor must be in (0, 1], got {}", w.start_factor),
            ));
        }
        Ok(())
    }

    /// The learning rate for epoch `t` (from 0).
    pub fn lr_at(&self, t: usize) -> f32 {
        let eta0 = self.base_lr;
        let mut t = t;
        if let Some(w) = self.warmup {
            if t < w.epochs {
                let f = w.start_factor;
                return eta0 * (f + (1.0 - f) * t as f32 / w.epochs as f32); // η₀·(f + (1 − f)·t/w)
            }
            t -= w.epochs;
        }
        match self.schedule {
            Schedule::Constant => eta0,
            Schedule::Step { every, gamma } => eta0 * gamma.powi((t / every) as i32), // η₀·γ^⌊t/s⌋
            Schedule::Exponential { gamma } => eta0 * gamma.powi(t as i32),           // η₀·γ^t
            Schedule::Cosine { t_max, min_lr } => {
                let t = t.min(t_max) as f64;
                let c = (1.0 + (std::f64::consts::PI * t / t_max as f64).cos()) / 2.0;
                (min_lr as f64 + (eta0 - min_lr) as f64 * c) as f32 // η_min + (η₀ − η_min)·(1 + cos(πt/T))/2
            }
        }
    }
}

/// `0.001`, `0.1, ×0.5 every 2 epochs`, `0.1, ×0.8 per epoch`,
/// `0.1 cosine to 0 over 8 epochs`, each with `after 2 warm-up epochs from 0.1×` when it has
/// a warm-up.
impl std::fmt::Display for LrSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.base_lr)?;
        match self.schedule {
            Schedule::Constant => {}
            Schedule::Step { every, gamma } => write!(f, ", ×{gamma} every {every} epochs")?,
            Schedule::Exponential { gamma } => write!(f, ", ×{gamma} per epoch")?,
            Schedule::Cosine { t_max, min_lr } => {
                write!(f, " cosine to {min_lr} over {t_max} epochs")?
            }
        }
        if let Some(w) = self.warmup {
            write!(
                f,
                " after {} warm-up epochs from {}×",
                w.epochs, w.start_factor
            )?;
        }
        Ok(())
    }
}

/// A constant learning rate `η`.
impl From<f32> for LrSchedule {
    fn from(lr: f32) -> Self {
        LrSchedule::constant(lr)
    }
}

/// A learning rate must be finite and `≥ 0`.
pub(crate) fn check_lr(lr: f32) -> Result<()> {
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(config(
            "learning rate",
            format!("must be finite and ≥ 0, got {lr}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms_by_hand() {
        let step = LrSchedule::new(
            0.1,
            Schedule::Step {
                every: 2,
                gamma: 0.5,
            },
        );
        let lrs: Vec<f32> = (0..5).map(|t| step.lr_at(t)).collect();
        assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.025]);
        let exp = LrSchedule::new(1.0, Schedule::Exponential { gamma: 0.5 });
        assert_eq!(exp.lr_at(3), 0.125);
        // cosine T = 4 from 1 to 0: t = 2 is halfway: (1 + cos(π/2))/2 = 0.5; t = 4 → 0
        let cos = LrSchedule::new(
            1.0,
            Schedule::Cosine {
                t_max: 4,
                min_lr: 0.0,
            },
        );
        assert!((cos.lr_at(2) - 0.5).abs() < 1e-7);
        assert!(cos.lr_at(4).abs() < 1e-7);
        assert!(cos.lr_at(9).abs() < 1e-7);
        // warm-up over 4 epochs from 0.25: 0.25, 0.4375, 0.625, 0.8125, then constant 1
        let w = LrSchedule::constant(1.0).with_warmup(4, 0.25);
        let lrs: Vec<f32> = (0..6).map(|t| w.lr_at(t)).collect();
        assert_eq!(lrs, [0.25, 0.4375, 0.625, 0.8125, 1.0, 1.0]);
    }

    #[test]
    fn described_in_words() {
        let cases = [
            (LrSchedule::constant(0.001), "0.001"),
            (
                LrSchedule::new(
                    0.1,
                    Schedule::Step {
                        every: 2,
                        gamma: 0.5,
                    },
                ),
                "0.1, ×0.5 every 2 epochs",
            ),
            (
                LrSchedule::new(0.1, Schedule::Exponential { gamma: 0.8 }),
                "0.1, ×0.8 per epoch",
            ),
            (
                LrSchedule::new(
                    0.1,
                    Schedule::Cosine {
                        t_max: 8,
                        min_lr: 0.0,
                    },
                )
                .with_warmup(2, 0.1),
                "0.1 cosine to 0 over 8 epochs after 2 warm-up epochs from 0.1×",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.to_string(), want);
        }
    }

    #[test]
    fn validation() {
        assert!(
            LrSchedule::new(
                0.1,
                Schedule::Step {
                    every: 0,
                    gamma: 0.5
                }
            )
            .validate()
            .is_err()
        );
        assert!(
            LrSchedule::new(0.1, Schedule::Exponential { gamma: -1.0 })
                .validate()
                .is_err()
        );
        assert!(LrSchedule::constant(-0.1).validate().is_err());
        assert!(
            LrSchedule::constant(0.1)
                .with_warmup(2, 0.0)
                .validate()
                .is_err()
        );
        assert!(
            LrSchedule::new(
                0.1,
                Schedule::Cosine {
                    t_max: 3,
                    min_lr: 0.0
                }
            )
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn each_setting_is_checked_at_its_bounds() {
        let ok = |s: LrSchedule| s.validate().is_ok();
        let step = |gamma| LrSchedule::new(0.1, Schedule::Step { every: 2, gamma });
        let exp = |gamma| LrSchedule::new(0.1, Schedule::Exponential { gamma });
        let cos = |t_max, min_lr| LrSchedule::new(0.1, Schedule::Cosine { t_max, min_lr });
        assert!(ok(step(0.5)) && ok(exp(1.5)) && ok(cos(1, 0.0)) && ok(cos(5, 0.01)));
        for g in [0.0, -0.5, f32::NAN, f32::INFINITY] {
            assert!(!ok(step(g)) && !ok(exp(g)), "gamma {g}");
        }
        assert!(!ok(LrSchedule::new(
            0.1,
            Schedule::Step {
                every: 0,
                gamma: 0.5
            }
        )));
        assert!(!ok(cos(0, 0.0)));
        for m in [-0.01, f32::NAN, f32::INFINITY] {
            assert!(!ok(cos(5, m)), "min_lr {m}");
        }
        let warm = |f| LrSchedule::constant(0.1).with_warmup(2, f);
        assert!(ok(warm(1.0)) && ok(warm(0.01)));
        for f in [0.0, -0.5, 1.01, f32::NAN] {
            assert!(!ok(warm(f)), "start factor {f}");
        }
    }

    #[test]
    fn the_schedule_starts_when_the_warm_up_ends() {
        // 2 warm-up epochs from 0.5×, then ×0.1 per epoch: 0.5, 0.75, then 1, 0.1, 0.01
        let s = LrSchedule::new(1.0, Schedule::Exponential { gamma: 0.1 }).with_warmup(2, 0.5);
        let got: Vec<f32> = (0..5).map(|t| s.lr_at(t)).collect();
        let want = [0.5, 0.75, 1.0, 0.1, 0.01];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-7, "{got:?}");
        }
    }
}
