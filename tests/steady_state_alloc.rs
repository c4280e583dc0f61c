//! Steady-state training allocates nothing per batch beyond the GEMM kernel's packing
//! scratch: with warm buffers, the difference between an epoch of 160 batches and one of
//! 40 batches, divided by 120, is exactly the number of allocations the five matrix products
//! of one step make when run on their own. Everything the toolkit itself does per batch —
//! gathering rows, forward, loss, backward, gradient norm, optimizer step — allocates
//! nothing.
//!
//! Counted with a wrapping global allocator, alone in its test binary.

// The counting allocator forwards to the system allocator; it exists for this measurement.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::Array2;
use nn::core::{Tensor, matmul_into, rng, seeded};
use nn::layers::{Dense, DenseConfig, Relu, Sequential, SoftmaxCrossEntropy, Target};
use nn::optim::{Data, EpochEnd, Observer, ObserverError, Sgd, SgdConfig, TrainConfig, Trainer};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to `System` unchanged; the counter only observes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Counts the allocations of every epoch as the run goes.
struct EpochAllocations {
    last: usize,
    counts: Vec<usize>,
}

impl Observer for EpochAllocations {
    fn on_start(&mut self, _first: usize, _last: usize, _steps: usize) {
        self.last = ALLOCS.load(Ordering::Relaxed);
    }

    fn on_epoch_end(&mut self, _end: &mut EpochEnd<'_>) -> Result<(), ObserverError> {
        let now = ALLOCS.load(Ordering::Relaxed);
        self.counts.push(now - self.last); // within the capacity reserved
        self.last = ALLOCS.load(Ordering::Relaxed);
        Ok(())
    }
}

/// Allocations made by one epoch of training on `rows` rows in batches of 16 (the last one
/// partial), after two warm-up epochs: the fewest of epochs 3, 4 and 5. A helper thread's
/// first product of some shape may allocate its packing buffer in any epoch, depending on
/// which thread the scheduler lets run which part; the fewest is the steady state.
fn allocations_in_one_epoch(rows: usize) -> usize {
    let mut r = seeded(5);
    let x = Tensor::from_shape_fn(vec![rows, 24], |_| rng::uniform(&mut r, -1.0, 1.0));
    let y: Vec<usize> = (0..rows).map(|i| i % 3).collect();
    let data = Data::new(x.view(), Target::Classes(&y)).unwrap();
    let mut model = Sequential::new()
        .with(Dense::new(&DenseConfig::new(24, 64), &mut r).unwrap())
        .with(Relu::new())
        .with(Dense::new(&DenseConfig::new(64, 3), &mut r).unwrap());
    let mut loss = SoftmaxCrossEntropy::new();
    let mut opt = Sgd::new(SgdConfig::plain().momentum(0.9)).unwrap();
    let mut trainer = Trainer::new(TrainConfig::new(5, 16, 0.05)).unwrap();
    let mut counter = EpochAllocations {
        last: 0,
        counts: Vec::with_capacity(5),
    };
    trainer
        .fit(&mut model, &mut loss, &mut opt, &data, None, &mut counter)
        .unwrap();
    counter.counts[2..].iter().copied().min().unwrap()
}

/// Allocations of the matrix products of one training step of that model, on their own:
/// forward X·W₁ᵀ and H·W₂ᵀ, backward dW₂ = dYᵀ·H, dH = dY·W₂, dW₁ = dHᵀ·X (the first
/// layer computes no input gradient).
fn gemm_allocations_per_step() -> usize {
    let (x, w1, h) = (
        Array2::<f32>::ones((16, 24)),
        Array2::<f32>::ones((64, 24)),
        Array2::<f32>::ones((16, 64)),
    );
    let (w2, dy, dh) = (
        Array2::<f32>::ones((3, 64)),
        Array2::<f32>::ones((16, 3)),
        Array2::<f32>::ones((16, 64)),
    );
    let mut o1 = Array2::<f32>::zeros((16, 64));
    let mut o2 = Array2::<f32>::zeros((16, 3));
    let mut g2 = Array2::<f32>::zeros((3, 64));
    let mut gh = Array2::<f32>::zeros((16, 64));
    let mut g1 = Array2::<f32>::zeros((64, 24));
    let mut step = || {
        matmul_into(1.0, x.view(), w1.t(), 0.0, &mut o1.view_mut()).unwrap();
        matmul_into(1.0, h.view(), w2.t(), 0.0, &mut o2.view_mut()).unwrap();
        matmul_into(1.0, dy.t(), h.view(), 1.0, &mut g2.view_mut()).unwrap();
        matmul_into(1.0, dy.view(), w2.view(), 0.0, &mut gh.view_mut()).unwrap();
        matmul_into(1.0, dh.t(), x.view(), 1.0, &mut g1.view_mut()).unwrap();
    };
    step();
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..10 {
        step();
    }
    (ALLOCS.load(Ordering::Relaxed) - before) / 10
}

#[test]
fn training_steps_allocate_nothing_but_gemm_scratch() {
    let short = allocations_in_one_epoch(40 * 16 - 5); // 40 batches, the last of 11 rows
    let long = allocations_in_one_epoch(160 * 16 - 5); // 160 batches
    assert_eq!(
        (long - short) % 120,
        0,
        "{short} allocations for 40 batches, {long} for 160"
    );
    let per_batch = (long - short) / 120;
    let kernel = gemm_allocations_per_step();
    assert_eq!(
        per_batch, kernel,
        "per batch: {per_batch} allocations, of which the GEMM kernel's packing scratch accounts for {kernel}"
    );
    let fixed = short - 40 * per_batch;
    assert!(
        fixed < 20,
        "{fixed} allocations per epoch besides the batches"
    );
}
