//! Flatten: images `[n, c, h, w]` (or any `[n, …]`) to rows `[n, c·h·w]`.
//!
//! ```text
//! forward    y[i, (c·H + h)·W + w] = x[i, c, h, w]        (row-major: channel-major per row)
//! backward   ∂E/∂x = ∂E/∂y reshaped back to the input's shape
//! ```
//!
//! No arithmetic, only a change of shape; the values are copied into the output buffer the
//! network hands the layer (the output is an activation of its own).

use ndarray::ArrayViewD;
use nn_core::{Buffer, Rng, limits};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output};
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, check_backward};
use crate::spec::LayerSpec;

/// Configuration of a [`Flatten`] layer (it has no attribute).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlattenConfig;

impl FlattenConfig {
    /// Reads the (empty) attributes.
    ///
    /// # Errors
    /// [`Error::Spec`](crate::Error::Spec) for any attribute.
    pub fn from_spec(spec: &LayerSpec, _ctx: &Context<'_>) -> Result<Self> {
        spec.only(&[])?;
        Ok(FlattenConfig)
    }
}

impl LayerConfig for FlattenConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("flatten")
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        Ok(Vec::new())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        checked_output(|| "flatten".into(), flat(input)?.to_vec())
    }

    fn build(&self, _rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Flatten::new()))
    }
}

/// Reshapes `[n, …]` to `[n, features]`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Flatten {
    /// The layer.
    pub fn new() -> Self {
        Flatten
    }
}

fn flat(shape: &[usize]) -> Result<[usize; 2]> {
    if shape.is_empty() {
        return Err(nn_core::Error::shape("flatten forward", "[n, …]", shape).into());
    }
    let row = limits::elements(|| "flatten input row".into(), &shape[1..])?;
    Ok([shape[0], row])
}

impl Layer for Flatten {
    fn visit<'a>(&'a mut self, _f: &mut dyn FnMut(&str, Slot<'a>)) {}

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, _mode: Mode) -> Result<()> {
        let out = flat(x.shape())?;
        y.assign(x); // row-major copy: y[i, :] is x[i, …] in order
        y.resize(&out);
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        check_backward(|| "flatten".into(), &flat(x.shape())?, &y, &dy)?;
        if let Some(dx) = dx {
            dx.assign(dy);
            dx.resize(x.shape()); // ∂E/∂x = ∂E/∂y in the input's shape
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(FlattenConfig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_channel_major_and_back() {
        let x = ndarray::Array4::<f32>::from_shape_fn((2, 2, 1, 3), |(n, c, _, w)| {
            (n * 100 + c * 10 + w) as f32
        })
        .into_dyn();
        let mut f = Flatten::new();
        let y = crate::layer::apply(&mut f, x.view(), Mode::Train).unwrap();
        assert_eq!(y.shape(), &[2, 6]);
        assert_eq!(
            y.index_axis(ndarray::Axis(0), 1)
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![100.0, 101.0, 102.0, 110.0, 111.0, 112.0]
        );
        let mut dx = Buffer::new();
        f.backward(x.view(), y.view(), y.view(), Some(&mut dx))
            .unwrap();
        assert_eq!(dx.view(), x);
        assert_eq!(f.output_shape(&[5, 1, 28, 28]).unwrap(), vec![5, 784]);
    }

    #[test]
    fn flatten_takes_no_attribute() {
        let registry = crate::Registry::new();
        let ctx = Context::new(&registry);
        registry.config(&LayerSpec::new("flatten"), &ctx).unwrap();
        let e = registry
            .config(&LayerSpec::new("flatten").with("axis", 1usize), &ctx)
            .unwrap_err();
        assert!(e.to_string().contains("`axis`"), "{e}");
    }
}
