//! The one error type of `nn-core`.
//!
//! Every variant names the operation that failed and, where shapes are involved, both the
//! expected and the actual shape, so that a message such as
//! `matmul: inner dimensions differ, a is [4, 3] and b is [5, 2]` is enough to find the bug.

use std::fmt;

/// A shape written the way the messages print it: `[64, 784]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

impl From<&[usize]> for Shape {
    fn from(s: &[usize]) -> Self {
        Shape(s.to_vec())
    }
}

/// Errors returned by tensor operations in `nn-core`.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A tensor did not have the shape an operation needs.
    ///
    /// `expected` is written as a pattern, e.g. `[n, 784]`, where `n` stands for any size.
    #[error("{op}: expected shape {expected}, got {got}")]
    Shape {
        /// The operation, e.g. `"dense(5 → 2) forward"`.
        op: String,
        /// The expected shape as a pattern.
        expected: String,
        /// The shape that was passed.
        got: Shape,
    },
    /// Two operands whose shapes do not fit together.
    #[error("{op}: {reason}, {a_name} is {a} and {b_name} is {b}")]
    Incompatible {
        /// The operation, e.g. `"matmul"`.
        op: String,
        /// What does not fit, e.g. `"inner dimensions differ"`.
        reason: &'static str,
        /// Name of the first operand.
        a_name: &'static str,
        /// Shape of the first operand.
        a: Shape,
        /// Name of the second operand.
        b_name: &'static str,
        /// Shape of the second operand.
        b: Shape,
    },
    /// A size beyond one of the explicit [`limits`](crate::limits).
    #[error("{what}: {amount}, more than the limit of {limit}")]
    Limit {
        /// What is too large, with its shape, e.g. `"dense(64 → 99999999999) weight [99999999999, 64]"`.
        what: String,
        /// How large it is, e.g. `"6399999999936 elements"`.
        amount: String,
        /// The limit and its unit, e.g. `"268435456 elements per tensor"`.
        limit: String,
    },
    /// An argument outside its valid range (a zero fan-in, a negative probability…).
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation or constructor.
        op: String,
        /// What is wrong with the argument.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Shape`].
    pub fn shape(op: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::Shape {
            op: op.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op: op.into(),
            message: message.into(),
        }
    }
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_message_names_both_shapes() {
        let e = Error::shape("dense(5 → 2) forward", "[n, 5]", &[4, 3]);
        assert_eq!(
            e.to_string(),
            "dense(5 → 2) forward: expected shape [n, 5], got [4, 3]"
        );
    }
}
