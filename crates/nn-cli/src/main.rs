//! `nn`: train, evaluate and use small neural networks from the command line.
//!
//! ```text
//! nn train --data data/digits.csv --label digit --layers "dense:64,relu,dense:10" --out digits.nnm
//! nn eval --model digits.nnm --data data/digits.csv
//! nn predict --model digits.nnm --input rows.csv
//! nn inspect digits.nnm
//! nn gradcheck --layers "dense:8,tanh,dense:3" --input-shape 5
//! ```
//!
//! Every user error is one line on stderr and exit code 1; usage errors exit with 2.

mod commands;
mod data;
mod plot;
mod progress;
mod spec;
mod train;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    Eval(commands::EvalArgs),
    /// Class and probability (or value) for each input row.
    Predict(commands::PredictArgs),
    /// Architecture, parameters, metadata, format version and checksum of a file.
    Inspect {
        /// A model (.nnm) or checkpoint (.nnck) file.
        file: PathBuf,
    },
    /// Check every layer's gradients of a network spec numerically.
    Gradcheck(commands::GradcheckArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => train::run(&a),
        Command::Eval(a) => commands::eval(&a),
        Command::Predict(a) => commands::predict(&a),
        Command::Inspect { file } => commands::inspect(&file),
        Command::Gradcheck(a) => commands::gradcheck(&a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
