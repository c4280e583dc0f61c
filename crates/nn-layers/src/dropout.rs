//! Inverted dropout: during training each unit is kept with probability `1 − p` and scaled
//! by `1/(1 − p)`, so that the expected output equals the input and Eval needs no change.
//!
//! ```text
//! Train   m_k = 1/(1 − p) with probability 1 − p, else 0       (a fresh mask per forward)
//!         y = x ⊙ m,      ∂E/∂x = ∂E/∂y ⊙ m
//! Eval    y = x
//! ```
//!
//! The mask of the `t`-th train-mode forward is drawn from ChaCha8 seeded with the layer's
//! seed, on stream `t`; the counter `t` is a saved buffer, so a run resumed from a checkpoint
//! draws the same masks as one that never stopped. A *frozen* dropout (for gradient checks)
//! draws the same mask every time.

use ndarray::{ArrayViewD, Zip};
use nn_core::{Buffer, Rng, Tensor, rng, row_major};

use crate::config::{Context, Domain, LayerConfig, TensorSpec, checked_output, ensure};
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, check_backward, require_forward, require_shape};
use crate::spec::{Attr, LayerSpec};

/// Configuration of a [`Dropout`] layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DropoutConfig {
    /// Probability of dropping a unit, in `[0, 1)`.
    pub p: f32,
    /// Seed of the masks.
    pub seed: u64,
}

impl DropoutConfig {
    /// Checks `0 ≤ p < 1`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) otherwise.
    pub fn validate(&self) -> Result<()> {
        let p = self.p;
        ensure(p.is_finite() && (0.0..1.0).contains(&p), "dropout", || {
            format!("rate p must be in [0, 1), got {p}")
        })
    }

    /// Reads `p` and `seed` (default: the layer's position in its container plus one, so
    /// that two dropout layers of a network draw different masks).
    ///
    /// # Errors
    /// [`Error::Spec`](crate::Error::Spec) for a missing, unknown or ill-typed attribute;
    /// as [`DropoutConfig::validate`].
    pub fn from_spec(spec: &LayerSpec, ctx: &Context<'_>) -> Result<Self> {
        spec.only(&["p", "seed"])?;
        let seed = match spec.get("seed") {
            // stored as the two's-complement bits of the u64 (see `spec`)
            Some(Attr::Int(s)) => *s as u64,
            Some(_) => return Err(spec.invalid("attribute `seed` must be an integer")),
            None => ctx.index as u64 + 1,
        };
        let cfg = DropoutConfig {
            p: spec.float("p")? as f32,
            seed,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl LayerConfig for DropoutConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("dropout")
            .with("p", Attr::Float(self.p as f64))
            .with("seed", Attr::Int(self.seed as i64)) // the u64's bits, read back by `as u64`
    }

    fn name(&self) -> String {
        format!("dropout({})", self.p)
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        Ok(vec![TensorSpec::buffer(
            "counter",
            vec![2],
            Domain::NonNegative,
        )])
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        checked_output(|| self.name(), input.to_vec())
    }

    fn build(&self, _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Dropout::new(self.p, self.seed)?))
    }
}

/// Inverted dropout with rate `p`; see the module doc.
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f32,
    seed: u64,
    frozen: bool,
    /// Train-mode forwards so far, as two exact 16-bit halves `[high, low]`.
    counter: Tensor,
    /// `m` of the last train-mode forward.
    mask: Buffer,
    ready: bool,
}

/// The generator for mask number `t`: the layer's seed, stream `t`.
fn mask_rng(seed: u64, t: u64) -> Rng {
    let mut r = nn_core::seeded(seed);
    r.set_stream(t);
    r
}

/// Draws the mask `m` (`1/(1 − p)` where a uniform draw `u ≥ p`, else 0) and sets
/// `y = x ⊙ m`, element by element in row-major order, the words of `r` taken 64 at a
/// time: the same draws as one `uniform01` per element, in a loop that vectorises.
fn apply_mask(r: &mut Rng, (p, keep): (f32, f32), x: &[f32], m: &mut [f32], y: &mut [f32]) {
    let mut block = [0u32; 64];
    for ((x, m), y) in x.chunks(64).zip(m.chunks_mut(64)).zip(y.chunks_mut(64)) {
        let words = &mut block[..x.len()];
        rng::fill_words(r, words);
        for (((&x, m), y), &w) in x.iter().zip(m).zip(y).zip(&*words) {
            *m = if rng::unit_of(w) >= p { keep } else { 0.0 }; // kept with probability 1 − p
            *y = x * *m; // y = x ⊙ m
        }
    }
}

impl Dropout {
    /// Dropout with rate `p` (probability of dropping a unit), masks drawn from `seed`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) unless `0 ≤ p < 1`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        DropoutConfig { p, seed }.validate()?;
        Ok(Dropout {
            p,
            seed,
            frozen: false,
            counter: Tensor::zeros(vec![2]),
            mask: Buffer::new(),
            ready: false,
        })
    }

    /// A dropout that draws the same mask at every forward, for numerical gradient checks.
    ///
    /// # Errors
    /// As [`Dropout::new`].
    pub fn frozen(p: f32, seed: u64) -> Result<Self> {
        let mut d = Self::new(p, seed)?;
        d.frozen = true;
        Ok(d)
    }

    fn count(&self) -> u64 {
        (self.counter[[0]] as u64) << 16 | self.counter[[1]] as u64
    }

    fn set_count(&mut self, t: u64) {
        self.counter[[0]] = ((t >> 16) & 0xffff) as f32;
        self.counter[[1]] = (t & 0xffff) as f32;
    }

    fn label(&self) -> String {
        format!("dropout({})", self.p)
    }
}

impl Layer for Dropout {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("counter", Slot::Buffer(&mut self.counter));
    }

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()> {
        if mode == Mode::Eval {
            self.ready = false;
            y.assign(x); // y = x
            return Ok(());
        }
        let t = self.count();
        let mut r = mask_rng(self.seed, t);
        if !self.frozen {
            self.set_count(t + 1);
        }
        let rate = (self.p, 1.0 / (1.0 - self.p));
        y.resize(x.shape());
        self.mask.resize(x.shape());
        let xs = row_major(&x);
        apply_mask(
            &mut r,
            rate,
            &xs,
            self.mask.as_mut_slice(),
            y.as_mut_slice(),
        );
        self.ready = true;
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
        check_backward(|| self.label(), x.shape(), &y, &dy)?;
        require_shape(
            || format!("{} backward: mask", self.label()),
            self.mask.shape(),
            dy.shape(),
        )?;
        if let Some(dx) = dx {
            dx.resize(dy.shape());
            Zip::from(dx.view_mut())
                .and(&dy)
                .and(self.mask.view())
                .for_each(|dx, &dy, &m| *dx = dy * m); // ∂E/∂x = ∂E/∂y ⊙ m
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(DropoutConfig {
            p: self.p,
            seed: self.seed,
        })
    }

    fn name(&self) -> String {
        self.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_p_and_keeps_the_mean() {
        let mut d = Dropout::new(0.25, 3).unwrap();
        let x = Tensor::ones(vec![100, 100]);
        let y = crate::layer::apply(&mut d, x.view(), Mode::Train)
            .unwrap()
            .to_owned();
        let dropped = y.iter().filter(|&&v| v == 0.0).count();
        // 10,000 draws at p = 0.25: 2,500 ± 43 (one σ)
        assert!((2300..2700).contains(&dropped), "{dropped}");
        assert!(y.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
        let mean = y.sum() / 10_000.0;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        // a second forward draws another mask; Eval is the identity
        let y2 = crate::layer::apply(&mut d, x.view(), Mode::Train)
            .unwrap()
            .to_owned();
        assert_ne!(y, y2);
        assert_eq!(
            crate::layer::apply(&mut d, x.view(), Mode::Eval).unwrap(),
            x
        );
        assert!(Dropout::new(1.0, 0).is_err());
    }

    /// The mask drawn in blocks of 64 words is the one drawn a `uniform01` at a time, at a
    /// length that is not a multiple of 64 (150 = 2·64 + 22), and `y = x ⊙ m`.
    #[test]
    fn block_draws_equal_one_draw_per_element() {
        let (p, keep) = (0.4f32, 1.0 / 0.6);
        let x: Vec<f32> = (0..150).map(|i| i as f32 - 70.0).collect();
        let (mut m, mut y) = (vec![f32::NAN; 150], vec![f32::NAN; 150]);
        apply_mask(&mut mask_rng(9, 4), (p, keep), &x, &mut m, &mut y);
        let mut r = mask_rng(9, 4);
        for k in 0..150 {
            let want = if rng::uniform01(&mut r) >= p {
                keep
            } else {
                0.0
            };
            assert_eq!(m[k], want, "mask entry {k}");
            assert_eq!(y[k], x[k] * want, "output {k}");
        }
        assert!(m.contains(&0.0) && m.contains(&keep), "both kinds drawn");
    }

    #[test]
    fn masks_follow_the_saved_counter() {
        let x = Tensor::ones(vec![4, 8]);
        let mut a = Dropout::new(0.5, 9).unwrap();
        crate::layer::apply(&mut a, x.view(), Mode::Train).unwrap();
        let mut b = a.clone(); // same counter: the next masks agree
        assert_eq!(
            crate::layer::apply(&mut a, x.view(), Mode::Train).unwrap(),
            crate::layer::apply(&mut b, x.view(), Mode::Train).unwrap()
        );
        let mut f = Dropout::frozen(0.5, 9).unwrap();
        let m1 = crate::layer::apply(&mut f, x.view(), Mode::Train)
            .unwrap()
            .to_owned();
        assert_eq!(
            m1,
            crate::layer::apply(&mut f, x.view(), Mode::Train).unwrap()
        );
    }

    #[test]
    fn the_counter_is_saved_as_two_exact_halves() {
        let x = Tensor::ones(vec![2, 50]);
        let mut d = Dropout::new(0.5, 4).unwrap();
        d.set_count(70_000); // 70,000 = 1·65,536 + 4,464
        assert_eq!(d.counter.as_slice().unwrap(), &[1.0, 4464.0]);
        let y = crate::layer::apply(&mut d, x.view(), Mode::Train)
            .unwrap()
            .to_owned();
        // the mask of forward number 70,000 is drawn from stream 70,000 of the seed
        let mut r = mask_rng(4, 70_000);
        let want: Vec<f32> = (0..100)
            .map(|_| {
                if rng::uniform01(&mut r) >= 0.5 {
                    2.0
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(y.as_slice().unwrap(), &want[..]);
        assert_eq!(d.counter.as_slice().unwrap(), &[1.0, 4465.0]);
        // a layer whose counter is restored (as a model file restores it) draws the same
        // next mask
        let mut e = Dropout::new(0.5, 4).unwrap();
        let saved = d.counter.clone();
        e.visit(&mut |_, slot| {
            if let Slot::Buffer(b) = slot {
                b.assign(&saved);
            }
        });
        assert_eq!(
            crate::layer::apply(&mut e, x.view(), Mode::Train)
                .unwrap()
                .to_owned(),
            crate::layer::apply(&mut d, x.view(), Mode::Train)
                .unwrap()
                .to_owned()
        );
    }

    #[test]
    fn the_default_seed_is_the_position_plus_one_and_a_given_seed_is_kept() {
        let registry = crate::Registry::new();
        let drop = LayerSpec::new("dropout").with("p", 0.5);
        let specs = [drop.clone(), LayerSpec::new("relu"), drop.clone()];
        let cfg = registry.sequential(&specs, &[4, 3]).unwrap();
        let spec = cfg.spec();
        let layers = spec.layers("layers").unwrap();
        let seed = |l: &LayerSpec| l.get("seed").cloned();
        assert_eq!(seed(&layers[0]), Some(Attr::Int(1)));
        assert_eq!(seed(&layers[2]), Some(Attr::Int(3)));
        // the two's-complement bits of a seed above i64::MAX survive the round trip
        let big = drop.with("seed", Attr::Int(-2));
        let cfg = registry
            .config(&big, &Context::new(&registry))
            .unwrap()
            .spec();
        assert_eq!(cfg.get("seed"), Some(&Attr::Int(-2)));
        let e = registry
            .config(
                &LayerSpec::new("dropout").with("p", 0.5).with("seed", 1.5),
                &Context::new(&registry),
            )
            .unwrap_err();
        assert!(e.to_string().contains("`seed` must be an integer"), "{e}");
    }
}
