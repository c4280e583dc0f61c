//! The one error type of `nn-layers`.

/// Errors returned by layers, losses, containers and the gradient checker.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A tensor-math error (shapes, arguments), naming the operation and the shapes.
    #[error(transparent)]
    Core(#[from] nn_core::Error),
    /// `backward` was called on a layer or loss without a preceding train-mode `forward`.
    #[error("{layer}: backward called without a preceding forward in train mode")]
    NoForward {
        /// The layer or loss, e.g. `"dense(5 → 2)"`.
        layer: String,
    },
    /// A layer configuration that cannot be built (zero width, negative rate…).
    #[error("{layer}: invalid configuration: {message}")]
    Config {
        /// The layer kind.
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// Targets that do not fit the prediction (wrong count, class index out of range…).
    #[error("{loss}: {message}")]
    Target {
        /// The loss, e.g. `"softmax_cross_entropy"`.
        loss: &'static str,
        /// What is wrong, with the shapes or values involved.
        message: String,
    },
    /// A layer spec missing an attribute or holding one of the wrong type.
    #[error("layer spec `{kind}`: {message}")]
    Spec {
        /// The layer kind of the spec.
        kind: String,
        /// What is missing or wrong.
        message: String,
    },
    /// A layer kind that no registered constructor builds.
    #[error("unknown layer kind `{kind}` (register it before loading; known: {known})")]
    UnknownKind {
        /// The kind found.
        kind: String,
        /// The registered kinds, comma-separated.
        known: String,
    },
    /// An error raised inside layer `index` of a [`Sequential`](crate::Sequential).
    #[error("layer {index}: {source}")]
    AtLayer {
        /// Position of the layer in its container, from 0.
        index: usize,
        /// The layer's own error.
        source: Box<Error>,
    },
    /// Stored weights that do not fit a model (a name, a shape, a count or a value).
    #[error("weights do not fit the model: {0}")]
    Weights(String),
    /// An error of a layer defined outside this crate.
    #[error("{layer}: {message}")]
    Custom {
        /// The layer that failed.
        layer: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Wraps `self` as raised by layer `index` of a container.
    pub fn at_layer(self, index: usize) -> Self {
        Error::AtLayer {
            index,
            source: Box::new(self),
        }
    }

    /// The innermost error, looking through [`Error::AtLayer`] wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::AtLayer { source, .. } => source.root(),
            e => e,
        }
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
