//! Times `matmul_into` at the benchmark workloads' shapes (GFLOP/s).
//!
//! ```sh
//! NN_NUM_THREADS=2 cargo run --release -p nn-core --example gemm_shapes
//! ```
use std::time::Instant;

use ndarray::Array2;
use nn_core::matmul_into;

fn main() {
    let shapes = [
        ("W1 fwd L1", 64, 784, 128, false),
        ("W1 bwd dW1", 784, 64, 128, true),
        ("W1 fwd L2", 64, 128, 10, false),
        ("W2 fwd L1", 128, 784, 512, false),
        ("W2 fwd L2", 128, 512, 256, false),
        ("W4 b1024", 1024, 784, 128, false),
        ("W4 b1", 1, 784, 128, false),
        ("1024^3", 1024, 1024, 1024, false),
    ];
    println!("threads: {}", nn_core::parallel::parallelism());
    for (name, m, k, n, ta) in shapes {
        let a = if ta {
            Array2::<f32>::from_elem((k, m), 0.5)
        } else {
            Array2::<f32>::from_elem((m, k), 0.5)
        };
        let b = Array2::<f32>::from_elem((k, n), 0.25);
        let mut c = Array2::<f32>::zeros((m, n));
        let av = if ta { a.t() } else { a.view() };
        let mut run = || matmul_into(1.0, av, b.view(), 0.0, &mut c.view_mut()).unwrap();
        for _ in 0..3 {
            run();
        }
        let mut samples = Vec::new();
        for _ in 0..5 {
            let (t, mut reps) = (Instant::now(), 0u32);
            while t.elapsed().as_secs_f64() < 0.2 {
                run();
                reps += 1;
            }
            samples.push(t.elapsed().as_secs_f64() / reps as f64);
        }
        samples.sort_by(f64::total_cmp);
        let gf = |t: f64| 2.0 * (m * k * n) as f64 / t / 1e9;
        println!(
            "{name:<12} {m:>5}x{k:>5}x{n:>5}  {:>9.2} µs  {:>6.1} GFLOP/s ({:.1}–{:.1})",
            samples[2] * 1e6,
            gf(samples[2]),
            gf(samples[4]),
            gf(samples[0])
        );
    }
}
