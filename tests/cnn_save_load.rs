//! A small CNN with batch norm and dropout: trained in Train mode, evaluated in Eval mode,
//! saved and loaded — the loaded model predicts exactly what the trained one did, Eval
//! predictions do not depend on the rest of the batch, and dropout is off in Eval.

use ndarray::{Axis, IxDyn};
use nn::core::{Tensor, rng, seeded};
use nn::io::{Metadata, load_model, save_model};
use nn::layers::layer::apply;
use nn::layers::{
    BatchNorm, Conv2d, Conv2dConfig, Dense, DenseConfig, Dropout, Flatten, Layer, MaxPool2d, Mode,
    Registry, Relu, Sequential, SoftmaxCrossEntropy,
};
use nn::optim::{Adam, AdamConfig, Data, Silent, TrainConfig, Trainer, evaluate};

/// 8×8 images of a bright horizontal (class 0) or vertical (class 1) bar at a random place,
/// on noise.
fn bars(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut r = seeded(seed);
    let mut x = Tensor::zeros(IxDyn(&[n, 1, 8, 8]));
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let class = rng::below(&mut r, 2);
        let at = 1 + rng::below(&mut r, 6);
        for a in 0..8 {
            for b in 0..8 {
                let on = if class == 0 { a == at } else { b == at };
                x[[i, 0, a, b]] =
                    if on { 1.0 } else { 0.0 } + 0.3 * rng::uniform(&mut r, -1.0, 1.0);
            }
        }
        y.push(class);
    }
    (x, y)
}

fn cnn() -> Sequential {
    let mut r = seeded(4);
    Sequential::new()
        .with(Conv2d::new(&Conv2dConfig::new(1, 4, 3).padding(1), &mut r).unwrap())
        .with(BatchNorm::with_features(4).unwrap())
        .with(Relu::new())
        .with(MaxPool2d::max(2, 2).unwrap())
        .with(Flatten::new())
        .with(Dropout::new(0.3, 11).unwrap())
        .with(Dense::new(&DenseConfig::new(64, 2), &mut r).unwrap())
}

#[test]
fn trained_cnn_round_trips_through_a_file() {
    let (x, y) = bars(256, 1);
    let mut model = cnn();
    let mut loss = SoftmaxCrossEntropy::new();
    Trainer::new(TrainConfig::new(8, 16, 0.01).seed(2))
        .unwrap()
        .fit(
            &mut model,
            &mut loss,
            &mut Adam::new(AdamConfig::adam()).unwrap(),
            &Data::new(x.view(), nn::layers::Target::Classes(&y)).unwrap(),
            None,
            &mut Silent,
        )
        .unwrap();
    let (tx, ty) = bars(200, 9);
    let test = Data::new(tx.view(), nn::layers::Target::Classes(&ty)).unwrap();
    let acc = evaluate(&mut model, &mut loss, &test, 64)
        .unwrap()
        .accuracy
        .unwrap();
    assert!(acc > 0.9, "bars are easy; accuracy {acc}");

    // Eval is deterministic (no dropout) and per-row (running statistics, not the batch's)
    let full = model.run(tx.view(), Mode::Eval).unwrap().to_owned();
    let again = model.run(tx.view(), Mode::Eval).unwrap().to_owned();
    assert_eq!(full, again);
    let one = model
        .run(tx.slice_axis(Axis(0), (3..4).into()), Mode::Eval)
        .unwrap()
        .to_owned();
    for (a, b) in one.iter().zip(full.index_axis(Axis(0), 3).iter()) {
        assert!(
            (a - b).abs() < 1e-5,
            "row 3 alone {one} vs in the batch {}",
            full.index_axis(Axis(0), 3)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cnn.nnm");
    save_model(
        &path,
        &mut model,
        &Metadata {
            input_shape: vec![1, 8, 8],
            loss: "softmax_cross_entropy".into(),
            ..Default::default()
        },
    )
    .unwrap();
    let mut loaded = load_model(&path, &Registry::new()).unwrap();
    let after = apply(loaded.model.as_mut(), tx.view(), Mode::Eval).unwrap();
    assert_eq!(after, full, "the loaded model must predict bit-identically");
    assert_eq!(loaded.model.config().spec(), model.config().spec());

    // Train mode is not deterministic in that way: dropout and batch statistics change it
    let train_out = apply(loaded.model.as_mut(), tx.view(), Mode::Train).unwrap();
    assert_ne!(train_out, full);
}
