//! A layer type of your own, outside the library crates: Swish with a learnable slope.
//!
//! ```text
//! forward    y = x · σ(β·x)                     β: one learnable slope per feature
//! backward   ∂y/∂x = σ(βx) + βx·σ(βx)·(1 − σ(βx))
//!            ∂y/∂β = x² · σ(βx)·(1 − σ(βx))
//!            ∂E/∂x = ∂E/∂y ⊙ ∂y/∂x,   ∂E/∂β_j = Σ_rows ∂E/∂y_j · ∂y_j/∂β_j
//! ```
//!
//! The example checks the layer's gradients numerically, trains it inside a `Sequential` on
//! the digits data, saves the model, loads it back through a registry that knows the new
//! kind, predicts with the loaded model, and exports it (safetensors keeps the layer's own
//! tensor names; ONNX has no Swish operator and refuses it by name).
//!
//! ```sh
//! cargo run --release --example custom_layer
//! ```

use std::path::Path;

use anyhow::{Result, ensure};
use ndarray::{ArrayViewD, Axis, Ix2};
use nn::core::tensor::as_matrix;
use nn::core::{Buffer, Param, Rng, Tensor, row_major};
use nn::io::{
    CsvOptions, Metadata, Normalization, load_model, read_csv, save_model, split_indices,
};
use nn::layers::activation::sigmoid;
use nn::layers::layer::check_backward;
use nn::layers::{
    Context, Dense, DenseConfig, GradCheckConfig, Layer, LayerConfig, LayerSpec, Mode, Registry,
    Sequential, Slot, SoftmaxCrossEntropy, TensorSpec, check_layer,
};
use nn::optim::{Adam, AdamConfig, Data, Silent, TrainConfig, Trainer, evaluate};

type LResult<T> = nn::layers::Result<T>;
type View<'a> = ArrayViewD<'a, f32>;

// ---- the layer: its parameter, forward, backward and configuration ------------------------

/// `y = x · σ(β·x)` on `[n, features]`; the field is `β`, one learnable slope per feature.
struct Swish(Param);

impl Layer for Swish {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("beta", Slot::Param(&mut self.0)); // optimizers and files find it by name
    }

    fn forward(&mut self, x: View, y: &mut Buffer, _: Mode) -> LResult<()> {
        let x = as_matrix(x, "swish", Some(self.0.len()))?;
        let (beta, y) = (&self.0.value, y.resized(x.shape()));
        for (k, ((_, j), &x)) in x.indexed_iter().enumerate() {
            y[k] = x * sigmoid(beta[j] * x); // y = x·σ(βx)
        }
        Ok(())
    }

    fn backward(&mut self, x: View, y: View, dy: View, dx: Option<&mut Buffer>) -> LResult<()> {
        let x = as_matrix(x, "swish", Some(self.0.len()))?;
        check_backward(|| "swish".into(), x.shape(), &y, &dy)?; // y and ∂E/∂y fit x
        let (dy, mut dx) = (row_major(&dy), dx.map(|d| d.resized(x.shape())));
        let Param { value: beta, grad } = &mut self.0;
        for (k, ((_, j), &x)) in x.indexed_iter().enumerate() {
            let s = sigmoid(beta[j] * x);
            let ds = s * (1.0 - s); // σ′(βx)
            grad[j] += dy[k] * x * x * ds; // ∂E/∂β += ∂E/∂y · x²·σ′(βx)
            if let Some(dx) = dx.as_deref_mut() {
                dx[k] = dy[k] * (s + beta[j] * x * ds); // ∂E/∂x = ∂E/∂y · (σ + βx·σ′)
            }
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(SwishConfig(self.0.len()))
    }
}

/// What a Swish layer is: its width. Model files store it; the registry reads it back.
struct SwishConfig(usize);

impl LayerConfig for SwishConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("swish").with("features", self.0)
    }
    fn tensors(&self) -> LResult<Vec<TensorSpec>> {
        Ok(vec![TensorSpec::param("beta", vec![self.0])])
    }
    fn build(&self, _: &mut Rng) -> LResult<Box<dyn Layer>> {
        Ok(Box::new(Swish::new(self.0, 1.0)))
    }
}

// ---- what the example needs besides the layer ----------------------------------------------

impl Swish {
    /// `features` slopes, all `β`.
    fn new(features: usize, beta: f32) -> Self {
        Swish(Param::new(Tensor::from_elem(vec![features], beta)))
    }
}

/// The reader the registry calls for kind `swish`: it checks the width before anything is
/// allocated for it (a model file may come from a stranger).
fn read_swish(spec: &LayerSpec, _: &Context<'_>) -> LResult<Box<dyn LayerConfig>> {
    spec.only(&["features"])?;
    let n = spec.usize("features")?;
    if n == 0 || n > nn::core::limits::MAX_PARAMETERS {
        return Err(spec.invalid(format!("features must be in 1..=2^26, got {n}")));
    }
    Ok(Box::new(SwishConfig(n)))
}

/// Checks, trains, saves, loads and uses the Swish layer (also run by
/// `tests/custom_layer_example.rs`).
pub fn main() -> Result<()> {
    // 1. Check the forward values by hand and the gradients numerically, as the built-in
    //    layers are checked: y = x·σ(βx) with β = 0.5 gives 2·σ(1) = 1.4621172 and
    //    −1·σ(−0.5) = −0.37754067.
    let x = ndarray::array![[2.0f32, -1.0]].into_dyn();
    let y = nn::layers::layer::apply(&mut Swish::new(2, 0.5), x.view(), Mode::Eval)?;
    let want = [1.4621172f32, -0.37754067];
    ensure!(
        y.iter().zip(want).all(|(y, w)| (y - w).abs() < 1e-6),
        "swish forward gave {y}, not {want:?}"
    );
    let mut rng = nn::core::seeded(1);
    let x = Tensor::from_shape_fn(vec![5, 7], |_| nn::core::rng::uniform(&mut rng, -2.0, 2.0));
    let mut probe = Swish::new(7, 0.8);
    let report = check_layer(&mut probe, x.view(), &GradCheckConfig::default())?;
    print!("{report}");
    ensure!(
        report.passed(),
        "the swish layer's backward disagrees with its forward"
    );

    // 2. Train it inside a Sequential on the digits data.
    let all = read_csv(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv"),
        &CsvOptions::classes("digit"),
    )?;
    let split = split_indices(all.len(), 0.0, 0.2, 3, all.classes())?;
    let (mut train, mut test) = (all.subset(&split.train), all.subset(&split.test));
    let norm = Normalization::fit_standardize(&train.x);
    norm.apply(&mut train.x)?;
    norm.apply(&mut test.x)?;
    let mut rng = nn::core::seeded(7);
    let mut model = Sequential::new()
        .with(Dense::new(&DenseConfig::new(64, 48), &mut rng)?)
        .with(Swish::new(48, 1.0))
        .with(Dense::new(&DenseConfig::new(48, 10), &mut rng)?);
    let mut loss = SoftmaxCrossEntropy::new();
    Trainer::new(TrainConfig::new(25, 32, 2e-3).seed(7))?.fit(
        &mut model,
        &mut loss,
        &mut Adam::new(AdamConfig::adam())?,
        &Data::new(train.x(), train.target())?,
        None,
        &mut Silent,
    )?;
    let test_data = Data::new(test.x(), test.target())?;
    let acc = evaluate(&mut model, &mut loss, &test_data, 512)?
        .accuracy
        .unwrap_or(0.0);
    println!("trained {} — held-out accuracy {acc:.4}", model.name());

    // 3. Save, then load back: the registry must know the new kind.
    let path = std::env::temp_dir().join(format!("custom-layer-{}.nnm", std::process::id()));
    let meta = Metadata {
        input_shape: vec![64],
        class_names: all.class_names.clone(),
        normalization: Some(norm),
        loss: "softmax_cross_entropy".into(),
        ..Default::default()
    };
    save_model(&path, &mut model, &meta)?;
    match load_model(&path, &Registry::new()) {
        Err(e) => println!("without registering: {e}"),
        Ok(_) => anyhow::bail!("an unregistered kind should not load"),
    }
    let mut registry = Registry::new();
    registry.register("swish", read_swish);
    let mut loaded = load_model(&path, &registry)?;
    std::fs::remove_file(&path)?;

    // 4. Predict with the loaded model: the same answers as the trained one.
    let first = test.x.slice_axis(Axis(0), (0..5).into()).to_owned();
    let before = model.run(first.view(), Mode::Eval)?.to_owned();
    let after = nn::layers::layer::apply(loaded.model.as_mut(), first.view(), Mode::Eval)?;
    ensure!(before == after, "the loaded model predicts differently");
    let names = meta.class_names.clone().unwrap_or_default();
    let after = after.into_dimensionality::<Ix2>()?;
    for (i, row) in after.rows().into_iter().enumerate() {
        let class = nn::optim::predicted_class(row);
        println!(
            "test row {i}: predicted {} (true {})",
            names[class],
            names[test.classes().unwrap()[i]]
        );
    }

    // 5. Interchange: in safetensors the Swish slope keeps its own name (PyTorch has no such
    //    module) and the export says so; ONNX has no Swish operator, so it is refused.
    let export = nn::io::torch::export_safetensors(&mut model, &meta)?;
    ensure!(
        export.notes.iter().any(|n| n.contains("layer `1` (swish)")),
        "the safetensors export should say the swish layer keeps its own names: {:?}",
        export.notes
    );
    match nn::io::onnx::export_onnx(&mut model, &meta) {
        Err(e) if e.to_string().contains("layer `1` is a `swish`") => println!("ONNX: {e}"),
        other => anyhow::bail!("ONNX export of a swish layer should be refused: {other:?}"),
    }
    Ok(())
}
