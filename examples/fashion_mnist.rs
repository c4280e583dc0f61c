//! Fashion-MNIST with a small MLP: the W1 workload of the benchmarks.
//!
//! `784 → Dense 128 → ReLU → Dense 10`, softmax + cross-entropy, plain SGD (η = 0.1),
//! batches of 64, 5 epochs, He-uniform weights and zero biases, pixels scaled to [0, 1].
//!
//! ```sh
//! sudo apt-get install dataset-fashion-mnist     # the IDX files, once
//! cargo run --release --example fashion_mnist [DATA_DIR]
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use nn::io::{FASHION_MNIST_CLASSES, Normalization, load_idx_dir};
use nn::layers::{Dense, DenseConfig, Relu, Sequential, SoftmaxCrossEntropy};
use nn::optim::{
    Data, EpochEnd, Observer, ObserverError, Sgd, SgdConfig, TrainConfig, Trainer, evaluate,
};

struct PrintEpochs;
impl Observer for PrintEpochs {
    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        let r = end.record;
        println!(
            "epoch {}  train loss {:.4}  train acc {:.4}  {:.3} s",
            r.epoch,
            r.train_loss,
            r.train_accuracy.unwrap_or(f32::NAN),
            r.seconds
        );
        Ok(())
    }
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    let load = |part| -> Result<_> {
        let mut d = load_idx_dir(&dir, part)
            .with_context(|| "install the data with `apt-get install dataset-fashion-mnist`")?
            .flattened(); // [n, 1, 28, 28] → [n, 784]
        Normalization::Scale {
            factor: 1.0 / 255.0,
        }
        .apply(&mut d.x)?; // pixels → [0, 1]
        Ok(d)
    };
    let (train, test) = (load("train")?, load("t10k")?);
    println!("{} training and {} test images", train.len(), test.len());

    let mut rng = nn::core::seeded(42);
    let mut model = Sequential::new()
        .with(Dense::new(&DenseConfig::new(784, 128), &mut rng)?)
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(128, 10), &mut rng)?);
    let mut loss = SoftmaxCrossEntropy::new();
    let mut sgd = Sgd::new(SgdConfig::plain())?;
    let mut trainer = Trainer::new(TrainConfig::new(5, 64, 0.1).seed(42))?;

    let train_data = Data::new(train.x(), train.target())?;
    let history = trainer.fit(
        &mut model,
        &mut loss,
        &mut sgd,
        &train_data,
        None,
        &mut PrintEpochs,
    )?;

    let test_data = Data::new(test.x(), test.target())?;
    let eval = evaluate(&mut model, &mut loss, &test_data, 1000)?;
    let mut secs: Vec<f64> = history.epochs.iter().map(|e| e.seconds).collect();
    secs.sort_by(f64::total_cmp);
    println!(
        "test loss {:.4}  test accuracy {:.4}  median {:.3} s/epoch",
        eval.loss,
        eval.accuracy.unwrap_or(0.0),
        secs[secs.len() / 2]
    );
    let names: Vec<String> = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Some(c) = &eval.confusion {
        print!("{}", c.display_with(Some(&names)));
    }
    Ok(())
}
