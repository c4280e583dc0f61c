//! The [`Optimizer`] trait and its serialisable state.
//!
//! An optimizer sees a model only through [`Parameterized::visit`]: named parameters, never
//! layer types. Its per-parameter state (momentum velocity, Adam moments) is keyed by the
//! parameter's name (`"0.weight"`), so it can be saved in a checkpoint and matched back to
//! the same parameters after loading.

use std::collections::BTreeMap;
use std::fmt::Debug;

use nn_core::{Tensor, TensorData};
use nn_layers::Parameterized;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Updates parameters from their accumulated gradients.
pub trait Optimizer: Debug + Send {
    /// Applies one update to every parameter of `model` from its `grad`. Gradients are left
    /// as they are (the training loop zeroes them before the next backward).
    ///
    /// # Errors
    /// [`Error::State`] when a parameter changed shape since the state was created.
    fn step(&mut self, model: &mut dyn Parameterized) -> Result<()>;

    /// The current learning rate `η`.
    fn lr(&self) -> f32;

    /// Sets the learning rate (schedules call this).
    fn set_lr(&mut self, lr: f32);

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
    /// The learning rate at the time of the snapshot.
    pub lr: f32,
    /// Per-parameter state tensors, keyed by parameter name.
    #[serde(
        deserialize_with = "nn_core::bounded::map::<_, _, _, { crate::train::MAX_SAVED_TENSORS }>"
    )]
    pub slots: BTreeMap<String, Vec<TensorData>>,
}

impl OptimizerState {
    /// Checks a state read from a checkpoint against the model it goes with: every slot
    /// belongs to a parameter of `model`, has its shape and as many values, all finite; the
    /// learning rate is finite and `≥ 0`.
    ///
    /// # Errors
    /// [`Error::State`] naming the first slot that does not fit.
    pub fn validate(&self, model: &mut dyn Parameterized) -> Result<()> {
        check_lr(self.lr).map_err(|e| Error::State(e.to_string()))?;
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

/// Per-parameter state tensors keyed by parameter name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SlotMap {
    map: BTreeMap<String, Vec<Tensor>>,
}

impl SlotMap {
    /// The `count` state tensors of parameter `name`, created as zeros of `shape` on first use.
    pub(crate) fn get(
        &mut self,
        name: &str,
        shape: &[usize],
        count: usize,
    ) -> std::result::Result<&mut Vec<Tensor>, Error> {
        if !self.map.contains_key(name) {
            let zeros = (0..count).map(|_| Tensor::zeros(shape)).collect();
            self.map.insert(name.to_string(), zeros);
        }
        let slots = self.map.get_mut(name).expect("inserted above");
        if slots.len() != count || slots.iter().any(|s| s.shape() != shape) {
            return Err(Error::State(format!(
                "state of `{name}` does not match the parameter's shape {}",
                nn_core::Shape(shape.to_vec())
            )));
        }
        Ok(slots)
    }

    /// The snapshot of an optimizer holding these slots.
    pub(crate) fn snapshot(&self, kind: &str, steps: u64, lr: f32) -> OptimizerState {
        OptimizerState {
            kind: kind.into(),
            steps,
            lr,
            slots: self.to_data(),
        }
    }

    /// The slots, step count and learning rate of a snapshot taken by a `kind` optimizer.
    pub(crate) fn restore(state: OptimizerState, kind: &str) -> Result<(Self, u64, f32)> {
        check_kind(&state, kind)?;
        Ok((Self::from_data(state.slots)?, state.steps, state.lr))
    }

    pub(crate) fn to_data(&self) -> BTreeMap<String, Vec<TensorData>> {
        self.map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.iter().map(|t| TensorData::from_view(t.view())).collect(),
                )
            })
            .collect()
    }

    pub(crate) fn from_data(data: BTreeMap<String, Vec<TensorData>>) -> Result<Self> {
        let mut map = BTreeMap::new();
        for (k, v) in data {
            let tensors = v
                .into_iter()
                .map(TensorData::into_tensor)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| Error::State(format!("`{k}`: {e}")))?;
            map.insert(k, tensors);
        }
        Ok(SlotMap { map })
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

pub(crate) fn check_lr(lr: f32) -> Result<()> {
    if !(lr.is_finite() && lr >= 0.0) {
        return Err(crate::error::config(
            "learning rate",
            format!("must be finite and ≥ 0, got {lr}"),
        ));
    }
    Ok(())
}
