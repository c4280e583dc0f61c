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
use nn_core::{Buffer, Rng, limits};

use crate::config::{Context, LayerConfig, TensorSpec};
use crate::error::{Error, Result};
use crate::layer::{Layer, Mode, Parameterized, Slot};
use crate::spec::{Attr, LayerSpec};

/// How deeply containers may nest: parsing a nested spec recurses once per level, so the
/// depth is bounded by this constant, never by the input.
pub const MAX_DEPTH: usize = 64;

/// Configuration of a [`Sequential`]: the configurations of its layers, in order.
#[derive(Debug, Default)]
pub struct SequentialConfig {
    /// The layers, first to last.
    pub layers: Vec<Box<dyn LayerConfig>>,
}

impl SequentialConfig {
    /// A stack of the given layers.
    pub fn new(layers: Vec<Box<dyn LayerConfig>>) -> Self {
        SequentialConfig { layers }
    }

    /// Checks the number of layers against [`limits::MAX_LAYERS`].
    ///
    /// # Errors
    /// A limit error.
    pub fn validate(&self) -> Result<()> {
        limits::count(
            || "network".into(),
            self.layers.len(),
            limits::MAX_LAYERS,
            "layers",
        )?;
        Ok(())
    }

    /// Reads the nested `layers` through the context's registry. When the input shape is
    /// known, each layer is read with the shape its predecessor outputs (so widths such as
    /// `n_in` can be left out) and that shape is checked.
    ///
    /// # Errors
    /// The first failing layer's error wrapped in [`Error::AtLayer`]; a limit error for
    /// too many layers or too deep a nesting.
    pub fn from_spec(spec: &LayerSpec, ctx: &Context<'_>) -> Result<Self> {
        spec.only(&["layers"])?;
        if ctx.depth >= MAX_DEPTH {
            return Err(spec.invalid(format!("containers nest deeper than {MAX_DEPTH} levels")));
        }
        let specs = spec.layers("layers")?;
        limits::count(
            || "network".into(),
            specs.len(),
            limits::MAX_LAYERS,
            "layers",
        )?;
        let mut layers = Vec::with_capacity(specs.len());
        let mut shape = ctx.input.map(<[usize]>::to_vec);
        for (i, s) in specs.iter().enumerate() {
            let child = Context {
                registry: ctx.registry,
                input: shape.as_deref(),
                index: i,
                depth: ctx.depth + 1,
            };
            let cfg = ctx.registry.config(s, &child).map_err(|e| e.at_layer(i))?;
            if let Some(sh) = &shape {
                shape = Some(cfg.output_shape(sh).map_err(|e| e.at_layer(i))?);
            }
            layers.push(cfg);
        }
        Ok(SequentialConfig { layers })
    }

    /// The output shape of every layer for an input of shape `input`, first to last, with
    /// all of them together within [`limits::MAX_ACTIVATIONS`].
    ///
    /// # Errors
    /// The first layer that does not accept its input, wrapped in [`Error::AtLayer`]; a
    /// limit error.
    pub fn output_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.layers.len());
        let mut total = 0usize;
        for (i, l) in self.layers.iter().enumerate() {
            let x = shapes.last().map_or(input, Vec::as_slice);
            let s = l.output_shape(x).map_err(|e| e.at_layer(i))?;
            let n = l.output_elements(x).map_err(|e| e.at_layer(i))?;
            total = limits::add(
                || {
                    let batch = input.first().copied().unwrap_or(0);
                    format!("the outputs of layers 0 to {i} for a batch of {batch}")
                },
                total,
                n,
                limits::MAX_ACTIVATIONS,
                "elements",
            )?;
            shapes.push(s);
        }
        Ok(shapes)
    }
}

impl LayerConfig for SequentialConfig {
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

    /// The layers' tensors named `"<index>.<name>"`, all of them within
    /// [`limits::MAX_PARAMETERS`].
    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        let mut out = Vec::new();
        let mut total = 0usize;
        for (i, l) in self.layers.iter().enumerate() {
            for mut t in l.tensors().map_err(|e| e.at_layer(i))? {
                total = limits::add(
                    || "the model's parameters and buffers".into(),
                    total,
                    t.len(),
                    limits::MAX_PARAMETERS,
                    "elements",
                )?;
                t.name = format!("{i}.{}", t.name);
                out.push(t);
            }
        }
        Ok(out)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self
            .output_shapes(input)?
            .pop()
            .unwrap_or_else(|| input.to_vec()))
    }

    fn build(&self, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Sequential::from_config(self, rng)?))
    }

    /// All the layers' outputs together.
    fn output_elements(&self, input: &[usize]) -> Result<usize> {
        let mut shape = input.to_vec();
        let mut total = 0usize;
        for l in &self.layers {
            total = total.saturating_add(l.output_elements(&shape)?);
            shape = l.output_shape(&shape)?;
        }
        Ok(total)
    }
}

/// A stack of layers applied in order.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// Output of an empty stack (the identity needs somewhere to put its copy).
    passthrough: Buffer,
    /// Reused for the `"<index>.<name>"` names handed to visitors (no allocation per visit).
    name: String,
    /// Per layer: whether its last forward left its input with this container (the output
    /// of the layer before, or the caller's input for the first layer).
    kept: Vec<bool>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds every layer `cfg` lists, drawing their weights from `rng` in order.
    ///
    /// # Errors
    /// The first failing layer's error wrapped in [`Error::AtLayer`].
    pub fn from_config(cfg: &SequentialConfig, rng: &mut Rng) -> Result<Self> {
        cfg.validate()?;
        let mut s = Sequential::new();
        for (i, l) in cfg.layers.iter().enumerate() {
            s.push_boxed(l.build(rng).map_err(|e| e.at_layer(i))?);
        }
        Ok(s)
    }

    /// The configuration of the stack: its layers' configurations.
    pub fn sequential_config(&self) -> SequentialConfig {
        SequentialConfig::new(self.layers.iter().map(|l| l.config()).collect())
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
    /// [`Error::AtLayer`].
    pub fn output_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        self.sequential_config().output_shapes(input)
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

impl Sequential {
    /// Forward through every layer. In train mode, a layer whose input is the kept output of
    /// the layer before it (see [`Layer::output`]) runs [`Layer::forward_input_kept`] and
    /// skips its own copy of that input; so does the first layer when `first_kept`.
    fn run_forward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
        first_kept: bool,
    ) -> Result<ArrayViewD<'_, f32>> {
        self.kept.clear();
        for i in 0..self.layers.len() {
            let kept = mode == Mode::Train
                && if i == 0 {
                    first_kept
                } else {
                    self.layers[i - 1].output().is_some()
                };
            self.kept.push(kept);
        }
        let mut layers = self.layers.iter_mut().zip(&self.kept).enumerate();
        let Some((_, (first, &kept))) = layers.next() else {
            self.passthrough.assign(x);
            return Ok(self.passthrough.view());
        };
        let mut a = step(first, x, mode, kept).map_err(|e| e.at_layer(0))?; // a¹ = layer₁(x)
        for (i, (layer, &kept)) in layers {
            a = step(layer, a, mode, kept).map_err(|e| e.at_layer(i))?; // aˡ = layerₗ(aˡ⁻¹)
        }
        Ok(a)
    }
}

/// One layer's forward: with a kept input or as usual.
fn step<'s>(
    layer: &'s mut Box<dyn Layer>,
    a: ArrayViewD<'_, f32>,
    mode: Mode,
    kept: bool,
) -> Result<ArrayViewD<'s, f32>> {
    if kept {
        layer.forward_input_kept(a)
    } else {
        layer.forward(a, mode)
    }
}

impl Sequential {
    fn backward_with_input_opt(
        &mut self,
        x: Option<ArrayViewD<'_, f32>>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<ArrayViewD<'_, f32>> {
        if self.layers.is_empty() {
            self.passthrough.assign(dy);
            return Ok(self.passthrough.view());
        }
        self.kept.resize(self.layers.len(), false);
        let g = backward_from(&mut self.layers, &self.kept, x, dy, false)?;
        Ok(g.expect("all layers run"))
    }

    fn backward_params_with_input_opt(
        &mut self,
        x: Option<ArrayViewD<'_, f32>>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<()> {
        if self.layers.is_empty() {
            return Ok(());
        }
        self.kept.resize(self.layers.len(), false);
        backward_from(&mut self.layers, &self.kept, x, dy, true).map(|_| ())
    }
}

/// Backward from the top of `layers` (`dy` for the last one's output) down to the first;
/// returns `∂E/∂x` of the first layer, or `None` with `params_only`. Layer `i` run with a kept
/// input gets it back: the output of layer `i − 1`, or `x` for the first layer. A loop, not
/// a recursion: the stack does not grow with the number of layers.
fn backward_from<'s, 'v>(
    layers: &'s mut [Box<dyn Layer>],
    kept: &[bool],
    x: Option<ArrayViewD<'v, f32>>,
    dy: ArrayViewD<'v, f32>,
    params_only: bool,
) -> Result<Option<ArrayViewD<'s, f32>>>
where
    's: 'v,
{
    let mut rest = layers;
    let mut g = dy; // gᴸ = ∂E/∂y
    loop {
        let i = rest.len() - 1;
        let (top, before) = rest.split_last_mut().expect("at least one layer");
        // the input handed back, if this layer left it with us; a layer that needs it and
        // does not get it says so itself (`Error::InputNeeded`)
        let input = match (kept[i], i) {
            (false, _) => None,
            (true, 0) => x.clone(),
            (true, _) => before[i - 1].output(),
        };
        let at = |e: Error| e.at_layer(i);
        if i == 0 {
            if params_only {
                match input {
                    Some(x) => top.backward_params_with_input(x, g).map_err(at)?,
                    None => top.backward_params(g).map_err(at)?,
                }
                return Ok(None);
            }
            return match input {
                Some(x) => top.backward_with_input(x, g).map_err(at).map(Some),
                None => top.backward(g).map_err(at).map(Some),
            };
        }
        g = match input {
            Some(x) => top.backward_with_input(x, g).map_err(at)?,
            None => top.backward(g).map_err(at)?, // gˡ⁻¹ = layerₗ.backward(gˡ)
        };
        rest = before;
    }
}

impl Layer for Sequential {
    fn forward<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
    ) -> Result<ArrayViewD<'s, f32>> {
        self.run_forward(x, mode, false)
    }

    fn forward_input_kept<'s>(&'s mut self, x: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        self.run_forward(x, Mode::Train, true)
    }

    fn backward<'s>(&'s mut self, dy: ArrayViewD<'_, f32>) -> Result<ArrayViewD<'s, f32>> {
        self.backward_with_input_opt(None, dy)
    }

    fn backward_params(&mut self, dy: ArrayViewD<'_, f32>) -> Result<()> {
        self.backward_params_with_input_opt(None, dy)
    }

    fn backward_with_input<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<ArrayViewD<'s, f32>> {
        self.backward_with_input_opt(Some(x), dy)
    }

    fn backward_params_with_input(
        &mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<()> {
        self.backward_params_with_input_opt(Some(x), dy)
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(self.sequential_config())
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

    /// The gradients of every parameter, in visiting order.
    fn grads(s: &mut Sequential) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        s.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                out.push(p.grad.iter().copied().collect());
            }
        });
        out
    }

    #[test]
    fn kept_input_gives_the_same_gradients_without_copies() {
        // the same network and batch, once with each layer copying its input, once with the
        // inputs handed back at backward time: identical gradients, to the bit
        let x = Array2::from_shape_fn((3, 4), |(i, j)| (i as f32 - 1.0) * 0.5 + j as f32 * 0.25)
            .into_dyn();
        let dy = Array2::from_shape_fn((3, 2), |(i, j)| 0.1 * (i + 2 * j) as f32 - 0.2).into_dyn();
        let mut copied = net();
        let y1 = copied.forward(x.view(), Mode::Train).unwrap().to_owned();
        let dx1 = copied.backward(dy.view()).unwrap().to_owned();
        let mut kept = net();
        let y2 = kept.forward_input_kept(x.view()).unwrap().to_owned();
        let dx2 = kept
            .backward_with_input(x.view(), dy.view())
            .unwrap()
            .to_owned();
        assert_eq!((y1, dx1), (y2, dx2));
        assert_eq!(grads(&mut copied), grads(&mut kept));
        assert!(grads(&mut kept).iter().flatten().any(|&g| g != 0.0));
        // and the parameters-only pass
        kept.zero_grad();
        kept.forward_input_kept(x.view()).unwrap();
        kept.backward_params_with_input(x.view(), dy.view())
            .unwrap();
        copied.zero_grad();
        copied.forward(x.view(), Mode::Train).unwrap();
        copied.backward_params(dy.view()).unwrap();
        assert_eq!(grads(&mut copied), grads(&mut kept));
    }

    #[test]
    fn kept_input_must_be_given_back() {
        let mut s = net();
        let x = Array2::<f32>::ones((2, 4)).into_dyn();
        let dy = Array2::<f32>::ones((2, 2)).into_dyn();
        s.forward_input_kept(x.view()).unwrap();
        // without the input: the first layer says it needs it
        let e = s.backward(dy.view()).unwrap_err();
        assert!(matches!(e.root(), Error::InputNeeded { .. }), "{e}");
        assert!(e.to_string().contains("layer 0: dense(4 → 3)"), "{e}");
        // with an input of another shape: a shape error naming both
        s.forward_input_kept(x.view()).unwrap();
        let wrong = Array2::<f32>::ones((3, 4)).into_dyn();
        let e = s.backward_with_input(wrong.view(), dy.view()).unwrap_err();
        assert!(
            e.to_string().contains("expected shape [2, 4], got [3, 4]"),
            "{e}"
        );
    }

    #[test]
    fn ten_thousand_layers_run_on_a_small_stack() {
        // backward is a loop: a 10,000-layer stack runs on a 256 KiB thread stack
        let run = || {
            let mut s = Sequential::new();
            for i in 0..limits::MAX_LAYERS {
                if i % 2 == 0 {
                    s.push(crate::Identity::new());
                } else {
                    s.push(crate::LeakyRelu::leaky(1.0).unwrap());
                }
            }
            let x = Array2::from_shape_fn((2, 3), |(i, j)| i as f32 - j as f32).into_dyn();
            let y = s.forward(x.view(), Mode::Train).unwrap().to_owned();
            assert_eq!(y, x); // identity and a slope of 1 on both sides
            let dx = s.backward(x.view()).unwrap().to_owned();
            assert_eq!(dx, x);
            s.zero_grad();
            s.forward_input_kept(x.view()).unwrap();
            s.backward_params_with_input(x.view(), x.view()).unwrap();
        };
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }
}
