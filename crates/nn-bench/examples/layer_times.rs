//! Per-layer forward and backward times of the W3 network (or, with `w1`, `w2`, `w5` or `w6`,
//! of that workload's network) on one batch of 64 images (128 for W2, its batch size): where
//! a training step spends its time.
//!
//! ```sh
//! cargo run --release -p nn-bench --example layer_times
//! cargo run --release -p nn-bench --example layer_times -- w6
//! cargo run --release -p nn-bench --example layer_times -- w1
//! NN_NUM_THREADS=1 cargo run --release -p nn-bench --example layer_times
//! ```
//!
//! Each figure is the fastest of 12 blocks of 40 steps (the machine's clock drifts; the
//! fastest block is the least disturbed). The input is synthetic: timing does not depend on
//! the pixel values.
use std::time::Instant;

use ndarray::{Array4, ArrayViewD};
use nn_core::{Buffer, seeded};
use nn_layers::{
    BatchNormConfig, Conv2d, Conv2dConfig, Dense, DenseConfig, Dropout, Flatten, Layer,
    LayerConfig, MaxPool2d, Mode, Relu,
};

/// Forward through `layers` into `acts` (one output per layer), adding each layer's time to
/// `times` when `on`.
fn forward(
    layers: &mut [Box<dyn Layer>],
    x: ArrayViewD<f32>,
    acts: &mut [Buffer],
    times: &mut [f64],
    on: bool,
) {
    for (i, layer) in layers.iter_mut().enumerate() {
        let (before, after) = acts.split_at_mut(i);
        let input = if i == 0 {
            x.view()
        } else {
            before[i - 1].view()
        };
        let t = Instant::now();
        layer
            .forward(input, &mut after[0], Mode::Train)
            .expect("forward");
        if on {
            times[i] += t.elapsed().as_secs_f64();
        }
    }
}

/// Backward through `layers` from `d` (the first layer computes only its parameter
/// gradients), with two gradient buffers used in turn.
fn backward(
    layers: &mut [Box<dyn Layer>],
    x: ArrayViewD<f32>,
    acts: &[Buffer],
    grads: &mut [Buffer; 2],
    times: &mut [f64],
    on: bool,
) {
    let [a, b] = grads;
    let (mut g, mut g_prev) = (a, b);
    for i in (0..layers.len()).rev() {
        let input = if i == 0 { x.view() } else { acts[i - 1].view() };
        let t = Instant::now();
        let dx = (i > 0).then_some(&mut *g_prev);
        layers[i]
            .backward(input, acts[i].view(), g.view(), dx)
            .expect("backward");
        if on {
            times[i] += t.elapsed().as_secs_f64();
        }
        std::mem::swap(&mut g, &mut g_prev);
    }
}

/// W3's network: the small CNN.
fn w3(rng: &mut nn_core::Rng) -> Vec<Box<dyn Layer>> {
    vec![
        Box::new(Conv2d::new(&Conv2dConfig::new(1, 8, 5), rng).expect("conv")),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::max(2, 2).expect("pool")),
        Box::new(Conv2d::new(&Conv2dConfig::new(8, 16, 5), rng).expect("conv")),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::max(2, 2).expect("pool")),
        Box::new(Flatten::new()),
        Box::new(Dense::new(&DenseConfig::new(256, 10), rng).expect("dense")),
    ]
}

/// W6's network: padded convolution, batch norm, dropout.
fn w6(rng: &mut nn_core::Rng) -> Vec<Box<dyn Layer>> {
    let mut conv1 = Conv2dConfig::new(1, 12, 5);
    conv1.padding = (2, 2);
    vec![
        Box::new(Conv2d::new(&conv1, rng).expect("conv")),
        BatchNormConfig::new(12).build(rng).expect("batch norm"),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::max(2, 2).expect("pool")),
        Box::new(Conv2d::new(&Conv2dConfig::new(12, 24, 5), rng).expect("conv")),
        BatchNormConfig::new(24).build(rng).expect("batch norm"),
        Box::new(Relu::new()),
        Box::new(MaxPool2d::max(2, 2).expect("pool")),
        Box::new(Flatten::new()),
        Box::new(Dense::new(&DenseConfig::new(600, 120), rng).expect("dense")),
        Box::new(Relu::new()),
        Box::new(Dropout::new(0.25, 42).expect("dropout")),
        Box::new(Dense::new(&DenseConfig::new(120, 10), rng).expect("dense")),
    ]
}

/// An MLP on flat 784-pixel inputs with the given hidden widths (W1: `[128]`, W2: `[512,
/// 256]`, W5: `[256, 128]`), ReLU after each hidden layer, 10 outputs.
fn mlp(hidden: &[usize], rng: &mut nn_core::Rng) -> Vec<Box<dyn Layer>> {
    let mut layers: Vec<Box<dyn Layer>> = Vec::new();
    let mut n_in = 784;
    for &h in hidden {
        layers.push(Box::new(
            Dense::new(&DenseConfig::new(n_in, h), rng).expect("dense"),
        ));
        layers.push(Box::new(Relu::new()));
        n_in = h;
    }
    layers.push(Box::new(
        Dense::new(&DenseConfig::new(n_in, 10), rng).expect("dense"),
    ));
    layers
}

fn main() {
    let mut rng = seeded(1);
    let which = std::env::args().nth(1).unwrap_or_default();
    // the layers, the batch size and whether the input is flat (an MLP's)
    let (mut layers, batch, flat): (Vec<Box<dyn Layer>>, usize, bool) = match which.as_str() {
        "w6" => (w6(&mut rng), 64, false),
        "w1" => (mlp(&[128], &mut rng), 64, true),
        "w2" => (mlp(&[512, 256], &mut rng), 128, true),
        "w5" => (mlp(&[256, 128], &mut rng), 64, true),
        _ => (w3(&mut rng), 64, false),
    };
    let image = Array4::<f32>::from_shape_fn((batch, 1, 28, 28), |(i, _, h, w)| {
        ((i * 7 + h * 3 + w) % 17) as f32 / 17.0
    })
    .into_dyn();
    let x = if flat {
        image
            .into_shape_with_order(vec![batch, 784])
            .expect("flat images")
    } else {
        image
    };
    let n = layers.len();
    let mut acts: Vec<Buffer> = (0..n).map(|_| Buffer::new()).collect();
    let mut grads = [Buffer::new(), Buffer::new()];
    let (steps, blocks, warm) = (40, 12, 20);
    let mut best_f = vec![f64::MAX; n];
    let mut best_b = vec![f64::MAX; n];
    for _ in 0..blocks {
        let mut fwd = vec![0.0f64; n];
        let mut bwd = vec![0.0f64; n];
        for step in 0..steps + warm {
            let on = step >= warm;
            forward(&mut layers, x.view(), &mut acts, &mut fwd, on);
            grads[0].assign(acts[n - 1].view());
            grads[0].as_mut_slice().iter_mut().for_each(|v| *v *= 0.01);
            backward(&mut layers, x.view(), &acts, &mut grads, &mut bwd, on);
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
    let batches = 60_000usize.div_ceil(batch);
    println!(
        "total {:.1} µs per batch of {batch} ({:.3} s for the {} batches of an epoch)",
        total * 1e6,
        total * batches as f64,
        batches
    );
}
