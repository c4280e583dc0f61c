//! The one error type of `nn-optim`.

/// Errors returned by optimizers, schedules and the training loop.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An error from a layer or loss (shapes, a missing forward…).
    #[error(transparent)]
    Layers(#[from] nn_layers::Error),
    /// The loss or the gradients stopped being finite; training stopped before applying
    /// that step, so the weights are those after the last good step.
    #[error(
        "training diverged at epoch {epoch}, step {step}: {what} is {value}; try a lower learning rate, gradient clipping or normalised inputs"
    )]
    NonFinite {
        /// Epoch, from 1.
        epoch: usize,
        /// Step within the epoch, from 1.
        step: usize,
        /// `"loss"` or `"gradient norm"`.
        what: &'static str,
        /// The offending value (NaN or ±inf).
        value: f32,
    },
    /// A hyper-parameter or training setting out of range.
    #[error("invalid {what}: {message}")]
    Config {
        /// The setting, e.g. `"learning rate"`.
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Inputs and targets that do not fit together.
    #[error("data: {0}")]
    Data(String),
    /// Saved optimizer state that does not fit this optimizer or model.
    #[error("optimizer state: {0}")]
    State(String),
    /// Saved weights or training state (a snapshot, a checkpoint's best weights or
    /// history) that do not fit the model.
    #[error("{0}")]
    Snapshot(String),
    /// The observer failed after an epoch (e.g. it could not write a checkpoint).
    #[error("after epoch {epoch}: {message}")]
    Observer {
        /// The epoch just finished, from 1.
        epoch: usize,
        /// The observer's error and its causes.
        message: String,
    },
}

impl From<nn_core::Error> for Error {
    fn from(e: nn_core::Error) -> Self {
        Error::Layers(e.into())
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn config(what: &'static str, message: impl Into<String>) -> Error {
    Error::Config {
        what,
        message: message.into(),
    }
}
