//! The bottom of the stack on its own: this program depends on `nn-core` alone (no layers,
//! no optimizers) and computes what a dense layer with a softmax on top computes, with the
//! arithmetic written out.
//!
//! ```text
//! Z = X·Wᵀ + b          the affine part of a layer of neurons, a batch at a time
//! P = softmax(Z)        pᵢⱼ = e^{zᵢⱼ − maxⱼ zᵢ} / Σₖ e^{zᵢₖ − maxⱼ zᵢ}
//! E = −(1/N)·Σᵢ ln pᵢ,tᵢ  the cross-entropy of the right classes tᵢ
//! ```
//!
//! ```sh
//! cargo run -p nn-core --example gemm_softmax
//! ```

use nn_core::ndarray::{Array1, Array2, Ix2};
use nn_core::softmax::{log_softmax_rows_into, softmax_rows_into};
use nn_core::{Init, matmul_into, ops, seeded};

fn main() -> Result<(), nn_core::Error> {
    let mut rng = seeded(42);
    let (n, n_in, n_out) = (4, 3, 2);
    let x = Array2::from_shape_fn((n, n_in), |(i, j)| (i as f32 - j as f32) / 2.0);
    let w = Init::HeUniform.tensor(&[n_out, n_in], &mut rng)?; // U(−√(6/3), √(6/3))
    let w = w.into_dimensionality::<Ix2>().expect("two axes");
    let b = Array1::from(vec![0.1f32, -0.1]);

    // Z = X·Wᵀ + b through the GEMM kernel, then the same by three loops
    let mut z = Array2::zeros((n, n_out));
    matmul_into(1.0, x.view(), w.t(), 0.0, &mut z.view_mut())?;
    ops::add_row_broadcast(&mut z.view_mut(), b.view())?;
    for ((i, o), &zio) in z.indexed_iter() {
        let by_hand: f32 = (0..n_in).map(|k| x[[i, k]] * w[[o, k]]).sum::<f32>() + b[o];
        assert!(
            (zio - by_hand).abs() < 1e-6,
            "z[{i}, {o}]: {zio} vs {by_hand}"
        );
    }

    // P = softmax(Z), ln P = log_softmax(Z)
    let (mut p, mut log_p) = (Array2::zeros((n, n_out)), Array2::zeros((n, n_out)));
    softmax_rows_into(z.view(), &mut p.view_mut())?;
    log_softmax_rows_into(z.view(), &mut log_p.view_mut())?;
    for (i, row) in p.rows().into_iter().enumerate() {
        assert!(
            (row.sum() - 1.0).abs() < 1e-6,
            "row {i} of P sums to {}",
            row.sum()
        );
    }
    assert!(
        p.iter()
            .zip(&log_p)
            .all(|(p, lp)| (p.ln() - lp).abs() < 1e-5)
    );

    // E for the classes t = [0, 1, 0, 1]
    let t = [0usize, 1, 0, 1];
    let e = -t
        .iter()
        .enumerate()
        .map(|(i, &c)| log_p[[i, c]])
        .sum::<f32>()
        / n as f32;
    println!("W =\n{w:.4}\nZ = X·Wᵀ + b =\n{z:.4}\nP = softmax(Z) =\n{p:.4}");
    println!("cross-entropy of t = {t:?}: E = {e:.4}");

    // a softmax that does not subtract the row maximum overflows; this one does not
    let big = Array2::from_shape_vec((1, 2), vec![1000.0f32, 999.0]).expect("two values");
    let mut pb = Array2::zeros((1, 2));
    softmax_rows_into(big.view(), &mut pb.view_mut())?;
    let expected = 1.0 / (1.0 + (-1.0f32).exp()); // e^1000 / (e^1000 + e^999)
    assert!((pb[[0, 0]] - expected).abs() < 1e-6);
    println!("softmax([1000, 999]) = {pb:.4}: finite");
    Ok(())
}
