//! `nn`: train, evaluate and use small neural networks from the command line.
//!
//! ```text
//! nn train --data data/digits.csv --label digit --layers "dense:64,relu,dense:10" --out digits.nnm
//! nn eval --model digits.nnm --data data/digits.csv
//! nn predict --model digits.nnm --input rows.csv
//! nn inspect digits.nnm
//! nn gradcheck --layers "dense:8,tanh,dense:3" --input-shape 5
//! nn export --model digits.nnm --format onnx --out digits.onnx
//! nn import --weights mlp.safetensors --layers "dense:16,relu,dense:3" --input-shape 4 --out mlp.nnm
//! ```
//!
//! Every user error is one line on stderr and exit code 1; usage errors exit with 2. Output
//! to a closed pipe ends the program quietly.

mod eval;
mod gradcheck;
mod inspect;
mod output;
mod plot;
mod predict;
mod progress;
mod train;
mod transfer;

mod data;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
pub(crate) use nn_cli::spec;

/// Train, evaluate and use small neural networks on the CPU.
#[derive(Parser)]
#[command(name = "nn", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network on a CSV file or an IDX folder and save it.
    Train(Box<train::TrainArgs>),
    /// Loss, accuracy and confusion matrix of a saved model on a data set.
    Eval(eval::EvalArgs),
    /// Class and probability (or value) for each input row.
    Predict(predict::PredictArgs),
    /// Architecture, parameters, metadata, format version and checksum of a file.
    Inspect {
        /// A model (.nnm) or checkpoint (.nnck) file.
        file: PathBuf,
    },
    /// Check every layer's gradients of a network spec numerically.
    Gradcheck(gradcheck::GradcheckArgs),
    /// Write a model as safetensors (PyTorch's names) or ONNX.
    Export(transfer::ExportArgs),
    /// Make a model file from safetensors weights (exported by nn, or PyTorch's).
    Import(transfer::ImportArgs),
}

fn main() {
    let cli = Cli::parse();
    output::exit_with(match cli.command {
        Command::Train(a) => train::run(&a),
        Command::Eval(a) => eval::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Inspect { file } => inspect::run(&file),
        Command::Gradcheck(a) => gradcheck::run(&a),
        Command::Export(a) => transfer::export(&a),
        Command::Import(a) => transfer::import(&a),
    })
}
