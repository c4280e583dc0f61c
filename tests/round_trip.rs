//! Everything the toolkit writes, it reads back: random architectures of up to thousands of
//! layers and thousands of classes, with random names and statistics, are saved as model
//! files and checkpoints and loaded again with identical predictions and metadata.

use nn::core::{TensorData, seeded};
use nn::io::{Metadata, Normalization, checkpoint_from_bytes, model_bytes, model_from_bytes};
use nn::layers::{
    BatchNorm, Dense, DenseConfig, Dropout, Identity, Layer, LeakyRelu, Mode, Registry, Relu,
    Sequential, Tanh,
};
use proptest::prelude::*;

/// A layer of kind `pick` on rows of width `w`.
fn layer(pick: u8, w: usize, seed: u64) -> Box<dyn Layer> {
    let mut rng = seeded(seed);
    match pick % 7 {
        0 => Box::new(Relu::new()),
        1 => Box::new(Identity::new()),
        2 => Box::new(Tanh::new()),
        3 => Box::new(Dense::new(&DenseConfig::new(w, w), &mut rng).unwrap()),
        4 => Box::new(BatchNorm::with_features(w).unwrap()),
        5 => Box::new(Dropout::new(0.25, seed).unwrap()),
        _ => Box::new(LeakyRelu::leaky(0.05).unwrap()),
    }
}

/// Names that stress the encoding: empty-ish, long, unicode, commas and quotes.
fn name(i: usize, style: u8) -> String {
    match style % 4 {
        0 => format!("c{i}"),
        1 => format!("クラス{i}"),
        2 => format!("\"{i}, with a comma\""),
        _ => format!("{i}{}", "x".repeat(200)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_models_save_and_load(
        kinds in prop::collection::vec(any::<u8>(), 1..3000),
        w in 1usize..6,
        classes in 2usize..4000,
        style in any::<u8>(),
        seed in any::<u64>(),
    ) {
        let mut net = Sequential::new();
        for (i, k) in kinds.iter().enumerate() {
            net.push_boxed(layer(*k, w, seed ^ i as u64));
        }
        net.push(Dense::new(&DenseConfig::new(w, classes), &mut seeded(seed)).unwrap());
        let meta = Metadata {
            input_shape: vec![w],
            class_names: Some((0..classes).map(|i| name(i, style)).collect()),
            feature_names: (0..w).map(|i| name(i, style.wrapping_add(1))).collect(),
            normalization: Some(Normalization::Standardize {
                mean: (0..w).map(|i| i as f32 - 1.5).collect(),
                std: (0..w).map(|i| 0.5 + i as f32).collect(),
            }),
            label: Some(name(7, style)),
            loss: "softmax_cross_entropy".into(),
            training: None,
        };
        let bytes = model_bytes(&mut net, &meta).unwrap();
        let mut loaded = model_from_bytes(&bytes, std::path::Path::new("m"), &Registry::new()).unwrap();
        prop_assert_eq!(&loaded.metadata, &meta);
        prop_assert_eq!(loaded.model.config().spec(), net.config().spec());
        let x = ndarray::Array2::from_shape_fn((3, w), |(i, j)| (i as f32 - j as f32) * 0.3).into_dyn();
        let want = net.run(x.view(), Mode::Eval).unwrap().to_owned();
        let got = nn::layers::layer::apply(loaded.model.as_mut(), x.view(), Mode::Eval).unwrap();
        prop_assert_eq!(want, got);
    }
}

#[test]
fn a_checkpoint_with_a_long_history_loads() {
    // a state the size of a long run's: 100,000 records of a few numbers each
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct State {
        epochs: Vec<(u64, f32, Option<f32>, f64)>,
        best: Vec<(String, TensorData)>,
    }
    let mut net =
        Sequential::new().with(Dense::new(&DenseConfig::new(3, 2), &mut seeded(1)).unwrap());
    let meta = Metadata {
        input_shape: vec![3],
        loss: "mse".into(),
        ..Default::default()
    };
    let state = State {
        epochs: (0..100_000)
            .map(|i| (i, i as f32 * 0.5, Some(0.25), 1.5))
            .collect(),
        best: nn::layers::weights::snapshot(&mut net),
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.nnck");
    nn::io::save_checkpoint(&p, &mut net, &meta, &state).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let (loaded, back): (_, State) = checkpoint_from_bytes(&bytes, &p, &Registry::new()).unwrap();
    assert_eq!(back, state);
    assert_eq!(loaded.metadata, meta);
}
