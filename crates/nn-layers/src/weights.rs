//! A model's named tensors as plain data: copied out ([`snapshot`]), checked against a
//! model ([`check`]) and written back ([`restore`]).
//!
//! Model files, checkpoints and early stopping's best weights all go through these three,
//! so a stored tensor is matched to its layer the same way everywhere: by its name and
//! shape, in the order [`Layer::visit`] lists them.

use nn_core::limits::{excerpt, product};
use nn_core::{Shape, Tensor, TensorData};

use crate::error::{Error, Result};
use crate::layer::{Layer, Slot};

/// Named tensors in visiting order, as files and snapshots hold them.
pub type Weights = Vec<(String, TensorData)>;

impl<'a> Slot<'a> {
    /// The tensor this slot names: a parameter's value or the buffer.
    pub fn tensor(&self) -> &Tensor {
        match self {
            Slot::Param(p) => &p.value,
            Slot::Buffer(b) => b,
        }
    }

    /// The tensor this slot names, for writing.
    pub fn into_tensor(self) -> &'a mut Tensor {
        match self {
            Slot::Param(p) => &mut p.value,
            Slot::Buffer(b) => b,
        }
    }
}

/// Calls `f` for every named tensor of `model` until one call fails, and returns that
/// first failure (the visit itself cannot stop early; later tensors are passed over).
///
/// # Errors
/// The first error `f` returned.
pub fn try_visit<E>(
    model: &mut dyn Layer,
    mut f: impl FnMut(&str, Slot<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let mut first = Ok(());
    model.visit(&mut |name, slot| {
        if first.is_ok() {
            first = f(name, slot);
        }
    });
    first
}

/// A copy of every parameter and buffer of `model`, by name, in visiting order.
pub fn snapshot(model: &mut dyn Layer) -> Weights {
    let mut out = Vec::new();
    model.visit(&mut |name, slot| {
        out.push((
            name.to_string(),
            TensorData::from_view(slot.tensor().view()),
        ));
    });
    out
}

/// Checks that `weights` fit `model`: the same names and shapes in visiting order, as many
/// values as each shape holds, all finite.
///
/// # Errors
/// [`Error::Weights`] naming the first tensor that does not fit.
pub fn check(model: &mut dyn Layer, weights: &[(String, TensorData)]) -> Result<()> {
    let mut i = 0;
    try_visit(model, |name, slot| {
        let entry = weights.get(i);
        i += 1;
        check_entry(name, slot.tensor().shape(), entry)
    })
    .map_err(Error::Weights)?;
    if i != weights.len() {
        return Err(Error::Weights(format!(
            "{} tensors given, the model has {i}",
            weights.len()
        )));
    }
    Ok(())
}

/// Writes `weights` into `model` once [`check`] has accepted them; on an error the model
/// is left unchanged.
///
/// # Errors
/// As [`check`].
pub fn restore(model: &mut dyn Layer, weights: &[(String, TensorData)]) -> Result<()> {
    check(model, weights)?;
    let mut given = weights.iter();
    model.visit(&mut |_, slot| {
        if let Some((_, d)) = given.next() {
            // checked: same shape, so the same number of values in the same order
            slot.into_tensor()
                .iter_mut()
                .zip(&d.data)
                .for_each(|(t, &v)| *t = v);
        }
    });
    Ok(())
}

/// One entry of `weights` against the model's tensor `name` of shape `shape`.
fn check_entry(
    name: &str,
    shape: &[usize],
    entry: Option<&(String, TensorData)>,
) -> Result<(), String> {
    let Some((n, d)) = entry else {
        return Err(format!("`{name}` is missing"));
    };
    if n != name || d.shape != shape || product(&d.shape) != Some(d.data.len()) {
        return Err(format!(
            "the model's `{name}` {} meets `{}` {} with {} values",
            Shape(shape.to_vec()),
            excerpt(n),
            Shape(d.shape.clone()),
            d.data.len()
        ));
    }
    if let Some(v) = d.data.iter().find(|v| !v.is_finite()) {
        return Err(format!("`{name}` holds {v}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchNorm, BatchNormConfig, Dense, DenseConfig, Sequential};

    fn net() -> Sequential {
        let mut rng = nn_core::seeded(1);
        Sequential::new()
            .with(Dense::new(&DenseConfig::new(2, 3), &mut rng).unwrap())
            .with(BatchNorm::from_config(&BatchNormConfig::new(3)).unwrap())
    }

    #[test]
    fn snapshot_lists_parameters_and_buffers_in_order() {
        let names: Vec<String> = snapshot(&mut net()).into_iter().map(|(n, _)| n).collect();
        let want = [
            "0.weight",
            "0.bias",
            "1.weight",
            "1.bias",
            "1.running_mean",
            "1.running_var",
        ];
        assert_eq!(names, want);
    }

    #[test]
    fn restore_writes_back_what_snapshot_took() {
        let mut a = net();
        let mut w = snapshot(&mut a);
        w[0].1.data = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        w[5].1.data = vec![7.0, 8.0, 9.0];
        let mut b = net();
        restore(&mut b, &w).unwrap();
        assert_eq!(snapshot(&mut b), w);
    }

    #[test]
    fn a_misfit_is_refused_and_nothing_is_written() {
        let mut a = net();
        let before = snapshot(&mut a);
        type Spoil = fn(&mut Weights);
        let cases: [(Spoil, &str); 5] = [
            (
                |w| w[1].0 = "0.bias2".into(),
                "`0.bias` [3] meets `0.bias2`",
            ),
            (|w| w[0].1.shape = vec![2, 3], "`0.weight` [3, 2] meets"),
            (|w| w[2].1.data.push(1.0), "with 4 values"),
            (|w| w[4].1.data[1] = f32::NAN, "`1.running_mean` holds NaN"),
            (|w| drop(w.pop()), "`1.running_var` is missing"),
        ];
        for (spoil, want) in cases {
            let mut w = before.clone();
            w[0].1.data[0] = 42.0; // would show if anything were written
            spoil(&mut w);
            let e = restore(&mut a, &w).unwrap_err().to_string();
            assert!(e.contains(want), "{e} lacks {want}");
            assert_eq!(snapshot(&mut a), before);
        }
        let mut w = before.clone();
        w.push(("extra".into(), w[0].1.clone()));
        let e = check(&mut a, &w).unwrap_err().to_string();
        assert!(e.contains("7 tensors given, the model has 6"), "{e}");
    }

    #[test]
    fn try_visit_stops_at_the_first_error() {
        let mut seen = Vec::new();
        let r = try_visit(&mut net(), |name, _| {
            seen.push(name.to_string());
            if name == "0.bias" {
                Err(name.len())
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(6));
        assert_eq!(seen, ["0.weight", "0.bias"]);
    }
}
