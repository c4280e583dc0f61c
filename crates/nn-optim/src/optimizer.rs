//! The [`Optimizer`] trait and its serialisable state.
//!
//! An optimizer sees a model only through [`Layer::visit`]: named parameters, never
//! layer types. Its per-parameter state (momentum velocity, Adam moments) is keyed by the
//! parameter's name (`"0.weight"`), so it can be saved in a checkpoint and matched back to
//! the same parameters after loading.

use std::collections::BTreeMap;
use std::fmt::Debug;

use nn_core::{Tensor, TensorData};
use nn_layers::Layer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Updates parameters from their accumulated gradients.
///
/// The learning rate is not the optimizer's: the training loop's schedule owns it and
/// passes the rate of the current epoch to every step.
pub trait Optimizer: Debug + Send {
    /// Applies one update with learning rate `lr` to every parameter of `model` from its
    /// `grad`. Gradients are left as they are (the training loop zeroes them before the
    /// next backward).
    ///
    /// # Errors
    /// [`Error::State`] when a parameter changed shape since the state was created.
    fn step(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()>;

    /// [`Optimizer::step`], after which every parameter gradient is zero, as
    /// [`Layer::zero_grad`] leaves it: the training loop calls this, so that the next
    /// backward pass starts from zero. The default is `step` and then `zero_grad`; an
    /// optimizer that reads each gradient once may clear it in the same pass, while it is
    /// in cache, instead of in a second pass over the gradients.
    ///
    /// # Errors
    /// As [`Optimizer::step`].
    fn step_and_zero_grad(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
        self.step(model, lr)?;
        model.zero_grad();
        Ok(())
    }

    /// Everything needed to continue exactly where this optimizer stands.
    fn state(&self) -> OptimizerState;

    /// Restores a state captured by [`Optimizer::state`] of the same kind of optimizer.
    ///
    /// # Errors
    /// [`Error::State`] when the state belongs to another kind of optimizer.
    fn load_state(&mut self, state: OptimizerState) -> Result<()>;
}

/// A serialisable snapshot of an optimizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// The optimizer kind (`"sgd"`, `"adam"`, `"adamw"`).
    pub kind: String,
    /// Steps taken.
    pub steps: u64,
    /// Per-parameter state tensors, keyed by parameter name.
    #[serde(
        deserialize_with = "nn_core::bounded::map::<_, _, _, { crate::train::MAX_SAVED_TENSORS }>"
    )]
    pub slots: BTreeMap<String, Vec<TensorData>>,
}

impl OptimizerState {
    /// Checks a state read from a checkpoint against the model it goes with: every slot
    /// belongs to a parameter of `model`, has its shape and as many values, all finite.
    ///
    /// # Errors
    /// [`Error::State`] naming the first slot that does not fit.
    pub fn validate(&self, model: &mut dyn Layer) -> Result<()> {
        let mut shapes = BTreeMap::new();
        model.visit(&mut |name, slot| {
            if let nn_layers::Slot::Param(p) = slot {
                shapes.insert(name.to_string(), p.value.shape().to_vec());
            }
        });
        for (name, tensors) in &self.slots {
            let Some(shape) = shapes.get(name) else {
                return Err(Error::State(format!(
                    "state for `{}`, which the model does not have",
                    nn_core::limits::excerpt(name)
                )));
            };
            for t in tensors {
                let n = nn_core::limits::product(&t.shape);
                if &t.shape != shape || n != Some(t.data.len()) {
                    return Err(Error::State(format!(
                        "state of `{name}` has shape {} ({} values), the parameter {}",
                        nn_core::Shape(t.shape.clone()),
                        t.data.len(),
                        nn_core::Shape(shape.clone())
                    )));
                }
                if let Some(v) = t.data.iter().find(|v| !v.is_finite()) {
                    return Err(Error::State(format!("state of `{name}` holds {v}")));
                }
            }
        }
        Ok(())
    }
}

/// `K` state tensors per parameter (SGD's velocity, Adam's two moments), keyed by the
/// parameter's name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SlotMap<const K: usize> {
    map: BTreeMap<String, [Tensor; K]>,
}

impl<const K: usize> Default for SlotMap<K> {
    fn default() -> Self {
        SlotMap {
            map: BTreeMap::new(),
        }
    }
}

impl<const K: usize> SlotMap<K> {
    /// The state tensors of parameter `name`, created as zeros of `shape` on first use.
    pub(crate) fn get(&mut self, name: &str, shape: &[usize]) -> Result<&mut [Tensor; K]> {
        if !self.map.contains_key(name) {
            let zeros = std::array::from_fn(|_| Tensor::zeros(shape));
            self.map.insert(name.to_string(), zeros);
        }
        match self.map.get_mut(name) {
            Some(slots) if slots.iter().all(|s| s.shape() == shape) => Ok(slots),
            _ => Err(Error::State(format!(
                "state of `{name}` does not match the parameter's shape {}",
                nn_core::Shape(shape.to_vec())
            ))),
        }
    }

    /// The snapshot of a `kind` optimizer holding these slots after `steps` steps.
    pub(crate) fn snapshot(&self, kind: &str, steps: u64) -> OptimizerState {
        let slots = self
            .map
            .iter()
            .map(|(k, v)| {
                let data = v.iter().map(|t| TensorData::from_view(t.view())).collect();
                (k.clone(), data)
            })
            .collect();
        OptimizerState {
            kind: kind.into(),
            steps,
            slots,
        }
    }

    /// The slots and step count of a snapshot taken by a `kind` optimizer.
    pub(crate) fn restore(state: OptimizerState, kind: &str) -> Result<(Self, u64)> {
        check_kind(&state, kind)?;
        let mut map = BTreeMap::new();
        for (k, v) in state.slots {
            let count = v.len();
            let tensors = v
                .into_iter()
                .map(TensorData::into_tensor)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::State(format!("`{k}`: {e}")))?;
            let tensors = <[Tensor; K]>::try_from(tensors).map_err(|_| {
                Error::State(format!("`{k}` has {count} state tensors, {kind} keeps {K}"))
            })?;
            map.insert(k, tensors);
        }
        Ok((SlotMap { map }, state.steps))
    }
}

pub(crate) fn check_kind(state: &OptimizerState, kind: &str) -> Result<()> {
    if state.kind != kind {
        return Err(Error::State(format!(
            "saved by a `{}` optimizer, cannot load into `{kind}`",
            state.kind
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Adam, AdamConfig, Sgd, SgdConfig};
    use nn_layers::{Dense, DenseConfig, Slot};

    /// An optimizer with only `step`: it takes the trait's default `step_and_zero_grad`.
    #[derive(Debug)]
    struct StepOnly(Box<dyn Optimizer>);

    impl Optimizer for StepOnly {
        fn step(&mut self, model: &mut dyn Layer, lr: f32) -> Result<()> {
            self.0.step(model, lr)
        }
        fn state(&self) -> OptimizerState {
            self.0.state()
        }
        fn load_state(&mut self, state: OptimizerState) -> Result<()> {
            self.0.load_state(state)
        }
    }

    /// Every parameter's values and gradient, in visit order.
    fn tensors(model: &mut dyn Layer) -> Vec<(Tensor, Tensor)> {
        let mut out = Vec::new();
        model.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                out.push((p.value.clone(), p.grad.clone()));
            }
        });
        out
    }

    /// Three steps, each from the same made-up gradient `g = 0.01·(w + 1)`.
    fn train(opt: &mut dyn Optimizer) -> Vec<(Tensor, Tensor)> {
        // 300·200 weights: enough to be split across threads
        let mut model = Dense::new(&DenseConfig::new(300, 200), &mut nn_core::seeded(3)).unwrap();
        for _ in 0..3 {
            model.visit(&mut |_, slot| {
                if let Slot::Param(p) = slot {
                    p.grad = p.value.mapv(|w| 0.01 * (w + 1.0));
                }
            });
            opt.step_and_zero_grad(&mut model, 0.1).unwrap();
        }
        tensors(&mut model)
    }

    #[test]
    fn the_fused_step_equals_step_then_zero_grad() {
        let optimizers: [fn() -> Box<dyn Optimizer>; 5] = [
            || Box::new(Sgd::new(SgdConfig::plain()).unwrap()),
            || Box::new(Sgd::new(SgdConfig::plain().momentum(0.9).weight_decay(0.01)).unwrap()),
            || Box::new(Sgd::new(SgdConfig::plain().nesterov(0.9)).unwrap()),
            || Box::new(Adam::new(AdamConfig::adam()).unwrap()),
            || Box::new(Adam::new(AdamConfig::adamw()).unwrap()),
        ];
        for make in optimizers {
            let fused = train(&mut *make());
            let default = train(&mut StepOnly(make()));
            assert_eq!(fused, default, "{:?}", make());
            assert!(fused.iter().all(|(_, g)| g.iter().all(|&v| v == 0.0)));
            let start = Dense::new(&DenseConfig::new(300, 200), &mut nn_core::seeded(3)).unwrap();
            assert_ne!(
                fused[0].0,
                start.weight().value,
                "the steps moved the weights"
            );
        }
    }
}
