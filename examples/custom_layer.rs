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
//! kind, and predicts with the loaded model.
//!
//! ```sh
//! cargo run --release --example custom_layer
//! ```

use std::path::Path;

use anyhow::{Result, ensure};
use ndarray::{ArrayViewD, Axis, Ix2, Zip};
use nn::core::tensor::as_matrix;
use nn::core::{Buffer, Param, Rng, Tensor};
use nn::io::{
    CsvOptions, Metadata, Normalization, load_model, read_csv, save_model, split_indices,
};
use nn::layers::activation::sigmoid;
use nn::layers::{
    Attr, Context, Dense, DenseConfig, GradCheckConfig, Layer, LayerConfig, LayerSpec, Mode,
    Parameterized, Registry, Sequential, Slot, SoftmaxCrossEntropy, TensorSpec, check_layer,
};
use nn::optim::{Adam, AdamConfig, Data, Silent, TrainConfig, Trainer, evaluate};

type LResult<T> = nn::layers::Result<T>;

// ---- the layer: its parameter, forward, backward and configuration ------------------------

/// `y = x · σ(β·x)` on `[n, features]`, with a learnable `β` per feature.
#[derive(Debug)]
struct Swish {
    beta: Param,
}

impl Parameterized for Swish {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("beta", Slot::Param(&mut self.beta)); // optimizers and files find it by name
    }
}

impl Layer for Swish {
    fn forward(&mut self, x: ArrayViewD<f32>, y: &mut Buffer, _: Mode) -> LResult<()> {
        let x = as_matrix(x, "swish", Some(self.beta.len()))?;
        y.resize(&[x.nrows(), x.ncols()]);
        Zip::from(&mut y.view2_mut())
            .and(&x)
            .and_broadcast(&self.beta.vector())
            .for_each(|y, &x, &b| *y = x * sigmoid(b * x)); // y = x·σ(βx)
        Ok(())
    }

    fn backward(
        &mut self,
        x: ArrayViewD<f32>,
        _y: ArrayViewD<f32>,
        dy: ArrayViewD<f32>,
        dx: Option<&mut Buffer>,
    ) -> LResult<()> {
        let k = self.beta.len();
        let (x, dy) = (
            as_matrix(x, "swish", Some(k))?,
            as_matrix(dy, "swish", Some(k))?,
        );
        let mut dx = dx.map(|d| d.resized(&[x.nrows(), k]));
        let (b, g) = (
            self.beta.value.as_slice().unwrap(),
            self.beta.grad.as_slice_mut().unwrap(),
        );
        for (r, (x, dy)) in x.rows().into_iter().zip(dy.rows()).enumerate() {
            for j in 0..k {
                let s = sigmoid(b[j] * x[j]);
                let ds = s * (1.0 - s); // σ′(βx)
                g[j] += dy[j] * x[j] * x[j] * ds; // ∂E/∂β += ∂E/∂y·x²·σ′
                if let Some(dx) = dx.as_deref_mut() {
                    dx[r * k + j] = dy[j] * (s + b[j] * x[j] * ds); // ∂E/∂x = ∂E/∂y·(σ + βx·σ′)
                }
            }
        }
        Ok(())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(SwishConfig(self.beta.len()))
    }
}

/// What a Swish layer is: its width. Model files store it; the registry reads it back.
#[derive(Debug)]
struct SwishConfig(usize);

impl LayerConfig for SwishConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("swish").with("features", Attr::Int(self.0 as i64))
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
    fn new(features: usize, beta: f32) -> Self {
        Swish {
            beta: Param::new(Tensor::from_elem(vec![features], beta)),
        }
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

fn main() -> Result<()> {
    // 1. Check the gradients numerically, as the built-in layers are checked.
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
    let names = meta.class_names.unwrap_or_default();
    let after = after.into_dimensionality::<Ix2>()?;
    for (i, row) in after.rows().into_iter().enumerate() {
        let class = nn::optim::predicted_class(row);
        println!(
            "test row {i}: predicted {} (true {})",
            names[class],
            names[test.classes().unwrap()[i]]
        );
    }
    Ok(())
}
