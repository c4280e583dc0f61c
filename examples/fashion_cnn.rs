//! Fashion-MNIST with a small convolutional network: the W3 workload of the benchmarks.
//!
//! ```text
//! [n, 1, 28, 28] → conv 8×5×5 → ReLU → max-pool 2 → [n, 8, 12, 12]
//!                → conv 16×5×5 → ReLU → max-pool 2 → [n, 16, 4, 4] → flatten → dense 256 → 10
//! ```
//!
//! Softmax + cross-entropy, SGD with momentum 0.9 (η = 0.05), batches of 64, 3 epochs,
//! He-uniform weights, zero biases, pixels scaled to [0, 1].
//!
//! ```sh
//! sudo apt-get install dataset-fashion-mnist     # the IDX files, once
//! cargo run --release --example fashion_cnn [DATA_DIR]
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use nn::core::Rng;
use nn::io::{Normalization, load_idx_dir};
use nn::layers::{
    Conv2d, Conv2dConfig, Dense, DenseConfig, Flatten, MaxPool2d, Relu, Sequential,
    SoftmaxCrossEntropy,
};
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

fn lenet(rng: &mut Rng) -> Result<Sequential> {
    Ok(Sequential::new()
        .with(Conv2d::new(&Conv2dConfig::new(1, 8, 5), rng)?) // [n, 8, 24, 24]
        .with(Relu::new())
        .with(MaxPool2d::max(2, 2)?) // [n, 8, 12, 12]
        .with(Conv2d::new(&Conv2dConfig::new(8, 16, 5), rng)?) // [n, 16, 8, 8]
        .with(Relu::new())
        .with(MaxPool2d::max(2, 2)?) // [n, 16, 4, 4]
        .with(Flatten::new()) // [n, 256], channel-major
        .with(Dense::new(&DenseConfig::new(256, 10), rng)?))
}

fn main() -> Result<()> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/datasets/fashion-mnist"));
    let load = |part| -> Result<_> {
        let mut d = load_idx_dir(&dir, part)
            .with_context(|| "install the data with `apt-get install dataset-fashion-mnist`")?;
        Normalization::Scale {
            factor: 1.0 / 255.0,
        }
        .apply(&mut d.x)?; // pixels → [0, 1]; images stay [n, 1, 28, 28]
        Ok(d)
    };
    let (train, test) = (load("train")?, load("t10k")?);
    let mut model = lenet(&mut nn::core::seeded(42))?;
    let mut loss = SoftmaxCrossEntropy::new();
    let mut sgd = Sgd::new(SgdConfig::plain().momentum(0.9))?;
    let history = Trainer::new(TrainConfig::new(3, 64, 0.05).seed(42))?.fit(
        &mut model,
        &mut loss,
        &mut sgd,
        &Data::new(train.x(), train.target())?,
        None,
        &mut PrintEpochs,
    )?;
    let eval = evaluate(
        &mut model,
        &mut loss,
        &Data::new(test.x(), test.target())?,
        1000,
    )?;
    let mut secs: Vec<f64> = history.epochs.iter().map(|e| e.seconds).collect();
    secs.sort_by(f64::total_cmp);
    println!(
        "test accuracy {:.4}  median {:.3} s/epoch",
        eval.accuracy.unwrap_or(0.0),
        secs[secs.len() / 2]
    );
    Ok(())
}
