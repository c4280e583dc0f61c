//! The derivation's small network, worked through by hand: 2 inputs, 2 sigmoid hidden
//! neurons, 1 sigmoid output, mean squared error, fixed weights.
//!
//! ```text
//! x  = [0.05, 0.10]          target t = 0.01
//! W¹ = [[0.15, 0.20],        b¹ = [0.35, 0.35]      (w_ji: row j = hidden neuron j)
//!       [0.25, 0.30]]
//! W² = [[0.40, 0.45]]        b² = [0.60]
//!
//! Forward
//!   z¹₀ = 0.15·0.05 + 0.20·0.10 + 0.35 = 0.3775         h₀ = σ(0.3775) = 0.593270
//!   z¹₁ = 0.25·0.05 + 0.30·0.10 + 0.35 = 0.3925         h₁ = σ(0.3925) = 0.596884
//!   z²  = 0.40·0.593270 + 0.45·0.596884 + 0.60 = 1.105906
//!   y   = σ(1.105906) = 0.751365
//!   E   = (y − t)² = 0.741365² = 0.549622                (MSE, mean over 1 entry)
//!
//! Backward (δ = ∂E/∂z of each neuron)
//!   ∂E/∂y  = 2·(y − t) = 1.482730
//!   δ²     = ∂E/∂y · y·(1 − y) = 1.482730 · 0.751365 · 0.248635 = 0.276997
//!   ∂E/∂W² = δ²·h = [0.276997·0.593270, 0.276997·0.596884] = [0.164334, 0.165335]
//!   ∂E/∂b² = δ² = 0.276997
//!   δ¹_j   = δ²·W²_j·h_j·(1 − h_j):
//!            δ¹₀ = 0.276997·0.40·0.593270·0.406730 = 0.026736
//!            δ¹₁ = 0.276997·0.45·0.596884·0.403116 = 0.029992
//!   ∂E/∂W¹_ji = δ¹_j·x_i = [[0.001337, 0.002674], [0.001500, 0.002999]]
//!   ∂E/∂b¹ = δ¹ = [0.026736, 0.029992]
//!   ∂E/∂x_i = Σ_j δ¹_j·W¹_ji = [0.026736·0.15 + 0.029992·0.25, 0.026736·0.20 + 0.029992·0.30]
//!           = [0.011508, 0.014345]
//! ```

use ndarray::{ArrayD, array};
use nn::layers::{Dense, Layer, Loss, Mode, Mse, Sequential, Sigmoid, Slot, Target};

fn assert_close(got: &ArrayD<f32>, want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-6, "{what}: got {got:?}, want {want:?}");
    }
}

fn network() -> Sequential {
    let l1 = Dense::from_weights(
        array![[0.15f32, 0.20], [0.25, 0.30]].into_dyn(),
        Some(array![0.35f32, 0.35].into_dyn()),
    )
    .unwrap();
    let l2 = Dense::from_weights(
        array![[0.40f32, 0.45]].into_dyn(),
        Some(array![0.60f32].into_dyn()),
    )
    .unwrap();
    Sequential::new()
        .with(l1)
        .with(Sigmoid::new())
        .with(l2)
        .with(Sigmoid::new())
}

fn grads(net: &mut Sequential) -> Vec<(String, ArrayD<f32>)> {
    let mut out = Vec::new();
    net.visit(&mut |name, slot| {
        if let Slot::Param(p) = slot {
            out.push((name.to_string(), p.grad.clone()));
        }
    });
    out
}

#[test]
fn forward_delta_terms_and_weight_gradients_match_the_hand_derivation() {
    let mut net = network();
    let x = array![[0.05f32, 0.10]].into_dyn();
    let t = array![[0.01f32]].into_dyn();

    // forward, keeping each layer's output: check the hidden activations h via the first two layers
    let h = {
        let mut first = Sequential::new()
            .with(
                Dense::from_weights(
                    array![[0.15f32, 0.20], [0.25, 0.30]].into_dyn(),
                    Some(array![0.35f32, 0.35].into_dyn()),
                )
                .unwrap(),
            )
            .with(Sigmoid::new());
        first.run(x.view(), Mode::Eval).unwrap().to_owned()
    };
    assert_close(&h, &[0.593_270, 0.596_884], "h");

    let y = net.run(x.view(), Mode::Train).unwrap().to_owned();
    assert_close(&y, &[0.751_365], "y");

    let mut mse = Mse::new();
    let e = mse.forward(y.view(), Target::Values(t.view())).unwrap();
    assert!((e - 0.549_622).abs() < 1e-6, "E = {e}");

    let dy = mse.backward().unwrap().to_owned();
    assert_close(&dy, &[1.482_73], "∂E/∂y");

    let dx = net.run_backward(x.view(), dy.view()).unwrap().to_owned();
    assert_close(&dx, &[0.011_508, 0.014_345], "∂E/∂x");

    let g = grads(&mut net);
    let names: Vec<&str> = g.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_close(
        &g[0].1,
        &[0.001_337, 0.002_674, 0.001_500, 0.002_999],
        "∂E/∂W¹",
    );
    assert_close(&g[1].1, &[0.026_736, 0.029_992], "∂E/∂b¹ = δ¹");
    assert_close(&g[2].1, &[0.164_334, 0.165_335], "∂E/∂W²");
    assert_close(&g[3].1, &[0.276_997], "∂E/∂b² = δ²");
}

#[test]
fn one_gradient_descent_step_lowers_the_error() {
    // w_new = w_old − η·∂E/∂w with η = 0.5, then the same input again
    let mut net = network();
    let x = array![[0.05f32, 0.10]].into_dyn();
    let t = array![[0.01f32]].into_dyn();
    let mut mse = Mse::new();
    let y = net.run(x.view(), Mode::Train).unwrap().to_owned();
    let e0 = mse.forward(y.view(), Target::Values(t.view())).unwrap();
    net.run_backward(x.view(), mse.backward().unwrap()).unwrap();
    net.visit(&mut |_, slot| {
        if let Slot::Param(p) = slot {
            p.value.zip_mut_with(&p.grad, |w, &g| *w -= 0.5 * g);
        }
    });
    let y = net.run(x.view(), Mode::Eval).unwrap();
    let e1 = mse.forward(y, Target::Values(t.view())).unwrap();
    // b² alone moves by −0.5·0.276997: y drops, and so does E
    assert!(e1 < e0, "E went from {e0} to {e1}");
}
