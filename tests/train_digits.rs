//! End to end on real data: read the digits CSV, split, standardise, train, evaluate.

use std::path::Path;

use nn::io::{CsvOptions, Normalization, read_csv, split_indices};
use nn::layers::{Dense, DenseConfig, Layer, Relu, Sequential, Slot, SoftmaxCrossEntropy};
use nn::optim::{Data, Sgd, SgdConfig, Silent, TrainConfig, Trainer, evaluate};

fn run(seed: u64) -> (f32, Vec<u32>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/digits.csv");
    let all = read_csv(&path, &CsvOptions::classes("digit")).unwrap();
    assert_eq!((all.len(), all.input_shape()), (1797, &[64][..]));
    let split = split_indices(all.len(), 0.0, 0.2, seed, all.classes()).unwrap();
    let (mut train, mut test) = (all.subset(&split.train), all.subset(&split.test));
    let norm = Normalization::fit_standardize(&train.x);
    norm.apply(&mut train.x).unwrap();
    norm.apply(&mut test.x).unwrap();

    let mut rng = nn::core::seeded(seed);
    let mut model = Sequential::new()
        .with(Dense::new(&DenseConfig::new(64, 32), &mut rng).unwrap())
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(32, 10), &mut rng).unwrap());
    let mut loss = SoftmaxCrossEntropy::new();
    let mut sgd = Sgd::new(SgdConfig::plain().momentum(0.9)).unwrap();
    let train_data = Data::new(train.x(), train.target()).unwrap();
    Trainer::new(TrainConfig::new(15, 32, 0.05).seed(seed))
        .unwrap()
        .fit(
            &mut model,
            &mut loss,
            &mut sgd,
            &train_data,
            None,
            &mut Silent,
        )
        .unwrap();
    let eval = evaluate(
        &mut model,
        &mut loss,
        &Data::new(test.x(), test.target()).unwrap(),
        256,
    )
    .unwrap();
    let mut bits = Vec::new();
    model.visit(&mut |_, s| {
        if let Slot::Param(p) = s {
            bits.extend(p.value.iter().map(|v| v.to_bits()));
        }
    });
    (eval.accuracy.unwrap(), bits)
}

#[test]
fn digits_mlp_generalises_and_is_reproducible() {
    let (acc, w1) = run(11);
    assert!(acc >= 0.93, "held-out accuracy {acc}");
    let (acc2, w2) = run(11);
    assert_eq!(acc, acc2);
    assert!(w1 == w2, "same seed must give bit-identical weights");
}
