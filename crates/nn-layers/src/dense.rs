//! Fully connected (dense) layer: every output neuron sees every input.
//!
//! One neuron computes `y = w·x + b`; a layer of `n_out` neurons over a batch `X` of `n`
//! rows computes, with the weight stored destination-first (`W[j, i] = w_ji`, the weight
//! from input `i` to neuron `j`, shape `[n_out, n_in]`):
//!
//! ```text
//! forward     Y = X·Wᵀ + b                 X: [n, n_in]   W: [n_out, n_in]   Y: [n, n_out]
//!
//! backward    ∂E/∂W = dYᵀ·X                [n_out, n_in]   (Σ over the batch of δ_j·x_i)
//!             ∂E/∂b = Σ_rows dY            [n_out]         (column sums)
//!             ∂E/∂X = dY·W                 [n, n_in]       (what earlier layers receive)
//! ```
//!
//! `dY = ∂E/∂Y` holds the `δ` terms of the derivation, one row per sample. The activation
//! is a separate layer, so `Dense` is the affine part `w·x + b` alone.
//!
//! All three products go through GEMM into the buffers the network hands the layer, and
//! parameter gradients are accumulated in place (`β = 1`): a training step allocates nothing
//! once the buffers have grown to the batch size. `∂E/∂X` is computed only when asked (not
//! for the first layer of a network).
//!
//! In [`Mode::Eval`] on native targets, an input that is mostly zeros (an image on a blank
//! background, one-hot features, a ReLU's output) going into a layer of more than
//! [`nn_core::skip_zeros::MIN_WIDTH`] neurons is multiplied by [`nn_core::skip_zeros`],
//! which leaves its zeros out and starts each sum at the bias:
//! `y_i = b + Σ_{k : x_ik ≠ 0} x_ik · Wᵀ[k, :]`. That kernel reads `Wᵀ` row by row, so the
//! layer keeps a transposed copy of `W`, made at the first such call and dropped whenever
//! [`Layer::visit`] hands the weight out (to an optimizer or a loader).
//!
//! Before that, an evaluation batch of at least [`nn_core::amx::MIN_ROWS`] rows into at
//! least [`nn_core::amx::MIN_WIDTH`] neurons goes, on CPUs with AMX tiles, to
//! [`nn_core::amx`], whatever its zeros: each f32 is split into three bfloat16 parts and
//! the six largest part products are summed in f32, which agrees with the f32 product to
//! rounding at several times its speed. The layer keeps `W`'s parts laid out for the tiles,
//! made and dropped as the transposed copy is.

use ndarray::{ArrayView2, ArrayViewD};
use nn_core::tensor::as_matrix;
use nn_core::{Buffer, Init, Param, Rng, amx, matmul_into, ops, skip_zeros};
use serde::{Deserialize, Serialize};

use crate::config::{Context, LayerConfig, TensorSpec, checked_output, ensure, param_elements};
use crate::error::Result;
use crate::layer::{Layer, Mode, Slot, check_backward};
use crate::registry::parse_init;
use crate::spec::{Attr, LayerSpec};

/// Configuration of a [`Dense`] layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DenseConfig {
    /// Input features per sample.
    pub n_in: usize,
    /// Output features (neurons).
    pub n_out: usize,
    /// Whether the layer has a bias `b`.
    pub bias: bool,
    /// Weight initialiser (He uniform by default).
    pub init: Init,
    /// Bias initialiser (zeros by default).
    pub bias_init: Init,
}

impl DenseConfig {
    /// `n_in → n_out` with a bias, He-uniform weights and zero bias.
    pub fn new(n_in: usize, n_out: usize) -> Self {
        DenseConfig {
            n_in,
            n_out,
            bias: true,
            init: Init::HeUniform,
            bias_init: Init::Zeros,
        }
    }

    /// With or without a bias.
    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// With another weight initialiser.
    pub fn with_init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Checks the widths: both positive, the weight within the parameter limit.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) or a limit error naming the layer.
    pub fn validate(&self) -> Result<()> {
        ensure(self.n_in > 0 && self.n_out > 0, "dense", || {
            format!(
                "widths must be positive, got {} → {}",
                self.n_in, self.n_out
            )
        })?;
        param_elements(
            || format!("{} weight", self.name()),
            &[self.n_out, self.n_in],
        )?;
        Ok(())
    }

    /// Reads `n_in` (inferred from a `[n, features]` input when absent), `n_out`, `bias`
    /// (default true) and `init` (default `he_uniform`), and validates them.
    ///
    /// # Errors
    /// [`Error::Spec`](crate::Error::Spec) for a missing, unknown or ill-typed attribute; as
    /// [`DenseConfig::validate`].
    pub fn from_spec(spec: &LayerSpec, ctx: &Context<'_>) -> Result<Self> {
        spec.only(&["n_in", "n_out", "bias", "init"])?;
        let mut cfg = DenseConfig::new(
            ctx.width(spec, "n_in", &[2], "[n, features]")?,
            spec.usize("n_out")?,
        )
        .with_bias(spec.bool_or("bias", true)?);
        if let Some(name) = spec.str_opt("init")? {
            cfg.init = parse_init(name).ok_or_else(|| {
                spec.invalid(format!(
                    "unknown init `{}`; expected xavier_uniform, xavier_normal, he_uniform, he_normal or zeros",
                    nn_core::limits::excerpt(name)
                ))
            })?;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

impl LayerConfig for DenseConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("dense")
            .with("n_in", Attr::Int(self.n_in as i64))
            .with("n_out", Attr::Int(self.n_out as i64))
            .with("bias", Attr::Bool(self.bias))
    }

    fn name(&self) -> String {
        format!("dense({} → {})", self.n_in, self.n_out)
    }

    fn tensors(&self) -> Result<Vec<TensorSpec>> {
        self.validate()?;
        let mut t = vec![TensorSpec::param("weight", vec![self.n_out, self.n_in])];
        if self.bias {
            t.push(TensorSpec::param("bias", vec![self.n_out]));
        }
        Ok(t)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        check_input(self.n_in, input, || self.name())?;
        checked_output(|| self.name(), vec![input[0], self.n_out])
    }

    fn build(&self, rng: &mut Rng) -> Result<Box<dyn Layer>> {
        Ok(Box::new(Dense::new(self, rng)?))
    }
}

/// The input must be `[n, n_in]`; the error names both shapes.
fn check_input(n_in: usize, input: &[usize], name: impl FnOnce() -> String) -> Result<()> {
    if input.len() != 2 || input[1] != n_in {
        return Err(nn_core::Error::shape(
            format!("{} forward", name()),
            format!("[n, {n_in}]"),
            input,
        )
        .into());
    }
    Ok(())
}

/// A fully connected layer `Y = X·Wᵀ + b`.
///
/// # Example
///
/// Forward and backward by hand for one row `x = [1, 2]` and two neurons:
///
/// ```
/// use nn_core::ndarray::array;
/// use nn_layers::{Dense, Layer, layer::apply_backward};
///
/// let w = array![[1.0f32, -1.0], [0.5, 0.5]]; // [n_out, n_in]
/// let mut dense = Dense::from_weights(w.into_dyn(), Some(array![0.0f32, 1.0].into_dyn()))?;
/// let x = array![[1.0f32, 2.0]].into_dyn();
/// let dy = array![[1.0f32, 2.0]].into_dyn(); // ∂E/∂y from the layer above
/// let (y, dx) = apply_backward(&mut dense, x.view(), dy.view())?;
/// assert_eq!(y, array![[1.0 - 2.0, 0.5 + 1.0 + 1.0]].into_dyn()); // y = x·Wᵀ + b
/// assert_eq!(dx, array![[1.0 + 1.0, -1.0 + 1.0]].into_dyn()); // ∂E/∂x = dy·W
/// // ∂E/∂W = dyᵀ·x, ∂E/∂b = Σ dy
/// assert_eq!(dense.weight().grad, array![[1.0f32, 2.0], [2.0, 4.0]].into_dyn());
/// assert_eq!(dense.num_params(), 6);
/// # Ok::<(), nn_layers::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dense {
    n_in: usize,
    n_out: usize,
    weight: Param,
    bias: Option<Param>,
    /// `Wᵀ` (`[n_in, n_out]`, row-major) for the zero-skipping product; `None` until an
    /// evaluation pass needs it and again after every [`Layer::visit`].
    transposed: Option<skip_zeros::AlignedRows>,
    /// `W`'s bfloat16 parts laid out for AMX tiles; `None` until an evaluation pass large
    /// enough for [`amx::worth_using`] needs them and again after every [`Layer::visit`],
    /// `Some(None)` when `W` holds a value that cannot be split (then the other kernels run).
    packed: Option<Option<amx::Packed>>,
}

impl Dense {
    /// Builds the layer, drawing the initial weights from `rng`.
    ///
    /// # Errors
    /// As [`DenseConfig::validate`]: a zero width or a weight beyond the parameter limit.
    pub fn new(cfg: &DenseConfig, rng: &mut Rng) -> Result<Self> {
        cfg.validate()?;
        let w = cfg.init.tensor(&[cfg.n_out, cfg.n_in], rng)?;
        let b = if cfg.bias {
            Some(cfg.bias_init_tensor(rng)?)
        } else {
            None
        };
        Self::from_weights(w, b)
    }

    /// Builds the layer from given weights `w: [n_out, n_in]` and optional bias `b: [n_out]`.
    ///
    /// # Errors
    /// [`Error::Core`](crate::Error::Core) when the shapes do not fit.
    pub fn from_weights(w: nn_core::Tensor, b: Option<nn_core::Tensor>) -> Result<Self> {
        if w.ndim() != 2 || w.shape().contains(&0) {
            return Err(nn_core::Error::shape("dense weight", "[n_out, n_in]", w.shape()).into());
        }
        let (n_out, n_in) = (w.shape()[0], w.shape()[1]);
        if let Some(b) = &b
            && b.shape() != [n_out]
        {
            return Err(
                nn_core::Error::shape("dense bias", format!("[{n_out}]"), b.shape()).into(),
            );
        }
        Ok(Dense {
            n_in,
            n_out,
            weight: Param::new(w),
            bias: b.map(Param::new),
            transposed: None,
            packed: None,
        })
    }

    /// Input width.
    pub fn n_in(&self) -> usize {
        self.n_in
    }

    /// Output width.
    pub fn n_out(&self) -> usize {
        self.n_out
    }

    /// The weight `W: [n_out, n_in]`.
    pub fn weight(&self) -> &Param {
        &self.weight
    }

    /// The bias `b: [n_out]`, if the layer has one.
    pub fn bias(&self) -> Option<&Param> {
        self.bias.as_ref()
    }

    fn label(&self) -> String {
        format!("dense({} → {})", self.n_in, self.n_out)
    }

    /// `x` as the matrix `[n, n_in]`, or the error naming both shapes.
    fn rows<'a>(&self, x: ArrayViewD<'a, f32>) -> Result<ArrayView2<'a, f32>> {
        if x.ndim() == 2 && x.shape()[1] == self.n_in {
            return Ok(as_matrix(x, "dense", Some(self.n_in))?);
        }
        let op = format!("{} forward", self.label()); // only on the error path
        Ok(as_matrix(x, &op, Some(self.n_in))?)
    }

    fn dense_config(&self) -> DenseConfig {
        DenseConfig::new(self.n_in, self.n_out).with_bias(self.bias.is_some())
    }
}

impl DenseConfig {
    fn bias_init_tensor(&self, rng: &mut Rng) -> Result<nn_core::Tensor> {
        // Fan-based initialisers need a 2-D shape; a bias has none, so they mean zeros here.
        Ok(match self.bias_init {
            Init::Constant(_) | Init::Zeros => self.bias_init.tensor(&[self.n_out], rng)?,
            _ => nn_core::Tensor::zeros(vec![self.n_out]),
        })
    }
}

impl Layer for Dense {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        (self.transposed, self.packed) = (None, None); // the weight may change from here on
        f("weight", Slot::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", Slot::Param(b));
        }
    }

    fn forward(&mut self, x: ArrayViewD<'_, f32>, y: &mut Buffer, mode: Mode) -> Result<()> {
        let x = self.rows(x)?; // [n, n_in], or an error naming both shapes
        y.resize(&[x.nrows(), self.n_out]);
        let mut y = y.view2_mut();
        // not on wasm32, where the page's download counts more than this speed-up (the
        // kernel is then never referenced, so it is not linked in)
        let eval = cfg!(not(target_arch = "wasm32")) && mode == Mode::Eval;
        if eval && amx::worth_using(x.nrows(), self.n_out) {
            let w = &self.weight;
            if let Some(p) = self
                .packed
                .get_or_insert_with(|| amx::Packed::new(w.matrix().t()))
            {
                let b = self.bias.as_ref().map(|b| b.vector());
                return Ok(amx::matmul(x, p, b, &mut y)?); // Y = X·Wᵀ + b on AMX tiles
            }
        }
        if eval && skip_zeros::worth_skipping(x, self.n_out) {
            if self.transposed.is_none() {
                self.transposed = Some(skip_zeros::AlignedRows::transposed(self.weight.matrix())?);
            }
            let wt = self.transposed.as_ref().expect("made just above");
            let b = self.bias.as_ref().map(|b| b.vector());
            // Y = X·Wᵀ + b, zeros of X left out (each row's sums start at b)
            return Ok(skip_zeros::matmul_skip_zeros(x, wt, b, &mut y)?);
        }
        matmul_into(1.0, x, self.weight.matrix().t(), 0.0, &mut y)?; // Y = X·Wᵀ
        if let Some(b) = &self.bias {
            ops::add_row_broadcast(&mut y, b.vector())?; // Y += b (each row)
        }
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<'_, f32>,
        y: ArrayViewD<'_, f32>,
        dy: ArrayViewD<'_, f32>,
        dx: Option<&mut Buffer>,
    ) -> Result<()> {
        let x = self.rows(x)?;
        check_backward(|| self.label(), &[x.nrows(), self.n_out], &y, &dy)?;
        let dy = as_matrix(dy, "dense backward", Some(self.n_out))?;
        let mut dw = self.weight.grad_matrix_mut();
        matmul_into(1.0, dy.t(), x, 1.0, &mut dw)?; // ∂E/∂W += dYᵀ·X
        if let Some(b) = &mut self.bias {
            ops::add_column_sums(dy, &mut b.grad_vector_mut())?; // ∂E/∂b += Σ_rows dY
        }
        if let Some(dx) = dx {
            dx.resize(&[dy.nrows(), self.n_in]);
            matmul_into(1.0, dy, self.weight.matrix(), 0.0, &mut dx.view2_mut())?; // ∂E/∂X = dY·W
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(self.dense_config())
    }

    fn name(&self) -> String {
        self.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::layer::{apply, apply_backward};
    use ndarray::{Array1, Array2, array};
    use nn_core::{Tensor, seeded};

    fn layer() -> Dense {
        // W = [[1, 2, 3], [4, 5, 6]] (2 neurons, 3 inputs), b = [0.5, -1]
        Dense::from_weights(
            array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn(),
            Some(array![0.5f32, -1.0].into_dyn()),
        )
        .unwrap()
    }

    #[test]
    fn forward_by_hand() {
        // x = [1, 0, -1]: y₀ = 1·1 + 2·0 + 3·(−1) + 0.5 = −1.5; y₁ = 4 − 6 − 1 = −3
        // x = [2, 1, 0]:  y₀ = 2 + 2 + 0 + 0.5 = 4.5;            y₁ = 8 + 5 − 1 = 12
        let mut d = layer();
        let x = array![[1.0f32, 0.0, -1.0], [2.0, 1.0, 0.0]];
        let y = apply(&mut d, x.view().into_dyn(), Mode::Eval).unwrap();
        assert_eq!(y, array![[-1.5f32, -3.0], [4.5, 12.0]].into_dyn());
        // a transposed (strided) input gives the same rows
        let xt = array![[1.0f32, 2.0], [0.0, 1.0], [-1.0, 0.0]];
        assert_eq!(apply(&mut d, xt.t().into_dyn(), Mode::Eval).unwrap(), y);
    }

    #[test]
    fn mostly_zero_inputs_by_hand_and_after_the_weights_change() {
        // 18 neurons (wider than skip_zeros::MIN_WIDTH), 3 inputs: w_j = [1, j, −1], b_j = j/2
        // first row 1 of 3 non-zero: evaluation skips the zeros (nn_core::skip_zeros)
        // x = [0, 2, 0]: y_j = 2j + j/2;  x = [1, 0, −1]: y_j = 1 + 1 + j/2;  x = 0: y = b
        let n = 18;
        assert!(n > skip_zeros::MIN_WIDTH);
        let w = Array2::from_shape_fn((n, 3), |(j, i)| [1.0, j as f32, -1.0][i]);
        let b = Array1::from_shape_fn(n, |j| j as f32 / 2.0);
        let mut d = Dense::from_weights(w.into_dyn(), Some(b.into_dyn())).unwrap();
        let x = array![[0.0f32, 2.0, 0.0], [1.0, 0.0, -1.0], [0.0, 0.0, 0.0]];
        let want = Array2::from_shape_fn((3, n), |(r, j)| {
            let j = j as f32;
            [2.0 * j + j / 2.0, 2.0 + j / 2.0, j / 2.0][r]
        })
        .into_dyn();
        assert!(skip_zeros::worth_skipping(x.view(), n));
        let train = apply(&mut d, x.view().into_dyn(), Mode::Train).unwrap();
        assert_eq!(train, want);
        assert!(d.transposed.is_none(), "training multiplies densely");
        let eval = apply(&mut d, x.view().into_dyn(), Mode::Eval).unwrap();
        assert_eq!(eval, want);
        assert!(d.transposed.is_some(), "evaluation skipped the zeros");
        // an optimizer changes W through `visit`: the next evaluation uses the new W
        d.visit(&mut |name, slot| {
            if let (Slot::Param(p), "weight") = (slot, name) {
                p.value.fill(1.0);
            }
        });
        let y = apply(&mut d, x.slice(ndarray::s![..1, ..]).into_dyn(), Mode::Eval).unwrap();
        let want = Array2::from_shape_fn((1, n), |(_, j)| 2.0 + j as f32 / 2.0); // 2·1 + b_j
        assert_eq!(y, want.into_dyn());
    }

    #[test]
    fn large_evaluation_batches_by_hand_and_after_the_weights_change() {
        // 40 neurons (nn_core::amx::MIN_WIDTH or more), 3 inputs: w_j = [1, j, −1], b_j = j/2;
        // 64 rows (amx::MIN_ROWS) cycling through x = [0, 2, 0], [1, 0, −1], [3, 1, 1]:
        // y_j = 2j + j/2, 2 + j/2, 2 + j + j/2. Small integers and halves: every way of
        // summing them is exact, so the tiles (where the CPU has AMX) give these values too.
        let n = 40;
        assert!(n >= amx::MIN_WIDTH);
        let w = Array2::from_shape_fn((n, 3), |(j, i)| [1.0, j as f32, -1.0][i]);
        let b = Array1::from_shape_fn(n, |j| j as f32 / 2.0);
        let mut d = Dense::from_weights(w.into_dyn(), Some(b.into_dyn())).unwrap();
        let rows = [[0.0f32, 2.0, 0.0], [1.0, 0.0, -1.0], [3.0, 1.0, 1.0]];
        let x = Array2::from_shape_fn((amx::MIN_ROWS, 3), |(r, i)| rows[r % 3][i]);
        let want = Array2::from_shape_fn((amx::MIN_ROWS, n), |(r, j)| {
            let j = j as f32;
            [2.0 * j + j / 2.0, 2.0 + j / 2.0, 2.0 + j + j / 2.0][r % 3]
        })
        .into_dyn();
        assert_eq!(
            apply(&mut d, x.view().into_dyn(), Mode::Train).unwrap(),
            want
        );
        assert!(d.packed.is_none(), "training multiplies densely");
        assert_eq!(
            apply(&mut d, x.view().into_dyn(), Mode::Eval).unwrap(),
            want
        );
        assert_eq!(
            d.packed.is_some(),
            amx::available(),
            "the tiles where there are some"
        );
        // an optimizer changes W through `visit`: the next evaluation uses the new W
        d.visit(&mut |name, slot| {
            if let (Slot::Param(p), "weight") = (slot, name) {
                p.value.fill(1.0);
            }
        });
        let y = apply(&mut d, x.view().into_dyn(), Mode::Eval).unwrap();
        let want = Array2::from_shape_fn((amx::MIN_ROWS, n), |(r, j)| {
            [2.0, 0.0, 5.0][r % 3] + j as f32 / 2.0 // Σ x + b_j
        });
        assert_eq!(y, want.into_dyn());
        // a weight the tiles cannot take (NaN) leaves evaluation to the other products
        d.visit(&mut |name, slot| {
            if let (Slot::Param(p), "weight") = (slot, name) {
                p.value.as_slice_mut().unwrap()[0] = f32::NAN;
            }
        });
        let y = apply(&mut d, x.view().into_dyn(), Mode::Eval).unwrap();
        let y = y.into_dimensionality::<ndarray::Ix2>().unwrap();
        // neuron 0 sees the NaN in rows whose first input is not 0; the rest are as before
        assert!(y[[1, 0]].is_nan() && y[[2, 0]].is_nan());
        assert_eq!((y[[1, 1]], y[[2, 39]]), (0.5, 5.0 + 19.5));
        assert!(matches!(d.packed, Some(None) | None));
    }

    #[test]
    fn narrow_layers_multiply_densely_even_in_evaluation() {
        // 2 neurons, at most skip_zeros::MIN_WIDTH: the same values by the dense product
        // x = [0, 2, 0]: y₀ = 2·2 + 0.5 = 4.5;  y₁ = 5·2 − 1 = 9
        let mut d = layer();
        let x = array![[0.0f32, 2.0, 0.0]];
        let eval = apply(&mut d, x.view().into_dyn(), Mode::Eval).unwrap();
        assert_eq!(eval, array![[4.5f32, 9.0]].into_dyn());
        assert!(
            d.transposed.is_none(),
            "no copy of W for the skipping kernel"
        );
    }

    #[test]
    fn backward_by_hand() {
        // x rows [1, 0, −1], [2, 1, 0]; dY rows [1, 0], [0, 2]
        // ∂E/∂W = dYᵀ·X = [[1·x₀ + 0·x₁], [0·x₀ + 2·x₁]] = [[1, 0, −1], [4, 2, 0]]
        // ∂E/∂b = column sums of dY = [1, 2]
        // ∂E/∂X = dY·W: row 0 = 1·[1,2,3] = [1, 2, 3]; row 1 = 2·[4,5,6] = [8, 10, 12]
        let mut d = layer();
        let x = array![[1.0f32, 0.0, -1.0], [2.0, 1.0, 0.0]].into_dyn();
        let dy = array![[1.0f32, 0.0], [0.0, 2.0]].into_dyn();
        let (y, dx) = apply_backward(&mut d, x.view(), dy.view()).unwrap();
        assert_eq!(dx, array![[1.0f32, 2.0, 3.0], [8.0, 10.0, 12.0]].into_dyn());
        assert_eq!(
            d.weight().grad,
            array![[1.0f32, 0.0, -1.0], [4.0, 2.0, 0.0]].into_dyn()
        );
        assert_eq!(d.bias().unwrap().grad, array![1.0f32, 2.0].into_dyn());
        // without dx (the first layer of a network): the same parameter gradients
        let mut d2 = layer();
        d2.backward(x.view(), y.view(), dy.view(), None).unwrap();
        assert_eq!(d2.weight().grad, d.weight().grad);
        assert_eq!(d2.bias().unwrap().grad, d.bias().unwrap().grad);
        // a second backward accumulates: grads double
        d.backward(x.view(), y.view(), dy.view(), None).unwrap();
        assert_eq!(
            d.weight().grad,
            array![[2.0f32, 0.0, -2.0], [8.0, 4.0, 0.0]].into_dyn()
        );
        assert_eq!(d.bias().unwrap().grad, array![2.0f32, 4.0].into_dyn());
    }

    #[test]
    fn wrong_shapes_name_both_shapes() {
        let mut d = Dense::new(&DenseConfig::new(5, 2), &mut seeded(0)).unwrap();
        let x = Array2::<f32>::zeros((4, 3)).into_dyn();
        let e = apply(&mut d, x.view(), Mode::Train).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dense(5 → 2) forward: expected shape [n, 5], got [4, 3]"
        );
        let x = Array2::<f32>::zeros((1, 5)).into_dyn();
        let y = Array2::<f32>::zeros((1, 2)).into_dyn();
        let bad = Array2::<f32>::zeros((2, 2)).into_dyn();
        assert_eq!(
            d.backward(x.view(), y.view(), bad.view(), None)
                .unwrap_err()
                .to_string(),
            "dense(5 → 2) backward: dy: expected shape [1, 2], got [2, 2]"
        );
        assert_eq!(
            d.backward(x.view(), bad.view(), bad.view(), None)
                .unwrap_err()
                .to_string(),
            "dense(5 → 2) backward: y: expected shape [1, 2], got [2, 2]"
        );
    }

    #[test]
    fn without_bias_has_one_parameter() {
        let mut d = Dense::new(&DenseConfig::new(4, 3).with_bias(false), &mut seeded(1)).unwrap();
        let mut names = Vec::new();
        d.visit(&mut |n, _| names.push(n.to_string()));
        assert_eq!(names, ["weight"]);
        assert_eq!(d.num_params(), 12);
        assert_eq!(d.output_shape(&[7, 4]).unwrap(), vec![7, 3]);
        assert!(d.output_shape(&[7, 5]).is_err());
    }

    #[test]
    fn zero_width_is_a_config_error() {
        for (n_in, n_out) in [(0, 3), (3, 0)] {
            assert!(matches!(
                Dense::new(&DenseConfig::new(n_in, n_out), &mut seeded(0)),
                Err(Error::Config { .. })
            ));
        }
    }

    #[test]
    fn given_weights_must_be_a_matrix_with_a_matching_bias() {
        let d = layer();
        assert_eq!((d.n_in(), d.n_out()), (3, 2));
        let refused = |w: Vec<usize>, b: Option<Vec<usize>>| {
            Dense::from_weights(Tensor::zeros(w), b.map(Tensor::zeros))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused(vec![6], None),
            "dense weight: expected shape [n_out, n_in], got [6]"
        );
        assert_eq!(
            refused(vec![0, 3], None),
            "dense weight: expected shape [n_out, n_in], got [0, 3]"
        );
        assert_eq!(
            refused(vec![2, 3], Some(vec![3])),
            "dense bias: expected shape [2], got [3]"
        );
        // a rank-1 input is refused, not indexed past its one axis
        let mut d = layer();
        let e = apply(&mut d, Tensor::zeros(vec![3]).view(), Mode::Eval).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dense(3 → 2) forward: expected shape [n, 3], got [3]"
        );
    }

    #[test]
    fn a_constant_bias_initialiser_is_used_and_fan_based_ones_mean_zeros() {
        let cfg = DenseConfig {
            bias_init: Init::Constant(0.25),
            ..DenseConfig::new(3, 2)
        };
        let d = Dense::new(&cfg, &mut seeded(0)).unwrap();
        assert_eq!(d.bias().unwrap().values(), [0.25, 0.25]);
        let cfg = DenseConfig {
            bias_init: Init::HeUniform,
            ..DenseConfig::new(3, 2)
        };
        let d = Dense::new(&cfg, &mut seeded(0)).unwrap();
        assert_eq!(d.bias().unwrap().values(), [0.0, 0.0]);
    }
}
