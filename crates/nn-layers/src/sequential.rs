//! `Sequential`: layers run one after another.
//!
//! ```text
//! forward    a⁰ = x,   aˡ = layerₗ(aˡ⁻¹)   for l = 1 … L,   y = aᴸ
//! backward   gᴸ = ∂E/∂y,   gˡ⁻¹ = layerₗ.backward(gˡ)   for l = L … 1,   ∂E/∂x = g⁰
//! ```
//!
//! Forward goes from the first layer to the last, each layer keeping (in Train mode) what its
//! own backward needs; backward visits the layers in reverse order, each turning the
//! gradient of its output into the gradient of its input — the chain rule, one layer at a
//! time. Parameters are named `"<index>.<name>"`, e.g. `"0.weight"`.

use ndarray::ArrayViewD;
use nn_core::Buffer;

use crate::error::Result;
use crate::layer::{Layer, Mode, Parameterized, Slot};
use crate::spec::{Attr, LayerSpec};

/// A stack of layers applied in order.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// Output of an empty stack (the identity needs somewhere to put its copy).
    passthrough: Buffer,
    /// Reused for the `"<index>.<name>"` names handed to visitors (no allocation per visit).
    name: String,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer (builder style).
    pub fn with(mut self, layer: impl Layer + 'static) -> Self {
        self.push(layer);
        self
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl Layer + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// Appends a boxed layer (e.g. one built from a spec).
    pub fn push_boxed(&mut self, layer: Box<dyn Layer>) {
        self.layers.push(layer);
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// The layers, mutable.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the stack has no layer.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The output shape of every layer for an input of shape `input`, first to last.
    ///
    /// # Errors
    /// The first layer that does not accept its input shape, wrapped in
    /// [`Error::AtLayer`](crate::Error::AtLayer).
    pub fn output_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut shapes = Vec::with_capacity(self.layers.len());
        let mut s = input.to_vec();
        for (i, l) in self.layers.iter().enumerate() {
            s = l.output_shape(&s).map_err(|e| e.at_layer(i))?;
            shapes.push(s.clone());
        }
        Ok(shapes)
    }
}

impl Parameterized for Sequential {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        let Sequential { layers, name, .. } = self;
        for (i, layer) in layers.iter_mut().enumerate() {
            layer.visit(&mut |n, slot| {
                name.clear();
                use std::fmt::Write;
                let _ = write!(name, "{i}.{n}"); // "0.weight"
                f(name, slot);
            });
        }
    }
}

impl Layer for Sequential {
    fn forward<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
    ) -> Result<ArrayViewD<'s, f32>> {
        let mut layers = self.layers.iter_mut().enumerate();
        let Some((_, first)) = layers.next() else {
            self.passthrough.assign(x);
            return Ok(self.passthrough.view());
        };
        let mut a = first.forward(x, mode).map_err(|e| e.at_layer(0))?; // a¹ = layer₁(x)
        for (i, layer) in layers {
            a = layer.forward(a, mode).map_err(|e| e.at_layer(i))?; // aˡ = layerₗ(aˡ⁻¹)
        }
        Ok(a)
    }

    fn backward<'s>(&'s mut self, dy: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        let mut layers = self.layers.iter_mut().enumerate().rev();
        let Some((last, top)) = layers.next() else {
            self.passthrough.assign(dy);
            return Ok(self.passthrough.view());
        };
        let mut g = top.backward(dy).map_err(|e| e.at_layer(last))?; // gᴸ⁻¹ = layer_L.backward(∂E/∂y)
        for (i, layer) in layers {
            g = layer.backward(g).map_err(|e| e.at_layer(i))?; // gˡ⁻¹ = layerₗ.backward(gˡ)
        }
        Ok(g)
    }

    fn backward_params(&mut self, dy: ArrayViewD<'_, f32>) -> Result<()> {
        let n = self.layers.len();
        if n <= 1 {
            return match self.layers.first_mut() {
                Some(l) => l.backward_params(dy).map_err(|e| e.at_layer(0)),
                None => Ok(()),
            };
        }
        let (first, rest) = self.layers.split_at_mut(1);
        let mut layers = rest.iter_mut().enumerate().rev();
        let (last, top) = layers.next().expect("at least two layers");
        let mut g = top.backward(dy).map_err(|e| e.at_layer(last + 1))?;
        for (i, layer) in layers {
            g = layer.backward(g).map_err(|e| e.at_layer(i + 1))?; // gˡ⁻¹ = layerₗ.backward(gˡ)
        }
        first[0].backward_params(g).map_err(|e| e.at_layer(0)) // no ∂E/∂x for the input
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self
            .output_shapes(input)?
            .pop()
            .unwrap_or_else(|| input.to_vec()))
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::new("sequential").with(
            "layers",
            Attr::Layers(self.layers.iter().map(|l| l.spec()).collect()),
        )
    }

    fn name(&self) -> String {
        let names: Vec<String> = self.layers.iter().map(|l| l.name()).collect();
        format!("sequential[{}]", names.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dense, DenseConfig, Error, Relu};
    use ndarray::Array2;
    use nn_core::seeded;

    fn net() -> Sequential {
        let mut rng = seeded(0);
        Sequential::new()
            .with(Dense::new(&DenseConfig::new(4, 3), &mut rng).unwrap())
            .with(Relu::new())
            .with(Dense::new(&DenseConfig::new(3, 2), &mut rng).unwrap())
    }

    #[test]
    fn names_and_counts() {
        let mut s = net();
        let mut names = Vec::new();
        s.visit(&mut |n, _| names.push(n.to_string()));
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
        // 4·3 + 3 + 3·2 + 2 = 23
        assert_eq!(s.num_params(), 23);
        assert_eq!(
            s.output_shapes(&[5, 4]).unwrap(),
            vec![vec![5, 3], vec![5, 3], vec![5, 2]]
        );
        assert_eq!(s.name(), "sequential[dense(4 → 3), relu, dense(3 → 2)]");
    }

    #[test]
    fn errors_say_which_layer() {
        let mut s = net();
        let x = Array2::<f32>::zeros((2, 5)).into_dyn();
        let e = s.forward(x.view(), Mode::Train).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer 0: dense(4 → 3) forward: expected shape [n, 4], got [2, 5]"
        );
        let dy = Array2::<f32>::zeros((2, 2)).into_dyn();
        let e = s.backward(dy.view()).unwrap_err();
        assert!(matches!(e.root(), Error::NoForward { .. }), "{e}");
    }

    #[test]
    fn zero_grad_clears_every_parameter() {
        let mut s = net();
        let x = Array2::<f32>::ones((2, 4)).into_dyn();
        s.forward(x.view(), Mode::Train).unwrap();
        let dy = Array2::<f32>::ones((2, 2)).into_dyn();
        s.backward(dy.view()).unwrap();
        let mut any = false;
        s.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                any |= p.grad.iter().any(|&g| g != 0.0);
            }
        });
        assert!(any);
        s.zero_grad();
        s.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                assert!(p.grad.iter().all(|&g| g == 0.0));
            }
        });
    }

    #[test]
    fn empty_stack_is_the_identity() {
        let mut s = Sequential::new();
        let x = Array2::<f32>::from_elem((2, 3), 1.5).into_dyn();
        assert_eq!(s.forward(x.view(), Mode::Train).unwrap(), x);
        assert_eq!(s.backward(x.view()).unwrap(), x);
    }
}
