//! Is a person a man or a woman, from weight and height? One neuron, `y = σ(w·x + b)`.
//!
//! The Davis data (200 people, measured weight in kg and height in cm) holds one real
//! data-entry error: a woman recorded as 166 kg and 57 cm, weight and height swapped. This
//! example finds it by its z-scores, then trains the same neuron twice — with the bad row
//! in the training data and without it — and compares both on the same held-out rows.
//!
//! ```sh
//! cargo run --release --example gender
//! ```

use std::path::Path;

use anyhow::Result;
use nn::io::{CsvOptions, Dataset, Normalization, read_csv, split_indices};
use nn::layers::{BceWithLogits, Dense, DenseConfig, Mode};
use nn::optim::{Data, Sgd, SgdConfig, Silent, TrainConfig, Trainer, evaluate};

/// Rows with a feature more than `limit` standard deviations from its mean.
fn outliers(d: &Dataset, limit: f32) -> Vec<usize> {
    let Normalization::Standardize { mean, std } = Normalization::fit_standardize(&d.x) else {
        unreachable!("fit_standardize returns Standardize")
    };
    (0..d.len())
        .filter(|&i| (0..mean.len()).any(|j| ((d.x[[i, j]] - mean[j]) / std[j]).abs() > limit))
        .collect()
}

/// Trains `y = σ(w·x + b)` on `train`, returns the neuron and the standardisation it used.
fn train_neuron(train: &Dataset) -> Result<(Dense, Normalization)> {
    let norm = Normalization::fit_standardize(&train.x);
    let mut x = train.x.clone();
    norm.apply(&mut x)?;
    let mut neuron = Dense::new(&DenseConfig::new(2, 1), &mut nn::core::seeded(1))?;
    let mut sgd = Sgd::new(SgdConfig::plain())?;
    let data = Data::new(x.view(), train.target())?;
    Trainer::new(TrainConfig::new(100, 16, 0.1).seed(1))?.fit(
        &mut neuron,
        &mut BceWithLogits::new(),
        &mut sgd,
        &data,
        None,
        &mut Silent,
    )?;
    Ok((neuron, norm))
}

fn accuracy(neuron: &mut Dense, norm: &Normalization, test: &Dataset) -> Result<f32> {
    let mut x = test.x.clone();
    norm.apply(&mut x)?;
    let e = evaluate(
        neuron,
        &mut BceWithLogits::new(),
        &Data::new(x.view(), test.target())?,
        256,
    )?;
    Ok(e.accuracy.unwrap_or(0.0))
}

fn main() -> Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/davis.csv");
    let all = read_csv(&path, &CsvOptions::classes("sex"))?; // classes: F = 0, M = 1
    let names = all.class_names.clone().unwrap_or_default();

    let bad = outliers(&all, 4.0);
    for &i in &bad {
        println!(
            "suspicious row {} (line {}): sex {}, weight {} kg, height {} cm — more than 4 σ from the mean",
            i + 1,
            i + 2,
            names[all.classes().unwrap()[i]],
            all.x[[i, 0]],
            all.x[[i, 1]]
        );
    }

    // Split the clean rows 75/25 (stratified); the suspicious rows only ever train.
    let clean: Vec<usize> = (0..all.len()).filter(|i| !bad.contains(i)).collect();
    let clean_set = all.subset(&clean);
    let split = split_indices(clean.len(), 0.0, 0.25, 3, clean_set.classes())?;
    let test = clean_set.subset(&split.test);
    let train_clean = clean_set.subset(&split.train);
    let with_bad: Vec<usize> = split
        .train
        .iter()
        .map(|&i| clean[i])
        .chain(bad.iter().copied())
        .collect();
    let train_dirty = all.subset(&with_bad);

    for (label, train) in [
        ("with the bad row", &train_dirty),
        ("without it", &train_clean),
    ] {
        let (mut neuron, norm) = train_neuron(train)?;
        let acc = accuracy(&mut neuron, &norm, &test)?;
        let w = &neuron.weight().value;
        println!(
            "trained {label:<17} on {} rows: held-out accuracy {acc:.3} ({} rows); w = [{:.3}, {:.3}], b = {:.3}",
            train.len(),
            test.len(),
            w[[0, 0]],
            w[[0, 1]],
            neuron.bias().map_or(0.0, |b| b.value[[0]])
        );
        for &i in &bad {
            let mut x = all.subset(&[i]).x;
            norm.apply(&mut x)?;
            let z = nn::layers::layer::apply(&mut neuron, x.view(), Mode::Eval)?[[0, 0]];
            let p_male = 1.0 / (1.0 + (-z).exp()); // σ(z)
            println!(
                "    the suspicious row reads as {} (P(M) = {p_male:.3})",
                names[usize::from(z > 0.0)]
            );
        }
    }
    Ok(())
}
