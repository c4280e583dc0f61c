#![doc = include_str!("../README.md")]
//!
//! ## Contents
//!
//! What each module holds:
//!
//! - [`Tensor`] (`ArrayD<f32>`, batch first) and [`Buffer`], a reusable output buffer;
//! - [`matmul_into`]: `C ← α·A·B + β·C` into a preallocated output, shape-checked;
//!   [`gemm_kernel`] computes it, [`gemm_dots`] for a few rows against a very wide or very
//!   narrow transposed weight (x86-64 with AVX-512);
//! - [`ops`]: bias broadcast and column sums;
//! - [`softmax`]: numerically stable softmax and log-softmax;
//! - [`Init`]: Xavier/Glorot and He/Kaiming initialisers with dense and conv fan-in;
//! - [`rng`]: the seeded generator and the draws built on it;
//! - [`Param`]: a value and its accumulated gradient;
//! - [`pool`]: max pooling over 2×2 windows, keeping where each maximum came from;
//! - [`prefetch`]: hints that bring memory into L2 ahead of use;
//! - [`skip_zeros`]: `X·B` skipping the zeros of `X` (sparse inputs at inference);
//! - [`conv`]: the convolution kernels (im2col, col2im, the threaded passes, and direct
//!   kernels for layers with few input channels);
//! - [`bounded`]: serde helpers that stop over-long lists while a file is decoded;
//! - [`limits`]: the explicit size limits and the checked arithmetic that enforces them;
//! - [`Error`]: one error type whose messages name the operation and the shapes.

pub mod amx;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod bounded;
pub mod conv;
pub mod error;
#[cfg(target_arch = "x86_64")]
pub mod gemm_dots;
pub mod gemm_kernel;
pub mod gemm_loops;
#[cfg(target_arch = "x86_64")]
mod gemm_swapped;
pub mod init;
pub mod limits;
pub mod matmul;
pub mod norm;
pub mod ops;
pub mod parallel;
pub mod param;
pub mod pool;
pub mod prefetch;
pub mod rng;
pub mod skip_zeros;
pub mod softmax;
pub mod tensor;

pub use error::{Error, Result, Shape};
pub use init::{Init, fans};
pub use matmul::{matmul, matmul_into};
pub use param::Param;
pub use rng::{Rng, RngState, seeded};
pub use tensor::{Buffer, Tensor, TensorData, row_major};

/// Re-export of the `ndarray` version this crate is built on.
pub use ndarray;
