//! Per-layer forward and backward times of the W3 network on one batch of 64 images:
//! where a training step of the convolutional workload spends its time.
//!
//! ```sh
//! cargo run --release -p nn-bench --example layer_times
//! NN_NUM_THREADS=1 cargo run --release -p nn-bench --example layer_times
//! ```
//!
//! Each figure is the fastest of 12 blocks of 40 steps (the machine's clock drifts; the
//! fastest block is the least disturbed). The input is synthetic: timing does not depend on
//! the pixel values.
use std::time::Instant;

use ndarray::{Array4, ArrayD, ArrayViewD};
use nn_core::seeded;
use nn_layers::{Conv2d, Conv2dConfig, Dense, DenseConfig, Flatten, Layer, MaxPool2d, Mode, Relu};

/// Forward through `layers`, adding each layer's time to `times` when `on`.
fn forward(
    layers: &mut [Box<dyn Layer>],
    x: ArrayViewD<f32>,
    times: &mut [f64],
    on: bool,
) -> ArrayD<f32> {
    let (first, rest) = layers.split_first_mut().expect("a layer");
    let t = Instant::now();
    let y = first.forward(x, Mode::Train).expect("forward");
    if on {
        times[0] += t.elapsed().as_secs_f64();
    }
    if rest.is_empty() {
        return y.to_owned();
    }
    forward(rest, y, &mut times[1..], on)
}

/// Backward through `layers` (the first one computes only its parameter gradients).
fn backward(layers: &mut [Box<dyn Layer>], d: ArrayViewD<f32>, times: &mut [f64], on: bool) {
    let n = layers.len();
    let (last, rest) = layers.split_last_mut().expect("a layer");
    let t = Instant::now();
    if rest.is_empty() {
        last.backward_params(d).expect("backward");
        if on {
            times[n - 1] += t.elapsed().as_secs_f64();
        }
        return;
    }
    let g = last.backward(d).expect("backward");
    if on {
        times[n - 1] += t.elapsed().as_secs_f64();
    }
    backward(rest, g, &mut times[..n - 1], on)
}

fn main() {
    let mut rng = seeded(1);
    let mut layers: Vec<Box<dyn Layer>> = vec![
        Box::new(Conv2d::new(&Conv2dConfig::new(1, 8, 5), &mut rng).expect("conv")),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::max(2, 2).expect("pool")),
        Box::new(Conv2d::new(&Conv2dConfig::new(8, 16, 5), &mut rng).expect("conv")),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::max(2, 2).expect("pool")),
        Box::new(Flatten::new()),
        Box::new(Dense::new(&DenseConfig::new(256, 10), &mut rng).expect("dense")),
    ];
    let x = Array4::<f32>::from_shape_fn((64, 1, 28, 28), |(i, _, h, w)| {
        ((i * 7 + h * 3 + w) % 17) as f32 / 17.0
    })
    .into_dyn();
    let n = layers.len();
    let (steps, blocks, warm) = (40, 12, 20);
    let mut best_f = vec![f64::MAX; n];
    let mut best_b = vec![f64::MAX; n];
    for _ in 0..blocks {
        let mut fwd = vec![0.0f64; n];
        let mut bwd = vec![0.0f64; n];
        for step in 0..steps + warm {
            let on = step >= warm;
            let out = forward(&mut layers, x.view(), &mut fwd, on);
            let d = out.mapv(|v| v * 0.01);
            backward(&mut layers, d.view(), &mut bwd, on);
            layers.iter_mut().for_each(|l| l.zero_grad());
        }
        for l in 0..n {
            best_f[l] = best_f[l].min(fwd[l] / steps as f64);
            best_b[l] = best_b[l].min(bwd[l] / steps as f64);
        }
    }
    println!("threads: {}", nn_core::parallel::parallelism());
    for (l, layer) in layers.iter().enumerate() {
        println!(
            "{:<42} forward {:>7.1} µs   backward {:>7.1} µs",
            layer.name(),
            best_f[l] * 1e6,
            best_b[l] * 1e6
        );
    }
    let total: f64 = best_f.iter().chain(&best_b).sum();
    println!(
        "total {:.1} µs per batch of 64 ({:.3} s for the 938 batches of an epoch)",
        total * 1e6,
        total * 938.0
    );
}
