//! Handwritten digits (8×8 images, 1,797 rows) with a small MLP.
//!
//! Holds out a stratified 20 % test split, standardises the 64 pixel features with
//! statistics fitted on the training rows only, trains `64 → 64 → ReLU → 10` with Adam and
//! early stopping on a validation split, and prints the held-out accuracy.
//!
//! ```sh
//! cargo run --release --example digits
//! ```

use std::path::Path;

use anyhow::Result;
use nn::io::{CsvOptions, Normalization, read_csv, split_indices};
use nn::layers::{Dense, DenseConfig, Relu, Sequential, SoftmaxCrossEntropy};
use nn::optim::{Adam, AdamConfig, Data, Monitor, Silent, TrainConfig, Trainer, evaluate};

fn main() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv");
    let all = read_csv(&path, &CsvOptions::classes("digit"))?;

    // 20 % test, 10 % validation, the rest to train; each part keeps the class mix
    let split = split_indices(all.len(), 0.1, 0.2, 7, all.classes())?;
    let (mut train, mut val, mut test) = (
        all.subset(&split.train),
        all.subset(&split.val),
        all.subset(&split.test),
    );
    let norm = Normalization::fit_standardize(&train.x); // fitted on training rows only
    for d in [&mut train, &mut val, &mut test] {
        norm.apply(&mut d.x)?;
    }
    println!(
        "{} training, {} validation, {} test rows",
        train.len(),
        val.len(),
        test.len()
    );

    let mut rng = nn::core::seeded(42);
    let mut model = Sequential::new()
        .with(Dense::new(&DenseConfig::new(64, 64), &mut rng)?)
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(64, 10), &mut rng)?);
    let mut loss = SoftmaxCrossEntropy::new();
    let mut adam = Adam::new(AdamConfig::adam())?;
    let cfg = TrainConfig::new(200, 32, 1e-3)
        .seed(42)
        .early_stopping(Monitor::ValLoss, 10);
    let history = Trainer::new(cfg)?.fit(
        &mut model,
        &mut loss,
        &mut adam,
        &Data::new(train.x(), train.target())?,
        Some(&Data::new(val.x(), val.target())?),
        &mut Silent,
    )?;
    println!(
        "stopped after {} epochs; best validation loss at epoch {}",
        history.epochs.len(),
        history.best_epoch.unwrap_or(0)
    );

    let eval = evaluate(
        &mut model,
        &mut loss,
        &Data::new(test.x(), test.target())?,
        512,
    )?;
    println!(
        "held-out test accuracy: {:.4} ({} rows)",
        eval.accuracy.unwrap_or(0.0),
        test.len()
    );
    if let Some(c) = &eval.confusion {
        print!("{}", c.display_with(all.class_names.as_deref()));
    }
    Ok(())
}
