//! The training loop: determinism, divergence detection, early stopping, the observer.

use ndarray::{Array2, ArrayD};
use nn_core::{Init, rng, seeded};
use nn_layers::{
    Dense, DenseConfig, Layer, Loss, Relu, Sequential, Slot, SoftmaxCrossEntropy, Target,
};
use nn_optim::{
    Data, EpochEnd, EpochRecord, Error, Monitor, Observer, ObserverError, Optimizer, Sgd,
    SgdConfig, Silent, TrainConfig, Trainer, evaluate,
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
    let mut opt = Sgd::new(SgdConfig::plain().momentum(0.9)).unwrap();
    let mut t = Trainer::new(TrainConfig::new(epochs, 16, 0.1).seed(seed)).unwrap();
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
    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        self.epochs.push(end.record.clone());
        Ok(())
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
    let mut opt = Sgd::new(SgdConfig::plain()).unwrap();
    let mut rec = Recorder::default();
    let mut t = Trainer::new(TrainConfig::new(2, 64, 0.05)).unwrap();
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
    let mut opt = Sgd::new(SgdConfig::plain()).unwrap();
    let mut t = Trainer::new(TrainConfig::new(3, 8, 1e6)).unwrap();
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
    let mut opt = Sgd::new(SgdConfig::plain().momentum(0.9)).unwrap();
    let cfg = TrainConfig::new(200, 8, 0.5).early_stopping(Monitor::ValLoss, 3);
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
        Trainer::new(TrainConfig::new(2, 4, 0.1).early_stopping(Monitor::ValAccuracy, 1)).unwrap();
    let e = t
        .fit(
            &mut model(0),
            &mut SoftmaxCrossEntropy::new(),
            &mut Sgd::new(SgdConfig::plain()).unwrap(),
            &data,
            None,
            &mut Silent,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid early stopping: needs validation rows to monitor"
    );
    assert!(Trainer::new(TrainConfig::new(2, 0, 0.1)).is_err());
    assert!(Trainer::new(TrainConfig::new(2, 1, f32::NAN)).is_err());
    assert!(Trainer::new(TrainConfig::new(2, 1, -0.1)).is_err());
}

#[test]
fn saved_state_that_does_not_fit_the_model_is_refused_not_a_panic() {
    use nn_core::TensorData;
    use nn_layers::weights::snapshot;
    use nn_optim::{Adam, AdamConfig, BestSoFar, Optimizer};
    let mut m = model(1);
    let mut nan = snapshot(&mut m);
    nan[1].1.data[3] = f32::NAN;
    let mut trainer = Trainer::new(TrainConfig::new(1, 4, 0.01)).unwrap();
    let (x, y) = blobs(4, 2);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut opt = Adam::new(AdamConfig::adam()).unwrap();
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

/// Keeps the checkpoint state of epoch `at` (model weights, trainer, optimizer), as a
/// command line's checkpointing observer would write it, and can fail after epoch `fail`.
struct Checkpointer {
    at: usize,
    fail: Option<usize>,
    saved: Option<(
        nn_layers::Weights,
        nn_optim::TrainerState,
        nn_optim::OptimizerState,
    )>,
}

impl Observer for Checkpointer {
    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        if end.record.epoch == self.at {
            let w = nn_layers::weights::snapshot(end.model);
            self.saved = Some((w, end.trainer_state(), end.optimizer_state()));
        }
        if self.fail == Some(end.record.epoch) {
            let disk = std::io::Error::other("disk full");
            return Err(format!("cannot write epoch-{:04}.nnck: {disk}", end.record.epoch).into());
        }
        Ok(())
    }
}

#[test]
fn a_run_resumed_from_an_observers_checkpoint_continues_bit_identically() {
    use nn_optim::{Adam, AdamConfig, LrSchedule, Optimizer, Schedule};
    let (x, y) = blobs(20, 4);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    // a cosine schedule: η differs every epoch, so a resumed run must find its place in it
    let schedule = LrSchedule::new(
        0.05,
        Schedule::Cosine {
            t_max: 4,
            min_lr: 0.0,
        },
    );
    let cfg = TrainConfig::new(4, 8, schedule).seed(3);
    let fit = |t: &mut Trainer, m: &mut Sequential, o: &mut Adam, obs: &mut dyn Observer| {
        t.fit(m, &mut SoftmaxCrossEntropy::new(), o, &data, None, obs)
    };
    let mut whole = model(5);
    let mut opt = Adam::new(AdamConfig::adam()).unwrap();
    let mut ck = Checkpointer {
        at: 2,
        fail: None,
        saved: None,
    };
    let mut t = Trainer::new(cfg.clone()).unwrap();
    let h = fit(&mut t, &mut whole, &mut opt, &mut ck).unwrap();
    let lrs: Vec<f32> = h.epochs.iter().map(|e| e.lr).collect();
    assert_eq!(lrs, (0..4).map(|t| schedule.lr_at(t)).collect::<Vec<_>>());
    let (w, trainer_state, opt_state) = ck.saved.unwrap();
    // resume: fresh objects, loaded from the state saved after epoch 2
    let mut resumed = model(99);
    nn_layers::weights::restore(&mut resumed, &w).unwrap();
    let mut opt2 = Adam::new(AdamConfig::adam()).unwrap();
    opt2.load_state(opt_state).unwrap();
    let mut t2 = Trainer::resume(cfg, trainer_state).unwrap();
    assert_eq!((t2.epoch(), t2.lr()), (2, schedule.lr_at(2)));
    let h2 = fit(&mut t2, &mut resumed, &mut opt2, &mut Silent).unwrap();
    assert_eq!(weights(&mut resumed), weights(&mut whole));
    let losses = |h: &nn_optim::History| -> Vec<(f32, f32)> {
        h.epochs.iter().map(|e| (e.lr, e.train_loss)).collect()
    };
    assert_eq!(losses(&h2), losses(&h));
}

#[test]
fn an_observer_that_fails_stops_the_run_with_its_message() {
    let (x, y) = blobs(10, 4);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut m = model(5);
    let mut t = Trainer::new(TrainConfig::new(5, 8, 0.1)).unwrap();
    let mut ck = Checkpointer {
        at: 0,
        fail: Some(2),
        saved: None,
    };
    let e = t
        .fit(
            &mut m,
            &mut SoftmaxCrossEntropy::new(),
            &mut Sgd::new(SgdConfig::plain()).unwrap(),
            &data,
            None,
            &mut ck,
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "after epoch 2: cannot write epoch-0002.nnck: disk full"
    );
    assert_eq!(t.epoch(), 2);
}

/// Rows through the identity (z = x), classes 1, 1, 0: p = [¼, ¾], [¾, ¼], [¾, ¼]; losses
/// ln 4/3, ln 4, ln 4/3; the second row is predicted wrong.
fn three_rows() -> (ArrayD<f32>, Vec<usize>) {
    let l3 = 3f32.ln();
    let x = ndarray::array![[0.0f32, l3], [l3, 0.0], [l3, 0.0]].into_dyn();
    (x, vec![1, 1, 0])
}

fn identity() -> Dense {
    Dense::from_weights(ndarray::array![[1.0f32, 0.0], [0.0, 1.0]].into_dyn(), None).unwrap()
}

#[test]
fn an_epochs_loss_and_accuracy_are_means_over_rows() {
    let (x, c) = three_rows();
    let data = Data::new(x.view(), Target::Classes(&c)).unwrap();
    let mean = (2.0 * (4f64 / 3.0).ln() + 4f64.ln()) / 3.0;
    for batch in [1, 2, 3] {
        // η = 0: the weights stay, so every batch sees the same model
        let h = Trainer::new(TrainConfig::new(2, batch, 0.0))
            .unwrap()
            .fit(
                &mut identity(),
                &mut SoftmaxCrossEntropy::new(),
                &mut Sgd::new(SgdConfig::plain()).unwrap(),
                &data,
                None,
                &mut Silent,
            )
            .unwrap();
        for r in &h.epochs {
            assert!(
                (f64::from(r.train_loss) - mean).abs() < 1e-6,
                "batch {batch}: {r:?}"
            );
            assert!((r.train_accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-6);
        }
    }
}

#[test]
fn early_stopping_needs_an_improvement_of_min_delta() {
    // a model that does not learn (η = 0): the monitored value stays, which is no
    // improvement by min_delta = 0.01, so the run stops after 1 + patience epochs and keeps
    // epoch 1's weights
    let (x, c) = three_rows();
    let data = Data::new(x.view(), Target::Classes(&c)).unwrap();
    for (monitor, min_delta) in [
        (Monitor::ValLoss, 0.01),
        (Monitor::ValAccuracy, 0.01),
        (Monitor::ValLoss, 0.0),
        (Monitor::ValAccuracy, 0.0),
    ] {
        let mut cfg = TrainConfig::new(10, 2, 0.0).early_stopping(monitor, 3);
        cfg.early_stopping.as_mut().unwrap().min_delta = min_delta;
        let h = Trainer::new(cfg)
            .unwrap()
            .fit(
                &mut identity(),
                &mut SoftmaxCrossEntropy::new(),
                &mut Sgd::new(SgdConfig::plain()).unwrap(),
                &data,
                Some(&data),
                &mut Silent,
            )
            .unwrap();
        assert!(h.stopped_early, "{monitor:?}");
        assert_eq!((h.epochs.len(), h.best_epoch), (4, Some(1)), "{monitor:?}");
    }
}

fn momentum_sgd() -> Sgd {
    Sgd::new(SgdConfig::plain().momentum(0.9)).unwrap()
}

/// Gradients of 1 everywhere on `model`.
fn unit_grads(model: &mut dyn Layer) {
    model.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            p.grad.fill(1.0);
        }
    });
}

#[test]
fn saved_states_count_steps_and_round_trip_with_their_tensors() {
    let mut m = identity();
    let mut opt = momentum_sgd();
    for _ in 0..2 {
        unit_grads(&mut m);
        opt.step(&mut m, 0.1).unwrap();
    }
    let state = opt.state();
    assert_eq!((state.kind.as_str(), state.steps), ("sgd", 2));
    // v = 0.9·1 + 1 = 1.9 after two steps, for the one weight tensor
    assert_eq!(state.slots["weight"][0].data, vec![1.9f32; 4]);
    let json = serde_json::to_string(&state).unwrap();
    let back: nn_optim::OptimizerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, state);
    // a state whose tensor has another shape than the parameter is refused at the step
    let mut wrong = state.clone();
    wrong.slots.get_mut("weight").unwrap()[0] = nn_core::TensorData {
        shape: vec![4],
        data: vec![0.0; 4],
    };
    let mut opt = momentum_sgd();
    let refused = opt
        .load_state(wrong)
        .and_then(|()| opt.step(&mut identity(), 0.1));
    assert!(refused.is_err());
}

#[test]
fn trainer_states_and_histories_round_trip_and_are_checked() {
    let (x, c) = three_rows();
    let data = Data::new(x.view(), Target::Classes(&c)).unwrap();
    let mut trainer =
        Trainer::new(TrainConfig::new(2, 2, 0.0).early_stopping(Monitor::ValLoss, 5)).unwrap();
    let mut m = identity();
    let h = trainer
        .fit(
            &mut m,
            &mut SoftmaxCrossEntropy::new(),
            &mut momentum_sgd(),
            &data,
            Some(&data),
            &mut Silent,
        )
        .unwrap();
    let json = serde_json::to_string(&h).unwrap();
    assert_eq!(
        serde_json::from_str::<nn_optim::History>(&json)
            .unwrap()
            .epochs
            .len(),
        2
    );
    let state = trainer.state();
    assert_eq!((state.epoch, state.step), (2, 4)); // 2 epochs of ⌈3 / 2⌉ batches
    let json = serde_json::to_string(&state).unwrap();
    let back: nn_optim::TrainerState = serde_json::from_str(&json).unwrap();
    back.validate(&mut m).unwrap();
    let mut longer = back.clone();
    longer.epoch = 1; // two epochs of history after one epoch
    assert!(longer.validate(&mut m).is_err());
}

#[test]
fn adam_l2_adds_lambda_w_to_the_gradient_and_adamw_decays_by_default() {
    assert_eq!(nn_optim::AdamConfig::adamw().weight_decay, 0.01);
    // w = 1 on the diagonal, 0 off it; g = 0, λ = 0.5: g′ = λ·w, and the first step moves w
    // by η·m̂/(√v̂ + ε) = η·g′/(|g′| + ε): 1 → 1 − 0.1·0.5/(0.5 + ε); 0 stays 0
    let mut cfg = nn_optim::AdamConfig::adam();
    cfg.weight_decay = 0.5;
    let mut opt = nn_optim::Adam::new(cfg).unwrap();
    let mut m = identity();
    opt.step(&mut m, 0.1).unwrap();
    let want = 1.0 - 0.1 * 0.5 / (0.5 + cfg.eps);
    let w = m.weight().value.clone();
    assert!((w[[0, 0]] - want).abs() < 1e-6 && w[[0, 1]] == 0.0, "{w}");
}

#[test]
fn clipping_needs_a_positive_finite_norm() {
    let cfg = |c: f32| TrainConfig::new(1, 1, 0.1).clip_grad_norm(c).validate();
    assert!(cfg(0.5).is_ok());
    for c in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(cfg(c).is_err(), "{c}");
    }
}

#[test]
fn a_table_up_to_twenty_classes_and_a_summary_beyond() {
    let table = |k: usize| {
        let mut m = nn_optim::ConfusionMatrix::new(k);
        m.add(0, 1);
        m.display_with(None).to_string()
    };
    assert!(table(20).contains("precision"), "{}", table(20));
    assert!(
        table(21).contains("most frequent confusions"),
        "{}",
        table(21)
    );
}

/// Records `is_last` at each epoch's end.
struct Lasts(Vec<bool>);

impl Observer for Lasts {
    fn on_epoch_end(&mut self, end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        self.0.push(end.is_last());
        Ok(())
    }
}

#[test]
fn only_the_last_epoch_is_last() {
    let (x, c) = three_rows();
    let data = Data::new(x.view(), Target::Classes(&c)).unwrap();
    let mut lasts = Lasts(Vec::new());
    Trainer::new(TrainConfig::new(3, 2, 0.0))
        .unwrap()
        .fit(
            &mut identity(),
            &mut SoftmaxCrossEntropy::new(),
            &mut momentum_sgd(),
            &data,
            None,
            &mut lasts,
        )
        .unwrap();
    assert_eq!(lasts.0, vec![false, false, true]);
}

#[test]
fn regression_has_no_accuracy() {
    let (x, _) = three_rows();
    let t = ndarray::array![[1.0f32, 0.0], [0.0, 1.0], [0.5, 0.5]].into_dyn();
    let data = Data::new(x.view(), Target::Values(t.view())).unwrap();
    let h = Trainer::new(TrainConfig::new(1, 2, 0.0))
        .unwrap()
        .fit(
            &mut identity(),
            &mut nn_layers::Mse::new(),
            &mut momentum_sgd(),
            &data,
            None,
            &mut Silent,
        )
        .unwrap();
    assert_eq!(h.epochs[0].train_accuracy, None);
}

/// Two epochs of momentum SGD on the blobs in batches of 20 (three steps an epoch),
/// starting from `m`.
fn fit_in_batches(m: &mut Sequential) {
    let (x, y) = blobs(20, 3);
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut t = Trainer::new(TrainConfig::new(2, 20, 0.1).seed(1)).unwrap();
    let mut loss = SoftmaxCrossEntropy::new();
    t.fit(m, &mut loss, &mut momentum_sgd(), &data, None, &mut Silent)
        .unwrap();
}

#[test]
fn every_step_starts_from_zero_gradients() {
    // the derivation's loop by hand, on the trainer's batches (the same seeded permutation
    // each epoch): zero ∂E/∂w, forward, loss, backward, update
    let (x, y) = blobs(20, 3);
    let mut by_hand = model(4);
    let (mut opt, mut loss) = (momentum_sgd(), SoftmaxCrossEntropy::new());
    let (mut r, mut perm) = (seeded(1), Vec::new());
    for _ in 0..2 {
        rng::permutation_into(60, &mut r, &mut perm);
        for idx in perm.chunks(20) {
            let xb = x.select(ndarray::Axis(0), idx);
            let yb: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
            by_hand.zero_grad();
            let out =
                nn_layers::layer::apply(&mut by_hand, xb.view(), nn_layers::Mode::Train).unwrap();
            loss.forward(out.view(), Target::Classes(&yb)).unwrap();
            let dy = loss.backward().unwrap().to_owned();
            by_hand
                .backward(xb.view(), out.view(), dy.view(), None)
                .unwrap();
            opt.step(&mut by_hand, 0.1).unwrap();
        }
    }
    // the trainer, once from clean gradients and once from leftover ones
    let mut clean = model(4);
    fit_in_batches(&mut clean);
    let mut leftover = model(4);
    unit_grads(&mut leftover);
    fit_in_batches(&mut leftover);
    assert_eq!(weights(&mut clean), weights(&mut by_hand));
    assert_eq!(weights(&mut leftover), weights(&mut by_hand));
}
