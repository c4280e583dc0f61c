//! Two layers of the stack: this program depends on `nn-core` and `nn-layers` only (no
//! optimizer crate) and trains a 2-2-1 network on XOR by writing the update itself.
//!
//! ```text
//! forward    h = σ(x·W₁ᵀ + b₁),  y = σ(h·W₂ᵀ + b₂),  E = (1/N)·Σ (y − t)²
//! backward   δ₂ = ∂E/∂(output pre-activation) = 2(y − t)/N · y(1 − y)
//!            ∂E/∂W₂ = δ₂ᵀ·h,  ∂E/∂b₂ = Σ δ₂,  δ₁ = (δ₂·W₂) ⊙ h(1 − h),  ∂E/∂W₁ = δ₁ᵀ·x
//! update     w_new = w_old − η·∂E/∂w        for every weight and bias
//! ```
//!
//! The first step's gradient of `W₂` is checked against the formula above, computed here
//! by hand from the layers' outputs; then 4000 full-batch steps bring E near 0.
//!
//! ```sh
//! cargo run --release -p nn-layers --example backprop_steps
//! ```

use nn_core::Buffer;
use nn_core::ndarray::{Array2, Ix2, array};
use nn_layers::{Dense, DenseConfig, Layer, Loss, Mode, Mse, Sequential, Sigmoid, Slot, Target};

/// One full-batch step: forward, loss, backward; returns E (gradients left in the layers).
fn step(net: &mut Sequential, x: &Array2<f32>, t: &Array2<f32>, y: &mut Buffer) -> f32 {
    let (x, t) = (x.view().into_dyn(), t.view().into_dyn());
    net.zero_grad();
    net.forward(x.view(), y, Mode::Train).expect("forward");
    let mut mse = Mse::new();
    let e = mse.forward(y.view(), Target::Values(t)).expect("loss");
    let dy = mse.backward().expect("∂E/∂y").to_owned();
    net.backward(x, y.view(), dy.view(), None)
        .expect("backward");
    e
}

/// w ← w − η·∂E/∂w for every parameter, as the derivation writes it.
fn update(net: &mut Sequential, eta: f32) {
    net.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            p.value.zip_mut_with(&p.grad, |w, g| *w -= eta * g);
        }
    });
}

fn main() {
    let mut rng = nn_core::seeded(1);
    let mut net = Sequential::new()
        .with(Dense::new(&DenseConfig::new(2, 2), &mut rng).expect("dense"))
        .with(Sigmoid::new())
        .with(Dense::new(&DenseConfig::new(2, 1), &mut rng).expect("dense"))
        .with(Sigmoid::new());
    let x = array![[0.0f32, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]];
    let t = array![[0.0f32], [1.0], [1.0], [0.0]];
    let mut y = Buffer::new();

    // the first step, checked by hand: ∂E/∂W₂ = δ₂ᵀ·h with δ₂ = 2(y − t)/N · y(1 − y)
    let e0 = step(&mut net, &x, &t, &mut y);
    let mut h = Buffer::new();
    net.layers_mut()[0]
        .forward(x.view().into_dyn(), &mut h, Mode::Eval)
        .expect("layer 1");
    let mut hs = Buffer::new();
    net.layers_mut()[1]
        .forward(h.view(), &mut hs, Mode::Eval)
        .expect("σ");
    let (hs, yv) = (hs.view2().to_owned(), y.view2().to_owned());
    let delta2 = (&yv - &t) * (2.0 / 4.0) * &yv.mapv(|v| v * (1.0 - v));
    let by_hand = delta2.t().dot(&hs);
    let mut from_layers = Array2::zeros((1, 2));
    net.layers_mut()[2].visit(&mut |name, slot| {
        if let (Slot::Param(p), "weight") = (slot, name) {
            from_layers = p.grad.clone().into_dimensionality::<Ix2>().expect("[1, 2]");
        }
    });
    let diff = (&by_hand - &from_layers).mapv(f32::abs).sum();
    println!("∂E/∂W₂ by hand {by_hand:.5}, from backward {from_layers:.5} (|Δ| = {diff:.1e})");
    assert!(diff < 1e-6);

    update(&mut net, 2.0);
    let mut e = e0;
    for s in 1..4000 {
        e = step(&mut net, &x, &t, &mut y);
        update(&mut net, 2.0);
        if s % 1000 == 0 {
            println!("step {s}: E = {e:.5}");
        }
    }
    println!("E: {e0:.4} → {e:.5}; outputs {:.3}", y.view2().column(0));
    assert!(e < 0.01, "XOR not learned: E = {e}");
    let right = y
        .as_slice()
        .iter()
        .zip(t.iter())
        .all(|(y, t)| (y - t).abs() < 0.2);
    assert!(right, "every output within 0.2 of its target");
}
