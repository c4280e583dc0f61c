//! Optimizers and schedules against PyTorch: parameter values after 3 (optimizers) or 5
//! (schedules, one step per epoch) steps on a fixed problem agree within 1e-5.
//!
//! The problem: `Dense(3 → 2)` with `W₀ = [[0.5, −0.3, 0.8], [−0.2, 0.4, 0.1]]`,
//! `b₀ = [0.1, −0.1]`, four rows `X`, targets `T`, mean squared error. The reference values
//! were printed by this script (PyTorch 2.15, CPU):
//!
//! ```python
//! import torch
//! torch.set_printoptions(precision=8)
//! W0 = torch.tensor([[0.5, -0.3, 0.8], [-0.2, 0.4, 0.1]])
//! B0 = torch.tensor([0.1, -0.1])
//! X = torch.tensor([[1.0, 2.0, -1.0], [0.5, -1.5, 2.0], [-1.0, 0.0, 1.0], [2.0, 1.0, 0.5]])
//! T = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, -1.0]])
//!
//! def run(make_opt, steps, make_sched=None, clip=None):
//!     lin = torch.nn.Linear(3, 2)
//!     with torch.no_grad():
//!         lin.weight.copy_(W0); lin.bias.copy_(B0)
//!     opt = make_opt(lin.parameters())
//!     sched = make_sched(opt) if make_sched else None
//!     for _ in range(steps):
//!         opt.zero_grad()
//!         torch.nn.functional.mse_loss(lin(X), T).backward()
//!         if clip: torch.nn.utils.clip_grad_norm_(lin.parameters(), clip)
//!         opt.step()
//!         if sched: sched.step()
//!     return lin.weight.detach().flatten().tolist() + lin.bias.detach().tolist()
//!
//! S = torch.optim
//! cases = {
//!  "sgd": run(lambda p: S.SGD(p, lr=0.1), 3),
//!  "sgd_l2": run(lambda p: S.SGD(p, lr=0.1, weight_decay=0.01), 3),
//!  "momentum": run(lambda p: S.SGD(p, lr=0.1, momentum=0.9), 3),
//!  "nesterov_l2": run(lambda p: S.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), 3),
//!  "adam": run(lambda p: S.Adam(p, lr=0.01), 3),
//!  "adam_l2": run(lambda p: S.Adam(p, lr=0.01, weight_decay=0.1), 3),
//!  "adamw": run(lambda p: S.AdamW(p, lr=0.01, weight_decay=0.1), 3),
//!  "sgd_clip": run(lambda p: S.SGD(p, lr=0.1), 3, clip=0.5),
//!  "step": run(lambda p: S.SGD(p, lr=0.1), 5, lambda o: S.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
//!  "exponential": run(lambda p: S.SGD(p, lr=0.1), 5, lambda o: S.lr_scheduler.ExponentialLR(o, gamma=0.8)),
//!  "cosine": run(lambda p: S.SGD(p, lr=0.1), 5, lambda o: S.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=0.01)),
//!  "warmup_cosine": run(lambda p: S.SGD(p, lr=0.1), 5, lambda o: S.lr_scheduler.SequentialLR(o, [
//!      S.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=2),
//!      S.lr_scheduler.CosineAnnealingLR(o, T_max=3, eta_min=0.01)], milestones=[2])),
//! }
//! for k, v in cases.items():
//!     print(f"{k}: [" + ", ".join(f"{x:.8}" for x in v) + "]")
//! ```

// The reference values are PyTorch's output verbatim, digits and all.
#![allow(clippy::excessive_precision)]

use ndarray::{ArrayD, array};
use nn_layers::layer::apply;
use nn_layers::{Dense, Layer, Loss, Mode, Mse, Slot, Target};
use nn_optim::{Adam, AdamConfig, LrSchedule, Optimizer, Schedule, Sgd, SgdConfig, clip_grad_norm};

fn problem() -> (Dense, ArrayD<f32>, ArrayD<f32>) {
    let layer = Dense::from_weights(
        array![[0.5f32, -0.3, 0.8], [-0.2, 0.4, 0.1]].into_dyn(),
        Some(array![0.1f32, -0.1].into_dyn()),
    )
    .unwrap();
    let x = array![
        [1.0f32, 2.0, -1.0],
        [0.5, -1.5, 2.0],
        [-1.0, 0.0, 1.0],
        [2.0, 1.0, 0.5]
    ]
    .into_dyn();
    let t = array![[1.0f32, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, -1.0]].into_dyn();
    (layer, x, t)
}

/// Runs `steps` steps; step `t` (from 0) takes the learning rate `schedule(t)`.
fn run(
    opt: &mut dyn Optimizer,
    steps: usize,
    schedule: impl Into<LrSchedule>,
    clip: Option<f32>,
) -> Vec<f32> {
    let schedule = schedule.into();
    let (mut layer, x, t) = problem();
    let mut mse = Mse::new();
    for step in 0..steps {
        layer.zero_grad();
        let y = apply(&mut layer, x.view(), Mode::Train).unwrap();
        mse.forward(y.view(), Target::Values(t.view())).unwrap();
        layer
            .backward(x.view(), y.view(), mse.backward().unwrap(), None)
            .unwrap();
        if let Some(c) = clip {
            clip_grad_norm(&mut layer, c);
        }
        opt.step(&mut layer, schedule.lr_at(step)).unwrap();
    }
    let mut out = Vec::new();
    layer.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            out.extend(p.value.iter().copied());
        }
    });
    out
}

fn assert_matches(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5,
            "{name}[{i}]: got {g}, PyTorch {w}\n got {got:?}\nwant {want:?}"
        );
    }
}

fn sgd(cfg: SgdConfig) -> Sgd {
    Sgd::new(cfg).unwrap()
}

#[test]
fn sgd_plain_is_the_derivations_rule() {
    let want = [
        0.47277948,
        0.090682998,
        0.43147248,
        -0.29604107,
        0.17366046,
        0.28674701,
        0.062799998,
        -0.059295364,
    ];
    assert_matches(
        "sgd",
        &run(&mut sgd(SgdConfig::plain()), 3, 0.1, None),
        &want,
    );
}

#[test]
fn sgd_with_l2_weight_decay() {
    let want = [
        0.47147414,
        0.09088596,
        0.4299292,
        -0.29535341,
        0.1728223,
        0.28614581,
        0.062763624,
        -0.059039485,
    ];
    assert_matches(
        "sgd_l2",
        &run(
            &mut sgd(SgdConfig::plain().weight_decay(0.01)),
            3,
            0.1,
            None,
        ),
        &want,
    );
}

#[test]
fn sgd_with_momentum() {
    let want = [
        0.45497635,
        0.45774239,
        0.084634967,
        -0.38720825,
        -0.040286403,
        0.46358997,
        0.026743744,
        -0.023450052,
    ];
    assert_matches(
        "momentum",
        &run(&mut sgd(SgdConfig::plain().momentum(0.9)), 3, 0.1, None),
        &want,
    );
}

#[test]
fn sgd_nesterov_with_weight_decay() {
    let want = [
        0.36903414,
        0.51906812,
        0.026095444,
        -0.39041778,
        -0.064984985,
        0.47891968,
        0.028800119,
        0.0076924143,
    ];
    let cfg = SgdConfig::plain().nesterov(0.9).weight_decay(0.01);
    assert_matches("nesterov_l2", &run(&mut sgd(cfg), 3, 0.1, None), &want);
}

#[test]
fn adam() {
    let want = [
        0.52307814,
        -0.27002022,
        0.77002144,
        -0.22995418,
        0.37003711,
        0.12995447,
        0.070044026,
        -0.07005538,
    ];
    assert_matches(
        "adam",
        &run(&mut Adam::new(AdamConfig::adam()).unwrap(), 3, 0.01, None),
        &want,
    );
}

#[test]
fn adam_with_l2() {
    let want = [
        0.47471088,
        -0.27001074,
        0.77002102,
        -0.22994824,
        0.37003669,
        0.12995215,
        0.070171922,
        -0.070061021,
    ];
    let cfg = AdamConfig::adam().weight_decay(0.1);
    assert_matches(
        "adam_l2",
        &run(&mut Adam::new(cfg).unwrap(), 3, 0.01, None),
        &want,
    );
}

#[test]
fn adamw_decoupled_decay() {
    let want = [
        0.52205306,
        -0.26915178,
        0.76765501,
        -0.22932501,
        0.36886877,
        0.12962423,
        0.069780581,
        -0.069785766,
    ];
    let cfg = AdamConfig::adamw().weight_decay(0.1);
    assert_matches(
        "adamw",
        &run(&mut Adam::new(cfg).unwrap(), 3, 0.01, None),
        &want,
    );
}

#[test]
fn sgd_with_gradient_clipping() {
    let want = [
        0.50001299,
        -0.20621896,
        0.71154058,
        -0.22393087,
        0.34461275,
        0.14572391,
        0.090665601,
        -0.09222798,
    ];
    assert_matches(
        "sgd_clip",
        &run(&mut sgd(SgdConfig::plain()), 3, 0.1, Some(0.5)),
        &want,
    );
}

#[test]
fn step_schedule() {
    let want = [
        0.46626973,
        0.10167657,
        0.42175573,
        -0.29809082,
        0.16825275,
        0.29084933,
        0.062792294,
        -0.056358565,
    ];
    let s = LrSchedule::new(
        0.1,
        Schedule::Step {
            every: 2,
            gamma: 0.5,
        },
    );
    assert_matches(
        "step",
        &run(&mut sgd(SgdConfig::plain()), 5, s, None),
        &want,
    );
}

#[test]
fn exponential_schedule() {
    let want = [
        0.46346867,
        0.10735955,
        0.41663763,
        -0.299209,
        0.16536108,
        0.29310021,
        0.062653936,
        -0.055017941,
    ];
    let s = LrSchedule::new(0.1, Schedule::Exponential { gamma: 0.8 });
    assert_matches(
        "exponential",
        &run(&mut sgd(SgdConfig::plain()), 5, s, None),
        &want,
    );
}

#[test]
fn cosine_schedule() {
    let want = [
        0.47645259,
        0.062356785,
        0.45835495,
        -0.28933385,
        0.18980482,
        0.27334857,
        0.065560497,
        -0.062755316,
    ];
    let s = LrSchedule::new(
        0.1,
        Schedule::Cosine {
            t_max: 4,
            min_lr: 0.01,
        },
    );
    assert_matches(
        "cosine",
        &run(&mut sgd(SgdConfig::plain()), 5, s, None),
        &want,
    );
}

#[test]
fn warmup_then_cosine() {
    let want = [
        0.47161338,
        0.078693494,
        0.4432123,
        -0.29290211,
        0.18095194,
        0.28050092,
        0.064514764,
        -0.05990826,
    ];
    let s = LrSchedule::new(
        0.1,
        Schedule::Cosine {
            t_max: 3,
            min_lr: 0.01,
        },
    )
    .with_warmup(2, 0.25);
    assert_matches(
        "warmup_cosine",
        &run(&mut sgd(SgdConfig::plain()), 5, s, None),
        &want,
    );
}

#[test]
fn optimizer_state_round_trip_continues_identically() {
    // 2 steps, save state, 1 more step on a fresh optimizer loaded with it, equals 3 steps
    for make in [
        || Box::new(Adam::new(AdamConfig::adamw()).unwrap()) as Box<dyn Optimizer>,
        || Box::new(Sgd::new(SgdConfig::plain().nesterov(0.9)).unwrap()) as Box<dyn Optimizer>,
    ] {
        let (mut layer, x, t) = problem();
        let mut mse = Mse::new();
        let mut step = |layer: &mut Dense, opt: &mut dyn Optimizer| {
            layer.zero_grad();
            let y = apply(layer, x.view(), Mode::Train).unwrap();
            mse.forward(y.view(), Target::Values(t.view())).unwrap();
            layer
                .backward(x.view(), y.view(), mse.backward().unwrap(), None)
                .unwrap();
            opt.step(layer, 0.05).unwrap();
        };
        let mut a = make();
        step(&mut layer, a.as_mut());
        step(&mut layer, a.as_mut());
        let mut b = make();
        b.load_state(a.state()).unwrap();
        let mut layer_b = layer.clone();
        step(&mut layer, a.as_mut());
        step(&mut layer_b, b.as_mut());
        assert_eq!(layer.weight().value, layer_b.weight().value);
        assert_eq!(a.state(), b.state());
    }
    let mut sgd = Sgd::new(SgdConfig::plain()).unwrap();
    let adam_state = Adam::new(AdamConfig::adam()).unwrap().state();
    assert_eq!(
        sgd.load_state(adam_state).unwrap_err().to_string(),
        "optimizer state: saved by a `adam` optimizer, cannot load into `sgd`"
    );
}
