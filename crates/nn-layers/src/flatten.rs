//! Flatten: images `[n, c, h, w]` (or any `[n, …]`) to rows `[n, c·h·w]`.
//!
//! ```text
//! forward    y[i, (c·H + h)·W + w] = x[i, c, h, w]        (row-major: channel-major per row)
//! backward   ∂E/∂x = ∂E/∂y reshaped back to the input's shape
//! ```
//!
//! No arithmetic, only a change of shape; the values are copied into the layer's own
//! buffer because the output must outlive the borrowed input.

use ndarray::ArrayViewD;
use nn_core::{Buffer, Rng, limits};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output};
use crate::error::Result;
use crate::layer::{Layer, Mode, Parameterized, Slot, require_forward, require_shape};
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
#[derive(Clone, Debug, Default)]
pub struct Flatten {
    in_shape: Vec<usize>,
    y: Buffer,
    dx: Buffer,
    ready: bool,
}

impl Flatten {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Parameterized for Flatten {
    fn visit<'a>(&'a mut self, _f: &mut dyn FnMut(&str, Slot<'a>)) {}
}

fn flat(shape: &[usize]) -> Result<[usize; 2]> {
    if shape.is_empty() {
        return Err(nn_core::Error::shape("flatten forward", "[n, …]", shape).into());
    }
    let row = limits::elements(|| "flatten input row".into(), &shape[1..])?;
    Ok([shape[0], row])
}

impl Layer for Flatten {
    fn forward<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
    ) -> Result<ArrayViewD<'s, f32>> {
        let out = flat(x.shape())?;
        self.in_shape.clear();
        self.in_shape.extend_from_slice(x.shape());
        self.y.assign(x); // row-major copy: y[i, :] is x[i, …] in order
        self.y.resize(&out);
        self.ready = mode == Mode::Train;
        Ok(self.y.view())
    }

    fn backward<'s>(&'s mut self, dy: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        require_forward(self.ready, || "flatten".into())?;
        require_shape(|| "flatten backward".into(), self.y.shape(), dy.shape())?;
        self.dx.assign(dy);
        self.dx.resize(&self.in_shape); // ∂E/∂x = ∂E/∂y in the input's shape
        Ok(self.dx.view())
    }

    fn output(&self) -> Option<ArrayViewD<'_, f32>> {
        Some(self.y.view())
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
        let y = f.forward(x.view(), Mode::Train).unwrap().to_owned();
        assert_eq!(y.shape(), &[2, 6]);
        assert_eq!(
            y.index_axis(ndarray::Axis(0), 1)
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![100.0, 101.0, 102.0, 110.0, 111.0, 112.0]
        );
        let dx = f.backward(y.view()).unwrap();
        assert_eq!(dx, x);
        assert_eq!(f.output_shape(&[5, 1, 28, 28]).unwrap(), vec![5, 784]);
    }
}
