//! `Sequential`: layers run one after another.
//!
//! ```text
//! forward    a⁰ = x,   aˡ = layerₗ(aˡ⁻¹)   for l = 1 … L,   y = aᴸ
//! backward   gᴸ = ∂E/∂y,   gˡ⁻¹ = layerₗ.backward(gˡ)   for l = L … 1,   ∂E/∂x = g⁰
//! ```
//!
//! The container owns the activations: forward writes `aˡ` into a buffer it keeps for each
//! layer, backward hands layer `l` its input `aˡ⁻¹`, its output `aˡ` and the gradient `gˡ`,
//! and the layer writes `gˡ⁻¹` into one of two buffers used in turn — the chain rule, one
//! layer at a time, from the last to the first (whose `∂E/∂x` is computed only when the
//! caller asks for it). Parameters are named `"<index>.<name>"`, e.g. `"0.weight"`.
//!
//! **A ReLU followed by max pooling runs pool first.** ReLU never reverses an order
//! (`a ≤ b ⇒ relu(a) ≤ relu(b)`), so the largest of a window's ReLU outputs is the ReLU of
//! its largest input:
//!
//! ```text
//! maxpool(relu(a)) = relu(maxpool(a))        for every window
//! ```
//!
//! Pooled first, the ReLU touches a quarter of the values (2×2 windows), forward and
//! backward; in a CNN's `conv → relu → maxpool` block that was a tenth of its step. The
//! results are the same values: where a window's largest input is positive it is the same
//! input either way (ReLU makes no new ties above zero), and where it is not, the window's
//! output is 0 and its gradient reaches no input (ReLU's derivative there is 0). NaN never
//! wins a window and ReLU maps it to 0, so the outputs agree for NaN inputs too. Only the
//! sign of a zero gradient may differ, and where the gradient is not finite, which input
//! shows it. The activation between the two holds the pooled input instead of the ReLU's
//! output; every other activation, the parameters and their names are as listed.

use std::any::Any;

use ndarray::ArrayViewD;
use nn_core::{Buffer, Rng, limits};

use crate::activation::Relu;
use crate::config::{Context, LayerConfig, TensorSpec};
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, require_forward};
use crate::pool::{Pool2d, Reduce};
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
    /// The first failing layer's error wrapped in [`Error::AtLayer`](crate::Error::AtLayer); a limit error for
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
    /// The first layer that does not accept its input, wrapped in [`Error::AtLayer`](crate::Error::AtLayer); a
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

/// A stack of layers applied in order; it owns the activations between them.
///
/// # Example
///
/// ```
/// use nn_core::{Buffer, ndarray::Array2};
/// use nn_layers::{Dense, DenseConfig, Layer, Mode, Relu, Sequential};
///
/// let mut rng = nn_core::seeded(3);
/// let mut net = Sequential::new()
///     .with(Dense::new(&DenseConfig::new(3, 4), &mut rng)?)
///     .with(Relu::new())
///     .with(Dense::new(&DenseConfig::new(4, 2), &mut rng)?);
/// assert_eq!(net.num_params(), (3 * 4 + 4) + (4 * 2 + 2)); // weights and biases
/// assert_eq!(net.output_shape(&[5, 3])?, [5, 2]);
///
/// let x = Array2::<f32>::ones((5, 3)).into_dyn();
/// let mut y = Buffer::new();
/// net.forward(x.view(), &mut y, Mode::Eval)?;
/// // five equal rows in, five equal rows out
/// let rows = y.view2();
/// assert!(rows.rows().into_iter().all(|r| r == rows.row(0)));
/// // a shape the first layer cannot take is refused, the layer named
/// let wrong = Array2::<f32>::ones((5, 7)).into_dyn();
/// assert!(net.forward(wrong.view(), &mut y, Mode::Eval).is_err());
/// # Ok::<(), nn_layers::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
    /// `a¹ … aᴸ⁻¹`, the outputs of every layer but the last (which writes the caller's `y`).
    acts: Vec<Buffer>,
    /// `∂E/∂aˡ`, two buffers used in turn: layer `l` reads one and writes the other.
    grads: [Buffer; 2],
    /// Whether the last forward was a complete train-mode pass.
    ready: bool,
    /// The output and input gradient of [`Sequential::run`] and [`Sequential::run_backward`].
    out: Buffer,
    dx: Buffer,
    /// Reused for the `"<index>.<name>"` names handed to visitors (no allocation per visit).
    name: String,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds every layer `cfg` lists, drawing their weights from `rng` in order.
    ///
    /// # Errors
    /// The first failing layer's error wrapped in [`Error::AtLayer`](crate::Error::AtLayer).
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
    /// [`Error::AtLayer`](crate::Error::AtLayer).
    pub fn output_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        self.sequential_config().output_shapes(input)
    }
}

impl Sequential {
    /// Forward through every layer, keeping the output in the network: a convenience for
    /// inference and examples. Returns a view of the output.
    ///
    /// # Errors
    /// As [`Layer::forward`], wrapped in [`Error::AtLayer`](crate::Error::AtLayer).
    pub fn run(&mut self, x: ArrayViewD<'_, f32>, mode: Mode) -> Result<ArrayViewD<'_, f32>> {
        let mut out = std::mem::take(&mut self.out);
        let r = self.forward(x, &mut out, mode);
        self.out = out;
        r.map(|()| self.out.view())
    }

    /// Backward after [`Sequential::run`] in train mode on the same `x`; returns `∂E/∂x`.
    ///
    /// # Errors
    /// As [`Layer::backward`].
    pub fn run_backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> Result<ArrayViewD<'_, f32>> {
        let (out, mut dx) = (std::mem::take(&mut self.out), std::mem::take(&mut self.dx));
        let r = self.backward(x, out.view(), dy, Some(&mut dx));
        (self.out, self.dx) = (out, dx);
        r.map(|()| self.dx.view())
    }
}

/// Whether `a` then `b` is a ReLU then max pooling, which may run in the other order.
fn pool_first(a: &dyn Layer, b: &dyn Layer) -> bool {
    let (a, b): (&dyn Any, &dyn Any) = (a, b);
    a.is::<Relu>()
        && b.downcast_ref::<Pool2d>()
            .is_some_and(|p| p.reduce() == Reduce::Max)
}

/// The layer that runs at step `t`, from `aᵗ` to `aᵗ⁺¹`: layer `t` itself, except that a
/// ReLU and the max pooling right after it swap places. (No layer is both, so the pairs
/// never overlap.)
fn layer_at(layers: &[Box<dyn Layer>], t: usize) -> usize {
    let swaps = |i: usize| i + 1 < layers.len() && pool_first(&*layers[i], &*layers[i + 1]);
    if swaps(t) {
        t + 1 // maxpool first: relu(maxpool(a)) = maxpool(relu(a))
    } else if t > 0 && swaps(t - 1) {
        t - 1 // then the ReLU, on the pooled values
    } else {
        t
    }
}

impl Layer for Sequential {
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

    /// `a⁰ = x`, `aˡ = layerₗ(aˡ⁻¹)` for `l = 1 … L`, `y = aᴸ`.
    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()> {
        let Sequential {
            layers,
            acts,
            ready,
            ..
        } = self;
        *ready = false;
        let n = layers.len();
        if n == 0 {
            y.assign(x.view()); // the empty stack is the identity
        }
        acts.resize_with(n.saturating_sub(1), Buffer::new);
        for i in 0..n {
            let l = layer_at(layers, i);
            let (before, after) = acts.split_at_mut(i);
            let input = if i == 0 {
                x.view()
            } else {
                before[i - 1].view()
            };
            let out = if i + 1 == n { &mut *y } else { &mut after[0] };
            let layer = &mut layers[l];
            layer.forward(input, out, mode).map_err(|e| e.at_layer(l))?; // aˡ = layerₗ(aˡ⁻¹)
        }
        *ready = mode == Mode::Train;
        Ok(())
    }

    /// `gᴸ = dy`, then for `l = L … 1`: layer `l` gets `aˡ⁻¹`, `aˡ`, `gˡ` and writes
    /// `gˡ⁻¹ = ∂E/∂aˡ⁻¹` (for the first layer, only when `dx` is asked for). A loop: the
    /// stack does not grow with the number of layers.
    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        mut dx: Option<&mut Buffer>,
    ) -> Result<()> {
        require_forward(self.ready, || "sequential".into())?;
        let Sequential {
            layers,
            acts,
            grads,
            ..
        } = self;
        let n = layers.len();
        if n == 0 {
            if let Some(dx) = dx {
                dx.assign(dy);
            }
            return Ok(());
        }
        let [a, b] = grads;
        let (mut g, mut g_prev) = (a, b); // gˡ and gˡ⁻¹
        for i in (0..n).rev() {
            let input = if i == 0 { x.view() } else { acts[i - 1].view() };
            let output = if i + 1 == n { y.view() } else { acts[i].view() };
            let grad = if i + 1 == n { dy.view() } else { g.view() };
            let grad_in = if i == 0 {
                dx.as_deref_mut()
            } else {
                Some(&mut *g_prev)
            };
            let l = layer_at(layers, i); // the layer that ran from aⁱ to aⁱ⁺¹
            layers[l]
                .backward(input, output, grad, grad_in)
                .map_err(|e| e.at_layer(l))?; // gˡ⁻¹ = ∂E/∂aˡ⁻¹
            std::mem::swap(&mut g, &mut g_prev);
        }
        Ok(())
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
    use crate::layer::{apply, apply_backward};
    use crate::{Dense, DenseConfig, Error};
    use ndarray::{Array2, array};
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
    fn forward_and_backward_by_hand() {
        // dense(2 → 2) W = [[1, −1], [2, 0]], b = [0, −1]; relu; dense(2 → 1) V = [[3, 1]], c = 0
        // x = [1, 2]: a¹ = [1 − 2, 2 − 1] = [−1, 1]; a² = [0, 1]; y = 3·0 + 1·1 = 1
        // dy = 2: ∂E/∂V = dy·a² = [0, 2]; g² = dy·V = [6, 2]; g¹ = g² ⊙ [a¹ > 0] = [0, 2]
        //        ∂E/∂W = g¹ᵀ·x = [[0, 0], [2, 4]]; ∂E/∂b = [0, 2]; ∂E/∂x = g¹·W = [4, 0]
        let mut s = Sequential::new()
            .with(
                Dense::from_weights(
                    array![[1.0f32, -1.0], [2.0, 0.0]].into_dyn(),
                    Some(array![0.0f32, -1.0].into_dyn()),
                )
                .unwrap(),
            )
            .with(Relu::new())
            .with(
                Dense::from_weights(
                    array![[3.0f32, 1.0]].into_dyn(),
                    Some(array![0.0f32].into_dyn()),
                )
                .unwrap(),
            );
        let x = array![[1.0f32, 2.0]].into_dyn();
        let (y, dx) = apply_backward(&mut s, x.view(), array![[2.0f32]].into_dyn().view()).unwrap();
        assert_eq!(y, array![[1.0f32]].into_dyn());
        assert_eq!(dx, array![[4.0f32, 0.0]].into_dyn());
        let g = grads(&mut s);
        assert_eq!(
            g,
            vec![
                vec![0.0, 0.0, 2.0, 4.0],
                vec![0.0, 2.0],
                vec![0.0, 2.0],
                vec![2.0]
            ]
        );
        // run / run_backward give the same values through the network's own buffers
        s.zero_grad();
        assert_eq!(s.run(x.view(), Mode::Train).unwrap(), y);
        assert_eq!(
            s.run_backward(x.view(), array![[2.0f32]].into_dyn().view())
                .unwrap(),
            dx
        );
        assert_eq!(grads(&mut s), g);
    }

    #[test]
    fn errors_say_which_layer() {
        let mut s = net();
        let x = Array2::<f32>::zeros((2, 5)).into_dyn();
        let e = apply(&mut s, x.view(), Mode::Train).unwrap_err();
        assert_eq!(
            e.to_string(),
            "layer 0: dense(4 → 3) forward: expected shape [n, 4], got [2, 5]"
        );
        // the failed forward leaves nothing to go backward from
        let dy = Array2::<f32>::zeros((2, 2)).into_dyn();
        let e = s
            .backward(x.view(), dy.view(), dy.view(), None)
            .unwrap_err();
        assert!(matches!(e.root(), Error::NoForward { .. }), "{e}");
        // an eval-mode forward neither
        let x = Array2::<f32>::zeros((2, 4)).into_dyn();
        s.run(x.view(), Mode::Eval).unwrap();
        let e = s.run_backward(x.view(), dy.view()).unwrap_err();
        assert!(matches!(e.root(), Error::NoForward { .. }), "{e}");
    }

    #[test]
    fn zero_grad_clears_every_parameter() {
        let mut s = net();
        let x = Array2::<f32>::ones((2, 4)).into_dyn();
        let dy = Array2::<f32>::ones((2, 2)).into_dyn();
        apply_backward(&mut s, x.view(), dy.view()).unwrap();
        assert!(grads(&mut s).iter().flatten().any(|&g| g != 0.0));
        s.zero_grad();
        assert!(grads(&mut s).iter().flatten().all(|&g| g == 0.0));
    }

    #[test]
    fn empty_stack_is_the_identity() {
        let mut s = Sequential::new();
        let x = Array2::<f32>::from_elem((2, 3), 1.5).into_dyn();
        assert_eq!(
            apply_backward(&mut s, x.view(), x.view()).unwrap(),
            (x.clone(), x)
        );
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
    fn the_first_layer_skips_dx_with_the_same_parameter_gradients() {
        let x = Array2::from_shape_fn((3, 4), |(i, j)| (i as f32 - 1.0) * 0.5 + j as f32 * 0.25)
            .into_dyn();
        let dy = Array2::from_shape_fn((3, 2), |(i, j)| 0.1 * (i + 2 * j) as f32 - 0.2).into_dyn();
        let (mut with_dx, mut without) = (net(), net());
        let (y, _) = apply_backward(&mut with_dx, x.view(), dy.view()).unwrap();
        let mut y2 = Buffer::new();
        without.forward(x.view(), &mut y2, Mode::Train).unwrap();
        without
            .backward(x.view(), y2.view(), dy.view(), None)
            .unwrap();
        assert_eq!(y2.view(), y);
        assert_eq!(grads(&mut with_dx), grads(&mut without));
        assert!(grads(&mut without).iter().flatten().any(|&g| g != 0.0));
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
            let (y, dx) = apply_backward(&mut s, x.view(), x.view()).unwrap();
            assert_eq!((y, dx), (x.clone(), x)); // identity and a slope of 1 on both sides
        };
        std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn a_stack_lists_its_layers_and_counts_what_they_output() {
        let mut s = net();
        assert_eq!((s.len(), s.is_empty()), (3, false));
        assert!(Sequential::new().is_empty());
        assert_eq!(Sequential::new().len(), 0);
        let names: Vec<String> = s.layers().iter().map(|l| l.name()).collect();
        assert_eq!(names[1], "relu");
        assert_eq!(s.layers_mut()[0].num_params(), 4 * 3 + 3);
        // every layer's output for 4 rows: dense 3 + relu 3 + dense 2 values per row
        assert_eq!(
            s.config().output_elements(&[4, 4]).unwrap(),
            4 * (3 + 3 + 2)
        );
    }

    /// `layers` run one by one in the order listed, each on a fresh copy of the buffers:
    /// the definition the stack's own order must agree with. Returns `y` and `∂E/∂x`.
    fn listed_order(
        layers: &mut [Box<dyn Layer>],
        x: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
    ) -> (ndarray::ArrayD<f32>, ndarray::ArrayD<f32>) {
        let mut acts = vec![x.to_owned()];
        for l in layers.iter_mut() {
            let out = apply(l.as_mut(), acts.last().unwrap().view(), Mode::Train).unwrap();
            acts.push(out);
        }
        let mut g = dy.to_owned();
        for (i, l) in layers.iter_mut().enumerate().rev() {
            let mut dx = Buffer::new();
            l.backward(acts[i].view(), acts[i + 1].view(), g.view(), Some(&mut dx))
                .unwrap();
            g = dx.view().to_owned();
        }
        (acts.pop().unwrap(), g)
    }

    fn relu_pool(k: usize, s: usize) -> Vec<Box<dyn Layer>> {
        vec![Box::new(Relu::new()), Box::new(Pool2d::max(k, s).unwrap())]
    }

    #[test]
    fn a_relu_before_max_pooling_runs_after_it() {
        let pool = || Box::new(Pool2d::max(2, 2).unwrap()) as Box<dyn Layer>;
        let relu = || Box::new(Relu::new()) as Box<dyn Layer>;
        let layers: Vec<Box<dyn Layer>> = vec![
            relu(),
            pool(),
            Box::new(crate::LeakyRelu::leaky(0.1).unwrap()), // not ReLU: stays
            pool(),
            relu(),
            Box::new(Pool2d::avg(2, 2).unwrap()), // not max: stays
            relu(),
            relu(),
            pool(),
            relu(),
        ];
        let order: Vec<usize> = (0..layers.len()).map(|t| layer_at(&layers, t)).collect();
        assert_eq!(order, [1, 0, 2, 3, 4, 5, 6, 8, 7, 9]);
        assert_eq!(layer_at(&layers[..1], 0), 0); // a ReLU last has nothing to swap with
    }

    #[test]
    fn relu_then_max_pooling_by_hand() {
        // one 2×4 plane, two 2×2 windows: [[−1, 2], [3, −4]] → 3; [[−1, −2], [−5, −3]] → 0
        let x = array![[[[-1.0f32, 2.0, -1.0, -2.0], [3.0, -4.0, -5.0, -3.0]]]].into_dyn();
        let dy = array![[[[10.0f32, 20.0]]]].into_dyn();
        let mut s = Sequential::new()
            .with(Relu::new())
            .with(Pool2d::max(2, 2).unwrap());
        let (y, dx) = apply_backward(&mut s, x.view(), dy.view()).unwrap();
        assert_eq!(y, array![[[[3.0f32, 0.0]]]].into_dyn());
        // the 3 gets its window's gradient; the all-negative window's reaches no input
        let want = array![[[[0.0f32, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]]]].into_dyn();
        assert_eq!(dx, want);
        // pooled first: the activation between the two holds the pooled input, max(−1, −2, −5, −3) = −1
        assert_eq!(s.acts[0].view(), array![[[[3.0f32, -1.0]]]].into_dyn());
    }

    #[test]
    fn relu_then_max_pooling_keeps_ties_zeros_and_nan() {
        // ties above zero, at zero, below zero; −0; NaN next to a positive, a negative, alone
        let nan = f32::NAN;
        let vals = [
            2.0, 2.0, 1.0, 2.0, 0.0, -0.0, 0.0, -1.0, -3.0, -3.0, -3.0, -7.0, nan, 1.5, -1.0, 0.5,
            nan, -2.0, -4.0, -9.0, nan, nan, nan, nan,
        ];
        let x = ndarray::Array4::from_shape_vec((1, 1, 2, 12), vals.to_vec())
            .unwrap()
            .into_dyn();
        let mut s = Sequential::new()
            .with(Relu::new())
            .with(Pool2d::max(2, 2).unwrap());
        let y = apply(&mut s, x.view(), Mode::Eval).unwrap();
        let (want, _) = listed_order(&mut relu_pool(2, 2), x.view(), y.view());
        assert_eq!(y, want);
        // by hand, the six 2×2 windows (top row | bottom row): (2, 2 | NaN, 1.5) → 2,
        // (1, 2 | −1, 0.5) → 2, (0, −0 | NaN, −2) → 0, (0, −1 | −4, −9) → 0,
        // (−3, −3 | NaN, NaN) → 0, (−3, −7 | NaN, NaN) → 0
        let got: Vec<f32> = y.iter().copied().collect();
        assert_eq!(got, [2.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_swapped_pair_names_the_layer_that_failed() {
        let mut s = Sequential::new()
            .with(Relu::new())
            .with(Pool2d::max(2, 2).unwrap());
        let x = Array2::<f32>::zeros((2, 4)).into_dyn(); // pooling needs [n, c, h, w]
        let e = apply(&mut s, x.view(), Mode::Train)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("layer 1: maxpool2d"), "{e}");
        let x = ndarray::Array4::<f32>::zeros((1, 1, 2, 2)).into_dyn();
        s.run(x.view(), Mode::Train).unwrap();
        let wrong = ndarray::Array4::<f32>::zeros((1, 1, 2, 2)).into_dyn(); // the input's shape, not y's
        let e = s
            .run_backward(x.view(), wrong.view())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("layer 0: relu"), "{e}");
    }

    /// A shape `[n, c, h, w]`, a window, a stride, values for `x` and for `dy`.
    type PoolCase = ((usize, usize, usize, usize), usize, usize, Vec<i8>, Vec<i8>);

    /// A `[n, c, h, w]` shape, a window and a stride, and values on a coarse grid (many
    /// ties, zeros and negatives) for `x` and for as many output gradients as there could be.
    fn pool_case() -> impl proptest::strategy::Strategy<Value = PoolCase> {
        use proptest::prelude::*;
        (
            1usize..=3,
            1usize..=3,
            3usize..=7,
            3usize..=7,
            1usize..=3,
            1usize..=3,
        )
            .prop_flat_map(|(n, c, h, w, k, s)| {
                let len = n * c * h * w;
                let grid = proptest::collection::vec(-6i8..=6, len);
                (Just((n, c, h, w)), Just(k), Just(s), grid.clone(), grid)
            })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        /// The stack's order gives the values of the listed order: outputs and every
        /// input gradient, with overlapping windows and ties.
        #[test]
        fn pool_first_agrees_with_the_listed_order((shape, k, stride, xs, gs) in pool_case()) {
            let half = |v: &i8| f32::from(*v) * 0.5;
            let x = ndarray::Array4::from_shape_vec(shape, xs.iter().map(half).collect())
                .unwrap()
                .into_dyn();
            let mut s = Sequential::new()
                .with(Relu::new())
                .with(Pool2d::max(k, stride).unwrap())
                .with(Relu::new());
            let y_shape = s.output_shape(x.shape()).unwrap();
            let len = y_shape.iter().product();
            let dy = ndarray::ArrayD::from_shape_vec(y_shape, gs[..len].iter().map(half).collect())
                .unwrap();
            let (y, dx) = apply_backward(&mut s, x.view(), dy.view()).unwrap();
            let mut listed = relu_pool(k, stride);
            listed.push(Box::new(Relu::new()));
            let (want_y, want_dx) = listed_order(&mut listed, x.view(), dy.view());
            proptest::prop_assert_eq!(y, want_y);
            proptest::prop_assert_eq!(dx, want_dx); // == : a zero's sign may differ
        }
    }

    #[test]
    fn too_many_layers_are_refused() {
        let relu =
            || Box::new(crate::ActivationConfig(crate::activation::ReluFn)) as Box<dyn LayerConfig>;
        let ok = SequentialConfig::new((0..10).map(|_| relu()).collect());
        ok.validate().unwrap();
        let many = SequentialConfig::new((0..=limits::MAX_LAYERS).map(|_| relu()).collect());
        let e = many.validate().unwrap_err().to_string();
        assert!(e.contains("10000"), "{e}");
    }
}
