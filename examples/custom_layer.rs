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
use nn::core::{Buffer, Param, Rng, Tensor};
use nn::io::{
    CsvOptions, Metadata, Normalization, load_model, read_csv, save_model, split_indices,
};
use nn::layers::activation::sigmoid;
use nn::layers::layer::{require_forward, require_shape};
use nn::layers::{
    Attr, Context, Dense, DenseConfig, GradCheckConfig, Layer, LayerConfig, LayerSpec, Mode,
    Parameterized, Registry, Sequential, Slot, SoftmaxCrossEntropy, TensorSpec, check_layer,
};
use nn::optim::{Adam, AdamConfig, Data, Silent, TrainConfig, Trainer, evaluate};

/// `y = x · σ(β·x)` on `[n, features]`, with a learnable `β` per feature.
#[derive(Debug)]
struct Swish {
    beta: Param,
    x: Buffer,
    y: Buffer,
    dx: Buffer,
    ready: bool,
}

impl Swish {
    fn new(features: usize, beta: f32) -> Self {
        Swish {
            beta: Param::new(Tensor::from_elem(vec![features], beta)),
            x: Buffer::new(),
            y: Buffer::new(),
            dx: Buffer::new(),
            ready: false,
        }
    }

    fn features(&self) -> usize {
        self.beta.len()
    }
}

/// What a Swish layer is: its width. Model files store it, and the registry reads it back.
#[derive(Debug)]
struct SwishConfig {
    features: usize,
}

impl SwishConfig {
    /// The reader the registry calls for kind `swish`; it checks the width before anything
    /// is allocated for it.
    fn from_spec(spec: &LayerSpec, _: &Context<'_>) -> nn::layers::Result<Box<dyn LayerConfig>> {
        spec.only(&["features"])?;
        let features = spec.usize("features")?;
        if features == 0 || features > nn::core::limits::MAX_PARAMETERS {
            return Err(spec.invalid(format!("features must be in 1..=2^26, got {features}")));
        }
        Ok(Box::new(SwishConfig { features }))
    }
}

impl LayerConfig for SwishConfig {
    fn spec(&self) -> LayerSpec {
        LayerSpec::new("swish").with("features", Attr::Int(self.features as i64))
    }
    fn name(&self) -> String {
        format!("swish({})", self.features)
    }
    fn tensors(&self) -> nn::layers::Result<Vec<TensorSpec>> {
        Ok(vec![TensorSpec::param("beta", vec![self.features])])
    }
    fn output_shape(&self, input: &[usize]) -> nn::layers::Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn build(&self, _: &mut Rng) -> nn::layers::Result<Box<dyn Layer>> {
        Ok(Box::new(Swish::new(self.features, 1.0)))
    }
}

impl Parameterized for Swish {
    fn visit<'a>(&'a mut self, f: &mut dyn FnMut(&str, Slot<'a>)) {
        f("beta", Slot::Param(&mut self.beta));
    }
}

impl Layer for Swish {
    fn forward<'s>(
        &'s mut self,
        x: ArrayViewD<'_, f32>,
        mode: Mode,
    ) -> nn::layers::Result<ArrayViewD<'s, f32>> {
        let expected = [x.shape().first().copied().unwrap_or(0), self.features()];
        require_shape(|| "swish forward".into(), &expected, x.shape())?;
        self.y.resize(x.shape());
        let beta = self
            .beta
            .value
            .view()
            .into_dimensionality::<ndarray::Ix1>()
            .expect("1-D");
        let mut y = self.y.view2_mut();
        for (mut y, x) in y.rows_mut().into_iter().zip(x.rows()) {
            Zip::from(&mut y)
                .and(&x)
                .and(&beta)
                .for_each(|y, &x, &b| *y = x * sigmoid(b * x)); // y = x·σ(βx)
        }
        self.ready = mode == Mode::Train;
        if self.ready {
            self.x.assign(x);
        }
        Ok(self.y.view())
    }

    fn backward<'s>(
        &'s mut self,
        dy: ArrayViewD<'_, f32>,
    ) -> nn::layers::Result<ArrayViewD<'s, f32>> {
        require_forward(self.ready, || "swish".into())?;
        require_shape(|| "swish backward".into(), self.y.shape(), dy.shape())?;
        let dy = dy.into_dimensionality::<Ix2>().expect("checked shape");
        self.dx.resize(dy.shape());
        let beta = self
            .beta
            .value
            .view()
            .into_dimensionality::<ndarray::Ix1>()
            .expect("1-D");
        let mut dbeta = self
            .beta
            .grad
            .view_mut()
            .into_dimensionality::<ndarray::Ix1>()
            .expect("1-D");
        let x = self.x.view2();
        let mut dx = self.dx.view2_mut();
        for ((mut dx, dy), x) in dx.rows_mut().into_iter().zip(dy.rows()).zip(x.rows()) {
            Zip::from(&mut dx)
                .and(&dy)
                .and(&x)
                .and(&beta)
                .and(&mut dbeta)
                .for_each(|dx, &dy, &x, &b, db| {
                    let s = sigmoid(b * x);
                    let ds = s * (1.0 - s); // σ′(βx)
                    *dx = dy * (s + b * x * ds); // ∂E/∂x = ∂E/∂y·(σ + βx·σ′)
                    *db += dy * x * x * ds; // ∂E/∂β += ∂E/∂y·x²·σ′
                });
        }
        Ok(self.dx.view())
    }

    fn config(&self) -> Box<dyn LayerConfig> {
        Box::new(SwishConfig {
            features: self.features(),
        })
    }
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
    Trainer::new(TrainConfig::new(25, 32).seed(7))?.fit(
        &mut model,
        &mut loss,
        &mut Adam::new(AdamConfig::adam(2e-3))?,
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
    registry.register("swish", SwishConfig::from_spec);
    let mut loaded = load_model(&path, &registry)?;
    std::fs::remove_file(&path)?;

    // 4. Predict with the loaded model: the same answers as the trained one.
    let first = test.x.slice_axis(Axis(0), (0..5).into()).to_owned();
    let before = model.forward(first.view(), Mode::Eval)?.to_owned();
    let after = loaded.model.forward(first.view(), Mode::Eval)?.to_owned();
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
