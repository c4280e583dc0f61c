#![doc = include_str!("../README.md")]
//!
//! ## Contents
//!
//! - [`csv`]: CSV files with a header and a named label column (class words or numbers, or
//!   real-valued targets), with errors that give the file, line and column;
//! - [`idx`]: the IDX format of MNIST and Fashion-MNIST, raw or gzipped, checked against
//!   the file's size;
//! - [`Dataset`] and [`Normalization`] (standardisation or [0, 1] scaling fitted on the
//!   training rows and kept for inference);
//! - [`split`]: seeded train/validation/test splits, optionally stratified by class;
//! - [`model`]: model files and checkpoints (framed by [`container`], payload encoded by
//!   [`codec`], the one module that calls bincode), saved atomically and checked on load;
//! - [`onnx`]: models as ONNX graphs that ONNX Runtime runs;
//! - [`torch`]: weights as safetensors files named as PyTorch names them, in and out.

pub mod codec;
pub mod container;
pub mod csv;
pub mod dataset;
pub mod error;
pub mod idx;
pub mod limits;
pub mod model;
pub mod onnx;
pub mod split;
pub mod torch;

pub use crate::csv::{CsvOptions, LabelKind, parse_csv_features, read_csv, read_csv_features};
pub use container::{FORMAT_VERSION, FileKind, Header, write_atomic};
pub use dataset::{Dataset, Normalization, Targets};
pub use error::{Error, Result};
pub use idx::{FASHION_MNIST_CLASSES, load_idx_dir, load_idx_pair, read_idx};
pub use limits::Limits;
pub use model::{
    LoadedModel, Metadata, TrainingSummary, checkpoint_from_bytes, load_checkpoint, load_model,
    model_bytes, model_from_bytes, save_checkpoint, save_model,
};
pub use split::{Split, split_indices};
