//! The training loop: determinism, divergence detection, early stopping, the observer.

use ndarray::{Array2, ArrayD};
use nn_core::{Init, rng, seeded};
use nn_layers::{
    Dense, DenseConfig, Parameterized, Relu, Sequential, Slot, SoftmaxCrossEntropy, Target,
};
use nn_optim::{
    Data, EpochRecord, Error, Monitor, Observer, Sgd, SgdConfig, Silent, TrainConfig, Trainer,
    evaluate,
};

/// Three Gaussian blobs in 2-D around (0, 2), (2, −1), (−2, −1), σ = 0.6, `n` rows each.
fn blobs(n: usize, seed: u64) -> (ArrayD<f32>, Vec<usize>) {
    let centres = [(0.0f32, 2.0f32), (2.0, -1.0), (-2.0, -1.0)];
    let mut r = seeded(seed);
    let mut x = Array2::<f32>::zeros((3 * n, 2));
    let mut y = Vec::with_capacity(3 * n);
    for (c, &(cx, cy)) in centres.iter().enumerate() {
        for i in 0..n {
            let row = c * n + i;
            x[[row, 0]] = cx + 0.6 * rng::standard_normal(&mut r);
            x[[row, 1]] = cy + 0.6 * rng::standard_normal(&mut r);
            y.push(c);
        }
    }
    (x.into_dyn(), y)
}

fn model(seed: u64) -> Sequential {
    let mut r = seeded(seed);
    Sequential::new()
        .with(Dense::new(&DenseConfig::new(2, 16).with_init(Init::HeUniform), &mut r).unwrap())
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(16, 3), &mut r).unwrap())
}

fn weights(m: &mut Sequential) -> Vec<u32> {
    let mut out = Vec::new();
    m.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            out.extend(p.value.iter().map(|v| v.to_bits()));
        }
    });
    out
}

fn train(seed: u64, epochs: usize) -> (Sequential, nn_optim::History) {
    let (x, y) = blobs(50, 1);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut m = model(seed);
    let mut opt = Sgd::new(SgdConfig::new(0.1).momentum(0.9)).unwrap();
    let mut t = Trainer::new(TrainConfig::new(epochs, 16).seed(seed)).unwrap();
    let h = t
        .fit(
            &mut m,
            &mut SoftmaxCrossEntropy::new(),
            &mut opt,
            &data,
            None,
            &mut Silent,
        )
        .unwrap();
    (m, h)
}

#[test]
fn same_seed_gives_bit_identical_weights() {
    let (mut a, ha) = train(7, 5);
    let (mut b, hb) = train(7, 5);
    assert_eq!(weights(&mut a), weights(&mut b));
    assert_eq!(ha.epochs.len(), 5);
    assert_eq!(
        ha.epochs
            .iter()
            .map(|e| e.train_loss.to_bits())
            .collect::<Vec<_>>(),
        hb.epochs
            .iter()
            .map(|e| e.train_loss.to_bits())
            .collect::<Vec<_>>()
    );
    let (mut c, _) = train(8, 5);
    assert_ne!(
        weights(&mut a),
        weights(&mut c),
        "another seed should give other weights"
    );
}

#[test]
fn learns_separable_blobs() {
    let (mut m, h) = train(3, 20);
    let (x, y) = blobs(50, 99); // fresh rows from the same distribution
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let e = evaluate(&mut m, &mut SoftmaxCrossEntropy::new(), &data, 64).unwrap();
    assert!(e.accuracy.unwrap() > 0.95, "{e:?}");
    assert!(h.epochs.last().unwrap().train_loss < h.epochs[0].train_loss);
    assert_eq!(e.confusion.as_ref().unwrap().total(), 150);
}

#[derive(Default)]
struct Recorder {
    start: Option<(usize, usize, usize)>,
    steps: Vec<(usize, usize)>,
    epochs: Vec<EpochRecord>,
}

impl Observer for Recorder {
    fn on_start(&mut self, first: usize, last: usize, steps: usize) {
        self.start = Some((first, last, steps));
    }
    fn on_step(&mut self, epoch: usize, step: usize, _loss: f32) {
        self.steps.push((epoch, step));
    }
    fn on_epoch_end(&mut self, record: &EpochRecord) {
        self.epochs.push(record.clone());
    }
}

#[test]
fn observer_sees_every_step_and_the_last_partial_batch() {
    // 150 rows in batches of 64: 64 + 64 + 22 → 3 steps per epoch
    let (x, y) = blobs(50, 1);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let (vx, vy) = blobs(10, 2);
    let val = Data::new(vx.view(), Target::Classes(&vy)).unwrap();
    let mut m = model(0);
    let mut opt = Sgd::new(SgdConfig::new(0.05)).unwrap();
    let mut rec = Recorder::default();
    let mut t = Trainer::new(TrainConfig::new(2, 64)).unwrap();
    t.fit(
        &mut m,
        &mut SoftmaxCrossEntropy::new(),
        &mut opt,
        &data,
        Some(&val),
        &mut rec,
    )
    .unwrap();
    assert_eq!(rec.start, Some((1, 2, 3)));
    assert_eq!(
        rec.steps,
        vec![(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    );
    assert_eq!(rec.epochs.len(), 2);
    let v = rec.epochs[1].val.as_ref().unwrap();
    // the record keeps loss and accuracy; the confusion matrix is not part of the history
    assert!(v.accuracy.is_some() && v.loss.is_finite());
    assert!(v.confusion.is_none());
    assert!(rec.epochs[0].train_accuracy.is_some());
}

#[test]
fn divergence_stops_with_epoch_and_step_and_keeps_the_last_good_weights() {
    // A learning rate of 1e6 on unscaled inputs blows the weights up within a few steps.
    let (x, y) = blobs(50, 1);
    let x = x.mapv(|v| v * 1e3);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut m = model(0);
    let mut opt = Sgd::new(SgdConfig::new(1e6)).unwrap();
    let mut t = Trainer::new(TrainConfig::new(3, 8)).unwrap();
    let e = t
        .fit(
            &mut m,
            &mut SoftmaxCrossEntropy::new(),
            &mut opt,
            &data,
            None,
            &mut Silent,
        )
        .unwrap_err();
    let Error::NonFinite {
        epoch, step, what, ..
    } = e.clone()
    else {
        panic!("expected a divergence error, got {e}");
    };
    assert_eq!(epoch, 1);
    assert!(step >= 2, "the first step starts from finite weights");
    assert!(["loss", "gradient norm"].contains(&what));
    assert!(
        e.to_string()
            .starts_with(&format!("training diverged at epoch 1, step {step}: ")),
        "{e}"
    );
    assert!(
        weights(&mut m)
            .iter()
            .all(|b| f32::from_bits(*b).is_finite())
    );
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    // A rate high enough to bounce around: validation loss stops improving quickly.
    let (x, y) = blobs(30, 1);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let (vx, vy) = blobs(30, 5);
    let val = Data::new(vx.view(), Target::Classes(&vy)).unwrap();
    let mut m = model(0);
    let mut opt = Sgd::new(SgdConfig::new(0.5).momentum(0.9)).unwrap();
    let cfg = TrainConfig::new(200, 8).early_stopping(Monitor::ValLoss, 3);
    let mut t = Trainer::new(cfg).unwrap();
    let mut loss = SoftmaxCrossEntropy::new();
    let h = t
        .fit(&mut m, &mut loss, &mut opt, &data, Some(&val), &mut Silent)
        .unwrap();
    assert!(h.stopped_early, "ran all {} epochs", h.epochs.len());
    let best = h.best_epoch.unwrap();
    let best_loss = h.epochs[best - 1].val.as_ref().unwrap().loss;
    for r in &h.epochs {
        assert!(r.val.as_ref().unwrap().loss >= best_loss);
    }
    assert_eq!(
        h.epochs.len(),
        best + 3,
        "stops after `patience` epochs without improvement"
    );
    // the model holds the best epoch's weights: its validation loss is the best one
    let now = evaluate(&mut m, &mut loss, &val, 1024).unwrap();
    assert_eq!(now.loss, best_loss);
}

#[test]
fn early_stopping_needs_validation_rows() {
    let (x, y) = blobs(5, 1);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut t =
        Trainer::new(TrainConfig::new(2, 4).early_stopping(Monitor::ValAccuracy, 1)).unwrap();
    let e = t
        .fit(
            &mut model(0),
            &mut SoftmaxCrossEntropy::new(),
            &mut Sgd::new(SgdConfig::new(0.1)).unwrap(),
            &data,
            None,
            &mut Silent,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid early stopping: needs validation rows to monitor"
    );
    assert!(Trainer::new(TrainConfig::new(2, 0)).is_err());
}

#[test]
fn saved_state_that_does_not_fit_the_model_is_refused_not_a_panic() {
    use nn_core::TensorData;
    use nn_optim::{Adam, AdamConfig, BestSoFar, Optimizer, restore, snapshot};
    let mut m = model(1);
    let good = snapshot(&mut m);
    restore(&mut m, &good).unwrap();
    // a tensor whose values do not fill its shape (a crafted checkpoint)
    let mut short = good.clone();
    short[0].1.data.pop();
    let e = restore(&mut m, &short).unwrap_err().to_string();
    assert!(
        e.starts_with("saved weights do not match the model at `0.weight` [16, 2]: found `0.weight` [16, 2] with 31 values"),
        "{e}"
    );
    // NaN best weights are refused before they reach the model
    let mut nan = good.clone();
    nan[1].1.data[3] = f32::NAN;
    assert!(
        restore(&mut m, &nan)
            .unwrap_err()
            .to_string()
            .contains("hold NaN")
    );
    assert_eq!(
        snapshot(&mut m),
        good,
        "a refused restore leaves the model unchanged"
    );
    let mut trainer = Trainer::new(TrainConfig::new(1, 4)).unwrap();
    let (x, y) = blobs(4, 2);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut opt = Adam::new(AdamConfig::adam(0.01)).unwrap();
    trainer
        .fit(
            &mut m,
            &mut SoftmaxCrossEntropy::new(),
            &mut opt,
            &data,
            None,
            &mut Silent,
        )
        .unwrap();
    let mut state = trainer.state();
    state.validate(&mut m).unwrap();
    state.best = Some(BestSoFar {
        epoch: 1,
        value: 0.5,
        wait: 0,
        weights: nan,
    });
    assert!(
        state
            .validate(&mut m)
            .unwrap_err()
            .to_string()
            .contains("best weights")
    );
    // optimizer moments of another shape or not finite
    let mut s = opt.state();
    s.validate(&mut m).unwrap();
    s.slots.get_mut("0.weight").unwrap()[0] = TensorData {
        shape: vec![2, 16],
        data: vec![0.0; 32],
    };
    let e = s.validate(&mut m).unwrap_err().to_string();
    assert_eq!(
        e,
        "optimizer state: state of `0.weight` has shape [2, 16] (32 values), the parameter [16, 2]"
    );
    let mut s = opt.state();
    s.slots.get_mut("2.bias").unwrap()[1].data[0] = f32::INFINITY;
    assert!(
        s.validate(&mut m)
            .unwrap_err()
            .to_string()
            .contains("holds inf")
    );
    let mut s = opt.state();
    s.slots.insert("9.weight".into(), vec![]);
    assert!(
        s.validate(&mut m)
            .unwrap_err()
            .to_string()
            .contains("`9.weight`, which the model does not have")
    );
}
