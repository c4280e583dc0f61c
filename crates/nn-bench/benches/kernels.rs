//! Criterion benchmarks of the kernels on the hot path, at the workloads' shapes:
//! GEMM, dense forward/backward, softmax + cross-entropy, convolution forward/backward (W6's
//! padded one too), batch norm in both layouts, dropout, the optimizer steps (W1's and
//! W5's parameters) and gathering a batch of random rows from a data set of Fashion-MNIST's
//! size.
//!
//! ```sh
//! cargo bench -p nn-bench --bench kernels
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use nn_core::{Buffer, Tensor, matmul_into, seeded};
use nn_layers::{
    BatchNormConfig, Conv2d, Conv2dConfig, Dense, DenseConfig, Dropout, Layer, LayerConfig, Loss,
    Mode, Sequential, SoftmaxCrossEntropy, Target,
};
use nn_optim::{Adam, AdamConfig, BatchBuffer, Data, Optimizer, Sgd, SgdConfig};

fn ramp(shape: &[usize]) -> Tensor {
    let mut i = 0u32;
    Tensor::from_shape_fn(shape, |_| {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        (i >> 16) as f32 / 65_536.0 - 0.5
    })
}

fn gemm(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    for (name, m, k, n, ta) in [
        ("w1_fwd_l1_64x784x128", 64, 784, 128, false),
        ("w1_bwd_dw1_784x64x128_at", 784, 64, 128, true),
        ("w1_fwd_l2_64x128x10", 64, 128, 10, false),
        ("w2_fwd_l1_128x784x512", 128, 784, 512, false),
        ("w2_fwd_l2_128x512x256", 128, 512, 256, false),
        ("w4_b1024_1024x784x128", 1024, 784, 128, false),
    ] {
        let a = if ta {
            Array2::from_elem((k, m), 0.5f32)
        } else {
            Array2::from_elem((m, k), 0.5f32)
        };
        let b = Array2::from_elem((k, n), 0.25f32);
        let mut out = Array2::<f32>::zeros((m, n));
        let av = if ta { a.t() } else { a.view() };
        g.bench_function(name, |bch| {
            bch.iter(|| matmul_into(1.0, av, b.view(), 0.0, &mut out.view_mut()).unwrap())
        });
    }
    // a dense layer's forward product, Y = X·Wᵀ with W stored [n_out, n_in]
    for (name, m, k, n) in [
        ("xwt_w1_l1_64x784x128", 64, 784, 128),
        ("xwt_w2_l1_128x784x512", 128, 784, 512),
        ("xwt_scale_widest_64x784x2048", 64, 784, 2048),
    ] {
        let x = ramp(&[m, k]).into_dimensionality().unwrap();
        let w: Array2<f32> = ramp(&[n, k]).into_dimensionality().unwrap();
        let mut out = Array2::<f32>::zeros((m, n));
        g.bench_function(name, |bch| {
            bch.iter(|| matmul_into(1.0, x.view(), w.t(), 0.0, &mut out.view_mut()).unwrap())
        });
    }
    g.finish();
}

fn dense(c: &mut Criterion) {
    let mut layer = Dense::new(&DenseConfig::new(784, 128), &mut seeded(0)).unwrap();
    let x = ramp(&[64, 784]);
    let dy = ramp(&[64, 128]);
    let (mut y, mut dx) = (Buffer::new(), Buffer::new());
    c.bench_function("dense_784x128_b64_forward_train", |b| {
        b.iter(|| layer.forward(x.view(), &mut y, Mode::Train).unwrap())
    });
    c.bench_function("dense_784x128_b64_backward", |b| {
        b.iter(|| {
            layer
                .backward(x.view(), y.view(), dy.view(), Some(&mut dx))
                .unwrap()
        })
    });
    c.bench_function("dense_784x128_b64_backward_params", |b| {
        b.iter(|| layer.backward(x.view(), y.view(), dy.view(), None).unwrap())
    });
    let x1 = ramp(&[1, 784]);
    c.bench_function("dense_784x128_b1_forward_eval", |b| {
        b.iter(|| layer.forward(x1.view(), &mut y, Mode::Eval).unwrap())
    });
    // Image-like inputs, half of them zeros: evaluation skips the zeros, training's forward
    // pass multiplies them (the dense product at the same shape).
    for batch in [1, 64, 1024] {
        let x = blobs(batch);
        for (mode, label) in [
            (Mode::Eval, "eval_skip_zeros"),
            (Mode::Train, "train_dense"),
        ] {
            c.bench_function(&format!("dense_784x128_b{batch}_blobs_{label}"), |b| {
                b.iter(|| layer.forward(x.view(), &mut y, mode).unwrap())
            });
        }
    }
}

/// `n` 28×28 "images": an ellipse of non-zero pixels on a zero background, its radii
/// varying from image to image (30–65 % of the pixels non-zero, as in Fashion-MNIST).
fn blobs(n: usize) -> Tensor {
    let values = ramp(&[n * 784]);
    Tensor::from_shape_fn(&[n, 784][..], |ix| {
        let (i, p) = (ix[0], ix[1]);
        let (a, b) = (8.0 + (i % 5) as f32, 10.0 + (i % 4) as f32);
        let (r, c) = ((p / 28) as f32 - 13.5, (p % 28) as f32 - 13.5);
        let inside = (r / b).powi(2) + (c / a).powi(2) < 1.0;
        if inside {
            values[[i * 784 + p]] + 0.6
        } else {
            0.0
        }
    })
}

fn softmax_ce(c: &mut Criterion) {
    let z = ramp(&[64, 10]);
    let classes: Vec<usize> = (0..64).map(|i| i % 10).collect();
    let mut loss = SoftmaxCrossEntropy::new();
    c.bench_function("softmax_cross_entropy_64x10", |b| {
        b.iter(|| {
            black_box(loss.forward(z.view(), Target::Classes(&classes)).unwrap());
            black_box(loss.backward().unwrap().len())
        })
    });
}

fn conv(c: &mut Criterion) {
    // W3's second convolution: [64, 8, 12, 12] → 16 filters of 5×5 → [64, 16, 8, 8]
    let mut layer = Conv2d::new(&Conv2dConfig::new(8, 16, 5), &mut seeded(0)).unwrap();
    let x = ramp(&[64, 8, 12, 12]);
    let dy = ramp(&[64, 16, 8, 8]);
    let (mut y, mut dx) = (Buffer::new(), Buffer::new());
    c.bench_function("conv_8to16_5x5_b64_forward_train", |b| {
        b.iter(|| layer.forward(x.view(), &mut y, Mode::Train).unwrap())
    });
    // the backward benches read the forward pass's output: made here, so that a filter
    // that skips the forward bench does not leave it empty
    layer.forward(x.view(), &mut y, Mode::Train).unwrap();
    c.bench_function("conv_8to16_5x5_b64_backward", |b| {
        b.iter(|| {
            layer
                .backward(x.view(), y.view(), dy.view(), Some(&mut dx))
                .unwrap()
        })
    });
    let mut first = Conv2d::new(&Conv2dConfig::new(1, 8, 5), &mut seeded(0)).unwrap();
    let x = ramp(&[64, 1, 28, 28]);
    c.bench_function("conv_1to8_5x5_b64_forward_train", |b| {
        b.iter(|| first.forward(x.view(), &mut y, Mode::Train).unwrap())
    });
    // the first layer's backward pass: parameter gradients only, as training asks
    let dy = ramp(&[64, 8, 24, 24]);
    first.forward(x.view(), &mut y, Mode::Train).unwrap();
    c.bench_function("conv_1to8_5x5_b64_backward_params", |b| {
        b.iter(|| first.backward(x.view(), y.view(), dy.view(), None).unwrap())
    });
}

/// W6's layers besides the dense ones: the padded first convolution, batch norm on images
/// and on rows, dropout.
fn w6_layers(c: &mut Criterion) {
    let mut cfg = Conv2dConfig::new(1, 12, 5);
    cfg.padding = (2, 2);
    let mut conv = Conv2d::new(&cfg, &mut seeded(0)).unwrap();
    let x = ramp(&[64, 1, 28, 28]);
    let dy = ramp(&[64, 12, 28, 28]);
    let (mut y, mut dx) = (Buffer::new(), Buffer::new());
    c.bench_function("conv_1to12_5x5_pad2_b64_forward_train", |b| {
        b.iter(|| conv.forward(x.view(), &mut y, Mode::Train).unwrap())
    });
    conv.forward(x.view(), &mut y, Mode::Train).unwrap();
    c.bench_function("conv_1to12_5x5_pad2_b64_backward_params", |b| {
        b.iter(|| conv.backward(x.view(), y.view(), dy.view(), None).unwrap())
    });
    for (name, shape) in [
        ("batchnorm_12ch_28x28_b64", vec![64, 12, 28, 28]),
        ("batchnorm_24ch_10x10_b64", vec![64, 24, 10, 10]),
        ("batchnorm_120_rows_b64", vec![64, 120]),
    ] {
        let mut bn = BatchNormConfig::new(shape[1])
            .build(&mut seeded(0))
            .unwrap();
        let (x, dy) = (ramp(&shape), ramp(&shape));
        c.bench_function(&format!("{name}_forward_train"), |b| {
            b.iter(|| bn.forward(x.view(), &mut y, Mode::Train).unwrap())
        });
        bn.forward(x.view(), &mut y, Mode::Train).unwrap();
        c.bench_function(&format!("{name}_backward"), |b| {
            b.iter(|| {
                bn.backward(x.view(), y.view(), dy.view(), Some(&mut dx))
                    .unwrap()
            })
        });
    }
    let mut drop = Dropout::new(0.25, 7).unwrap();
    let (x, dy) = (ramp(&[64, 120]), ramp(&[64, 120]));
    c.bench_function("dropout_120_b64_forward_backward", |b| {
        b.iter(|| {
            drop.forward(x.view(), &mut y, Mode::Train).unwrap();
            drop.backward(x.view(), y.view(), dy.view(), Some(&mut dx))
                .unwrap()
        })
    });
}

fn optimizer(c: &mut Criterion) {
    let mut r = seeded(1);
    let mut net = Sequential::new()
        .with(Dense::new(&DenseConfig::new(784, 128), &mut r).unwrap())
        .with(Dense::new(&DenseConfig::new(128, 10), &mut r).unwrap());
    let mut sgd = Sgd::new(SgdConfig::plain()).unwrap();
    c.bench_function("sgd_step_w1_params", |b| {
        b.iter(|| sgd.step(&mut net, 0.01).unwrap())
    });
    let mut momentum = Sgd::new(SgdConfig::plain().momentum(0.9)).unwrap();
    c.bench_function("momentum_step_w1_params", |b| {
        b.iter(|| momentum.step(&mut net, 0.01).unwrap())
    });
    let mut adam = Adam::new(AdamConfig::adam()).unwrap();
    c.bench_function("adam_step_w1_params", |b| {
        b.iter(|| adam.step(&mut net, 1e-3).unwrap())
    });
    let mut w5 = Sequential::new()
        .with(Dense::new(&DenseConfig::new(784, 256), &mut r).unwrap())
        .with(Dense::new(&DenseConfig::new(256, 128), &mut r).unwrap())
        .with(Dense::new(&DenseConfig::new(128, 10), &mut r).unwrap());
    let mut adam = Adam::new(AdamConfig::adam()).unwrap();
    c.bench_function("adam_step_w5_params", |b| {
        b.iter(|| adam.step(&mut w5, 1e-3).unwrap())
    });
}

/// A batch of W1's (64) and W2's (128) random rows gathered from 60,000 rows of 784 values:
/// each row begins with a cache miss, as in training.
fn gather(c: &mut Criterion) {
    let (n, row) = (60_000, 784);
    let x = ramp(&[n, row]);
    let classes: Vec<usize> = (0..n).map(|i| i % 10).collect();
    let data = Data::new(x.view(), Target::Classes(&classes)).expect("as many targets as rows");
    let mut buffer = BatchBuffer::new();
    for batch in [64, 128] {
        // consecutive batches of a shuffled order of the rows, as in an epoch
        let mut order: Vec<usize> = (0..n).collect();
        nn_core::rng::shuffle(&mut order, &mut seeded(42));
        let mut batches = order.chunks_exact(batch).cycle();
        c.bench_function(&format!("gather_784_b{batch}"), |b| {
            b.iter(|| {
                let idx = batches.next().expect("cycles forever");
                black_box(buffer.gather(&data, idx).x.len())
            })
        });
    }
}

criterion_group!(
    benches, gemm, dense, softmax_ce, conv, w6_layers, optimizer, gather
);
criterion_main!(benches);
